//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/seed-*`:
//! well-formed packets and documents the fuzzer mutates from. Run it once before a
//! first fuzz run, or after the input format of a target changes:
//! `cargo run -p cascade-fuzz --example seed`.

use std::path::Path;
use std::time::Instant;

use cascade_core::cert::DtlsCertificate;
use cascade_core::dtls::{DtlsEndpoint, DtlsRole};
use cascade_core::stun;
use cascade_dataplane::rtcp::{self, ReportBlock};
use cascade_dataplane::twcc::TwccRecorder;

const SDP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../control/core/src/sdp/fixtures"
);

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
}

fn rtcp_packets() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    let block = ReportBlock {
        ssrc: 0xAAAA,
        fraction_lost: 12,
        cumulative_lost: 40,
        extended_highest_seq: 0x0001_0010,
        jitter: 90,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 6553,
    };
    let n =
        rtcp::write_sender_report(&mut buf, 0xB000, 1 << 40, 9000, 10, 12_000, &[block]).unwrap();
    let mut compound = buf[..n].to_vec();
    let n = rtcp::write_receiver_report(&mut buf, 0xB000, &[block, block]).unwrap();
    compound.extend_from_slice(&buf[..n]);
    out.push(("sr-rr", compound));
    let n = rtcp::write_nack(&mut buf, 0x5000_0002, 0xB000, &[1, 2, 5, 17, 40, 41, 300]).unwrap();
    out.push(("nack", buf[..n].to_vec()));
    let n = rtcp::write_remb(&mut buf, 0x5000_0002, 1_500_000, &[0xB000, 0xD000]).unwrap();
    out.push(("remb", buf[..n].to_vec()));
    let n = rtcp::write_pli(&mut buf, 0x5000_0002, 0xB000).unwrap();
    out.push(("pli", buf[..n].to_vec()));
    let n = rtcp::write_fir(&mut buf, 0x5000_0002, 0xD000, 3).unwrap();
    out.push(("fir", buf[..n].to_vec()));
    // BYE of two sources with a reason, and an SDES with one CNAME.
    out.push((
        "bye",
        vec![
            0x82, 203, 0, 4, 0, 0, 0xAA, 0xAA, 0, 0, 0xCC, 0xCC, 3, b'b', b'y', b'e',
        ],
    ));
    out.push((
        "sdes",
        vec![
            0x81, 202, 0, 3, 0, 0, 0xAA, 0xAA, 1, 4, b'c', b'a', b'm', b'0', 0, 0,
        ],
    ));
    out.push(("twcc", twcc_feedback()));
    out
}

fn twcc_feedback() -> Vec<u8> {
    let mut recorder = TwccRecorder::new();
    let mut at = 1_000_000;
    for seq in (1000u16..1040).filter(|s| s % 7 != 3) {
        at += if seq % 5 == 0 { 70_000 } else { 3_000 };
        recorder.record(seq, at);
    }
    let mut buf = [0u8; 1200];
    let n = recorder
        .build_feedback(&mut buf, 0x5000_0002, 0xB000)
        .unwrap()
        .unwrap();
    buf[..n].to_vec()
}

