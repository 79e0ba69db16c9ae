//! A `cascade signal` started in-process on 127.0.0.1:0 with a temporary store,
//! and a WebSocket client (tokio-tungstenite) that speaks its protocol.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cascade_core::token::{Claims, TokenSecret, mint, mint_cluster};
use cascade_signal::store::StoreLocation;
use cascade_signal::{Limits, RunningSignal, SignalConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub(crate) const SECRET: &str = "signal-test-secret";
pub(crate) const SERVICE_SECRET: &str = "signal-service-secret";
/// Longest any single wait of a test may take.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh directory for one test's store.
pub(crate) fn temp_store(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cascade-signal-test-{}-{name}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("signal.redb")
}

pub(crate) fn limits() -> Limits {
    Limits {
        max_message_bytes: 64 * 1024,
        rate: 1_000_000.0,
        burst: 1_000_000.0,
        hello_timeout: Duration::from_secs(10),
        ping_interval: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
    }
}

pub(crate) async fn start_with(store: PathBuf, limits: Limits) -> RunningSignal {
    cascade_signal::start(SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreLocation::File(store),
        token_secrets: vec![TokenSecret::parse(SECRET)],
        service_secret: Some(TokenSecret::parse(SERVICE_SECRET)),
        retention: Duration::from_secs(86_400),
        limits,
    })
    .await
    .unwrap()
}

pub(crate) async fn start(name: &str) -> RunningSignal {
    start_with(temp_store(name), limits()).await
}

/// A user token signed with `secret`.
pub(crate) fn token_with(secret: &str, user: &str) -> String {
    let now = unix_now();
    mint(
        &TokenSecret::parse(secret),
        &Claims {
            sub: user.into(),
            room: "any".into(),
            grants: vec![],
            exp: now + 3600,
            iat: now,
        },
    )
    .unwrap()
}

pub(crate) fn service_token() -> String {
    mint_cluster(
        &TokenSecret::parse(SERVICE_SECRET),
        "backend",
        unix_now(),
        3600,
    )
    .unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Closed(u16),
    Dropped,
}

/// A protocol client; frames it read but nobody asked for yet wait in `backlog`.
pub(crate) struct Client {
    ws: Ws,
    backlog: VecDeque<Value>,
}

impl Client {
    /// Opens `/v1/connect` with a bearer token; no hello yet.
    pub(crate) async fn open(addr: SocketAddr, token: &str) -> Result<Client, u16> {
        let mut req = format!("ws://{addr}/v1/connect")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                backlog: VecDeque::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("connect: {e}"),
        }
    }

    /// Connects as `user` and says hello; returns the client and the welcome.
    pub(crate) async fn connect(
        addr: SocketAddr,
        user: &str,
        resume_after: u64,
    ) -> (Client, Value) {
        let mut c = Client::open(addr, &token_with(SECRET, user)).await.unwrap();
        c.send(json!({"type": "hello", "resume_after": resume_after}))
            .await;
        let welcome = c.next_of("welcome").await;
        assert_eq!(welcome["user"], user);
        (c, welcome)
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Queues a frame without flushing (for sending many at once).
    pub(crate) async fn feed(&mut self, frame: Value) {
        self.ws
            .feed(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub(crate) async fn flush(&mut self) {
        self.ws.flush().await.unwrap();
    }

    /// The next frame from the socket, or how the connection ended.
    async fn read(&mut self) -> Result<Value, Ended> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(frame))) => {
                    // Send the queued close reply: the handshake is complete.
                    let _ = self.ws.flush().await;
                    let code = frame.map_or(CloseCode::Status, |f| f.code);
                    return Err(Ended::Closed(u16::from(code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// The next frame satisfying `pred`; others are kept for later.
    pub(crate) async fn next_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let v = self
                .read()
                .await
                .unwrap_or_else(|e| panic!("connection ended: {e:?}"));
            if pred(&v) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    pub(crate) async fn next_of(&mut self, ty: &str) -> Value {
        self.next_where(|v| v["type"] == ty).await
    }

    /// Reads until the server ends the connection; returns how.
    pub(crate) async fn ended(&mut self) -> Ended {
        loop {
            match self.read().await {
                Ok(v) => self.backlog.push_back(v),
                Err(e) => return e,
            }
        }
    }

    /// Frames of type `ty` seen so far and still unclaimed.
    pub(crate) fn unclaimed(&self, ty: &str) -> Vec<Value> {
        self.backlog
            .iter()
            .filter(|v| v["type"] == ty)
            .cloned()
            .collect()
    }

    /// A ping answered by a pong: every frame sent before was handled.
    pub(crate) async fn round_trip(&mut self) {
        self.send(json!({"type": "ping"})).await;
        self.next_of("pong").await;
    }

    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Wait for the server's side of the close so the connection is gone.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }
}

/// One plain HTTP/1.1 request; returns the status and the body.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the metric `name` in `GET /metrics`.
pub(crate) async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (status, body) = http(addr, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {body}"))
}
