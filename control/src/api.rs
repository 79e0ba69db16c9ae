//! The one HTTP interface: publish (WHIP), subscribe (WHEP), room listing and room
//! events (publications, active speaker), resource DELETE/PATCH (trickle ICE, or a
//! subscriber's layer preferences), metrics, health and the demo page. Handlers check tokens, then call
//! the SFU core under its lock and hand what it outputs to the data plane. The event
//! streams live in `events`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{Any, CorsLayer};

use crate::cluster_h3::Call;
use crate::config::Handover;
use crate::error::HttpError;
use crate::server::AppState;
use crate::unix_now;
use cascade_core::error::{ApiError, ErrorKind};
use cascade_core::placement::{self, Decision, Member};
use cascade_core::sfu::{Client, Patched, SubscriptionPreferences};
use cascade_core::token::{Claims, Grant};

/// Largest request body accepted (an SDP offer with many m-lines fits easily).
const MAX_BODY: usize = 64 * 1024;
/// Longest a relay request waits for a publication's publisher to connect and its
/// simulcast layers to show; within the 5 s an edge waits for the answer.
const RELAY_READY_WAIT: Duration = Duration::from_secs(4);

const DEMO_PAGE: &str = include_str!("../assets/demo.html");

mod events;
mod preauth;
use events::{resource_events, room_events};

pub fn router(state: Arc<AppState>) -> Router {
    let body_limits = (state.http_limits.body_timeout, MAX_BODY);
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            header::RETRY_AFTER,
        ]);
    Router::new()
        .route("/", get(|| async { Html(DEMO_PAGE) }))
        .route("/healthz", get(crate::drain::healthz))
        .route("/admin/drain", post(crate::drain::admin_drain))
        .route("/metrics", get(metrics))
        .route("/rtc/v1/rooms/{room}", get(room_info))
        .route("/rtc/v1/rooms/{room}/publish", post(publish))
        .route("/rtc/v1/rooms/{room}/subscribe", post(subscribe))
        .route("/rtc/v1/rooms/{room}/events", get(room_events))
        .route(
            "/rtc/v1/resources/{id}",
            get(resource_info)
                .delete(delete_resource)
                .patch(patch_resource),
        )
        .route("/rtc/v1/resources/{id}/events", get(resource_events))
        .route("/rtc/v1/resources/{id}/relay", post(open_relay))
        .route("/rtc/v1/relays/{id}", axum::routing::delete(close_relay))
        .fallback(|| async {
            HttpError(ApiError::new(
                ErrorKind::NotFound,
                "not_found",
                "no such endpoint",
            ))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_refusals,
        ))
        .layer(axum::middleware::from_fn_with_state(
            body_limits,
            crate::listener::read_body_within,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            preauth::credentials_first,
        ))
        .layer(cors)
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(cascade_core::token::TokenError::Missing)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(cascade_core::token::TokenError::Missing)?;
    Ok(token.trim())
}

/// A room (or user) name: 1-128 characters of A-Z a-z 0-9 - _ .
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_room(room: &str) -> Result<(), ApiError> {
    if valid_name(room) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "bad_room",
            "room names are 1-128 characters of A-Z a-z 0-9 - _ .",
        ))
    }
}

fn sdp_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    content_type: &str,
) -> Result<String, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(content_type))
    {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            format!("expected Content-Type: {content_type}"),
        ));
    }
    let body = body.map_err(body_error)?;
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_sdp("the body is not UTF-8"))
}

fn authorize(
    headers: &HeaderMap,
    state: &AppState,
    room: &str,
    grant: Grant,
) -> Result<Claims, ApiError> {
    let token = bearer(headers)?;
    Ok(state.verifier.verify(token, room, grant, unix_now())?)
}

/// `201 Created` with the SDP answer, the resource URL and the entity-tag of the
/// resource's ICE session (RFC 9725 §4.3.1: a client sends it back in `If-Match`).
fn created(location: String, answer: String, etag: Option<String>) -> Response {
    let mut resp = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp")],
        answer,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `headers` with the token of an `access_token` query parameter (RFC 6750 §2.3) as
/// `Authorization` when the request has none: clients that follow a redirect to
/// another host drop `Authorization`, so redirects carry the token in the URL.
fn with_query_token(mut headers: HeaderMap, query: Option<&str>) -> HeaderMap {
    if headers.contains_key(header::AUTHORIZATION) {
        return headers;
    }
    let token = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned());
    if let Some(v) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(header::AUTHORIZATION, v);
    }
    headers
}

