//! Calls from this server to other servers (relay opens and closes, proxied
//! requests, room listings), preferring HTTP/3: it remembers
//! which origins advertised HTTP/3 (`Alt-Svc: h3=":PORT"` on their responses, for
//! the advertised `ma`), keeps one QUIC connection per origin address open for
//! later calls, and sends a call over it. It trusts exactly what the HTTPS calls
//! trust ([`crate::cluster_tls::ClusterTrust`]). A call that fails over HTTP/3
//! forgets the origin's entry; the caller then goes over TCP (reqwest), which keeps
//! its own pool of connections.
//!
//! Only same-host alternatives (`h3=":PORT"`) of origins named by an IP address are
//! used (a DNS name would need a resolver here; those origins stay on TCP).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Buf, Bytes};
use cascade_core::error::error_chain;

/// How long a call over HTTP/3 may take, as the TCP client's timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// `ma` when an `Alt-Svc` entry gives none (RFC 7838: 24 hours).
const DEFAULT_MAX_AGE: u64 = 86_400;

/// What one `Alt-Svc` header says about HTTP/3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltSvc {
    /// `clear`: forget every alternative.
    Clear,
    /// HTTP/3 on this port of the same host, for `max_age` seconds.
    H3 { port: u16, max_age: u64 },
    /// Alternatives, none of them HTTP/3 on the same host.
    NoH3,
}

/// Why an `Alt-Svc` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AltSvcError {
    #[error("an alternative without `=`: {0:?}")]
    NoValue(String),
    #[error("an alternative authority that is not quoted: {0:?}")]
    Unquoted(String),
    #[error("a bad port in {0:?}")]
    BadPort(String),
    #[error("a bad ma in {0:?}")]
    BadMaxAge(String),
}

/// Parses an `Alt-Svc` field value (RFC 7838, section 3).
pub fn parse_alt_svc(value: &str) -> Result<AltSvc, AltSvcError> {
    let value = value.trim();
    if value == "clear" {
        return Ok(AltSvc::Clear);
    }
    for alternative in value.split(',') {
        let mut parts = alternative.split(';').map(str::trim);
        let first = parts.next().unwrap_or_default();
        let (protocol, authority) = first
            .split_once('=')
            .ok_or_else(|| AltSvcError::NoValue(first.to_owned()))?;
        let authority = authority
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .ok_or_else(|| AltSvcError::Unquoted(first.to_owned()))?;
        if protocol.trim() != "h3" {
            continue;
        }
        // Only the same host: an empty host before the port.
        let Some(port) = authority.strip_prefix(':') else {
            continue;
        };
        let port: u16 = port
            .parse()
            .map_err(|_| AltSvcError::BadPort(first.to_owned()))?;
        let mut max_age = DEFAULT_MAX_AGE;
        for param in parts {
            if let Some(ma) = param.strip_prefix("ma=") {
                max_age = ma
                    .trim()
                    .parse()
                    .map_err(|_| AltSvcError::BadMaxAge(param.to_owned()))?;
            }
        }
        return Ok(AltSvc::H3 { port, max_age });
    }
    Ok(AltSvc::NoH3)
}

/// An answer read in full.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A call to another server: method, URL, bearer token, and a body with its type.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: http::Method,
    pub url: &'a str,
    pub token: &'a str,
    pub content_type: Option<http::HeaderValue>,
    pub body: Option<Bytes>,
}

impl<'a> Call<'a> {
    /// A call without a body.
    pub fn new(method: http::Method, url: &'a str, token: &'a str) -> Self {
        Self {
            method,
            url,
            token,
            content_type: None,
            body: None,
        }
    }

    /// The call with a JSON body.
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.content_type = Some(http::HeaderValue::from_static("application/json"));
        self.body = Some(Bytes::from(bytes));
        self
    }
}

/// Calls from this server to the others (relay opens and closes, proxied requests,
/// room listings): over HTTP/3 when the origin advertised it, else over TCP with
/// reqwest's pool of kept connections, learning `Alt-Svc` from the answer. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct ClusterClient {
    pub tcp: reqwest::Client,
    pub h3: Option<Arc<ClusterH3>>,
    /// `cascade_cluster_requests_total{kind}`: every call as `kind`, and those
    /// answered over HTTP/3 also as `{kind}_h3`.
    pub requests: prometheus::IntCounterVec,
}

