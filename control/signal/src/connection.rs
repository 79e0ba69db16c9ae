//! One client's WebSocket connection: the `hello`, then one loop that reads the
//! client's frames, answers sends once the store committed them (in the order they
//! were sent), and delivers the user's inbox from its cursor whenever the store says
//! the inbox grew, so that messages go out in the store's order with none skipped.
//! A connection's garbage, rate or size only ever ends that connection.
//!
//! Store reads (the inbox after the cursor, membership) are made on the
//! connection's task; writes go to the store's writer.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{FuturesOrdered, SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};

use crate::protocol::{ClientFrame, ErrorCode, ServerFrame, close, valid_name};
use crate::server::AppState;
use crate::store::{AppendRequest, Appended, Destination, StoreError};

/// Inbox entries read from the store at a time.
const READ_BATCH: usize = 256;
/// Sends awaiting their commit per connection; beyond it the connection is not read.
const MAX_PENDING: usize = 1024;
/// How long a closing connection waits for the client's close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// The same when the server shuts down.
const SHUTDOWN_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

type Sink = SplitSink<WebSocket, Message>;
type PendingSend = Pin<Box<dyn Future<Output = (String, Result<Appended, StoreError>)> + Send>>;

/// How a frame's handling ends.
enum Flow {
    Continue,
    Close(u16, &'static str),
}

/// Serves an upgraded connection of `user` until it closes.
pub(crate) async fn serve(socket: WebSocket, user: String, state: Arc<AppState>) {
    let _alive = state.alive.clone();
    state.metrics.connections.inc();
    let (mut sink, mut stream) = socket.split();
    let flow = match run(&mut sink, &mut stream, &user, &state).await {
        Ok(flow) => flow,
        Err(_) => Flow::Continue, // the socket failed: nothing more to say on it
    };
    state.store.release(&user);
    if let Flow::Close(code, reason) = flow {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        // Wait for the client's close so that the close frame is not lost to a reset.
        let grace = if code == close::GOING_AWAY {
            SHUTDOWN_CLOSE_GRACE
        } else {
            CLOSE_GRACE
        };
        let _ = tokio::time::timeout(grace, async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    state.metrics.connections.dec();
}

/// A token bucket over every frame a client sends.
struct RateLimit {
    tokens: f64,
    last: Instant,
    dropped_in_row: u32,
}

impl RateLimit {
    /// Takes a token; false when the frame is over the rate.
    fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.dropped_in_row = 0;
            true
        } else {
            self.dropped_in_row += 1;
            false
        }
    }
}

async fn send(sink: &mut Sink, frame: &ServerFrame) -> Result<(), axum::Error> {
    sink.send(text(frame)).await
}

/// Queues a frame without writing it out; a later `send` or `flush` writes it.
async fn feed(sink: &mut Sink, frame: &ServerFrame) -> Result<(), axum::Error> {
    sink.feed(text(frame)).await
}

fn text(frame: &ServerFrame) -> Message {
    // Serializing plain data into a string cannot fail.
    Message::Text(serde_json::to_string(frame).unwrap_or_default().into())
}

fn error(code: ErrorCode, message: impl Into<String>, id: Option<String>) -> ServerFrame {
    ServerFrame::Error {
        code,
        message: message.into(),
        id,
    }
}

/// The next text frame, or how the connection must end.
fn text_of(msg: Option<Result<Message, axum::Error>>, max: usize) -> Result<Option<String>, Flow> {
    match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(Flow::Continue),
        Some(Ok(Message::Text(t))) if t.len() > max => {
            Err(Flow::Close(close::MESSAGE_TOO_BIG, "frame too large"))
        }
        Some(Ok(Message::Text(t))) => Ok(Some(t.to_string())),
        Some(Ok(Message::Binary(_))) => Err(Flow::Close(
            close::UNSUPPORTED_DATA,
            "binary frames are not accepted",
        )),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
    }
}