/// Where a publish or subscribe is served.
enum Placed {
    /// Here; with the room's owner when this server takes it as spill-over.
    Here(Option<Member>),
    /// Elsewhere: the redirect, or the proxied answer.
    There(Response),
}

/// Places a publish/subscribe for `room` in the data centre ([`routing`]): serve it
/// here, or redirect/proxy it to the member it belongs to.
async fn place(
    state: &AppState,
    room: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Placed, ApiError> {
    let Some(membership) = &state.membership else {
        return Ok(Placed::Here(None));
    };
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let spill = params
        .iter()
        .find(|(k, _)| k == placement::SPILL_PARAM)
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let members = membership.members();
    let decision = placement::decide(room, &members, &state.server_name, spill, state.is_full());
    let (member, next) = match decision {
        Decision::Here { owner } => return Ok(Placed::Here(owner)),
        Decision::NotMember => {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "not_a_member",
                "this server is not among the data centre's members it resolved: retry",
            ));
        }
        Decision::Full => {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "capacity_exhausted",
                format!("every media server that can take room {room} is at capacity"),
            ));
        }
        Decision::Elsewhere { member, spill } => (member, spill),
    };
    let reason = match (next, membership.lists_self()) {
        (Some(_), _) => "capacity",
        (None, Some(false)) => "not_member",
        (None, _) => "owner",
    };
    state.metrics.handovers.with_label_values(&[reason]).inc();
    let token = bearer(headers)?.to_owned();
    let query = |with_token: bool| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            if k != placement::SPILL_PARAM && k != "access_token" {
                q.append_pair(k, v);
            }
        }
        if let Some(n) = next {
            q.append_pair(placement::SPILL_PARAM, &n.to_string());
        }
        if with_token {
            q.append_pair("access_token", &token);
        }
        q.finish()
    };
    match state.handover {
        Handover::Redirect => {
            let location = format!("{}{path}?{}", member.url, query(true));
            tracing::debug!(%room, to = %member.id, reason, "redirect");
            let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(Placed::There(resp))
        }
        Handover::Proxy => {
            let url = format!("{}{path}?{}", member.url, query(false));
            let call = Call {
                method: Method::POST,
                url: &url,
                token: &token,
                content_type: headers.get(header::CONTENT_TYPE).cloned(),
                body: Some(body.clone()),
            };
            let upstream = state.cluster.send("proxy", call).await.map_err(|e| {
                ApiError::new(
                    ErrorKind::BadGateway,
                    "member_unreachable",
                    format!("proxy to {}: {e}", member.url),
                )
            })?;
            let mut resp = Response::builder().status(upstream.status);
            for name in [
                header::CONTENT_TYPE,
                header::LOCATION,
                header::ETAG,
                header::LINK,
            ] {
                if let Some(v) = upstream.headers.get(&name) {
                    resp = resp.header(name, v.as_bytes());
                }
            }
            let body = upstream.body;
            resp.body(axum::body::Body::from(body))
                .map(Placed::There)
                .map_err(|e| ApiError::internal(e.to_string()))
        }
    }
}

/// Where the room's publications were before the last membership change, when this
/// server became its owner then and has no publication of the room but copies
/// relayed from elsewhere ([`placement::previous_owner`]).
fn moved_from(state: &AppState, room: &str) -> Option<Member> {
    let membership = state.membership.as_ref()?;
    let (members, previous) = (membership.members(), membership.previous_members());
    let before = placement::previous_owner(room, &members, &previous, &state.server_name)?;
    // Copies relayed here (for an earlier subscriber) are not the room's own: the
    // room-wide list still comes from the owner it had before.
    let empty = state.with_sfu(|sfu| {
        sfu.room_info(room)
            .publications
            .iter()
            .all(|p| p.relayed_from.is_some())
    });
    empty.then(|| before.clone())
}

