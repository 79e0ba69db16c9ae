//! MCU subscribe (`?mode=mcu`) of a real `cascade serve`, with synthetic peers over
//! UDP: the answer's one audio and one video track, its options and errors, shared
//! outputs, the mix of three tones heard whole by a listener and without its own
//! tone by a publisher (minus-one), and the room's mixer ending with its last
//! subscriber (the metrics say so).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cascade_peer::PeerRole;
use cascade_tests::media::{UdpPeer, connect};
use cascade_tests::{ServerProcess, http_client, random_room};

fn server() -> anyhow::Result<ServerProcess> {
    ServerProcess::start(&cascade_tests::dataplane_args())
}

/// Waits up to 5 s for metric `name` of `server` to read `want`.
async fn metric_becomes(server: &ServerProcess, name: &str, want: f64) -> anyhow::Result<()> {
    cascade_tests::wait_for_metric(&server.http_base, name, Duration::from_secs(5), |v| {
        v == want
    })
    .await
    .map(|_| ())
    .map_err(|last| anyhow::anyhow!("{name} is {last:?}, not {want}"))
}

/// The media sections of an answer: (kind, direction) of each m-line.
fn sections(answer: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in answer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            out.push((
                m.split(' ').next().unwrap_or_default().to_owned(),
                String::new(),
            ));
        } else if let Some(last) = out.last_mut()
            && matches!(
                line,
                "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
            )
        {
            last.1 = line[2..].to_owned();
        }
    }
    out
}

#[tokio::test]
async fn an_mcu_subscribe_gets_one_audio_and_one_video_track_and_errors_are_json()
-> anyhow::Result<()> {
    if !cascade_tests::binary_present() {
        return Ok(());
    }
    let server = server()?;
    let room = random_room("mcu");
    let mut publishers = Vec::new();
    for (i, user) in ["ann", "bob", "cyd"].into_iter().enumerate() {
        let token = server.token(&room, user, &["publish"])?;
        let base = 0x1000 * (i as u32 + 1);
        publishers.push(
            connect(
                &server,
                &format!("/rtc/v1/rooms/{room}/publish"),
                &token,
                PeerRole::Publisher {
                    audio_ssrc: base,
                    video_ssrc: base + 2,
                },
            )
            .await?,
        );
    }
    let token = server.token(&room, "dee", &["subscribe"])?;
    // Three publications, one mixed audio and one composed video track.
    let sub = connect(
        &server,
        &format!("/rtc/v1/rooms/{room}/subscribe?mode=mcu&width=320&height=180"),
        &token,
        PeerRole::Subscriber,
    )
    .await?;
    assert_eq!(
        sections(&sub.answer),
        [
            ("audio".to_owned(), "sendonly".to_owned()),
            ("video".to_owned(), "sendonly".to_owned())
        ],
        "{}",
        sub.answer
    );
    metric_becomes(&server, "cascade_mcu_mixers", 1.0).await?;
    metric_becomes(&server, "cascade_mcu_composers", 1.0).await?;
    metric_becomes(&server, "cascade_mcu_inputs{kind=\"audio\"}", 3.0).await?;

    // Errors: an unknown mode or option is a 400 with a stable code.
    let client = http_client();
    for (query, code) in [
        ("mode=mix", "bad_mode"),
        ("mode=mcu&layout=circle", "bad_mcu_option"),
        ("mode=mcu&width=99999", "bad_mcu_option"),
        ("mode=mcu&fps=0", "bad_mcu_option"),
    ] {
        let resp = client
            .post(server.url(&format!("/rtc/v1/rooms/{room}/subscribe?{query}")))
            .bearer_auth(&token)
            .header("Content-Type", "application/sdp")
            .body(cascade_peer::ClientPeer::new(PeerRole::Subscriber, &[])?.offer())
            .send()
            .await?;
        assert_eq!(resp.status(), 400, "{query}");
        let body: serde_json::Value = resp.json().await?;
        assert_eq!(body["code"], code, "{query}: {body}");
    }

    // Its subscription ended, the room's mixer and composer go.
    let resp = client
        .delete(&sub.resource)
        .bearer_auth(&token)
        .send()
        .await?;
    assert!(resp.status().is_success());
    metric_becomes(&server, "cascade_mcu_mixers", 0.0).await?;
    metric_becomes(&server, "cascade_mcu_composers", 0.0).await?;
    assert_eq!(
        cascade_tests::metric(&server.http_base, "cascade_relays").await,
        Some(0.0),
        "the MCU's relays closed with it"
    );
    drop(publishers);
    Ok(())
}

