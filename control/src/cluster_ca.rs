//! `cascade cluster init` and `cascade cluster issue`: the cluster's trust without
//! shared files beyond what one command hands a new server. `init` creates a
//! cluster CA (P-256 key, self-signed, CA-only key usage) and the cluster secret
//! that signs relay tokens; `issue` signs a server certificate for a server's DNS
//! names and IP addresses and writes everything that server needs — its
//! certificate and key, the CA certificate, the cluster secret and a
//! `cascade.toml` fragment naming them — into one directory. Built on openssl
//! (already linked for DTLS); it writes files and starts nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};

/// The CA certificate, in the CA directory and in every issued directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (mode 0600), in the CA directory only.
pub const CA_KEY: &str = "ca-key.pem";
/// The cluster secret (hex, mode 0600): the key of relay tokens.
pub const CLUSTER_SECRET: &str = "cluster-secret";
/// An issued server certificate.
pub const SERVER_CERT: &str = "server.pem";
/// An issued server certificate's key (mode 0600).
pub const SERVER_KEY: &str = "server-key.pem";
/// The `cascade.toml` fragment of an issued directory (mode 0600: it holds the
/// cluster secret).
pub const SERVER_CONFIG: &str = "cascade.toml";

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster CA and a cluster secret in a new directory.
    Init {
        /// Directory to create (must not hold a CA already).
        #[arg(long)]
        dir: PathBuf,
        /// Common name of the CA.
        #[arg(long, default_value = "Cascade cluster CA")]
        name: String,
        /// Validity of the CA, days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a server certificate signed by the cluster CA, with the cluster
    /// credentials a server needs, into one directory.
    Issue {
        /// The directory `cascade cluster init` created.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The server's name (certificate common name), e.g. m4.
        #[arg(long)]
        name: String,
        /// DNS name the server is reached by (subjectAltName); repeatable.
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// IP address the server is reached by (subjectAltName); repeatable.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Directory to write the server's files into (created).
        #[arg(long)]
        out: PathBuf,
        /// Validity of the certificate, days.
        #[arg(long, default_value_t = 397)]
        days: u32,
        /// Where the files will live on the server (the paths written into
        /// cascade.toml) [default: --out].
        #[arg(long)]
        install_dir: Option<PathBuf>,
    },
}

/// Runs a `cascade cluster` command, printing what it wrote.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Init { dir, name, days } => {
            init(&dir, &name, days)?;
            println!(
                "cluster CA: {}\nCA key (keep it off the servers): {}\ncluster secret: {}",
                dir.join(CA_CERT).display(),
                dir.join(CA_KEY).display(),
                dir.join(CLUSTER_SECRET).display()
            );
        }
        ClusterCommand::Issue {
            ca_dir,
            name,
            dns,
            ips,
            out,
            days,
            install_dir,
        } => {
            issue(
                &ca_dir,
                &name,
                &dns,
                &ips,
                &out,
                days,
                install_dir.as_deref(),
            )?;
            println!(
                "issued {name}: {} {} {} {} {}",
                out.join(SERVER_CERT).display(),
                out.join(SERVER_KEY).display(),
                out.join(CA_CERT).display(),
                out.join(CLUSTER_SECRET).display(),
                out.join(SERVER_CONFIG).display()
            );
            println!(
                "start it with: cascade serve --config {}",
                install_dir
                    .as_deref()
                    .unwrap_or(&out)
                    .join(SERVER_CONFIG)
                    .display()
            );
        }
    }
    Ok(())
}

/// A new P-256 key (also the development certificate's, [`crate::dev_cert`]).
pub(crate) fn new_key() -> anyhow::Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A random certificate serial number.
pub(crate) fn serial() -> anyhow::Result<Asn1Integer> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

