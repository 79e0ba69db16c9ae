//! The event streams of the HTTP interface (server-sent events): a room's
//! (`GET /rtc/v1/rooms/{room}/events`) and a resource's (`GET {resource}/events`).
//! Each holds a place under the event-stream caps for as long as it is open.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{bearer, check_room, with_query_token};
use crate::error::HttpError;
use crate::limits::{OpenPermit, Refusal};
use crate::server::AppState;
use crate::unix_now;
use cascade_core::error::{ApiError, ErrorKind};
use cascade_core::sfu::ResourceState;

/// A place for one more event stream from `peer`, or the refusal: 503 when this
/// server holds its maximum of streams, 429 when the address holds its share.
fn event_stream_permit(state: &AppState, peer: SocketAddr) -> Result<OpenPermit, ApiError> {
    state
        .event_streams
        .try_acquire(peer.ip())
        .map_err(|r| match r {
            Refusal::Total => ApiError::new(
                ErrorKind::Unavailable,
                "too_many_event_streams",
                "this server holds its maximum of open event streams",
            ),
            Refusal::PerAddress => ApiError::new(
                ErrorKind::TooManyRequests,
                "too_many_event_streams_from_address",
                format!("{} holds its maximum of open event streams", peer.ip()),
            ),
        })
}

/// `GET /rtc/v1/rooms/{room}/events`: server-sent events of the room,
/// `publication_added`, `publication_removed` and `active_speaker`, each with a JSON
/// body (`type`, `resource` URL, `user`). The token (for the room) comes in the
/// `Authorization` header or, for `EventSource`, the `access_token` query parameter.
pub(super) async fn room_events(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::stream::{self, StreamExt};
    use tokio::sync::broadcast::error::RecvError;

    check_room(&room)?;
    let headers = with_query_token(headers, query.as_deref());
    let token = bearer(&headers)?;
    let claims = state.verifier.verify_signature(token, unix_now())?;
    if claims.room != room {
        return Err(cascade_core::token::TokenError::WrongRoom {
            token_room: claims.room,
            room,
        }
        .into());
    }
    let permit = event_stream_permit(&state, peer)?;
    let rx = state.subscribe_room_events();
    // A client that joins after the room elected its speaker learns it first thing
    // (read after subscribing, so no change falls in between).
    let current = state.with_sfu(|sfu| sfu.active_speaker(&room)).map(|e| {
        Event::default()
            .event(e.kind.name())
            .json_data(&e)
            .unwrap_or_else(|_| Event::default().event(e.kind.name()))
    });
    // The permit lives in the stream's state: the place frees when the stream ends.
    let events = stream::unfold((rx, permit), move |(mut rx, permit)| {
        let room = room.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(e) if e.room == room => {
                        let ev = Event::default()
                            .event(e.kind.name())
                            .json_data(&e)
                            .unwrap_or_else(|_| Event::default().event(e.kind.name()));
                        return Some((ev, (rx, permit)));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = stream::iter(current)
        .chain(events)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET {resource}/events`: server-sent events, `event: state` with
/// `{"state": .., "reason": ..}`; the first is the current state, then one per
/// change. The stream ends after `ended`.
pub(super) async fn resource_events(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::stream::{self, StreamExt};
    use tokio::sync::broadcast::error::RecvError;

    // Listen before reading the current state, so no change falls in between.
    let rx = state.subscribe_events();
    let info = state
        .with_sfu(|sfu| sfu.resource_info(&id))
        .ok_or_else(|| ApiError::unknown_resource(&id))?;
    let event = |state: ResourceState, reason: &str| {
        Event::default()
            .event("state")
            .json_data(serde_json::json!({ "state": state, "reason": reason }))
            .unwrap_or_else(|_| Event::default().event("state"))
    };
    let permit = event_stream_permit(&state, peer)?;
    let first = event(info.state, "current");
    let ended = info.state == ResourceState::Ended;
    let changes = stream::unfold((rx, ended, permit), move |(mut rx, ended, permit)| {
        let id = id.clone();
        async move {
            if ended {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e.resource == id => {
                        let end = e.state == ResourceState::Ended;
                        return Some((event(e.state, e.reason), (rx, end, permit)));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = stream::once(async move { first })
        .chain(changes)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
