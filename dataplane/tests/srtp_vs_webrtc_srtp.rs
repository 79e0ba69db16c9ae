//! Cross-checks Cascade's SRTP/SRTCP transform against the independent `webrtc-srtp`
//! implementation: for the same master keys and packets both must produce the same
//! protected bytes, and each must unprotect what the other produced. Covers both
//! profiles, several SSRCs, payloads of 0..=1200 bytes, CSRCs, one- and two-byte header
//! extensions, RTP padding and sequence numbers wrapping past 65535 (ROC increments).

use cascade_dataplane::srtp::{SrtpContext, SrtpError, SrtpKeyingMaterial, SrtpProfile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const PROFILES: [SrtpProfile; 2] = [SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes128Gcm];

fn their_profile(p: SrtpProfile) -> ProtectionProfile {
    match p {
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

struct Keys {
    key: Vec<u8>,
    salt: Vec<u8>,
}

impl Keys {
    fn random(rng: &mut StdRng, profile: SrtpProfile) -> Self {
        let mut key = vec![0u8; profile.key_len()];
        let mut salt = vec![0u8; profile.salt_len()];
        rng.fill(&mut key[..]);
        rng.fill(&mut salt[..]);
        Self { key, salt }
    }

    fn ours(&self, profile: SrtpProfile) -> SrtpContext {
        let m = SrtpKeyingMaterial::new(profile, &self.key, &self.salt).unwrap();
        SrtpContext::new(&m).unwrap()
    }

    fn theirs(&self, profile: SrtpProfile) -> Context {
        Context::new(&self.key, &self.salt, their_profile(profile), None, None).unwrap()
    }
}

#[derive(Clone, Copy, Debug)]
enum Ext {
    None,
    OneByte,
    TwoByte,
}

/// Builds a plaintext RTP packet with random CSRCs, header extension, payload and
/// padding. Extension elements are packed with only the zero padding needed to reach a
/// 4-byte boundary.
fn rtp_packet(rng: &mut StdRng, ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
    let csrcs = if rng.random_bool(0.3) {
        rng.random_range(1..=15u8)
    } else {
        0
    };
    let ext = match rng.random_range(0..3) {
        0 => Ext::None,
        1 => Ext::OneByte,
        _ => Ext::TwoByte,
    };
    let padding = if rng.random_bool(0.1) {
        rng.random_range(1..=40u8)
    } else {
        0
    };
    let mut p = Vec::with_capacity(1500);
    let b0 = 0x80
        | if padding > 0 { 0x20 } else { 0 }
        | if matches!(ext, Ext::None) { 0 } else { 0x10 }
        | csrcs;
    p.push(b0);
    p.push(if rng.random_bool(0.1) { 0x80 } else { 0 } | rng.random_range(0..128u8));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..csrcs {
        p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    }
    let mut body = Vec::new();
    match ext {
        Ext::None => {}
        Ext::OneByte => {
            for _ in 0..rng.random_range(1..=5) {
                let len = rng.random_range(1..=16u8);
                body.push((rng.random_range(1..=14u8) << 4) | (len - 1));
                body.extend((0..len).map(|_| rng.random::<u8>()));
            }
        }
        Ext::TwoByte => {
            for _ in 0..rng.random_range(1..=4) {
                let len = rng.random_range(0..=40u8);
                body.push(rng.random_range(1..=255u8));
                body.push(len);
                body.extend((0..len).map(|_| rng.random::<u8>()));
            }
        }
    }
    if !matches!(ext, Ext::None) {
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let profile: u16 = if matches!(ext, Ext::OneByte) {
            0xBEDE
        } else {
            0x1000
        };
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&body);
    }
    p.extend((0..payload_len).map(|_| rng.random::<u8>()));
    if padding > 0 {
        p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
        p.push(padding);
    }
    p
}

/// A plausible RTCP compound packet whose first SSRC is `ssrc`: an SR or RR with report
/// blocks, followed by an SDES CNAME or a REMB.
fn rtcp_packet(rng: &mut StdRng, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::new();
    let blocks = rng.random_range(0..=3u8);
    let sr = rng.random_bool(0.5);
    let words = if sr { 6 } else { 1 } + 6 * u16::from(blocks);
    p.push(0x80 | blocks);
    p.push(if sr { 200 } else { 201 });
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let fixed = if sr { 20 } else { 0 } + 24 * usize::from(blocks);
    p.extend((0..fixed).map(|_| rng.random::<u8>()));
    if rng.random_bool(0.5) {
        // SDES with one CNAME chunk of 16 characters: 4 + 2 + 16 + 2 (end + pad) = 24.
        p.extend_from_slice(&[0x81, 202, 0, 6]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[1, 16]);
        p.extend((0..16).map(|_| rng.random_range(b'a'..=b'z')));
        p.extend_from_slice(&[0, 0]);
    } else {
        // REMB for one SSRC.
        p.extend_from_slice(&[0x8f, 206, 0, 5]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(b"REMB");
        p.extend_from_slice(&[1, 0x0b, 0x40, 0x00]);
        p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    }
    p
}

fn our_protect_rtp(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + ctx.profile().rtp_overhead(), 0);
    let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

fn our_protect_rtcp(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + ctx.profile().rtcp_overhead(), 0);
    let n = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

/// Sequence numbers for one SSRC: starts close to the wrap, mostly in order, with some
/// adjacent swaps and some repeats of slightly older numbers (retransmissions).
fn sequence_plan(rng: &mut StdRng, count: usize) -> Vec<u16> {
    let start: u16 = rng.random_range(65535 - 60..=65535);
    let mut seqs: Vec<u16> = (0..count as u16).map(|i| start.wrapping_add(i)).collect();
    for i in 1..seqs.len() {
        if rng.random_bool(0.1) {
            seqs.swap(i - 1, i);
        }
    }
    let mut out = Vec::new();
    for (i, s) in seqs.iter().enumerate() {
        out.push(*s);
        if i > 20 && rng.random_bool(0.05) {
            out.push(s.wrapping_sub(rng.random_range(5..20)));
        }
    }
    out
}

#[test]
fn rtp_matches_webrtc_srtp_byte_for_byte() {
    let mut rng = StdRng::seed_from_u64(0xC45C_ADE1);
    for profile in PROFILES {
        for _round in 0..3 {
            let keys = Keys::random(&mut rng, profile);
            let mut our_tx = keys.ours(profile);
            let mut their_tx = keys.theirs(profile);
            let mut our_rx = keys.ours(profile);
            let mut their_rx = keys.theirs(profile);

            let ssrcs: Vec<u32> = (0..4).map(|_| rng.random()).collect();
            let plans: Vec<Vec<u16>> = ssrcs.iter().map(|_| sequence_plan(&mut rng, 150)).collect();
            let longest = plans.iter().map(Vec::len).max().unwrap();
            let mut wrapped = 0;
            for i in 0..longest {
                for (ssrc, plan) in ssrcs.iter().zip(&plans) {
                    let Some(&seq) = plan.get(i) else { continue };
                    let payload_len = match rng.random_range(0..10) {
                        0 => 0,
                        1 => 1200,
                        _ => rng.random_range(0..=1200),
                    };
                    let plain = rtp_packet(&mut rng, *ssrc, seq, payload_len);

                    let ours = our_protect_rtp(&mut our_tx, &plain);
                    let theirs = their_tx.encrypt_rtp(&plain).unwrap();
                    assert_eq!(
                        ours[..],
                        theirs[..],
                        "{profile:?} ssrc {ssrc:#x} seq {seq} len {}",
                        plain.len()
                    );
                    assert_eq!(ours.len(), plain.len() + profile.rtp_overhead());

                    // Each side unprotects the other's output. Repeated sequence numbers
                    // are replays for Cascade (webrtc-srtp runs without replay checks).
                    let mut buf = theirs.to_vec();
                    match our_rx.unprotect_rtp(&mut buf) {
                        Ok(n) => assert_eq!(buf[..n], plain[..]),
                        Err(SrtpError::Replayed) => {
                            assert!(plan[..i].contains(&seq), "false replay at seq {seq}");
                        }
                        Err(e) => panic!("{profile:?} seq {seq}: {e}"),
                    }
                    let decrypted = their_rx.decrypt_rtp(&ours).unwrap();
                    assert_eq!(decrypted[..], plain[..]);
                    if seq < 100 {
                        wrapped += 1;
                    }
                }
            }
            assert!(wrapped > 100, "plans cross the wrap");
        }
    }
}

#[test]
fn rtcp_matches_webrtc_srtp_byte_for_byte() {
    let mut rng = StdRng::seed_from_u64(0x5EC0_0001);
    for profile in PROFILES {
        let keys = Keys::random(&mut rng, profile);
        let mut our_tx = keys.ours(profile);
        let mut their_tx = keys.theirs(profile);
        let mut our_rx = keys.ours(profile);
        let mut their_rx = keys.theirs(profile);
        let ssrcs: Vec<u32> = (0..3).map(|_| rng.random()).collect();
        for _ in 0..200 {
            let ssrc = ssrcs[rng.random_range(0..ssrcs.len())];
            let plain = rtcp_packet(&mut rng, ssrc);
            let ours = our_protect_rtcp(&mut our_tx, &plain);
            let theirs = their_tx.encrypt_rtcp(&plain).unwrap();
            assert_eq!(ours[..], theirs[..], "{profile:?} ssrc {ssrc:#x}");
            assert_eq!(ours.len(), plain.len() + profile.rtcp_overhead());

            let mut buf = theirs.to_vec();
            let n = our_rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(buf[..n], plain[..]);
            let decrypted = their_rx.decrypt_rtcp(&ours).unwrap();
            assert_eq!(decrypted[..], plain[..]);
        }
    }
}

#[test]
fn webrtc_srtp_rejects_tampered_cascade_output_and_vice_versa() {
    let mut rng = StdRng::seed_from_u64(7);
    for profile in PROFILES {
        let keys = Keys::random(&mut rng, profile);
        let mut our_tx = keys.ours(profile);
        let mut their_tx = keys.theirs(profile);
        let plain = rtp_packet(&mut rng, 0xabcd, 65535, 100);
        let mut ours = our_protect_rtp(&mut our_tx, &plain);
        let last = ours.len() - 1;
        ours[last] ^= 0x80;
        assert!(keys.theirs(profile).decrypt_rtp(&ours).is_err());

        let mut theirs = their_tx.encrypt_rtp(&plain).unwrap().to_vec();
        theirs[last] ^= 0x80;
        let mut our_rx = keys.ours(profile);
        assert!(matches!(
            our_rx.unprotect_rtp(&mut theirs),
            Err(SrtpError::AuthenticationFailed)
        ));
    }
}

#[test]
fn replay_and_state_after_failure() {
    let mut rng = StdRng::seed_from_u64(11);
    for profile in PROFILES {
        let keys = Keys::random(&mut rng, profile);
        let mut their_tx = keys.theirs(profile);
        let mut rx = keys.ours(profile);
        let packets: Vec<(Vec<u8>, Vec<u8>)> = (65530u32..65542)
            .map(|s| {
                let plain = rtp_packet(&mut rng, 99, s as u16, 64);
                let protected = their_tx.encrypt_rtp(&plain).unwrap().to_vec();
                (plain, protected)
            })
            .collect();
        for (i, (plain, protected)) in packets.iter().enumerate() {
            // A forged copy first: must fail (a flipped sequence bit may also hit an
            // index already seen) and must not disturb the genuine packet after it.
            let mut forged = protected.clone();
            let at = rng.random_range(0..forged.len());
            forged[at] ^= 1 << rng.random_range(0..8);
            let r = rx.unprotect_rtp(&mut forged);
            assert!(
                matches!(
                    r,
                    Err(SrtpError::AuthenticationFailed
                        | SrtpError::Replayed
                        | SrtpError::Malformed
                        | SrtpError::TooShort)
                ),
                "forged packet {i} at byte {at}: {r:?}"
            );
            let mut buf = protected.clone();
            let n = rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(buf[..n], plain[..]);
            let mut again = protected.clone();
            assert!(matches!(
                rx.unprotect_rtp(&mut again),
                Err(SrtpError::Replayed)
            ));
        }
        // The first packet, long accepted, is still refused.
        let mut buf = packets[0].1.clone();
        assert!(matches!(
            rx.unprotect_rtp(&mut buf),
            Err(SrtpError::Replayed)
        ));
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(0xBAD);
    for profile in PROFILES {
        let keys = Keys::random(&mut rng, profile);
        let mut ctx = keys.ours(profile);
        let mut their_tx = keys.theirs(profile);
        let valid_rtp = their_tx
            .encrypt_rtp(&rtp_packet(&mut rng, 5, 1, 50))
            .unwrap()
            .to_vec();
        let valid_rtcp = their_tx
            .encrypt_rtcp(&rtcp_packet(&mut rng, 5))
            .unwrap()
            .to_vec();
        for i in 0..50_000 {
            let mut buf = match i % 3 {
                0 => {
                    let len = rng.random_range(0..300);
                    (0..len).map(|_| rng.random()).collect::<Vec<u8>>()
                }
                1 => {
                    // Valid packets with random corruption and truncation.
                    let mut b = valid_rtp.clone();
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                    b.truncate(rng.random_range(0..=b.len()));
                    b
                }
                _ => {
                    let mut b = valid_rtcp.clone();
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                    b.truncate(rng.random_range(0..=b.len()));
                    b
                }
            };
            let _ = ctx.unprotect_rtp(&mut buf);
            let _ = ctx.unprotect_rtcp(&mut buf);
            let len = rng.random_range(0..=buf.len());
            let _ = ctx.protect_rtp(&mut buf, len);
            let _ = ctx.protect_rtcp(&mut buf, len);
        }
    }
}
