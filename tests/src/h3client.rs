//! An HTTP/3 client for tests and benches: quinn + h3 over one QUIC connection,
//! trusting only the CA (PEM) it is given, so a test also checks that the server
//! presents its configured certificate over QUIC.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A response read in full.
#[derive(Debug)]
pub struct H3Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl H3Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }
}

/// A request stream whose response headers arrived; its body is read chunk by chunk.
pub type H3Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 connection to a server.
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    /// The QUIC connection, to close it.
    quic: quinn::Connection,
    /// The local endpoint; closing the client waits for it to go idle.
    endpoint: quinn::Endpoint,
    /// `https://ip:port`, the base of request URLs.
    pub base: String,
}

impl std::fmt::Debug for H3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A rustls client configuration trusting only the certificates in `ca_pem`.
pub fn client_tls(ca_pem: &Path, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tls)
}

impl H3Client {
    /// Connects to `server` (QUIC on UDP), trusting the CA in `ca_pem`.
    pub async fn connect(server: SocketAddr, ca_pem: &Path) -> anyhow::Result<Self> {
        let tls = client_tls(ca_pem, &[b"h3"])?;
        let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic_tls)));
        let quic = endpoint
            .connect(server, &server.ip().to_string())?
            .await
            .with_context(|| format!("QUIC handshake with {server}"))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone())).await?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            send,
            quic,
            endpoint,
            base: format!("https://{server}"),
        })
    }

    /// Sends a request (`path` starts with `/`) and returns the stream once the
    /// response headers are in, with them.
    pub async fn open(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(http::Response<()>, H3Stream)> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let mut stream = self.send.send_request(req.body(())?).await?;
        if let Some(body) = body {
            stream.send_data(Bytes::from(body)).await?;
        }
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        Ok((resp, stream))
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<H3Response> {
        let (resp, mut stream) = self.open(method, path, headers, body).await?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(H3Response {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        })
    }

    /// Closes the connection and waits (briefly) for the close to be sent.
    pub async fn close(self) {
        self.quic.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle())
            .await;
    }
}

/// Reads the next data chunk of `stream` (an event stream) as text.
pub async fn next_chunk(stream: &mut H3Stream) -> anyhow::Result<String> {
    match stream.recv_data().await? {
        Some(mut chunk) => {
            let bytes = chunk.copy_to_bytes(chunk.remaining());
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        None => bail!("the stream ended"),
    }
}
