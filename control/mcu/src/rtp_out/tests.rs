//! Tests of the RTP streams: headers, sequence wrap, timestamps from capture instants,
//! and sender reports parsed back field by field (RFC 3550 §5.1, §6.4.1, §6.5).

use super::*;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[test]
fn header_fields_and_payload() {
    let epoch = Instant::now();
    let mut s = RtpStream::new(0xdead_beef, 111, 48_000, 1000, 5000, epoch);
    let mut out = vec![1, 2, 3];
    s.write_packet(epoch, true, b"abc", &mut out);
    assert_eq!(out.len(), 15);
    assert_eq!(out[0], 0x80, "V=2, no padding, extension or CSRC");
    assert_eq!(out[1], 0x80 | 111, "marker and payload type");
    assert_eq!(be16(&out, 2), 1000);
    assert_eq!(be32(&out, 4), 5000);
    assert_eq!(be32(&out, 8), 0xdead_beef);
    assert_eq!(&out[12..], b"abc");
    s.write_packet(epoch, false, b"", &mut out);
    assert_eq!(out.len(), 12);
    assert_eq!(out[1], 111, "no marker");
    assert_eq!(be16(&out, 2), 1001);
    assert_eq!(s.ssrc(), 0xdead_beef);
}

#[test]
fn sequence_wraps() {
    let epoch = Instant::now();
    let mut s = RtpStream::new(1, 96, 90_000, 65_534, 0, epoch);
    let mut out = Vec::new();
    let seqs: Vec<u16> = (0..4)
        .map(|_| {
            s.write_packet(epoch, false, &[0], &mut out);
            be16(&out, 2)
        })
        .collect();
    assert_eq!(seqs, [65_534, 65_535, 0, 1]);
}

#[test]
fn timestamps_follow_capture_instants_at_the_clock_rate() {
    let epoch = Instant::now();
    let ts0 = u32::MAX - 1000; // wraps within the test
    let mut audio = RtpStream::new(1, 111, 48_000, 0, ts0, epoch);
    let mut video = RtpStream::new(2, 96, 90_000, 0, 7, epoch);
    let mut out = Vec::new();
    for k in 0..100u32 {
        let capture = epoch + Duration::from_millis(20) * k;
        audio.write_packet(capture, false, &[0; 10], &mut out);
        assert_eq!(be32(&out, 4), ts0.wrapping_add(960 * k));
        video.write_packet(capture, true, &[0; 10], &mut out);
        assert_eq!(be32(&out, 4), 7 + 1800 * k);
    }
    // Sub-tick instants truncate; instants before the epoch count backwards.
    assert_eq!(audio.timestamp_at(epoch + Duration::from_micros(20)), ts0);
    assert_eq!(
        audio.timestamp_at(epoch + Duration::from_micros(21)),
        ts0.wrapping_add(1)
    );
    if let Some(before) = epoch.checked_sub(Duration::from_millis(1)) {
        assert_eq!(video.timestamp_at(before), 7u32.wrapping_sub(90));
    }
    audio.write_packet_at_offset(960 * 3, false, &[], &mut out);
    assert_eq!(be32(&out, 4), ts0.wrapping_add(2880));
}

#[test]
fn sender_report_parses_back() {
    let epoch = Instant::now();
    let mut s = RtpStream::new(0x0102_0304, 111, 48_000, 9, 123_456, epoch);
    let mut out = Vec::new();
    for k in 0..50u32 {
        s.write_packet(
            epoch + Duration::from_millis(20) * k,
            false,
            &[7; 33],
            &mut out,
        );
    }
    assert_eq!(s.counts(), (50, 50 * 33));
    let last_ts = be32(&out, 4);
    // 2026-12-03T22:00:00.25Z.
    let wall = UNIX_EPOCH + Duration::new(1_796_335_200, 250_000_000);
    let now = epoch + Duration::from_millis(1000);
    let cname = "mixer-audio@room";
    s.sender_report(now, wall, cname, &mut out);

    // SR.
    assert_eq!(out[0], 0x80, "V=2, RC=0");
    assert_eq!(out[1], 200);
    let sr_words = usize::from(be16(&out, 2)) + 1;
    assert_eq!(sr_words, 7);
    assert_eq!(be32(&out, 4), 0x0102_0304);
    assert_eq!(be32(&out, 8), 1_796_335_200 + 2_208_988_800);
    assert_eq!(be32(&out, 12), 1 << 30, "0.25 s is a quarter of 2^32");
    let sr_ts = be32(&out, 16);
    assert_eq!(sr_ts, 123_456 + 48_000);
    // Consistent with the packets: 20 ms after the last one's capture (at 980 ms).
    assert_eq!(sr_ts.wrapping_sub(last_ts), 960);
    assert_eq!(be32(&out, 20), 50);
    assert_eq!(be32(&out, 24), 50 * 33);

    // SDES.
    let sdes = &out[sr_words * 4..];
    assert_eq!(sdes[0], 0x81, "V=2, SC=1");
    assert_eq!(sdes[1], 202);
    let sdes_len = (usize::from(be16(sdes, 2)) + 1) * 4;
    assert_eq!(sdes.len(), sdes_len, "the compound ends with the SDES");
    assert_eq!(out.len() % 4, 0);
    assert_eq!(be32(sdes, 4), 0x0102_0304);
    assert_eq!(sdes[8], 1, "CNAME");
    let n = usize::from(sdes[9]);
    assert_eq!(&sdes[10..10 + n], cname.as_bytes());
    assert!(sdes[10 + n..].iter().all(|&b| b == 0));
    assert!(
        !sdes[10 + n..].is_empty(),
        "at least one null octet ends the items"
    );
}

#[test]
fn sdes_padding_for_every_cname_length() {
    let epoch = Instant::now();
    let s = RtpStream::new(5, 111, 48_000, 0, 0, epoch);
    let mut out = Vec::new();
    for len in 0..300 {
        let cname = "x".repeat(len);
        s.sender_report(epoch, UNIX_EPOCH, &cname, &mut out);
        let sdes = &out[28..];
        assert_eq!(
            sdes.len(),
            (usize::from(be16(sdes, 2)) + 1) * 4,
            "length {len}"
        );
        let n = usize::from(sdes[9]);
        assert_eq!(n, len.min(255));
        let pad = &sdes[10 + n..];
        assert!(
            (1..=4).contains(&pad.len()) && pad.iter().all(|&b| b == 0),
            "length {len}"
        );
    }
}

#[test]
fn ntp_fraction_is_exact_for_halves_and_early_times_clamp() {
    let (secs, frac) = ntp_timestamp(UNIX_EPOCH + Duration::from_millis(1500));
    assert_eq!(secs, 2_208_988_801);
    assert_eq!(frac, 1 << 31);
    assert_eq!(
        ntp_timestamp(UNIX_EPOCH - Duration::from_secs(5)),
        (2_208_988_800, 0)
    );
}
