//! HTTPDNS: the same answers as the DNS side, as JSON over HTTP, for clients (apps)
//! that resolve through HTTP to avoid their local resolver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hickory_server::proto::rr::Name;
use serde::Serialize;

use super::DnsState;
use super::rank::{Client, Family, rank};

/// `GET /resolve` answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub client_ip: IpAddr,
    pub region: Option<String>,
    pub ttl: u32,
    pub answers: Vec<ResolvedServer>,
}

/// One server of a `GET /resolve` answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResolvedServer {
    pub address: IpAddr,
    /// Host name of the server, e.g. `m1.media.example.test`.
    pub name: String,
    pub region: String,
    pub latency_ms: Option<u32>,
}

/// `GET /servers` entry.
#[derive(Debug, Clone, Serialize)]
struct ServerStatus {
    name: String,
    host: String,
    address: IpAddr,
    region: String,
    port: u16,
    health_url: Option<String>,
    healthy: bool,
}

/// The HTTPDNS router: `GET /resolve`, `GET /servers`, `GET /healthz`.
pub fn router(state: Arc<DnsState>) -> Router {
    Router::new()
        .route("/resolve", get(resolve))
        .route("/servers", get(servers))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// The answer for `name` and a client at `client_ip`: the zone's `answers` best
/// servers of any address family, ranked exactly as the DNS side ranks them.
pub fn resolve_for(state: &DnsState, name: &str, client_ip: IpAddr) -> Option<Resolved> {
    let zone = state.zone();
    let mut qname = Name::from_ascii(name.trim()).ok()?.to_lowercase();
    qname.set_fqdn(true);
    if qname != zone.origin {
        return None;
    }
    let ranking = rank(
        &zone,
        &state.health,
        Client::address(client_ip),
        Family::Any,
    );
    Some(Resolved {
        name: zone.origin_str(),
        client_ip,
        region: ranking.region.map(str::to_string),
        ttl: zone.ttl,
        answers: ranking
            .servers
            .iter()
            .take(zone.answers)
            .map(|r| ResolvedServer {
                address: r.server.address,
                name: r.server.host_str(),
                region: r.server.region.clone(),
                latency_ms: r.latency_ms,
            })
            .collect(),
    })
}

async fn resolve(
    State(state): State<Arc<DnsState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let name = params
        .get("name")
        .cloned()
        .unwrap_or_else(|| state.zone().origin_str());
    let client_ip = match params.get("ip") {
        None => peer.ip(),
        Some(ip) => match ip.trim().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_ip",
                    format!("{ip:?} is not an IP address"),
                );
            }
        },
    };
    match resolve_for(&state, &name, client_ip) {
        Some(resolved) => Json(resolved).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_name",
            format!(
                "{name:?} is not served here (the zone is {})",
                state.zone().origin_str()
            ),
        ),
    }
}

async fn servers(State(state): State<Arc<DnsState>>) -> Response {
    let zone = state.zone();
    let list: Vec<ServerStatus> = zone
        .servers
        .iter()
        .map(|s| ServerStatus {
            name: s.name.clone(),
            host: s.host_str(),
            address: s.address,
            region: s.region.clone(),
            port: s.port,
            health_url: s.health_url.clone(),
            healthy: state.health.is_healthy(s),
        })
        .collect();
    Json(serde_json::json!({ "zone": zone.origin_str(), "servers": list })).into_response()
}
