//! Certificates for tests of TLS between servers: a cluster CA and server
//! certificates it issues for an IP address, written as PEM files into a directory
//! removed on drop.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

/// A directory of PEM files, deleted on drop.
#[derive(Debug)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// A fresh directory under the system temp dir.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("cascade-tls-{label}-{n:016x}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority that issues server certificates.
pub struct TestCa {
    cert: X509,
    key: PKey<Private>,
    /// The CA certificate as a PEM file.
    pub pem: PathBuf,
}

/// A server certificate and its key, as PEM files, with the pin (SHA-256 of the
/// DER certificate, hex) that `--cluster-pin` takes.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pin: String,
}

fn new_key() -> anyhow::Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn serial() -> anyhow::Result<openssl::asn1::Asn1Integer> {
    let mut bn = BigNum::new()?;
    bn.rand(63, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

impl TestCa {
    /// A self-signed CA named `name`, written to `dir/<name>.pem`.
    pub fn new(dir: &CertDir, name: &str) -> anyhow::Result<Self> {
        let key = new_key()?;
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_text("CN", name)?;
        let subject = subject.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial = serial()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(&subject)?;
        b.set_pubkey(&key)?;
        let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(2)?);
        b.set_not_before(&from)?;
        b.set_not_after(&until)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.sign(&key, MessageDigest::sha256())?;
        let cert = b.build();
        let pem = dir.path(&format!("{name}.pem"));
        std::fs::write(&pem, cert.to_pem()?).context("writing the CA")?;
        Ok(Self { cert, key, pem })
    }

    /// Issues a server certificate for `ip`, written to `dir/<name>.crt` and `.key`.
    pub fn issue(&self, dir: &CertDir, name: &str, ip: IpAddr) -> anyhow::Result<ServerCert> {
        let key = new_key()?;
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_text("CN", name)?;
        let subject = subject.build();
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial = serial()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_pubkey(&key)?;
        let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(2)?);
        b.set_not_before(&from)?;
        b.set_not_after(&until)?;
        let san = SubjectAlternativeName::new()
            .ip(&ip.to_string())
            .build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(san)?;
        b.append_extension(BasicConstraints::new().build()?)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        let cert = b.build();
        let cert_path = dir.path(&format!("{name}.crt"));
        let key_path = dir.path(&format!("{name}.key"));
        std::fs::write(&cert_path, cert.to_pem()?)?;
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8()?)?;
        let pin = hex(&cert.digest(MessageDigest::sha256())?);
        Ok(ServerCert {
            cert: cert_path,
            key: key_path,
            pin,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The base64 SHA-256 of the public key (SPKI) in the PEM certificate `cert`, as
/// Chromium's `--ignore-certificate-errors-spki-list` takes it.
pub fn spki_sha256_base64(cert: &Path) -> anyhow::Result<String> {
    let cert = X509::from_pem(&std::fs::read(cert)?)?;
    let spki = cert.public_key()?.public_key_to_der()?;
    let digest = openssl::hash::hash(MessageDigest::sha256(), &spki)?;
    Ok(openssl::base64::encode_block(&digest))
}

/// `--tls-cert C --tls-key K` for `cert`.
pub fn tls_args(cert: &ServerCert) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        path_arg(&cert.cert),
        "--tls-key".into(),
        path_arg(&cert.key),
    ]
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
