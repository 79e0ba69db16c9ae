//! The WebSocket protocol of `cascade signal`: JSON text frames tagged by `type`,
//! the error codes of `error` frames and the close codes. Plain data; the
//! connection loop gives it meaning.

use serde::{Deserialize, Serialize};

use crate::store::{Destination, InboxMessage};

/// Longest client message id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// The first frame: deliver the inbox after `resume_after` (the last sequence
    /// the client processed; absent means the last acknowledged one).
    Hello {
        #[serde(default)]
        resume_after: Option<u64>,
    },
    /// Store a message for a user or a room's members.
    Send {
        id: String,
        to: Destination,
        body: serde_json::Value,
    },
    /// Everything up to `seq` is processed.
    Ack {
        seq: u64,
    },
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    Ping,
}

/// A frame to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        user: String,
        last_acked: u64,
    },
    /// The send `id` is durably stored (or was already: `duplicate`).
    Accepted {
        id: String,
        duplicate: bool,
    },
    Message {
        seq: u64,
        from: String,
        room: Option<String>,
        id: String,
        body: serde_json::Value,
        sent_at: u64,
    },
    /// The join is stored; `members` are the room's members now.
    Joined {
        room: String,
        members: Vec<String>,
    },
    Left {
        room: String,
    },
    Presence {
        user: String,
        online: bool,
    },
    Pong,
    /// A frame that could not be carried out; the connection goes on. `id` is the
    /// send's id when the error answers a send.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl From<InboxMessage> for ServerFrame {
    fn from(m: InboxMessage) -> Self {
        ServerFrame::Message {
            seq: m.seq,
            from: m.from,
            room: m.room,
            id: m.id,
            body: m.body,
            sent_at: m.sent_at,
        }
    }
}

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown `type`, a missing or wrong field, an empty or too long
    /// id, user or room, or a second `hello`.
    BadFrame,
    /// A send to a room the sender is not a member of.
    UnknownRoom,
    /// A frame over the rate, dropped.
    RateLimited,
    /// The store failed; the frame was not carried out and may be retried.
    Unavailable,
}

/// Close codes the server ends a connection with.
pub mod close {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame: the protocol is JSON text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame larger than `--max-message-bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The store failed while delivering.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// No `hello` within the hello timeout.
    pub const NO_HELLO: u16 = 4000;
    /// Nothing received (not even a pong) within the idle timeout.
    pub const IDLE: u16 = 4001;
    /// The first frame was not a `hello`.
    pub const HELLO_EXPECTED: u16 = 4002;
    /// Frames kept coming over the rate (a burst's worth dropped in a row).
    pub const RATE_LIMITED: u16 = 4008;
}

/// Checks an id, user or room name: not empty, at most [`MAX_ID_BYTES`].
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_and_serialize() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"send","id":"m1","to":{"room":"r"},"body":{"x":1}}"#)
                .unwrap();
        assert_eq!(
            f,
            ClientFrame::Send {
                id: "m1".into(),
                to: Destination::Room("r".into()),
                body: serde_json::json!({"x": 1}),
            }
        );
        let f: ClientFrame = serde_json::from_str(r#"{"type":"hello"}"#).unwrap();
        assert_eq!(f, ClientFrame::Hello { resume_after: None });
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        let s = serde_json::to_string(&ServerFrame::Error {
            code: ErrorCode::BadFrame,
            message: "m".into(),
            id: None,
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"error","code":"bad_frame","message":"m"}"#);
    }
}
