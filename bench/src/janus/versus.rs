//! The `--vs janus` run itself: the fanout sweep against Janus and against Cascade
//! on the same topology (both in a server network namespace, the load in another,
//! across a veth pair), Cascade on the SRTP profile Janus negotiated.

use std::net::IpAddr;
use std::sync::Arc;

use cascade_dataplane::srtp::SrtpProfile;

use crate::scenario::{Bench, FanoutTarget};
use crate::server::ServerSpec;
use crate::target::Target;
use crate::{janus, load, netns};

/// The fanout sweep against Janus and against Cascade on the same topology: both in
/// a server network namespace, the load in another, across a veth pair.
pub(crate) fn run(
    bench: &mut Bench,
    server_bin: &std::path::Path,
    dataplane: Option<&'static str>,
    workers: usize,
    ns: &[usize],
    rt: Arc<tokio::runtime::Runtime>,
) -> anyhow::Result<Vec<String>> {
    let bin = janus::ensure_installed()?;
    let net = netns::Netns::create()?;
    let guard = net.enter_load()?;
    let profiles = [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];
    let mut jt = janus::JanusTarget::start(
        &bin,
        &net.server_ns,
        net.server_ip,
        net.load_ip,
        &profiles,
        rt.clone(),
    )?;
    // Which SRTP profile does Janus settle on? Cascade then runs the same one.
    let mut scratch = load::Rig::default();
    jt.add_publishers(&mut scratch, 1)?;
    jt.clear(&mut scratch)?;
    let profile = jt.profile.unwrap_or(SrtpProfile::Aes128CmHmacSha1_80);
    let suffix = match profile {
        SrtpProfile::AeadAes128Gcm => "gcm",
        SrtpProfile::Aes128CmHmacSha1_80 => "cm",
    };
    let mut janus_target = Target::Janus(Box::new(jt));
    let spec = ServerSpec {
        bin: server_bin,
        dataplane,
        workers: Some(workers),
        http_listen: format!("{}:0", net.server_ip),
        media_listen: format!("{}:0", net.server_ip),
        netns: Some(&net.server_ns),
        extra_args: Vec::new(),
        cpus: Vec::new(),
    };
    let mut cascade_target = Target::cascade(&spec, profile, IpAddr::V4(net.load_ip), rt)?;
    let mut fts = vec![
        FanoutTarget {
            name: format!("cascade-{suffix}-veth"),
            target: &mut cascade_target,
            ns: ns.to_vec(),
        },
        FanoutTarget {
            name: format!("janus-{suffix}"),
            target: &mut janus_target,
            ns: ns.to_vec(),
        },
    ];
    let failures = bench.fanout(&mut fts);
    drop(fts);
    drop(cascade_target);
    drop(janus_target);
    drop(guard);
    drop(net);
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    Ok(vec![format!(
        "--vs janus: Janus 1.1.2 VideoRoom (ICE-lite, HTTP API) and Cascade in network namespace \
         A, load in B across a veth pair; SRTP profile {profile:?} (what Janus negotiated)"
    )])
}
