//! `cascade check-config`: resolves the configuration exactly as `cascade serve`
//! does (flags, `CASCADE_*` environment, `--config` file, defaults) and checks what
//! would only fail later, or fail silently: the TLS certificate and key, the cluster
//! CA and pins, that the listen ports can be bound, that secrets are long enough,
//! and that the data centre's members resolve. It prints one line per finding and
//! fails when any is an error. It starts nothing and changes nothing.

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::Path;

use openssl::x509::X509;

use crate::config::{Secret, ServeArgs, ServeConfig};
use cascade_dns::membership::{MembershipSource, resolve_srv};

/// Shortest accepted token or cluster secret, bytes (HS256 keys of 256 bits).
pub const MIN_SECRET_LEN: usize = 32;
/// Shortest accepted admin secret, bytes.
pub const MIN_ADMIN_SECRET_LEN: usize = 16;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{tag}: {}", self.message)
    }
}

#[derive(Debug, Default)]
struct Report(Vec<Finding>);

impl Report {
    fn push(&mut self, severity: Severity, message: impl Into<String>) {
        self.0.push(Finding {
            severity,
            message: message.into(),
        });
    }
    fn ok(&mut self, m: impl Into<String>) {
        self.push(Severity::Ok, m);
    }
    fn warn(&mut self, m: impl Into<String>) {
        self.push(Severity::Warning, m);
    }
    fn error(&mut self, m: impl Into<String>) {
        self.push(Severity::Error, m);
    }
}

/// Checks `args` as `cascade serve` would take them; every finding, in order.
pub async fn check(args: ServeArgs) -> Vec<Finding> {
    let mut r = Report::default();
    let source = args
        .config
        .as_ref()
        .map_or("flags and environment".to_owned(), |p| {
            p.display().to_string()
        });
    let config = match args.resolve() {
        Ok(c) => {
            r.ok(format!("configuration resolves ({source})"));
            c
        }
        Err(e) => {
            r.error(e.to_string());
            return r.0;
        }
    };
    check_secrets(&config, &mut r);
    check_tls(&config, &mut r);
    check_ports(&config, &mut r);
    check_members(&config, &mut r).await;
    r.0
}

fn secret_len(r: &mut Report, what: &str, s: &Secret, min: usize) {
    // A `KID:` prefix is the key's name, not part of it.
    let key = s.expose().split_once(':').map_or(s.expose(), |(_, k)| k);
    if key.len() < min {
        r.error(format!(
            "{what} is {} bytes long; use at least {min} (e.g. `openssl rand -hex {min}`)",
            key.len()
        ));
    } else {
        r.ok(format!("{what} is long enough"));
    }
}

fn check_secrets(c: &ServeConfig, r: &mut Report) {
    if c.token_secrets.is_empty() {
        r.warn("no token secret: a dev secret is generated per run, so tokens minted elsewhere are refused");
    }
    for (i, s) in c.token_secrets.iter().enumerate() {
        secret_len(r, &format!("token secret #{}", i + 1), s, MIN_SECRET_LEN);
    }
    match &c.cluster_secret {
        Some(s) => secret_len(r, "cluster secret", s, MIN_SECRET_LEN),
        None if c.members.is_some() => r.warn(
            "members are configured but no cluster secret: rooms are placed, but nothing is cascaded between servers",
        ),
        None => {}
    }
    if let Some(s) = &c.admin_secret {
        secret_len(r, "admin secret", s, MIN_ADMIN_SECRET_LEN);
    }
    if c.cluster_insecure_http {
        r.warn("cluster_insecure_http is on: relay keys may travel in clear (development only)");
    }
}