/// The publications of `room` on its owner (spill-over subscribers get them by
/// cascade), as resource URLs.
async fn owner_publications(
    state: &AppState,
    owner: &Member,
    room: &str,
    token: &str,
) -> Result<Vec<String>, ApiError> {
    let unreachable = |e: String| {
        ApiError::new(
            ErrorKind::BadGateway,
            "member_unreachable",
            format!("room {room} on its owner {}: {e}", owner.url),
        )
    };
    let url = format!("{}/rtc/v1/rooms/{room}", owner.url);
    let resp = state
        .cluster
        .send("room", Call::new(Method::GET, &url, token))
        .await
        .map_err(unreachable)?;
    if !(200..300).contains(&resp.status) {
        return Err(unreachable(format!("answered {}", resp.status)));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&resp.body).map_err(|e| unreachable(e.to_string()))?;
    Ok(info["publications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["resource"].as_str().map(str::to_owned))
        .collect())
}

async fn publish(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    check_room(&room)?;
    let headers = with_query_token(headers, query.as_deref());
    let claims = authorize(&headers, &state, &room, Grant::Publish)?;
    let client = Client::new(claims.sub.clone(), Some(peer.ip()));
    let body = body.map_err(body_error)?;
    let path = format!("/rtc/v1/rooms/{room}/publish");
    if let Placed::There(resp) =
        place(&state, &room, &path, query.as_deref(), &headers, &body).await?
    {
        return Ok(resp);
    }
    let offer = sdp_body(&headers, Ok(body), "application/sdp")?;
    state.drain.check()?;
    state.check_bitrate()?;
    let (url, answer, etag) = state.with_sfu(|sfu| {
        let c = sfu.publish_for(Instant::now(), &room, &client, &offer)?;
        Ok::<_, ApiError>((
            sfu.resource_url(&c.resource),
            c.answer,
            sfu.ice_etag(&c.resource),
        ))
    })?;
    Ok(created(url, answer, etag))
}

async fn subscribe(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    check_room(&room)?;
    let headers = with_query_token(headers, query.as_deref());
    let claims = authorize(&headers, &state, &room, Grant::Subscribe)?;
    let client = Client::new(claims.sub.clone(), Some(peer.ip()));
    let body = body.map_err(body_error)?;
    let path = format!("/rtc/v1/rooms/{room}/subscribe");
    let owner = match place(&state, &room, &path, query.as_deref(), &headers, &body).await? {
        Placed::There(resp) => return Ok(resp),
        Placed::Here(owner) => owner,
    };
    let offer = sdp_body(&headers, Ok(body), "application/sdp")?;
    let mode = subscribe_mode(query.as_deref().unwrap_or_default())?;
    let mut urls: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "resource")
        .map(|(_, v)| v.into_owned())
        .collect();
    let most = state.http_limits.max_subscribe_resources;
    if urls.len() > most {
        return Err(ApiError::bad_request(
            "too_many_resources",
            format!(
                "{} resource parameters; one subscribe takes at most {most}",
                urls.len()
            ),
        )
        .into());
    }
    // Refuse before any relay is opened on the client's behalf (checked again,
    // atomically, when the subscription is created).
    state.drain.check()?;
    state.check_bitrate()?;
    state.with_sfu(|sfu| sfu.admit(&client))?;
    if urls.is_empty()
        && let Some(owner) = owner
    {
        // Spill-over: the room lives on its owner; take its publications by cascade,
        // and those published here too.
        urls = owner_publications(&state, &owner, &room, bearer(&headers)?).await?;
        let here = state.with_sfu(|sfu| sfu.room_info(&room));
        urls.extend(here.publications.into_iter().map(|p| p.resource));
    } else if urls.is_empty()
        && let Some(before) = moved_from(&state, &room)
    {
        // This server became the room's owner when the members changed, and the room
        // has nothing here yet: its publications are on the owner it had before.
        urls = owner_publications(&state, &before, &room, bearer(&headers)?).await?;
    }
    let mut ids = Vec::with_capacity(urls.len());
    for u in &urls {
        let id = resolve_resource(&state, &room, u).await?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let (url, answer, etag) = state.with_sfu(|sfu| {
        let c = match mode {
            SubscribeMode::Sfu => {
                sfu.subscribe_for(Instant::now(), &room, &client, &ids, &offer)?
            }
            SubscribeMode::Mcu(opts) => {
                let c = state.mcu.subscribe(
                    sfu,
                    Instant::now(),
                    &room,
                    &client,
                    &claims.sub,
                    &ids,
                    opts,
                    &offer,
                )?;
                cascade_core::sfu::Created {
                    resource: c.resource,
                    answer: c.answer,
                }
            }
        };
        Ok::<_, ApiError>((
            sfu.resource_url(&c.resource),
            c.answer,
            sfu.ice_etag(&c.resource),
        ))
    })?;
    Ok(created(url, answer, etag))
}

/// How a subscriber receives a room: each publication's tracks (SFU), or one mixed
/// audio and one composed video track (MCU, with its composition's options).
enum SubscribeMode {
    Sfu,
    Mcu(crate::mcu::McuOptions),
}

/// The `mode` query parameter (`sfu`, the default, or `mcu`).
fn subscribe_mode(query: &str) -> Result<SubscribeMode, ApiError> {
    let mode = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| v.into_owned());
    match mode.as_deref() {
        None | Some("sfu") => Ok(SubscribeMode::Sfu),
        Some("mcu") => Ok(SubscribeMode::Mcu(crate::mcu::McuOptions::from_query(
            query,
        )?)),
        Some(other) => Err(ApiError::bad_request(
            "bad_mode",
            format!("mode={other}: expected sfu or mcu"),
        )),
    }
}