/// Writes `data` to a new file `path` (never over an existing one) with `mode`.
fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates `dir` with a CA certificate and key and a cluster secret.
pub fn init(dir: &Path, name: &str, days: u32) -> anyhow::Result<()> {
    if dir.join(CA_KEY).exists() || dir.join(CA_CERT).exists() {
        bail!("{} already holds a cluster CA", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(days)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    write_new(&dir.join(CA_KEY), &key.private_key_to_pem_pkcs8()?, 0o600)?;
    write_new(&dir.join(CA_CERT), &cert.to_pem()?, 0o644)?;
    let secret: [u8; 32] = rand::random();
    write_new(
        &dir.join(CLUSTER_SECRET),
        format!("{}\n", hex::encode(secret)).as_bytes(),
        0o600,
    )?;
    Ok(())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Issues `name`'s certificate from the CA in `ca_dir` into `out`.
pub fn issue(
    ca_dir: &Path,
    name: &str,
    dns: &[String],
    ips: &[IpAddr],
    out: &Path,
    days: u32,
    install_dir: Option<&Path>,
) -> anyhow::Result<()> {
    if dns.is_empty() && ips.is_empty() {
        bail!("give at least one --dns name or --ip address the server is reached by");
    }
    let read = |f: &str| {
        let p = ca_dir.join(f);
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    };
    let ca_pem = read(CA_CERT)?;
    let ca = X509::from_pem(&ca_pem).context("the cluster CA certificate")?;
    let ca_key = PKey::private_key_from_pem(&read(CA_KEY)?).context("the cluster CA key")?;
    let secret = String::from_utf8(read(CLUSTER_SECRET)?).context("the cluster secret")?;
    let secret = secret.trim();

    let key = new_key()?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_text("CN", name)?;
    let subject = subject.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(days)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?,
    )?;
    let mut san = SubjectAlternativeName::new();
    for d in dns {
        san.dns(d);
    }
    for ip in ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&b.x509v3_context(Some(&ca), None))?;
    b.append_extension(san)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&b.x509v3_context(Some(&ca), None))?;
    b.append_extension(aki)?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let cert = b.build();

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_new(&out.join(SERVER_CERT), &cert.to_pem()?, 0o644)?;
    write_new(
        &out.join(SERVER_KEY),
        &key.private_key_to_pem_pkcs8()?,
        0o600,
    )?;
    write_new(&out.join(CA_CERT), &ca_pem, 0o644)?;
    write_new(
        &out.join(CLUSTER_SECRET),
        format!("{secret}\n").as_bytes(),
        0o600,
    )?;
    let at = match install_dir {
        Some(d) => d.to_path_buf(),
        None => std::path::absolute(out).context("the absolute path of --out")?,
    };
    let path = |f: &str| toml_str(&at.join(f).to_string_lossy());
    let config = format!(
        "# Cluster credentials of {name}, issued by `cascade cluster issue`.\n\
         tls_cert = {}\ntls_key = {}\ncluster_ca = [{}]\ncluster_secret = {}\n",
        path(SERVER_CERT),
        path(SERVER_KEY),
        path(CA_CERT),
        toml_str(secret),
    );
    write_new(&out.join(SERVER_CONFIG), config.as_bytes(), 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_ca_and_name_the_server() {
        let n: u64 = rand::random();
        let root = std::env::temp_dir().join(format!("cascade-ca-{n:016x}"));
        let (ca_dir, out) = (root.join("ca"), root.join("m4"));
        init(&ca_dir, "Test CA", 30).unwrap();
        assert!(
            init(&ca_dir, "Test CA", 30).is_err(),
            "a CA is never overwritten"
        );
        let ip: IpAddr = "10.1.0.4".parse().unwrap();
        issue(
            &ca_dir,
            "m4",
            &["m4.example.test".into()],
            &[ip],
            &out,
            30,
            None,
        )
        .unwrap();

        let ca = X509::from_pem(&std::fs::read(ca_dir.join(CA_CERT)).unwrap()).unwrap();
        let leaf = X509::from_pem(&std::fs::read(out.join(SERVER_CERT)).unwrap()).unwrap();
        assert!(leaf.verify(&ca.public_key().unwrap()).unwrap());
        let sans: Vec<String> = leaf
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| {
                n.dnsname()
                    .map(str::to_owned)
                    .or_else(|| n.ipaddress().map(|b| format!("{b:?}")))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            sans,
            vec!["m4.example.test".to_owned(), "[10, 1, 0, 4]".into()]
        );
        use std::os::unix::fs::PermissionsExt;
        for private in [
            ca_dir.join(CA_KEY),
            out.join(SERVER_KEY),
            out.join(SERVER_CONFIG),
        ] {
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is readable by others",
                private.display()
            );
        }
        let config: toml::Value =
            toml::from_str(&std::fs::read_to_string(out.join(SERVER_CONFIG)).unwrap()).unwrap();
        let secret = std::fs::read_to_string(ca_dir.join(CLUSTER_SECRET)).unwrap();
        assert_eq!(config["cluster_secret"].as_str(), Some(secret.trim()));
        assert_eq!(secret.trim().len(), 64);
        assert!(
            issue(&ca_dir, "m5", &[], &[], &root.join("m5"), 30, None).is_err(),
            "a certificate names the server"
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
