//! What every server-to-server connection on the cluster core has in common, routes
//! and leaf nodes alike: the outbound buffer and its writer (slow peers cut as
//! nats-server cuts them), the pings, the counters, and the read loop that parses the
//! peer's ops in place and hands them to the connection's own handler.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;

use super::ClusterCore;
use crate::net::stream::{ConnStream, TlsState};
use crate::net::writer::{self, Stream};
use crate::proto::route::{self as wire, Dialect, RouteOp};
use crate::{log_error, log_info};

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// Which protocol a link speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A route to another server of the cluster.
    Route,
    /// A leaf node connection.
    Leaf,
    /// A gateway connection (to or from another cluster).
    Gateway,
}

impl LinkKind {
    /// The id's name in log lines (`rid:`, `lid:`).
    fn tag(self) -> &'static str {
        match self {
            LinkKind::Route => "rid",
            LinkKind::Leaf => "lid",
            LinkKind::Gateway => "gid",
        }
    }

    /// The parser dialect.
    fn dialect(self) -> Dialect {
        match self {
            LinkKind::Route => Dialect::Route,
            LinkKind::Leaf => Dialect::Leaf,
            LinkKind::Gateway => Dialect::Gateway,
        }
    }
}

/// One server-to-server connection's plumbing.
pub struct Link {
    /// Connection id (`rid`/`lid` in logs and monitoring); unique across kinds.
    pub id: u64,
    /// What the link speaks.
    pub kind: LinkKind,
    /// This server dialed it.
    pub solicited: bool,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// When the connection was made.
    pub start: std::time::SystemTime,
    /// When the peer last sent something.
    pub last_activity: Cell<std::time::SystemTime>,
    /// Round trip of the last answered PING.
    /// Accepted and its CONNECT not taken yet: whatever else comes first is refused
    /// as an authorization violation, garbage included.
    pub awaiting_connect: Cell<bool>,
    pub rtt: Cell<Option<Duration>>,
    /// Messages received.
    pub in_msgs: Cell<u64>,
    /// Messages sent.
    pub out_msgs: Cell<u64>,
    /// Payload bytes received.
    pub in_bytes: Cell<u64>,
    /// Payload bytes sent.
    pub out_bytes: Cell<u64>,
    ping_sent: Cell<Option<std::time::Instant>>,
    max_pending: usize,
    write_deadline: Duration,
    out: RefCell<BytesMut>,
    writer: RefCell<Option<Waker>>,
    closed: Cell<bool>,
    pings_out: Cell<u32>,
    close_reason: Cell<&'static str>,
    /// The socket (plain or TLS), shared by the read loop and the writer.
    pub stream: Stream,
    /// What the TLS handshake agreed (the peer's certificate among it).
    pub tls: Option<TlsState>,
}

/// What a link's handler tells the read loop after one op.
pub enum Step {
    /// Read on.
    Go,
    /// Close the connection.
    Stop,
    /// The connection reached this server itself: close, and do not dial it again.
    ToSelf,
}

impl Link {
    /// The plumbing of a new connection whose stream is ready (TLS negotiated):
    /// `id` and the peer address as [`label`] showed them during the handshake.
    pub fn with_stream(
        core: &ClusterCore,
        kind: LinkKind,
        solicited: bool,
        (id, peer): (u64, Option<SocketAddr>),
        stream: ConnStream,
        tls: Option<TlsState>,
    ) -> Link {
        let _ = stream.tcp().set_nodelay(true);
        Link {
            id,
            kind,
            solicited,
            tls,
            peer,
            start: std::time::SystemTime::now(),
            last_activity: Cell::new(std::time::SystemTime::now()),
            rtt: Cell::new(None),
            in_msgs: Cell::new(0),
            out_msgs: Cell::new(0),
            in_bytes: Cell::new(0),
            out_bytes: Cell::new(0),
            ping_sent: Cell::new(None),
            max_pending: core.server.opts.max_pending.max(1 << 20),
            write_deadline: core
                .server
                .opts
                .write_deadline
                .max(Duration::from_millis(100)),
            out: RefCell::new(BytesMut::new()),
            writer: RefCell::new(None),
            closed: Cell::new(false),
            awaiting_connect: Cell::new(false),
            pings_out: Cell::new(0),
            close_reason: Cell::new("Client Closed"),
            stream: Rc::new(RefCell::new(stream)),
        }
    }

