//! `cascade signal-cli`: a terminal client of `cascade signal`, for trying the service
//! by hand. It reads commands from standard input, one a line, sends each as a frame,
//! and prints every frame the server sends as one JSON line on standard output. It
//! acknowledges each message it printed unless told not to. It holds no state beyond
//! the connection: resuming is the server's job.
//!
//! Commands: `send USER TEXT`, `room ROOM TEXT`, `join ROOM`, `leave ROOM`,
//! `ack SEQ`, `ping`. TEXT is sent as the message body: as JSON when it parses as
//! JSON, else as a string. Each send gets a fresh client message id.

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;

use crate::protocol::ClientFrame;
use crate::store::Destination;

/// `cascade signal-cli` flags.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// The service's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8090/v1/connect")]
    pub url: String,
    /// The user's token: a JWT signed with the service's token secret (`cascade
    /// token` mints one; its `sub` is the user).
    #[arg(long, env = "CASCADE_SIGNAL_TOKEN")]
    pub token: String,
    /// Deliver the inbox after this sequence (default: after the last acknowledged
    /// message).
    #[arg(long)]
    pub resume_after: Option<u64>,
    /// Print messages without acknowledging them.
    #[arg(long)]
    pub no_ack: bool,
}

/// Makes the client message ids of one run: unique across runs by the process id
/// and start time, numbered within the run.
#[derive(Debug)]
pub struct IdSource {
    prefix: String,
    next: u64,
}

impl IdSource {
    pub fn new(prefix: String) -> Self {
        Self { prefix, next: 1 }
    }

    fn next(&mut self) -> String {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

/// The frame a command line asks for; `Ok(None)` for a blank line.
pub fn parse_command(line: &str, ids: &mut IdSource) -> Result<Option<ClientFrame>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let word = |what: &str| -> Result<String, String> {
        match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
            [one] => Ok((*one).to_owned()),
            _ => Err(format!("{command} takes one {what}")),
        }
    };
    let send = |to: fn(String) -> Destination, ids: &mut IdSource| {
        let (target, text) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{command} takes a name and a text"))?;
        let text = text.trim();
        let body = serde_json::from_str(text).unwrap_or_else(|_| text.into());
        Ok(Some(ClientFrame::Send {
            id: ids.next(),
            to: to(target.to_owned()),
            body,
        }))
    };
    match command {
        "send" => send(Destination::User, ids),
        "room" => send(Destination::Room, ids),
        "join" => Ok(Some(ClientFrame::Join {
            room: word("room")?,
        })),
        "leave" => Ok(Some(ClientFrame::Leave {
            room: word("room")?,
        })),
        "ack" => {
            let seq = word("sequence number")?
                .parse()
                .map_err(|_| "ack takes a sequence number".to_owned())?;
            Ok(Some(ClientFrame::Ack { seq }))
        }
        "ping" if rest.is_empty() => Ok(Some(ClientFrame::Ping)),
        _ => Err(format!(
            "unknown command {line:?} (send USER TEXT, room ROOM TEXT, join ROOM, leave ROOM, ack SEQ, ping)"
        )),
    }
}

/// Runs the client until standard input ends or the server closes.
pub async fn run(args: CliArgs) -> anyhow::Result<()> {
    let mut request = args.url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, format!("Bearer {}", args.token).parse()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut sink, mut stream) = socket.split();
    let hello = ClientFrame::Hello {
        resume_after: args.resume_after,
    };
    sink.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut ids = IdSource::new(format!("cli-{}-{started}", std::process::id()));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => match parse_command(&line, &mut ids) {
                    Ok(Some(frame)) => {
                        sink.send(Message::text(serde_json::to_string(&frame)?)).await?;
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("{e}"),
                },
                None => {
                    let _ = sink.close().await;
                    return Ok(());
                }
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    println!("{text}");
                    let seq = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .filter(|v| v["type"] == "message")
                        .and_then(|v| v["seq"].as_u64());
                    if let Some(seq) = seq.filter(|_| !args.no_ack) {
                        let ack = ClientFrame::Ack { seq };
                        sink.send(Message::text(serde_json::to_string(&ack)?)).await?;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    match frame {
                        Some(f) => eprintln!("closed by the server: {} {}", u16::from(f.code), f.reason),
                        None => eprintln!("closed by the server"),
                    }
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_become_frames() {
        let mut ids = IdSource::new("t".into());
        assert_eq!(
            parse_command("send bob hello there", &mut ids),
            Ok(Some(ClientFrame::Send {
                id: "t-1".into(),
                to: Destination::User("bob".into()),
                body: "hello there".into(),
            }))
        );
        assert_eq!(
            parse_command(
                "  room r1 {\"call\": \"https://m1/rtc/v1/resources/x\"}",
                &mut ids
            ),
            Ok(Some(ClientFrame::Send {
                id: "t-2".into(),
                to: Destination::Room("r1".into()),
                body: serde_json::json!({"call": "https://m1/rtc/v1/resources/x"}),
            }))
        );
        assert_eq!(
            parse_command("join r1", &mut ids),
            Ok(Some(ClientFrame::Join { room: "r1".into() }))
        );
        assert_eq!(
            parse_command("leave r1", &mut ids),
            Ok(Some(ClientFrame::Leave { room: "r1".into() }))
        );
        assert_eq!(
            parse_command("ack 42", &mut ids),
            Ok(Some(ClientFrame::Ack { seq: 42 }))
        );
        assert_eq!(parse_command("ping", &mut ids), Ok(Some(ClientFrame::Ping)));
        assert_eq!(parse_command("   ", &mut ids), Ok(None));
    }

    #[test]
    fn bad_commands_say_why() {
        let mut ids = IdSource::new("t".into());
        for bad in [
            "send bob", "send", "join", "join a b", "ack x", "ack", "ping now", "dance",
        ] {
            assert!(parse_command(bad, &mut ids).is_err(), "{bad:?}");
        }
        // A refused line uses no id.
        assert_eq!(
            parse_command("send bob hi", &mut ids)
                .map(|f| matches!(f, Some(ClientFrame::Send { id, .. }) if id == "t-1")),
            Ok(true)
        );
    }
}
