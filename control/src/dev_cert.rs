//! The development certificate: when HTTP/3 is asked for (`--http3 on`) and no
//! `--tls-cert`/`--tls-key` is given, the server makes a self-signed certificate for
//! this run (P-256, 14 days, `localhost` and the addresses it answers on), serves
//! HTTPS and HTTP/3 with it, and writes the certificate (never the key) to a PEM
//! file so that clients can trust it. Browsers do not trust it by themselves:
//! Chromium takes its SPKI hash in `--ignore-certificate-errors-spki-list`, which is
//! printed at start. Built on openssl, as `cascade cluster`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How long a development certificate is valid. Fourteen days is also the longest
/// Chromium accepts for a certificate pinned by hash without a CA.
pub const DAYS: u32 = 14;

/// A certificate made for this run.
pub struct DevCert {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// The certificate as PEM.
    pub pem: Vec<u8>,
    /// Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as
    /// Chromium's `--ignore-certificate-errors-spki-list` takes it.
    pub spki_sha256: String,
    /// The names and addresses it is valid for.
    pub names: Vec<String>,
}

impl std::fmt::Debug for DevCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCert")
            .field("names", &self.names)
            .field("spki_sha256", &self.spki_sha256)
            .finish_non_exhaustive()
    }
}

/// A self-signed server certificate for `localhost`, the loopback addresses and
/// `hosts` (IP addresses or DNS names; duplicates and unspecified addresses are
/// left out).
pub fn generate(hosts: &[String]) -> anyhow::Result<DevCert> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for host in hosts {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let unspecified = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !host.is_empty() && !unspecified && !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
    }
    let key = crate::cluster_ca::new_key()?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_text("CN", "cascade development certificate")?;
    let subject = subject.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = crate::cluster_ca::serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(&subject)?;
    b.set_pubkey(&key)?;
    // An hour back, for clients whose clock is a little behind.
    let now = i64::try_from(crate::unix_now()).unwrap_or(i64::MAX);
    let from = Asn1Time::from_unix(now.saturating_sub(3600))?;
    b.set_not_before(&from)?;
    let until = Asn1Time::days_from_now(DAYS)?;
    b.set_not_after(&until)?;
    let mut san = SubjectAlternativeName::new();
    for name in &names {
        match name.parse::<IpAddr>() {
            Ok(_) => san.ip(name),
            Err(_) => san.dns(name),
        };
    }
    let san = san.build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    let spki = cert.public_key()?.public_key_to_der()?;
    let digest = openssl::hash::hash(MessageDigest::sha256(), &spki)?;
    Ok(DevCert {
        cert: CertificateDer::from(cert.to_der()?),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.private_key_to_pkcs8()?)),
        pem: cert.to_pem()?,
        spki_sha256: openssl::base64::encode_block(&digest),
        names,
    })
}

/// Where a server whose HTTP listener has `port` writes its development certificate.
pub fn default_path(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!(
        "cascade-dev-cert-{port}-{}.pem",
        std::process::id()
    ))
}

/// Writes the certificate's PEM to `path` (readable by anyone: it holds no secret).
pub fn write(cert: &DevCert, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, &cert.pem).with_context(|| format!("writing {}", path.display()))
}

/// The listener's TLS configuration with a new development certificate for a server
/// listening on `http`, reached at `candidate` and `public_url`; writes the
/// certificate next to the system's temporary files and says where, with the hash
/// Chromium takes.
pub fn for_server(
    http: SocketAddr,
    candidate: IpAddr,
    public_url: Option<&str>,
) -> anyhow::Result<rustls::ServerConfig> {
    let mut hosts = vec![http.ip().to_string(), candidate.to_string()];
    if let Some(host) = public_url
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        hosts.push(host);
    }
    let cert = generate(&hosts)?;
    let path = default_path(http.port());
    write(&cert, &path)?;
    tracing::warn!(
        path = %path.display(),
        "no --tls-cert: serving HTTPS and HTTP/3 with a self-signed development certificate"
    );
    println!(
        "dev certificate: {} (self-signed, {DAYS} days, for {})",
        path.display(),
        cert.names.join(", ")
    );
    println!(
        "dev certificate SPKI sha256: {} (Chromium: --ignore-certificate-errors-spki-list={} --origin-to-force-quic-on={})",
        cert.spki_sha256, cert.spki_sha256, http
    );
    crate::cluster_tls::server_config_from(vec![cert.cert], cert.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_localhost_loopback_and_the_given_hosts() {
        let c = generate(&["192.0.2.7".into(), "0.0.0.0".into(), "m1.example".into()]).unwrap();
        assert_eq!(
            c.names,
            ["localhost", "127.0.0.1", "::1", "192.0.2.7", "m1.example"]
        );
        let x = X509::from_der(&c.cert).unwrap();
        let sans: Vec<String> = x
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| match (n.dnsname(), n.ipaddress()) {
                (Some(d), _) => d.to_owned(),
                (None, Some(ip)) => match ip.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(ip).unwrap()).to_string(),
                    _ => IpAddr::from(<[u8; 16]>::try_from(ip).unwrap()).to_string(),
                },
                _ => String::new(),
            })
            .collect();
        assert_eq!(sans, c.names);
        // It is valid now and for at most DAYS days.
        let now = Asn1Time::days_from_now(0).unwrap();
        assert!(x.not_before() <= now && x.not_after() > now);
        let limit = Asn1Time::days_from_now(DAYS + 1).unwrap();
        assert!(x.not_after() < limit);
        // The printed hash is that of the certificate's public key.
        let spki = x.public_key().unwrap().public_key_to_der().unwrap();
        let digest = openssl::hash::hash(MessageDigest::sha256(), &spki).unwrap();
        assert_eq!(c.spki_sha256, openssl::base64::encode_block(&digest));
        // rustls takes the pair as a server certificate.
        crate::cluster_tls::server_config_from(vec![c.cert.clone()], c.key.clone_key()).unwrap();
    }

    #[test]
    fn two_runs_get_two_keys() {
        let (a, b) = (generate(&[]).unwrap(), generate(&[]).unwrap());
        assert_ne!(a.spki_sha256, b.spki_sha256);
    }
}