    /// Queues protocol bytes for the peer.
    pub fn send(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.send_with(|out| out.extend_from_slice(bytes));
    }

    /// Queues what `write` appends to the outbound buffer. A peer that lets more than
    /// `max_pending` pile up is cut as a slow consumer, as nats-server cuts it.
    pub fn send_with(&self, write: impl FnOnce(&mut BytesMut)) {
        if self.closed.get() {
            return;
        }
        let pending = {
            let mut out = self.out.borrow_mut();
            write(&mut out);
            out.len()
        };
        if pending > self.max_pending {
            log_info!(
                "{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                self.label(),
                self.max_pending
            );
            self.out.borrow_mut().clear();
            self.close("Slow Consumer (Pending Bytes)");
            writer::shutdown(&self.stream);
            return;
        }
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Bytes queued for the peer.
    pub fn pending(&self) -> usize {
        self.out.borrow().len()
    }

    /// Counts one message sent (payload bytes).
    pub fn count_out(&self, bytes: usize) {
        self.out_msgs.set(self.out_msgs.get() + 1);
        self.out_bytes.set(self.out_bytes.get() + bytes as u64);
    }

    /// Counts one message received (payload bytes).
    pub fn count_in(&self, bytes: usize) {
        self.in_msgs.set(self.in_msgs.get() + 1);
        self.in_bytes.set(self.in_bytes.get() + bytes as u64);
    }

    /// Closes the connection (after what is queued, e.g. an `-ERR`).
    pub fn close(&self, reason: &'static str) {
        if self.closed.replace(true) {
            return;
        }
        self.close_reason.set(reason);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Why the connection closed (or will).
    pub fn close_reason(&self) -> &'static str {
        self.close_reason.get()
    }

    /// Shuts the socket down, waking the read loop.
    pub fn shutdown(&self) {
        writer::shutdown(&self.stream);
    }

    /// The connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Sends `-ERR '<text>'` and closes.
    pub fn err(&self, text: &str, reason: &'static str) {
        self.send(format!("-ERR '{text}'\r\n").as_bytes());
        self.close(reason);
    }

    /// `<peer> - rid:<id>` as nats-server starts its log lines about a connection.
    pub fn label(&self) -> String {
        label(self.peer, self.kind, self.id)
    }

    /// Sends a PING whose PONG measures the round trip.
    pub fn ping(&self) {
        self.ping_sent.set(Some(std::time::Instant::now()));
        self.send(b"PING\r\n");
    }

    /// The peer answered a PING.
    pub fn pong(&self) {
        self.pings_out.set(0);
        if let Some(sent) = self.ping_sent.take() {
            self.rtt.set(Some(sent.elapsed()));
        }
    }
}

/// Writes the link's queue until it closes; a write that takes longer than the
/// write deadline cuts the peer as a slow consumer.
pub async fn write_loop(link: Rc<Link>) {
    // Two buffers: the read path appends to one while the other is being written.
    let mut spare = BytesMut::new();
    loop {
        let more = poll_fn(|cx| {
            let mut out = link.out.borrow_mut();
            if !out.is_empty() {
                std::mem::swap(&mut *out, &mut spare);
                return Poll::Ready(true);
            }
            if link.closed.get() {
                return Poll::Ready(false);
            }
            *link.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !more {
            return;
        }
        let written = futures_lite::future::or(
            async { Some(writer::write_all(&link.stream, &spare).await.is_ok()) },
            async {
                glommio::timer::sleep(link.write_deadline).await;
                None
            },
        )
        .await;
        if written != Some(true) {
            if written.is_none() {
                log_info!(
                    "{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded",
                    link.label(),
                    link.write_deadline
                );
            }
            link.close(if written.is_none() {
                "Slow Consumer (Write Deadline)"
            } else {
                "Write Error"
            });
            link.out.borrow_mut().clear();
            writer::shutdown(&link.stream);
            return;
        }
        spare.clear();
    }
}

/// PINGs the peer every `interval`; `max` unanswered ones close the link as stale.
pub async fn ping_loop(link: Rc<Link>, interval: impl Fn() -> (Duration, u32)) {
    loop {
        let (every, max) = interval();
        glommio::timer::sleep(every.max(Duration::from_millis(10))).await;
        if link.is_closed() {
            return;
        }
        if link.pings_out.get() >= max.max(1) {
            let noun = match link.kind {
                LinkKind::Route => "Router",
                LinkKind::Leaf => "Leafnode",
                LinkKind::Gateway => "Gateway",
            };
            log_error!("{} - {noun} connection stale, closing", link.label());
            link.close("Stale Connection");
            writer::shutdown(&link.stream);
            return;
        }
        link.pings_out.set(link.pings_out.get() + 1);
        link.ping();
    }
}

/// Closes `link` over a line the parser refused, as nats-server does by kind: a route
/// is told (`-ERR`); a leaf is not, the line's arguments go to the log; before an
/// accepted peer's CONNECT anything unparsable is an authorization violation.
fn parse_error(link: &Link, text: &str, at: &[u8]) {
    if link.awaiting_connect.get() {
        log_error!("{} - authentication error", link.label());
        link.err("Authorization Violation", "Authentication Failure");
        return;
    }
    match link.kind {
        LinkKind::Route | LinkKind::Gateway => {
            log_error!("{} - {:?} Error '{text}'", link.label(), link.kind);
            link.err(text, "Protocol Error");
        }
        LinkKind::Leaf => {
            let line = at.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let args = line
                .trim_end()
                .split_once(' ')
                .map_or("", |(_, a)| a.trim());
            log_error!("{} - {text}: '{args}'", link.label());
            link.close("Protocol Error");
        }
    }
}

/// Reads the peer's ops and gives each to `apply` until the link closes; returns the
/// step that ended it. Messages are handed on as slices of the read buffer (no copy
/// per message); a partial op at the end is carried into the next buffer. While a
/// client shard is far behind, the link is not read (TCP pushes back on the peer)
/// rather than cut.
pub async fn read_loop(
    core: &ClusterCore,
    link: &Link,
    pre: &[u8],
    mut apply: impl FnMut(&Bytes, RouteOp<'_>) -> Step,
) -> Step {
    let max_line = 16 * core.server.opts.max_control_line.max(4096);
    let max_payload = core.server.opts.max_payload.max(1);
    let dialect = link.kind.dialect();
    // `pre`: bytes read before the link existed (a spoke's first INFO), parsed first.
    let mut rbuf = regrow(pre, READ_CHUNK);
    let mut filled = pre.len();
    let mut unread = filled > 0;
    loop {
        if rbuf.len() - filled < 512 {
            rbuf = regrow(&rbuf[..filled], READ_CHUNK);
        }
        if !unread {
            let end = rbuf.len().min(filled + READ_CHUNK);
            let n = match writer::read_some(&link.stream, &mut rbuf[filled..end]).await {
                Ok(0) | Err(_) => return Step::Stop,
                Ok(n) => n,
            };
            if link.is_closed() {
                return Step::Stop;
            }
            filled += n;
        }
        unread = false;
        link.last_activity.set(std::time::SystemTime::now());
        let chunk = rbuf.split_to(filled).freeze();
        let mut at = 0;
        let mut need = 0;
        while at < chunk.len() && !link.is_closed() {
            let (op, used) = match wire::parse(&chunk[at..], max_line, max_payload, dialect) {
                Ok(Some(v)) => v,
                Ok(None) => {
                    need = wire::needed(&chunk[at..]);
                    break;
                }
                Err(e) => {
                    parse_error(link, &e.0, &chunk[at..]);
                    return Step::Stop;
                }
            };
            at += used;
            match apply(&chunk, op) {
                Step::Go => {}
                other => return other,
            }
        }
        let rest = &chunk[at..];
        filled = rest.len();
        if rbuf.len() < filled.max(need) + 512 {
            rbuf = BytesMut::zeroed(READ_CHUNK.max(need + 512).max(filled + 512));
        }
        rbuf[..filled].copy_from_slice(rest);
        drop(chunk);
        for &shard in &core.clients {
            if core.mesh.backlog(shard) > crate::bus::BACKLOG_HIGH {
                core.mesh.wait_backlog(shard, crate::bus::BACKLOG_LOW).await;
            }
        }
        futures_lite::future::yield_now().await;
    }
}

/// `<peer> - rid:<id>`: a connection's log prefix, before its [`Link`] exists.
pub fn label(peer: Option<SocketAddr>, kind: LinkKind, id: u64) -> String {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    format!("{peer} - {}:{id}", kind.tag())
}

/// Negotiates TLS on a new route or leaf connection, before its first protocol
/// byte: served when accepted, dialed to `dialed_host` otherwise. Returns the
/// stream with the link's id and peer, or the close reason (already logged).
pub async fn secure(
    core: &ClusterCore,
    kind: LinkKind,
    tcp: TcpStream,
    serve: Option<&crate::tls::TlsConfig>,
    dial: Option<(&crate::tls::DialTls, &str)>,
) -> Result<((u64, Option<SocketAddr>), ConnStream, Option<TlsState>), (String, &'static str)> {
    let id = core.next_link_id();
    let peer = tcp.peer_addr().ok();
    let who = label(peer, kind, id);
    let what = match kind {
        LinkKind::Route => "route",
        LinkKind::Leaf => "leafnode",
        LinkKind::Gateway => "gateway",
    };
    let done = match (dial, serve) {
        (Some((tls, host)), _) => crate::net::stream::link_dial(tls, host, tcp, what, &who).await,
        (None, Some(tls)) => crate::net::stream::link_accept(tls, tcp, what, &who).await,
        (None, None) => return Ok(((id, peer), ConnStream::Plain(tcp), None)),
    };
    match done {
        Ok((stream, state)) => Ok(((id, peer), stream, Some(state))),
        Err(reason) => Err((who, reason)),
    }
}

/// A zeroed buffer of at least `want` bytes starting with `data`.
fn regrow(data: &[u8], want: usize) -> BytesMut {
    let mut fresh = BytesMut::zeroed(want.max(data.len() + 512));
    fresh[..data.len()].copy_from_slice(data);
    fresh
}

/// Reads from a freshly dialed `tcp` until the peer's first line is complete (at
/// most `max` bytes, within `wait`): the spoke looks at the hub's INFO before it
/// decides on TLS. Returns every byte read and the first line's length.
pub async fn read_first_line(
    tcp: &mut TcpStream,
    max: usize,
    wait: Duration,
) -> Result<(Vec<u8>, usize), &'static str> {
    use futures_lite::AsyncReadExt;
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await.map_err(|_| "Read Error")?;
            if n == 0 {
                return Err("Client Closed");
            }
            got.extend_from_slice(&buf[..n]);
            if let Some(at) = memchr::memmem::find(&got, b"\r\n") {
                return Ok((got, at + 2));
            }
            if got.len() > max {
                return Err("Protocol Error");
            }
        }
    };
    let timer = async {
        glommio::timer::sleep(wait).await;
        Err("Stale Connection")
    };
    futures_lite::future::or(read, timer).await
}

/// Dials every address `host_port` resolves to, first that answers wins.
pub async fn dial(host_port: &str) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = host_port.to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(glommio::GlommioError::IoError(e)) => last = e,
            Err(e) => last = std::io::Error::other(e.to_string()),
        }
    }
    Err(last)
}

/// `<op> <json>\r\n`: the INFO and CONNECT lines of every link.
pub fn json_line(op: &str, doc: &serde_json::Value) -> Vec<u8> {
    format!("{op} {doc}\r\n").into_bytes()
}

/// A fresh nonce for a first INFO.
pub fn random_nonce() -> String {
    let kp = nkeys::KeyPair::new_user();
    kp.public_key()[1..12].to_string()
}
