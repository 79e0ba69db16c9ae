//! Janus's HTTP API, as far as the VideoRoom load needs it: a session, plugin handles,
//! room creation, publishing with an offer and subscribing by answering Janus's offer.
//! Asynchronous plugin events are read by long-polling the session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub(crate) struct JanusApi {
    http: reqwest::Client,
    base: String,
    session: u64,
    /// Events read while waiting for others.
    pending: VecDeque<Value>,
}

fn transaction() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl JanusApi {
    /// Creates a session on the Janus at `base` (e.g. `http://10.0.0.1:8088/janus`).
    pub(crate) async fn connect(base: &str) -> anyhow::Result<Self> {
        let http = crate::signal::http_client();
        let r: Value = http
            .post(base)
            .json(&json!({"janus": "create", "transaction": transaction()}))
            .send()
            .await?
            .json()
            .await?;
        let session = r["data"]["id"]
            .as_u64()
            .with_context(|| format!("create session: {r}"))?;
        Ok(Self {
            http,
            base: base.to_string(),
            session,
            pending: VecDeque::new(),
        })
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r: Value = self
            .http
            .post(format!("{}/{}{path}", self.base, self.session))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if r["janus"] == "error" {
            bail!("janus error: {}", r["error"]);
        }
        Ok(r)
    }

    /// Attaches a VideoRoom handle.
    pub(crate) async fn attach(&self) -> anyhow::Result<u64> {
        let r = self
            .post(
                "",
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": transaction()}),
            )
            .await?;
        r["data"]["id"]
            .as_u64()
            .with_context(|| format!("attach: {r}"))
    }

    /// A synchronous plugin request; returns the plugin's data.
    pub(crate) async fn request(&self, handle: u64, body: Value) -> anyhow::Result<Value> {
        let r = self
            .post(
                &format!("/{handle}"),
                json!({"janus": "message", "body": body, "transaction": transaction()}),
            )
            .await?;
        let data = r["plugindata"]["data"].clone();
        if data["error"].is_string() {
            bail!("videoroom: {}", data["error"]);
        }
        Ok(data)
    }

    /// An asynchronous plugin request (with an optional JSEP); waits for the plugin's
    /// event on `handle` (one carrying a JSEP when `want_jsep`), and returns its data
    /// and JSEP SDP.
    pub(crate) async fn request_async(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<(&str, &str)>,
        want_jsep: bool,
    ) -> anyhow::Result<(Value, Option<String>)> {
        let mut msg = json!({"janus": "message", "body": body, "transaction": transaction()});
        if let Some((kind, sdp)) = jsep {
            msg["jsep"] = json!({"type": kind, "sdp": sdp});
        }
        let r = self.post(&format!("/{handle}"), msg).await?;
        if r["janus"] == "success" {
            // Answered synchronously.
            let data = r["plugindata"]["data"].clone();
            return Ok((data, r["jsep"]["sdp"].as_str().map(str::to_owned)));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(i) = self
                .pending
                .iter()
                .position(|e| e["sender"].as_u64() == Some(handle) && e["janus"] == "event")
            {
                let e = self.pending.remove(i).unwrap_or_default();
                let data = e["plugindata"]["data"].clone();
                if data["error"].is_string() {
                    bail!("videoroom: {}", data["error"]);
                }
                let sdp = e["jsep"]["sdp"].as_str().map(str::to_owned);
                if sdp.is_some() || !want_jsep {
                    return Ok((data, sdp));
                }
                continue;
            }
            if Instant::now() > deadline {
                bail!("no event from Janus for handle {handle}");
            }
            self.poll_events().await?;
        }
    }

    /// One long poll of the session's events.
    async fn poll_events(&mut self) -> anyhow::Result<()> {
        let r: Value = self
            .http
            .get(format!(
                "{}/{}?maxev=50&rid={}",
                self.base,
                self.session,
                rand::random::<u32>()
            ))
            .send()
            .await?
            .json()
            .await?;
        match r {
            Value::Array(evs) => self.pending.extend(evs),
            ev if ev["janus"] == "keepalive" => {}
            ev => self.pending.push_back(ev),
        }
        // Events nobody waits for (webrtcup, media, ...) are dropped after a while.
        while self.pending.len() > 1000 {
            self.pending.pop_front();
        }
        Ok(())
    }

    /// Detaches a handle (ends its PeerConnection).
    pub(crate) async fn detach(&self, handle: u64) -> anyhow::Result<()> {
        self.post(
            &format!("/{handle}"),
            json!({"janus": "detach", "transaction": transaction()}),
        )
        .await?;
        Ok(())
    }
}