/// The local id of a publication named by `url`: ours, or another server's, which is
/// then relayed here (one relay per publication, whatever the number of subscribers).
async fn resolve_resource(state: &AppState, room: &str, url: &str) -> Result<String, ApiError> {
    if let Some(id) = state.with_sfu(|s| s.resource_id_of(url)) {
        return Ok(id);
    }
    let Some(origin_url) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .filter(|rest| rest.contains("/rtc/v1/resources/"))
        .map(|_| url.trim_end_matches('/'))
    else {
        return Err(ApiError::unknown_resource(url));
    };
    if let Some(id) = state.with_sfu(|s| s.remote_publication(origin_url)) {
        return Ok(id);
    }
    // Concurrent first subscribers share one relay: the others wait for this open.
    // The guard's order matters: the lock is released before the map entry goes.
    let (_entry, _held) = state.opening_relay(origin_url).await;
    if let Some(id) = state.with_sfu(|s| s.remote_publication(origin_url)) {
        return Ok(id);
    }
    let answer = state.open_remote_relay(origin_url).await?;
    let relay = answer.relay.clone();
    if answer.room != room {
        state.with_sfu(|s| s.queue_close_relay(relay));
        return Err(ApiError::forbidden(
            "resource_wrong_room",
            format!("{url} is not in room {room}"),
        ));
    }
    let (id, duplicate) =
        state.with_sfu(|s| s.add_remote_publication(Instant::now(), origin_url, answer))?;
    if let Some(d) = duplicate {
        state.with_sfu(|s| s.queue_close_relay(d));
    }
    Ok(id)
}

async fn room_info(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    check_room(&room)?;
    let token = bearer(&headers)?;
    let claims = state.verifier.verify_signature(token, unix_now())?;
    if claims.room != room {
        return Err(cascade_core::token::TokenError::WrongRoom {
            token_room: claims.room,
            room,
        }
        .into());
    }
    let info = state.with_sfu(|sfu| sfu.room_info(&room));
    Ok(axum::Json(info).into_response())
}

/// Checks the token of a request on an existing resource: valid, and for its room.
fn authorize_resource(headers: &HeaderMap, state: &AppState, id: &str) -> Result<(), ApiError> {
    let token = bearer(headers)?;
    let claims = state.verifier.verify_signature(token, unix_now())?;
    let room = state
        .with_sfu(|sfu| sfu.resource_room(id).map(str::to_owned))
        .ok_or_else(|| ApiError::unknown_resource(id))?;
    if claims.room != room {
        return Err(cascade_core::token::TokenError::WrongRoom {
            token_room: claims.room,
            room,
        }
        .into());
    }
    Ok(())
}

/// `GET {resource}`: its kind, room and state. The resource URL, unguessable, is
/// the capability (as for WHIP/WHEP clients that hold it): no token needed.
async fn resource_info(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let info = state
        .with_sfu(|sfu| sfu.resource_info(&id))
        .ok_or_else(|| ApiError::unknown_resource(&id))?;
    Ok(axum::Json(info).into_response())
}

/// `DELETE {resource}`: ends it; `200 OK` (RFC 9725 §4.2). An `If-Match` is ignored:
/// ending a session needs no particular ICE session (§4.3.1).
async fn delete_resource(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    authorize_resource(&headers, &state, &id)?;
    state.with_sfu(|sfu| sfu.delete(&id))?;
    Ok(StatusCode::OK)
}