/// Sends 20 ms Opus packets of a `hz` sine as `ssrc` (PT 111), paced in real time,
/// until `stop`.
fn send_tone(
    mut peer: UdpPeer,
    ssrc: u32,
    hz: f64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<UdpPeer>> {
    std::thread::spawn(move || {
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)?;
        let mut pcm = [0i16; 960];
        let mut out = [0u8; 1500];
        let start = Instant::now();
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = f64::from(n * 960 + i as u32) / 48_000.0;
                *s = (8_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
            }
            let len = enc.encode(&pcm, &mut out)?;
            let mut pkt = cascade_tests::media::rtp_packet(ssrc, n as u16, n * 960, 111, 0);
            pkt.extend_from_slice(&out[..len]);
            peer.send_rtp(&pkt)?;
            n += 1;
            let due = start + Duration::from_millis(20 * u64::from(n));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        Ok(peer)
    })
}

/// Receives `seconds` of the subscriber's mixed audio (PT `pt`) and decodes it: mono
/// samples at 48 kHz (the left channel).
fn receive_mix(peer: &mut UdpPeer, pt: u8, seconds: f64) -> anyhow::Result<Vec<f32>> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Stereo)?;
    let mut pcm = vec![0i16; 5760 * 2];
    let mut samples = Vec::new();
    let mut buf = [0u8; 2048];
    peer.socket
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while (samples.len() as f64) < seconds * 48_000.0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} mixed samples in 15 s",
            samples.len()
        );
        let Ok(n) = peer.socket.recv(&mut buf) else {
            continue;
        };
        if !(128..192).contains(&buf[0]) || (192..224).contains(&buf[1]) {
            continue;
        }
        let Ok(len) = peer.rx.unprotect_rtp(&mut buf[..n]) else {
            continue;
        };
        let Ok(hdr) = cascade_dataplane::rtp::parse(&buf[..len]) else {
            continue;
        };
        if hdr.payload_type != pt {
            continue;
        }
        let frames = dec.decode(&buf[hdr.payload_range(len)], &mut pcm, false)?;
        samples.extend(pcm[..frames * 2].chunks(2).map(|c| f32::from(c[0])));
    }
    Ok(samples)
}

/// The power of `samples` at `hz` (Goertzel), in dB.
fn level_db(samples: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2);
    10.0 * (power + 1e-9).log10()
}

/// The payload type the answer gives the audio (Opus) m-line.
fn opus_pt(answer: &str) -> anyhow::Result<u8> {
    answer
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, codec) = rest.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("opus/")
                .then(|| pt.parse().ok())?
        })
        .ok_or_else(|| anyhow::anyhow!("no opus in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_has_every_tone_and_a_publisher_hears_all_but_its_own() -> anyhow::Result<()> {
    if !cascade_tests::binary_present() {
        return Ok(());
    }
    let server = server()?;
    tones(&server, &server).await
}

/// The same with the publishers on M1 and the MCU subscribers on M2, which relays the
/// publications they name from M1 and mixes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_relayed_from_another_server_mix_like_local_ones() -> anyhow::Result<()> {
    if !cascade_tests::binary_present() {
        return Ok(());
    }
    let args = cascade_tests::cascade::cluster_args("mcu-secret", "mcu-cluster");
    let m1 = ServerProcess::start(&args)?;
    let m2 = ServerProcess::start(&args)?;
    tones(&m1, &m2).await?;
    assert_eq!(
        cascade_tests::metric(&m2.http_base, "cascade_mcu_inputs{kind=\"audio\"}").await,
        Some(3.0)
    );
    Ok(())
}

