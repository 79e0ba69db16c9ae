//! Slow HTTP clients (slowloris) for the tests: connections that send a request's
//! start and then one byte a second, until the server closes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `to` from the loopback address `from`.
pub async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    socket.connect(to).await
}

/// Sends `head` then one byte of `trickle` every second until the server closes the
/// connection; returns how long it stayed open, or `None` if it outlived
/// `close_within`.
pub async fn trickle(
    mut stream: TcpStream,
    head: Vec<u8>,
    trickle: u8,
    close_within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    if stream.write_all(&head).await.is_err() {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while start.elapsed() < close_within {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                // A response (408) before the close: keep reading until the close.
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if stream.write_all(&[trickle]).await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}

/// Opens `n` slow connections from `from`, each sending `head` then trickling; each
/// task ends with how long its connection stayed open (`None`: over `close_within`).
/// `open` counts the connections open at any moment.
pub fn slow_connections(
    n: usize,
    from: &'static str,
    to: SocketAddr,
    head: &[u8],
    open: &Arc<AtomicUsize>,
    close_within: Duration,
) -> Vec<tokio::task::JoinHandle<Option<Duration>>> {
    (0..n)
        .map(|_| {
            let head = head.to_vec();
            let open = open.clone();
            tokio::spawn(async move {
                let stream = connect_from(from, to).await.expect("connect");
                open.fetch_add(1, Ordering::Relaxed);
                let r = trickle(stream, head, b'a', close_within).await;
                open.fetch_sub(1, Ordering::Relaxed);
                r
            })
        })
        .collect()
}
