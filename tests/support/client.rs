//! The async-nats helpers the multi-server tests share (clusters, leaf nodes).

use std::time::{Duration, Instant};

use async_nats::{Client, Subscriber};
use futures::StreamExt;

use super::Server;

/// Hang protection for every wait (never a timing assertion).
pub const WAIT: Duration = Duration::from_secs(10);

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An async-nats client of `server`.
pub async fn connect(server: &Server) -> Client {
    tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The next message on `sub`, waited for up to [`WAIT`].
pub async fn next(sub: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

/// Waits until probes published on `subject` from `publisher` reach `sub` (the
/// subscription's interest has crossed to the publisher's server), then drains the
/// later probes.
pub async fn await_interest(publisher: &Client, sub: &mut Subscriber, subject: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        publisher
            .publish(subject.to_string(), "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {}
            return;
        }
        assert!(
            Instant::now() < deadline,
            "interest in {subject} never crossed to the publisher's server"
        );
    }
}

/// What a server sends on a raw socket up to its first PONG (or the close), for
/// comparing servers byte for byte: INFO lines and the server's own PINGs are left
/// out, and so are runs of one line (the reference sometimes repeats a
/// subscription limit error on its own) and what follows the PONG.
pub fn until_pong(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(6).any(|w| w == b"PONG\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let mut lines: Vec<&str> = Vec::new();
    let text = String::from_utf8_lossy(&out).into_owned();
    for l in text.split_inclusive("\r\n") {
        if l.starts_with("INFO ") || l == "PING\r\n" || lines.last() == Some(&l) {
            continue;
        }
        lines.push(l);
        if l == "PONG\r\n" {
            break;
        }
    }
    lines.concat()
}