async fn run(
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
    user: &str,
    state: &Arc<AppState>,
) -> Result<Flow, axum::Error> {
    let limits = &state.limits;
    let hello_deadline = tokio::time::Instant::now() + limits.hello_timeout;
    let resume_after = loop {
        let next = tokio::time::timeout_at(hello_deadline, stream.next()).await;
        let Ok(msg) = next else {
            return Ok(Flow::Close(close::NO_HELLO, "no hello in time"));
        };
        let text = match text_of(msg, limits.max_message_bytes) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(flow) => return Ok(flow),
        };
        match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Hello { resume_after }) => break resume_after,
            _ => {
                return Ok(Flow::Close(
                    close::HELLO_EXPECTED,
                    "the first frame must be hello",
                ));
            }
        }
    };
    let store = &state.store;
    let last_acked = match store.last_acked(user).await {
        Ok(n) => n,
        Err(_) => return Ok(Flow::Close(close::INTERNAL_ERROR, "store unavailable")),
    };
    // Subscribe before the first read, so that no commit falls between the two.
    let mut inbox = store.subscribe(user);
    let mut cursor = resume_after.unwrap_or(last_acked);
    send(
        sink,
        &ServerFrame::Welcome {
            user: user.to_owned(),
            last_acked,
        },
    )
    .await?;
    let mut registration = state.presence.register(user);
    if registration.first && !state.presence.online_elsewhere(user).await {
        announce(state, user, true).await;
    }
    let flow = serve_frames(
        sink,
        stream,
        user,
        state,
        &mut inbox,
        &mut cursor,
        &mut registration.events,
    )
    .await;
    if state.presence.unregister(user, registration.id)
        && !state.presence.online_elsewhere(user).await
    {
        announce(state, user, false).await;
    }
    flow
}

async fn serve_frames(
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
    user: &str,
    state: &Arc<AppState>,
    inbox: &mut tokio::sync::watch::Receiver<u64>,
    cursor: &mut u64,
    presence: &mut tokio::sync::mpsc::Receiver<ServerFrame>,
) -> Result<Flow, axum::Error> {
    let limits = &state.limits;
    let mut shutdown = state.shutdown.clone();
    let mut pending: FuturesOrdered<PendingSend> = FuturesOrdered::new();
    let mut rate = RateLimit {
        tokens: limits.burst,
        last: Instant::now(),
        dropped_in_row: 0,
    };
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.reset();
    if !deliver(sink, user, state, cursor).await? {
        return Ok(Flow::Close(close::INTERNAL_ERROR, "store unavailable"));
    }
    let flow = loop {
        tokio::select! {
            _ = shutdown.changed() => break Flow::Close(close::GOING_AWAY, "server shutting down"),
            msg = stream.next(), if pending.len() < MAX_PENDING => {
                last_heard = Instant::now();
                let text = match text_of(msg, limits.max_message_bytes) {
                    Ok(Some(text)) => text,
                    Ok(None) => continue,
                    Err(flow) => break flow,
                };
                if !rate.take(limits.rate, limits.burst) {
                    if f64::from(rate.dropped_in_row) >= limits.burst {
                        break Flow::Close(close::RATE_LIMITED, "rate limited");
                    }
                    let id = serde_json::from_str::<ClientFrame>(&text).ok().and_then(|f| match f {
                        ClientFrame::Send { id, .. } => Some(id),
                        _ => None,
                    });
                    send(sink, &error(ErrorCode::RateLimited, "over the rate: frame dropped", id)).await?;
                    continue;
                }
                if let Some(reply) = handle_frame(&text, user, state, &mut pending).await {
                    send(sink, &reply).await?;
                }
            }
            Some((id, result)) = pending.next(), if !pending.is_empty() => {
                // Every answer that is ready goes out in one write.
                feed(sink, &answer(state, id, result)).await?;
                while let Some(Some((id, result))) = pending.next().now_or_never() {
                    feed(sink, &answer(state, id, result)).await?;
                }
                sink.flush().await?;
            }
            Ok(()) = inbox.changed() => {
                if !deliver(sink, user, state, cursor).await? {
                    break Flow::Close(close::INTERNAL_ERROR, "store unavailable");
                }
            }
            Some(frame) = presence.recv() => send(sink, &frame).await?,
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    break Flow::Close(close::IDLE, "idle timeout");
                }
                sink.send(Message::Ping(Default::default())).await?;
            }
        }
    };
    // Sends already taken get their answer before the close.
    while let Some((id, result)) = pending.next().await {
        send(sink, &answer(state, id, result)).await?;
    }
    Ok(flow)
}

/// The answer to a send once the store is done with it.
fn answer(state: &AppState, id: String, result: Result<Appended, StoreError>) -> ServerFrame {
    match result {
        Ok(appended) => {
            if appended.duplicate {
                state.metrics.duplicate.inc();
            } else {
                state.metrics.accepted.inc();
            }
            ServerFrame::Accepted {
                id,
                duplicate: appended.duplicate,
            }
        }
        Err(StoreError::UnknownRoom(room)) => error(
            ErrorCode::UnknownRoom,
            format!("not a member of room {room:?}"),
            Some(id),
        ),
        Err(e) => error(ErrorCode::Unavailable, e.to_string(), Some(id)),
    }
}