impl ClusterClient {
    /// Makes `call`, counted as `kind`; the error is a readable chain of causes.
    pub async fn send(&self, kind: &str, call: Call<'_>) -> Result<Answer, String> {
        self.requests.with_label_values(&[kind]).inc();
        if let Some(h3) = &self.h3 {
            match h3.send(&call).await {
                Some(Ok(answer)) => {
                    self.requests
                        .with_label_values(&[&format!("{kind}_h3")])
                        .inc();
                    return Ok(answer);
                }
                Some(Err(e)) => {
                    tracing::debug!(url = call.url, error = %e, "call over HTTP/3 failed: trying TCP");
                }
                None => {}
            }
        }
        let mut req = self
            .tcp
            .request(call.method.clone(), call.url)
            .bearer_auth(call.token);
        if let Some(content_type) = call.content_type {
            req = req.header(http::header::CONTENT_TYPE, content_type);
        }
        if let Some(body) = call.body {
            req = req.body(body);
        }
        let resp = req.send().await.map_err(|e| error_chain(&e))?;
        if let Some(h3) = &self.h3 {
            h3.learn(resp.url(), resp.headers(), Instant::now());
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| error_chain(&e))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// HTTP/3 calls to origins that advertised it.
pub struct ClusterH3 {
    endpoint: quinn::Endpoint,
    /// HTTP/3 address of each origin (`host:port` of its URLs) and until when.
    advertised: Mutex<HashMap<String, (SocketAddr, Instant)>>,
    /// One open connection per HTTP/3 address.
    connections: tokio::sync::Mutex<HashMap<SocketAddr, SendRequest>>,
}

impl std::fmt::Debug for ClusterH3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterH3").finish_non_exhaustive()
    }
}

