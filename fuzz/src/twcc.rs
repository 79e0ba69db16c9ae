//! Transport-wide congestion control: feedback parsed and walked by the send log and
//! the send-side estimator (the work a subscriber's feedback makes the server do), and
//! the receive-side recorder whose feedback must parse back.

use cascade_dataplane::bwe::{BweConfig, SendLog, SendSideBwe};
use cascade_dataplane::twcc::{TwccFeedback, TwccRecorder};

/// Packets the send log holds before the feedback arrives.
const SENT: u16 = 512;

/// Treats `data` as a transport-cc feedback packet (or its FCI) for the send side, and
/// as (sequence, arrival) pairs for the receive side.
pub fn run(data: &[u8]) {
    let fb = TwccFeedback::parse(data).or_else(|_| TwccFeedback::parse_fci(1, 2, data));
    if let Ok(fb) = fb {
        let log = SendLog::new();
        let mut bwe = SendSideBwe::new(BweConfig::default());
        let first = fb.base_seq.wrapping_sub(SENT / 2);
        for i in 0..SENT {
            let seq = first.wrapping_add(i);
            let sent_us = 1_000_000 + u64::from(i) * 1_000;
            log.record(seq, 1_200, sent_us);
        }
        log.apply_feedback(&mut bwe, &fb, 2_000_000, usize::MAX);
        log.apply_feedback(&mut bwe, &fb, 2_100_000, usize::MAX);
        let bps = bwe.estimate_bps();
        let config = BweConfig::default();
        assert!((config.min_bps..=config.max_bps).contains(&bps), "{bps}");
        let _ = (
            bwe.delay_based_bps(),
            bwe.loss_based_bps(),
            bwe.loss_fraction(),
        );
        let _ = (bwe.usage(), bwe.acked_bps());
    }
    record(data);
}

/// Records the bytes as (sequence, arrival) pairs and checks every feedback packet the
/// recorder writes parses back.
fn record(data: &[u8]) {
    let mut recorder = TwccRecorder::new();
    let mut arrival_us = 1_000_000u64;
    for chunk in data.chunks_exact(3) {
        let seq = u16::from_be_bytes([chunk[0], chunk[1]]);
        arrival_us += u64::from(chunk[2]) * 250;
        recorder.record(seq, arrival_us);
    }
    let mut buf = [0u8; 1200];
    for _ in 0..64 {
        if !recorder.has_feedback() {
            break;
        }
        match recorder.build_feedback(&mut buf, 1, 2) {
            Ok(Some(n)) => {
                let fb = TwccFeedback::parse(&buf[..n]).expect("our own feedback parses");
                let _ = fb.packets().count();
            }
            Ok(None) | Err(_) => break,
        }
    }
}