/// Carries out one frame; returns what to answer at once, if anything.
async fn handle_frame(
    text: &str,
    user: &str,
    state: &Arc<AppState>,
    pending: &mut FuturesOrdered<PendingSend>,
) -> Option<ServerFrame> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => return Some(error(ErrorCode::BadFrame, e.to_string(), None)),
    };
    let store = &state.store;
    match frame {
        ClientFrame::Hello { .. } => Some(error(
            ErrorCode::BadFrame,
            "hello was already received",
            None,
        )),
        ClientFrame::Ping => Some(ServerFrame::Pong),
        ClientFrame::Send { id, to, body } => {
            let target = match &to {
                Destination::User(u) | Destination::Room(u) => u,
            };
            if !valid_name(&id) || !valid_name(target) {
                return Some(error(
                    ErrorCode::BadFrame,
                    "id, user and room must be 1 to 128 bytes",
                    Some(id),
                ));
            }
            let req = AppendRequest {
                sender: user.to_owned(),
                client_id: id.clone(),
                to,
                body,
                sender_must_be_member: true,
            };
            match store.submit_append(req).await {
                Ok(reply) => {
                    pending.push_back(Box::pin(async move {
                        let result = reply.await.unwrap_or(Err(StoreError::Closed));
                        (id, result)
                    }));
                    None
                }
                Err(e) => Some(error(ErrorCode::Unavailable, e.to_string(), Some(id))),
            }
        }
        // Stored before the next frame is read: a `pong` after an `ack` means it is on disk.
        ClientFrame::Ack { seq } => match store.ack(user, seq).await {
            Ok(_) => None,
            Err(e) => Some(error(ErrorCode::Unavailable, e.to_string(), None)),
        },
        ClientFrame::Join { room } => {
            if !valid_name(&room) {
                return Some(error(
                    ErrorCode::BadFrame,
                    "room must be 1 to 128 bytes",
                    None,
                ));
            }
            if let Err(e) = store.join(&room, user).await {
                return Some(error(ErrorCode::Unavailable, e.to_string(), None));
            }
            let members = match store.members(&room).await {
                Ok(m) => m,
                Err(e) => return Some(error(ErrorCode::Unavailable, e.to_string(), None)),
            };
            let others: Vec<String> = members.iter().filter(|m| *m != user).cloned().collect();
            state.presence.notify(
                &others,
                &ServerFrame::Presence {
                    user: user.to_owned(),
                    online: true,
                },
            );
            // The joiner learns who of the room is online through its own presence queue.
            for other in &others {
                if !state.presence.is_online(other).await {
                    continue;
                }
                state.presence.notify_local(
                    &[user.to_owned()],
                    &ServerFrame::Presence {
                        user: other.clone(),
                        online: true,
                    },
                );
            }
            Some(ServerFrame::Joined { room, members })
        }
        ClientFrame::Leave { room } => match store.leave(&room, user).await {
            Ok(()) => Some(ServerFrame::Left { room }),
            Err(e) => Some(error(ErrorCode::Unavailable, e.to_string(), None)),
        },
    }
}

/// Sends the inbox after `cursor`, advancing it; false when the store failed.
async fn deliver(
    sink: &mut Sink,
    user: &str,
    state: &Arc<AppState>,
    cursor: &mut u64,
) -> Result<bool, axum::Error> {
    loop {
        let batch = match state.store.read_after(user, *cursor, READ_BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(user, "inbox read failed: {e}");
                return Ok(false);
            }
        };
        let n = batch.len();
        for message in batch {
            *cursor = message.seq;
            feed(sink, &ServerFrame::from(message)).await?;
            state.metrics.delivered.inc();
        }
        sink.flush().await?;
        if n < READ_BATCH {
            return Ok(true);
        }
    }
}

/// Tells the online members of `user`'s rooms that it came or went.
pub(crate) async fn announce(state: &Arc<AppState>, user: &str, online: bool) {
    let mut mates = BTreeSet::new();
    for room in state.store.rooms_of(user).await.unwrap_or_default() {
        mates.extend(state.store.members(&room).await.unwrap_or_default());
    }
    mates.remove(user);
    let mates: Vec<String> = mates.into_iter().collect();
    state.presence.notify(
        &mates,
        &ServerFrame::Presence {
            user: user.to_owned(),
            online,
        },
    );
}
