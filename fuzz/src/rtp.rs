//! RTP: the header, CSRCs and extension elements, the codec payload descriptors a
//! layer switch reads, the in-place rewrites the forwarder applies, and the sequence
//! and reception bookkeeping driven by received sequence numbers.

use cascade_dataplane::codec;
use cascade_dataplane::command::KeyframeFormat;
use cascade_dataplane::rtp::{self, SeqTracker};

const FORMATS: [KeyframeFormat; 5] = [
    KeyframeFormat::Vp8,
    KeyframeFormat::H264,
    KeyframeFormat::Vp9,
    KeyframeFormat::Av1,
    KeyframeFormat::Any,
];

/// Parses `data` as an RTP packet, then rewrites a copy of it as the forwarder does.
pub fn run(data: &[u8]) {
    let quick = rtp::parse_header(data);
    let Ok(hdr) = rtp::parse(data) else {
        sequences(data);
        return;
    };
    assert!(quick.is_ok(), "a packet parses only with a valid header");
    let payload = data.get(hdr.payload_range(data.len())).unwrap_or_default();
    let _ = hdr.csrcs(data).count();
    for id in 0..=15 {
        let _ = rtp::extension_element(data, &hdr, id);
        let _ = rtp::transport_seq(data, &hdr, id);
    }
    for format in FORMATS {
        let _ = codec::keyframe_start(format, payload);
    }
    let _ = codec::vp8::keyframe_size(payload);
    let _ = codec::vp9::keyframe_size(payload);

    let mut copy = data.to_vec();
    let _ = rtp::set_ssrc(&mut copy, 0x1234_5678);
    let _ = rtp::set_sequence(&mut copy, 7);
    let _ = rtp::set_timestamp(&mut copy, 9);
    let _ = rtp::set_payload_type(&mut copy, 100);
    let _ = rtp::set_marker(&mut copy, true);
    // Room to grow for a new extension element, as the forwarder's buffers have.
    let len = copy.len();
    copy.resize(len + 64, 0);
    for id in [1u8, 14, 15, 200] {
        if let Ok(n) = rtp::set_transport_seq(&mut copy, len, id, 0xBEEF) {
            assert!(n <= copy.len(), "the packet grew past its buffer");
            if let Ok(h) = rtp::parse(&copy[..n]) {
                let _ = rtp::transport_seq(&copy[..n], &h, id);
            }
            break;
        }
    }
    sequences(data);
}

/// Feeds the bytes as (sequence, timestamp) pairs to the reception statistics.
fn sequences(data: &[u8]) {
    let mut tracker = SeqTracker::new();
    let mut arrival = 0u32;
    for chunk in data.chunks_exact(4) {
        let seq = u16::from_be_bytes([chunk[0], chunk[1]]);
        let ts = u32::from(u16::from_be_bytes([chunk[2], chunk[3]])) << 8;
        arrival = arrival.wrapping_add(u32::from(chunk[3]) * 90);
        if chunk[3] & 1 == 0 {
            tracker.update(seq);
        } else {
            tracker.record(seq, ts, arrival);
        }
        let _ = tracker.extended_highest_seq();
        let _ = (tracker.expected(), tracker.received(), tracker.lost());
        let _ = tracker.jitter();
    }
    let _ = tracker.report();
}