/// Three publishers on `origin` send 440, 660 and 880 Hz; two MCU subscribers on
/// `edge` (a listener who publishes nothing, and ann, who publishes 440 Hz) hear all
/// three, and all but 440 Hz.
async fn tones(origin: &ServerProcess, edge: &ServerProcess) -> anyhow::Result<()> {
    let room = random_room("mcutones");
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut resources = Vec::new();
    let tones = [("ann", 440.0), ("bob", 660.0), ("cyd", 880.0)];
    for (i, (user, hz)) in tones.into_iter().enumerate() {
        let token = origin.token(&room, user, &["publish"])?;
        let ssrc = 0x1000 * (i as u32 + 1);
        let peer = connect(
            origin,
            &format!("/rtc/v1/rooms/{room}/publish"),
            &token,
            PeerRole::Publisher {
                audio_ssrc: ssrc,
                video_ssrc: ssrc + 2,
            },
        )
        .await?;
        resources.push(peer.resource.clone());
        senders.push(send_tone(peer, ssrc, hz, stop.clone()));
    }
    let mut path = format!("/rtc/v1/rooms/{room}/subscribe?mode=mcu");
    if !std::ptr::eq(origin, edge) {
        for r in &resources {
            path.push_str("&resource=");
            path.extend(form_urlencoded::byte_serialize(r.as_bytes()));
        }
    }
    let token = edge.token(&room, "dee", &["subscribe"])?;
    let mut listener = connect(edge, &path, &token, PeerRole::Subscriber).await?;
    let token = edge.token(&room, "ann", &["subscribe"])?;
    let mut ann = connect(edge, &path, &token, PeerRole::Subscriber).await?;
    metric_becomes(edge, "cascade_mcu_outputs{kind=\"audio\"}", 2.0).await?;

    let pt = opus_pt(&listener.answer)?;
    let all = tokio::task::block_in_place(|| receive_mix(&mut listener, pt, 2.0))?;
    let pt = opus_pt(&ann.answer)?;
    let minus = tokio::task::block_in_place(|| receive_mix(&mut ann, pt, 2.0))?;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join()
            .map_err(|_| anyhow::anyhow!("a tone sender panicked"))??;
    }
    // The last second: past the mixer's start and the jitter buffers' fill.
    let tail = |v: &[f32]| v[v.len() - 48_000..].to_vec();
    let (all, minus) = (tail(&all), tail(&minus));
    let floor = |v: &[f32]| {
        [550.0, 770.0, 1000.0]
            .map(|hz| level_db(v, hz))
            .into_iter()
            .fold(f64::MIN, f64::max)
    };
    let report = |name: &str, v: &[f32]| {
        let levels = [440.0, 660.0, 880.0].map(|hz| level_db(v, hz));
        println!(
            "{name}: 440/660/880 Hz at {levels:.1?} dB, floor (550/770/1000 Hz) {:.1} dB",
            floor(v)
        );
        levels
    };
    let a = report("listener", &all);
    let m = report("ann (minus-one)", &minus);
    for (hz, l) in [440, 660, 880].into_iter().zip(a) {
        assert!(l > floor(&all) + 20.0, "the listener's mix lacks {hz} Hz");
    }
    assert!(
        m[1] > floor(&minus) + 20.0 && m[2] > floor(&minus) + 20.0,
        "ann lacks the others"
    );
    assert!(
        m[0] < m[1] - 20.0 && m[0] < m[2] - 20.0,
        "ann hears her own 440 Hz"
    );
    Ok(())
}