fn rtp_packets() -> Vec<(&'static str, Vec<u8>)> {
    let header = |pt: u8, ssrc: u32, seq: u16| {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    };
    let mut plain = header(96, 0xAAAA, 100);
    plain.extend_from_slice(&[
        0x10, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0, 0, 0,
    ]);
    // One-byte extensions: transport-wide sequence number (id 3) and a mid (id 4).
    let mut one_byte = header(96, 0xCCCC, 7);
    one_byte[0] |= 0x10;
    one_byte.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x31, 0x12, 0x34, 0x40, b'1', 0, 0, 0]);
    // VP8 keyframe start (S bit, then a keyframe header with 640x480).
    one_byte.extend_from_slice(&[0x10, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    // Two-byte extensions and two CSRCs, marker and padding.
    let mut two_byte = header(111 | 0x80, 0xAAAB, 9);
    two_byte[0] |= 0x30 | 2;
    two_byte.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    two_byte.extend_from_slice(&[0x10, 0x00, 0, 1, 3, 2, 0x12, 0x34]);
    two_byte.extend_from_slice(&[1, 2, 3, 0, 0, 0, 0, 4]);
    vec![
        ("vp8", plain),
        ("one-byte-ext", one_byte),
        ("two-byte-ext-csrc", two_byte),
    ]
}

/// An operation of the `srtp_table` target.
fn op(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![op];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn main() {
    // STUN: an ICE binding request with every attribute, and a bare one.
    let req = stun::binding_request(
        [7; 12],
        "srvufrag:peerufrag",
        0x6e00_1eff,
        42,
        true,
        b"password-of-the-server-ufrag",
    )
    .unwrap();
    write("stun", "binding-request", &req);
    let bare = stun::binding_request([9; 12], "a:b", 1, 1, false, b"k").unwrap();
    write("stun", "binding-request-bare", &bare);

    for (name, p) in rtp_packets() {
        write("rtp", name, &p);
    }
    for (name, p) in rtcp_packets() {
        write("rtcp", name, &p);
    }
    write("twcc", "feedback", &twcc_feedback());

    // SDP: each client's offer, then a Chromium subscriber, then a trickle fragment.
    let subscribe = std::fs::read(format!("{SDP}/chrome_subscribe.sdp")).unwrap();
    let frag = b"a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 UDP 2130706431 198.51.100.7 50000 typ host\r\na=end-of-candidates\r\n";
    for name in [
        "chrome_publish",
        "chrome_simulcast",
        "firefox_publish",
        "obs_whip",
        "ffmpeg_whip",
        "gstreamer_whip",
    ] {
        let offer = std::fs::read_to_string(format!("{SDP}/{name}.sdp"))
            .unwrap()
            .replace('\n', "\r\n");
        let mut input = offer.into_bytes();
        input.push(0xFF);
        input.extend_from_slice(
            &String::from_utf8_lossy(&subscribe)
                .replace('\n', "\r\n")
                .into_bytes(),
        );
        input.push(0xFF);
        input.extend_from_slice(frag);
        write("sdp", name, &input);
    }

    // HTTP bodies: preferences to the subscription, fragments to both resources.
    write("http_body", "prefs", b"\x00{\"mid\":\"1\",\"max_layer\":1,\"max_width\":640,\"max_height\":360,\"paused\":false}");
    write("http_body", "prefs-all", b"\x00{\"paused\":true}");
    let mut trickle = vec![2u8];
    trickle.extend_from_slice(frag);
    write("http_body", "trickle-subscription", &trickle);
    trickle[0] = 3;
    write("http_body", "trickle-publication", &trickle);

    // DTLS: a client's first flight to the server, and the server's to a client.
    let now = Instant::now();
    let client_cert = DtlsCertificate::generate(1_767_225_600).unwrap();
    let server_cert = DtlsCertificate::generate(1_767_225_600).unwrap();
    let mut client = DtlsEndpoint::new(
        &client_cert,
        DtlsRole::Client,
        server_cert.fingerprint().clone(),
        now,
    )
    .unwrap();
    let mut server = DtlsEndpoint::new(
        &server_cert,
        DtlsRole::Server,
        client_cert.fingerprint().clone(),
        now,
    )
    .unwrap();
    let hello = client.poll_transmit().unwrap();
    let mut input = vec![0u8];
    input.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    input.extend_from_slice(&hello);
    write("dtls", "client-hello", &input);
    server.handle_receive(now, &hello).unwrap();
    let mut input = vec![1u8];
    while let Some(d) = server.poll_transmit() {
        input.extend_from_slice(&(d.len() as u16).to_be_bytes());
        input.extend_from_slice(&d);
    }
    write("dtls", "server-flight", &input);

    // Forwarding table: media on the routed streams, then feedback from the
    // subscriber, a timer tick, and garbage.
    let mut ops = vec![0u8];
    for (i, (_, p)) in rtp_packets().into_iter().enumerate() {
        let steer = [0x10, 0x50 | 0x20, 0x30][i];
        ops.extend(op(steer, &p));
    }
    for (_, p) in rtcp_packets() {
        ops.extend(op(0x08 | 3, &p));
    }
    ops.extend(op(6, &[50]));
    ops.extend(op(5, &[0x80, 96, 1, 2, 3]));
    write("srtp_table", "media-and-feedback", &ops);
    ops[0] = 1;
    write("srtp_table", "media-and-feedback-cm", &ops);
}