/// `PATCH {resource}`: a subscriber's layer preferences (JSON), or trickle ICE / an
/// ICE restart (sdpfrag). With `If-Match`, the fragment applies only to the ICE
/// session it names (412 otherwise; `*` for any); without it, to the current one
/// (RFC 9725 asks clients to send it, and the server to check it when sent). A
/// restart answers 200 with the new session's `ETag`.
async fn patch_resource(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    authorize_resource(&headers, &state, &id)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json {
        // A subscriber's layer preferences.
        let body = body.map_err(body_error)?;
        let prefs: SubscriptionPreferences = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("bad_preferences", e.to_string()))?;
        state.with_sfu(|sfu| sfu.set_preferences(Instant::now(), &id, &prefs))?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let frag = sdp_body(&headers, body, "application/trickle-ice-sdpfrag")?;
    let if_match = headers
        .get(header::IF_MATCH)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    // The tag is checked and the fragment applied under one lock: no restart can
    // slip in between.
    let (patched, etag) = state.with_sfu(|sfu| {
        if let Some(condition) = &if_match
            && !crate::etag::if_match(condition, sfu.ice_etag(&id).as_deref())
        {
            return Err(ApiError::new(
                ErrorKind::PreconditionFailed,
                "ice_session_mismatch",
                "If-Match names another ICE session of this resource (restarted since)",
            ));
        }
        let patched = sfu.patch(Instant::now(), &id, &frag)?;
        Ok::<_, ApiError>((patched, sfu.ice_etag(&id)))
    })?;
    match patched {
        Patched::NoContent => Ok(StatusCode::NO_CONTENT.into_response()),
        Patched::Restarted(frag) => {
            let mut resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/trickle-ice-sdpfrag")],
                frag,
            )
                .into_response();
            if let Some(v) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            Ok(resp)
        }
    }
}

/// Checks a server-to-server call: cluster token, and a channel fit for keys.
fn authorize_cluster(headers: &HeaderMap, state: &AppState) -> Result<(), ApiError> {
    let Some(secret) = &state.cluster_secret else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "relay_disabled",
            "this server has no cluster secret: relaying is off",
        ));
    };
    if !state.tls && !state.cluster_insecure_http {
        return Err(ApiError::forbidden(
            "relay_needs_tls",
            "relay answers carry SRTP keys; this server serves plain HTTP (no --tls-cert) and was not started with --cluster-insecure-http",
        ));
    }
    let token = bearer(headers)?;
    cascade_core::token::verify_cluster(secret, token, unix_now())?;
    Ok(())
}

#[derive(Debug, serde::Deserialize)]
struct RelayRequest {
    /// The edge's media address, where relayed packets go.
    relay_addr: std::net::SocketAddr,
}

async fn open_relay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    authorize_cluster(&headers, &state)?;
    let body = body.map_err(body_error)?;
    let req: RelayRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_relay_request", e.to_string()))?;
    // A relay needs the publisher's keys and carries the simulcast layers known when
    // it opens: give a publisher that is still connecting (an invitation to a call
    // goes out as soon as the publish is answered) a moment to connect, and its
    // layers a moment to show their SSRCs (browsers start every layer within a
    // second or two of connecting).
    let deadline = tokio::time::Instant::now() + RELAY_READY_WAIT;
    while state
        .with_sfu(|sfu| sfu.publication_connecting(&id) || sfu.layers_pending(&id, Instant::now()))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = state.with_sfu(|sfu| sfu.open_relay(Instant::now(), &id, req.relay_addr))?;
    let mut resp = (StatusCode::CREATED, axum::Json(&answer)).into_response();
    if let Ok(v) = HeaderValue::from_str(&answer.relay) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn close_relay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    authorize_cluster(&headers, &state)?;
    state.with_sfu(|sfu| sfu.close_relay(&id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.render_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Middleware: counts answers refused for load (503, 429) by their code, in
/// `cascade_refused_total`.
async fn count_refusals(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if (status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS)
        && let Some(crate::error::ErrorCode(code)) = resp.extensions().get()
    {
        state.metrics.refused.with_label_values(&[code]).inc();
    }
    resp
}

/// A request body that could not be read: too large (413) or cut short (400).
fn body_error(e: BytesRejection) -> ApiError {
    let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorKind::PayloadTooLarge
    } else {
        ErrorKind::BadRequest
    };
    ApiError::new(kind, "bad_body", e.body_text())
}
