//! TLS of the HTTP API and of calls between servers.
//!
//! A server serves HTTPS with `--tls-cert`/`--tls-key` (PEM). Relay answers carry a
//! publisher's SRTP keys, so an edge calls origins only over HTTPS, trusting nothing
//! but the cluster's own anchors: a cluster CA (`--cluster-ca`, PEM, any number of
//! certificates) and/or pinned certificates (`--cluster-pin`, the SHA-256 of a
//! server's DER certificate, in hex). Public web roots are never trusted between
//! servers. Plain HTTP between servers needs `--cluster-insecure-http` (development).
//!
//! rustls with the ring provider; the pinning verifier still checks the handshake
//! signature against the pinned certificate's key.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::{
    DigitallySignedStruct, Error as TlsError, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The HTTPS listener's configuration from a PEM certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    server_config_from(chain, key)
}

/// The HTTPS listener's configuration from a certificate chain and key in memory
/// (the development certificate, [`crate::dev_cert`]).
pub fn server_config_from(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not match")?;
    // The listener serves both (hyper's auto builder); HTTP/3 sets its own `h3`.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What an edge trusts when it calls another server.
#[derive(Debug, Clone, Default)]
pub struct ClusterTrust {
    /// Cluster CA certificates.
    pub roots: Vec<CertificateDer<'static>>,
    /// SHA-256 digests of accepted server certificates.
    pub pins: Vec<[u8; 32]>,
    /// Plain HTTP between servers is allowed (development).
    pub insecure_http: bool,
}

impl ClusterTrust {
    /// Reads `--cluster-ca` files and parses `--cluster-pin` values.
    pub fn load(
        ca_files: &[impl AsRef<Path>],
        pins: &[String],
        insecure_http: bool,
    ) -> anyhow::Result<Self> {
        let mut roots = Vec::new();
        for f in ca_files {
            let f = f.as_ref();
            let certs = CertificateDer::pem_file_iter(f)
                .with_context(|| format!("reading {}", f.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", f.display()))?;
            if certs.is_empty() {
                bail!("{} holds no certificate", f.display());
            }
            roots.extend(certs);
        }
        let pins = pins
            .iter()
            .map(|p| parse_pin(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            roots,
            pins,
            insecure_http,
        })
    }

    /// The HTTP client for calls to other servers.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .https_only(!self.insecure_http);
        // With no anchors at all every HTTPS call fails verification, and says why.
        let builder = builder.use_preconfigured_tls(self.client_config()?);
        Ok(builder.build()?)
    }

    fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let provider = provider();
        let webpki = if self.roots.is_empty() {
            None
        } else {
            let mut store = RootCertStore::empty();
            for r in &self.roots {
                store
                    .add(r.clone())
                    .context("a --cluster-ca certificate is not a usable trust anchor")?;
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()?,
            )
        };
        let verifier = Arc::new(ClusterVerifier {
            pins: self.pins.clone(),
            webpki,
            provider: provider.clone(),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The TLS configuration of HTTP/3 calls to other servers: the same trust, ALPN `h3`.
    pub fn quic_client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.client_config()?;
        config.alpn_protocols = vec![b"h3".to_vec()];
        Ok(config)
    }
}

/// A pin: 64 hex digits, optionally prefixed `sha256:` and with `:` separators (as
/// `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_pin(s: &str) -> anyhow::Result<[u8; 32]> {
    let hex_digits: String = s
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bytes =
        hex::decode(&hex_digits).with_context(|| format!("--cluster-pin {s:?} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("--cluster-pin {s:?} is not a SHA-256 digest (64 hex digits)"))
}

/// SHA-256 of a DER certificate, as pins hold it.
pub fn certificate_pin(der: &[u8]) -> [u8; 32] {
    let d = ::ring::digest::digest(&::ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Accepts a pinned certificate, else one that chains to the cluster CA.
#[derive(Debug)]
struct ClusterVerifier {
    pins: Vec<[u8; 32]>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ClusterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if self.pins.contains(&certificate_pin(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(TlsError::General(
                "the server's certificate is neither pinned (--cluster-pin) nor issued by a cluster CA (--cluster-ca)".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_the_usual_spellings() {
        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let want = parse_pin(hex64).unwrap();
        assert_eq!(want[1], 0x11);
        assert_eq!(parse_pin(&format!("sha256:{hex64}")).unwrap(), want);
        let colons: Vec<String> = hex64
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
            .collect();
        assert_eq!(parse_pin(&colons.join(":")).unwrap(), want);
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin("zz").is_err());
    }
}