impl ClusterH3 {
    /// A client endpoint with the cluster's trust (`tls`, ALPN `h3`).
    pub fn new(tls: rustls::ClientConfig) -> anyhow::Result<Self> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .context("the cluster TLS configuration cannot serve QUIC")?;
        // A dual-stack socket reaches IPv4 and IPv6 origins; without IPv6, IPv4 only.
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([0u16; 8], 0)))
            .or_else(|_| quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0))))
            .context("binding the HTTP/3 client socket")?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        Ok(Self {
            endpoint,
            advertised: Mutex::new(HashMap::new()),
            connections: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Notes what a response from `url`'s origin said in `Alt-Svc` (if anything).
    pub fn learn(&self, url: &reqwest::Url, headers: &http::HeaderMap, now: Instant) {
        let Some(value) = headers
            .get(http::header::ALT_SVC)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return;
        };
        let origin = format!("{host}:{port}");
        // An IPv6 host is written in brackets.
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok();
        let mut advertised = self.advertised.lock().unwrap_or_else(|p| p.into_inner());
        match parse_alt_svc(value) {
            Ok(AltSvc::H3 { port, max_age }) => match ip {
                Some(ip) => {
                    let until = now + Duration::from_secs(max_age);
                    advertised.insert(origin, (SocketAddr::from((ip, port)), until));
                }
                None => {
                    advertised.remove(&origin);
                }
            },
            Ok(AltSvc::Clear | AltSvc::NoH3) => {
                advertised.remove(&origin);
            }
            Err(e) => tracing::debug!(%origin, error = %e, "ignoring an Alt-Svc header"),
        }
    }

    /// Where `url`'s origin serves HTTP/3, if it advertised it and that has not expired.
    fn address_of(&self, url: &reqwest::Url, now: Instant) -> Option<SocketAddr> {
        let origin = format!("{}:{}", url.host_str()?, url.port_or_known_default()?);
        let mut advertised = self.advertised.lock().unwrap_or_else(|p| p.into_inner());
        match advertised.get(&origin) {
            Some((addr, until)) if *until > now => Some(*addr),
            Some(_) => {
                advertised.remove(&origin);
                None
            }
            None => None,
        }
    }

    /// Makes `call` over HTTP/3 when its origin advertised HTTP/3; `None` when it
    /// did not. A failure forgets the origin.
    pub async fn send(&self, call: &Call<'_>) -> Option<anyhow::Result<Answer>> {
        let parsed = reqwest::Url::parse(call.url).ok()?;
        if parsed.scheme() != "https" {
            return None;
        }
        let addr = self.address_of(&parsed, Instant::now())?;
        let result = match tokio::time::timeout(CALL_TIMEOUT, self.call(addr, &parsed, call)).await
        {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}")),
        };
        if result.is_err() {
            self.connections.lock().await.remove(&addr);
            if let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) {
                self.advertised
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&format!("{host}:{port}"));
            }
        }
        Some(result)
    }

    async fn call(
        &self,
        addr: SocketAddr,
        url: &reqwest::Url,
        call: &Call<'_>,
    ) -> anyhow::Result<Answer> {
        let mut send = self.connection(addr, url).await?;
        let mut req = http::Request::builder()
            .method(call.method.clone())
            .uri(url.as_str())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", call.token),
            );
        if let Some(content_type) = &call.content_type {
            req = req.header(http::header::CONTENT_TYPE, content_type.clone());
        }
        let mut stream = send.send_request(req.body(())?).await?;
        if let Some(body) = &call.body {
            stream.send_data(body.clone()).await?;
        }
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            let bytes = chunk.copy_to_bytes(chunk.remaining());
            body.extend_from_slice(&bytes);
        }
        Ok(Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: Bytes::from(body),
        })
    }

    /// The open connection to `addr`, or a new one.
    async fn connection(
        &self,
        addr: SocketAddr,
        url: &reqwest::Url,
    ) -> anyhow::Result<SendRequest> {
        let mut connections = self.connections.lock().await;
        if let Some(send) = connections.get(&addr) {
            return Ok(send.clone());
        }
        let server_name = url.host_str().context("no host")?;
        let quic = self.endpoint.connect(addr, server_name)?.await?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic)).await?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        connections.insert(addr, send.clone());
        Ok(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClusterH3 {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        ClusterH3::new(tls).unwrap()
    }

    #[tokio::test]
    async fn origins_named_by_ipv4_or_ipv6_addresses_are_learned_and_names_are_not() {
        let h3 = client();
        let now = Instant::now();
        let alt = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::ALT_SVC, http::HeaderValue::from_static(v));
            h
        };
        for (url, want) in [
            ("https://192.0.2.1:8443/x", Some("192.0.2.1:9443")),
            ("https://[2001:db8::1]:8443/x", Some("[2001:db8::1]:9443")),
            ("https://m1.example:8443/x", None),
        ] {
            let url = reqwest::Url::parse(url).unwrap();
            h3.learn(&url, &alt("h3=\":9443\"; ma=60"), now);
            let got = h3.address_of(&url, now).map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{url}");
            // Expired after `ma`; `clear` forgets at once.
            assert_eq!(h3.address_of(&url, now + Duration::from_secs(61)), None);
            h3.learn(&url, &alt("h3=\":9443\"; ma=60"), now);
            h3.learn(&url, &alt("clear"), now);
            assert_eq!(h3.address_of(&url, now), None);
        }
    }

    #[test]
    fn alt_svc_values() {
        assert_eq!(
            parse_alt_svc("h3=\":4433\"; ma=3600"),
            Ok(AltSvc::H3 {
                port: 4433,
                max_age: 3600
            })
        );
        assert_eq!(
            parse_alt_svc("h2=\":443\", h3=\":8443\""),
            Ok(AltSvc::H3 {
                port: 8443,
                max_age: DEFAULT_MAX_AGE
            })
        );
        assert_eq!(parse_alt_svc("clear"), Ok(AltSvc::Clear));
        assert_eq!(parse_alt_svc("h3=\"other.example:443\""), Ok(AltSvc::NoH3));
        assert_eq!(parse_alt_svc("h2=\":443\""), Ok(AltSvc::NoH3));
        assert!(matches!(parse_alt_svc("h3"), Err(AltSvcError::NoValue(_))));
        assert!(matches!(
            parse_alt_svc("h3=:443"),
            Err(AltSvcError::Unquoted(_))
        ));
        assert!(matches!(
            parse_alt_svc("h3=\":99999\""),
            Err(AltSvcError::BadPort(_))
        ));
        assert!(matches!(
            parse_alt_svc("h3=\":443\"; ma=soon"),
            Err(AltSvcError::BadMaxAge(_))
        ));
    }
}