/// The certificates of a PEM file, or why they cannot be read.
fn pem_certs(path: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn check_expiry(r: &mut Report, what: &str, cert: &X509) {
    let now = openssl::asn1::Asn1Time::days_from_now(0);
    let soon = openssl::asn1::Asn1Time::days_from_now(14);
    match (now, soon) {
        (Ok(now), Ok(soon)) => {
            if cert.not_after() < now {
                r.error(format!("{what} expired ({})", cert.not_after()));
            } else if cert.not_before() > now {
                r.error(format!("{what} is not valid before {}", cert.not_before()));
            } else if cert.not_after() < soon {
                r.warn(format!("{what} expires soon ({})", cert.not_after()));
            } else {
                r.ok(format!("{what} valid until {}", cert.not_after()));
            }
        }
        _ => r.warn(format!("cannot read the clock to check {what}")),
    }
}

fn check_tls(c: &ServeConfig, r: &mut Report) {
    let mut leaf = None;
    if let Some((cert, key)) = &c.tls {
        match crate::cluster_tls::server_config(cert, key) {
            Ok(_) => {
                r.ok(format!(
                    "TLS certificate {} and key {} load and match",
                    cert.display(),
                    key.display()
                ));
                match pem_certs(cert) {
                    Ok(certs) => {
                        check_expiry(r, &format!("TLS certificate {}", cert.display()), &certs[0]);
                        leaf = Some(certs[0].clone());
                    }
                    Err(e) => r.error(e),
                }
            }
            Err(e) => r.error(format!("TLS: {e:#}")),
        }
    } else if c.tls_dev {
        r.warn(format!(
            "no tls_cert/tls_key: HTTPS and HTTP/3 use a self-signed development certificate made at start ({} days), which no client trusts unless told to",
            crate::dev_cert::DAYS
        ));
    } else if c.cluster_secret.is_some() && !c.cluster_insecure_http {
        r.error("a cluster secret without tls_cert/tls_key: relay calls need HTTPS (or cluster_insecure_http for development)");
    }
    let mut cas = Vec::new();
    let mut cas_read = true;
    for f in &c.cluster_ca {
        match pem_certs(f) {
            Ok(certs) => {
                for ca in &certs {
                    check_expiry(r, &format!("cluster CA {}", f.display()), ca);
                }
                cas.extend(certs);
            }
            Err(e) => {
                cas_read = false;
                r.error(format!("cluster CA: {e}"));
            }
        }
    }
    // The CA files were reported above; this checks what the server loads (and pins).
    if cas_read
        && let Err(e) = crate::cluster_tls::ClusterTrust::load(
            &c.cluster_ca,
            &c.cluster_pins,
            c.cluster_insecure_http,
        )
    {
        r.error(format!("cluster trust: {e:#}"));
    }
    if c.cluster_secret.is_some()
        && c.cluster_ca.is_empty()
        && c.cluster_pins.is_empty()
        && !c.cluster_insecure_http
    {
        r.warn("no cluster CA or pin: this server cannot verify the servers it relays from");
    }
    if let (Some(leaf), false) = (&leaf, cas.is_empty()) {
        let signed = cas.iter().any(|ca| {
            ca.public_key()
                .and_then(|k| leaf.verify(&k))
                .unwrap_or(false)
        });
        if signed {
            r.ok("the TLS certificate is issued by the cluster CA");
        } else {
            r.warn("the TLS certificate is not issued by any cluster CA given: other servers trusting only that CA will refuse this one");
        }
    }
}

fn check_ports(c: &ServeConfig, r: &mut Report) {
    match std::net::TcpListener::bind(c.http_listen) {
        Ok(_) => r.ok(format!("HTTP {} can be bound", c.http_listen)),
        Err(e) => r.error(format!("cannot bind HTTP {}: {e}", c.http_listen)),
    }
    match std::net::UdpSocket::bind(c.media_listen) {
        Ok(_) => r.ok(format!("media {}/udp can be bound", c.media_listen)),
        Err(e) => r.error(format!("cannot bind media {}/udp: {e}", c.media_listen)),
    }
    if c.media_listen.ip().is_unspecified() && c.public_ip.is_none() {
        r.error(format!(
            "media_listen {} binds every address: public_ip is needed for the ICE candidate",
            c.media_listen
        ));
    }
}

/// `host:port` of a base URL, for a name lookup.
fn authority(url: &str) -> Option<String> {
    let member = cascade_core::placement::member_from_url(url)?;
    Some(member.id)
}

async fn check_members(c: &ServeConfig, r: &mut Report) {
    match &c.members {
        None => r.ok("placement off (no members)"),
        Some(MembershipSource::Static(members)) => {
            for m in members {
                let resolved = tokio::task::spawn_blocking({
                    let id = m.id.clone();
                    move || id.to_socket_addrs().map(|a| a.count())
                })
                .await;
                match resolved {
                    Ok(Ok(n)) if n > 0 => r.ok(format!("member {} resolves", m.url)),
                    Ok(Ok(_)) => r.error(format!("member {} resolves to no address", m.url)),
                    Ok(Err(e)) => r.error(format!("member {} does not resolve: {e}", m.url)),
                    Err(e) => r.error(format!("member {}: {e}", m.url)),
                }
            }
            check_self_listed(c, members.iter().map(|m| m.id.clone()).collect(), r);
        }
        Some(MembershipSource::Srv {
            name,
            resolver,
            scheme,
        }) => match resolve_srv(name, *resolver, *scheme).await {
            Ok(answer) if answer.members.is_empty() => r.warn(format!(
                "SRV {name} at {resolver} lists no member yet (this server serves every room until it does)"
            )),
            Ok(answer) => {
                let ids: Vec<String> = answer.members.iter().map(|m| m.id.clone()).collect();
                r.ok(format!(
                    "SRV {name} at {resolver}: {} member(s) {}",
                    ids.len(),
                    ids.join(", ")
                ));
                check_self_listed(c, ids, r);
            }
            Err(e) => r.error(format!("SRV {name} at {resolver}: {e:#}")),
        },
    }
}

fn check_self_listed(c: &ServeConfig, ids: Vec<String>, r: &mut Report) {
    // Without public_url the server's URL is its own listen address.
    let scheme = if c.https() { "https" } else { "http" };
    let own = format!("{scheme}://{}", c.http_listen);
    let Some(me) = authority(c.public_url.as_deref().unwrap_or(&own)) else {
        r.error("public_url is not a base URL like https://m1.example.com[:port]");
        return;
    };
    if ids.contains(&me) {
        r.ok(format!("this server ({me}) is among the members"));
    } else {
        r.warn(format!(
            "this server ({me}) is not among the members: it will redirect every room to them"
        ));
    }
}

/// Runs the check, prints the report on standard output; true when no error.
pub async fn run(args: ServeArgs) -> bool {
    let findings = check(args).await;
    for f in &findings {
        println!("{f}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    println!("{errors} error(s), {warnings} warning(s)");
    errors == 0
}
