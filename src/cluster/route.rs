//! One route connection: the handshake (INFO and CONNECT, either side first), the
//! read loop over the route protocol, the writer and the pings.
//!
//! natrium announces no `route_pool_size` and no `compression`, so a nats-server 2.15
//! peer treats it as a "no pool" server: one connection per peer pair carries every
//! account, with account names on every line.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;

use super::{ClusterCore, InterestKey};
use crate::config::cluster::RouteUrl;
use crate::net::stream::ConnStream;
use crate::net::writer::{self, Stream};
use crate::proto::route::{self as wire, RouteOp};
use crate::{log_debug, log_error, log_info};

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// How long to wait before dialing a route again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// One route connection.
pub struct Route {
    /// Route id (`rid` in logs and `/routez`).
    pub id: u64,
    /// This server dialed it.
    pub solicited: bool,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The peer's server id, once its INFO arrived.
    pub remote_id: RefCell<String>,
    /// The peer's server name.
    pub remote_name: RefCell<String>,
    /// The peer's route URL as it announced it (for gossip to the other routes).
    pub remote_url: RefCell<Option<String>>,
    /// The peer's INFO document (kept for gossip).
    pub remote_info: RefCell<Option<serde_json::Value>>,
    /// The client URLs the peer announced (`connect_urls`).
    pub client_urls: RefCell<Vec<String>>,
    /// Both sides support headers.
    pub headers: Cell<bool>,
    /// What the peer wants: (account, subject, queue) -> weight.
    pub interest: RefCell<HashMap<InterestKey, u32>>,
    /// Messages received and sent.
    pub in_msgs: Cell<u64>,
    /// Messages sent.
    pub out_msgs: Cell<u64>,
    /// Payload bytes received.
    pub in_bytes: Cell<u64>,
    /// Payload bytes sent.
    pub out_bytes: Cell<u64>,
    /// Dialed because the configuration lists it.
    pub configured: bool,
    /// The URL it was dialed at.
    pub url: Option<RouteUrl>,
    /// When the connection was made.
    pub start: std::time::SystemTime,
    /// When the peer last sent something.
    pub last_activity: Cell<std::time::SystemTime>,
    /// Round trip of the last answered PING.
    pub rtt: Cell<Option<Duration>>,
    ping_sent: Cell<Option<std::time::Instant>>,
    max_pending: usize,
    write_deadline: Duration,
    out: RefCell<BytesMut>,
    writer: RefCell<Option<Waker>>,
    closed: Cell<bool>,
    registered: Cell<bool>,
    pings_out: Cell<u32>,
    close_reason: Cell<&'static str>,
    stream: Stream,
}

impl Route {
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

    /// Shuts the socket down, waking the read loop.
    pub fn shutdown(&self) {
        writer::shutdown(&self.stream);
    }

    /// The connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn err(&self, text: &str, reason: &'static str) {
        self.send(format!("-ERR '{text}'\r\n").as_bytes());
        self.close(reason);
    }

    fn label(&self) -> String {
        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
        format!("{peer} - rid:{}", self.id)
    }
}

/// How a route connection ended.
pub enum Ended {
    /// It reached this server itself: do not dial that URL again.
    ToSelf,
    /// Closed; the peer's server id when the handshake got that far.
    Closed(Option<String>),
}

/// Dials `url` and keeps a route to it: again after every close, while no other
/// connection to that server is up. A configured route is dialed for ever; an
/// implicit (gossiped) one `connect_retries` more times.
pub async fn solicit(core: Rc<ClusterCore>, url: RouteUrl, implicit: bool) {
    let mut failures = 0i64;
    let mut last_remote: Option<String> = None;
    loop {
        if core
            .server
            .shutdown
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if !implicit && !core.opts.borrow().routes.contains(&url) {
            return;
        }
        if let Some(id) = &last_remote {
            if core.route_to(id).is_some() {
                glommio::timer::sleep(RECONNECT_DELAY).await;
                continue;
            }
        }
        match dial(&url).await {
            Ok(tcp) => {
                failures = 0;
                match serve(core.clone(), tcp, Some((url.clone(), !implicit))).await {
                    Ended::ToSelf => return,
                    Ended::Closed(remote) => {
                        last_remote = remote.or(last_remote);
                        if implicit && last_remote.is_none() {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                // As nats-server: the first failure, then one in connect_error_reports.
                let every = core.server.opts.connect_error_reports.max(1);
                if failures == 1 || failures % every == 0 {
                    log_error!(
                        "Error trying to connect to route (attempt {failures}): dial tcp {}: \
                         connect: {}",
                        url.host_port(),
                        crate::logging::go_error_text(&e)
                    );
                }
                if implicit && failures > core.opts.borrow().connect_retries {
                    return;
                }
            }
        }
        glommio::timer::sleep(RECONNECT_DELAY).await;
    }
}

async fn dial(url: &RouteUrl) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = url.host_port().to_socket_addrs()?.collect();
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

/// Where the handshake is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted: the peer's CONNECT must come first.
    AwaitConnect,
    /// The peer's INFO completes the handshake.
    AwaitInfo,
    /// Registered with the cluster core.
    Up,
}

/// Runs one route connection until it closes.
pub async fn serve(
    core: Rc<ClusterCore>,
    tcp: TcpStream,
    dialed: Option<(RouteUrl, bool)>,
) -> Ended {
    let (url, configured) = match dialed {
        Some((url, configured)) => (Some(url), configured),
        None => (None, false),
    };
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok();
    let route = Rc::new(Route {
        id: core.next_route_id(),
        solicited: url.is_some(),
        configured,
        url: url.clone(),
        start: std::time::SystemTime::now(),
        last_activity: Cell::new(std::time::SystemTime::now()),
        rtt: Cell::new(None),
        ping_sent: Cell::new(None),
        max_pending: core.server.opts.max_pending.max(1 << 20),
        write_deadline: core
            .server
            .opts
            .write_deadline
            .max(Duration::from_millis(100)),
        peer,
        remote_id: RefCell::new(String::new()),
        remote_name: RefCell::new(String::new()),
        remote_url: RefCell::new(None),
        remote_info: RefCell::new(None),
        client_urls: RefCell::new(Vec::new()),
        headers: Cell::new(false),
        interest: RefCell::new(HashMap::new()),
        in_msgs: Cell::new(0),
        out_msgs: Cell::new(0),
        in_bytes: Cell::new(0),
        out_bytes: Cell::new(0),
        out: RefCell::new(BytesMut::new()),
        writer: RefCell::new(None),
        closed: Cell::new(false),
        registered: Cell::new(false),
        pings_out: Cell::new(0),
        close_reason: Cell::new("Client Closed"),
        stream: Rc::new(RefCell::new(ConnStream::Plain(tcp))),
    });
    log_info!("{} - Route connection created", route.label());
    let writer = glommio::spawn_local(write_loop(route.clone()));
    let pinger = glommio::spawn_local(ping_loop(core.clone(), route.clone()));
    let phase = match &url {
        Some(url) => {
            route.send(&connect_line(&core, url));
            Phase::AwaitInfo
        }
        None => {
            route.send(&info_line(&core, true));
            Phase::AwaitConnect
        }
    };
    let to_self = read_loop(&core, &route, phase).await;
    route.close(route.close_reason.get());
    writer.await;
    pinger.cancel().await;
    writer::shutdown(&route.stream);
    if route.registered.get() {
        core.unregister(&route);
    }
    log_info!(
        "{} - Router connection closed: {}",
        route.label(),
        route.close_reason.get()
    );
    if to_self {
        return Ended::ToSelf;
    }
    let remote = route.remote_id.borrow().clone();
    Ended::Closed((!remote.is_empty()).then_some(remote))
}

async fn write_loop(route: Rc<Route>) {
    // Two buffers: the read path appends to one while the other is being written.
    let mut spare = BytesMut::new();
    loop {
        let more = poll_fn(|cx| {
            let mut out = route.out.borrow_mut();
            if !out.is_empty() {
                std::mem::swap(&mut *out, &mut spare);
                return Poll::Ready(true);
            }
            if route.closed.get() {
                return Poll::Ready(false);
            }
            *route.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !more {
            return;
        }
        let written = futures_lite::future::or(
            async { Some(writer::write_all(&route.stream, &spare).await.is_ok()) },
            async {
                glommio::timer::sleep(route.write_deadline).await;
                None
            },
        )
        .await;
        if written != Some(true) {
            if written.is_none() {
                log_info!(
                    "{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded",
                    route.label(),
                    route.write_deadline
                );
            }
            route.close(if written.is_none() {
                "Slow Consumer (Write Deadline)"
            } else {
                "Write Error"
            });
            route.out.borrow_mut().clear();
            writer::shutdown(&route.stream);
            return;
        }
        spare.clear();
    }
}

async fn ping_loop(core: Rc<ClusterCore>, route: Rc<Route>) {
    let interval = core
        .opts
        .borrow()
        .ping_interval
        .max(Duration::from_millis(10));
    loop {
        glommio::timer::sleep(interval).await;
        if route.is_closed() {
            return;
        }
        if route.pings_out.get() >= core.opts.borrow().ping_max.max(1) {
            log_error!("{} - Router connection stale, closing", route.label());
            route.close("Stale Connection");
            writer::shutdown(&route.stream);
            return;
        }
        route.pings_out.set(route.pings_out.get() + 1);
        route.ping_sent.set(Some(std::time::Instant::now()));
        route.send(b"PING\r\n");
    }
}

/// Reads and applies the peer's ops; true when the route turned out to reach this
/// server itself. Messages are handed on as slices of the read buffer (no copy per
/// message); a partial op at the end is carried into the next buffer. While a client
/// shard is far behind, the route is not read (TCP pushes back on the peer) rather
/// than cut.
async fn read_loop(core: &Rc<ClusterCore>, route: &Rc<Route>, mut phase: Phase) -> bool {
    let max_line = 16 * core.server.opts.max_control_line.max(4096);
    let max_payload = core.server.opts.max_payload.max(1);
    let mut rbuf = BytesMut::zeroed(READ_CHUNK);
    let mut filled = 0usize;
    loop {
        if rbuf.len() - filled < 512 {
            rbuf = regrow(&rbuf[..filled], READ_CHUNK);
        }
        let end = rbuf.len().min(filled + READ_CHUNK);
        let n = match writer::read_some(&route.stream, &mut rbuf[filled..end]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if route.is_closed() {
            return false;
        }
        filled += n;
        route.last_activity.set(std::time::SystemTime::now());
        let chunk = rbuf.split_to(filled).freeze();
        let mut at = 0;
        let mut need = 0;
        while at < chunk.len() && !route.is_closed() {
            let (op, used) = match wire::parse(&chunk[at..], max_line, max_payload) {
                Ok(Some(v)) => v,
                Ok(None) => {
                    need = wire::needed(&chunk[at..]);
                    break;
                }
                Err(e) => {
                    log_error!("{} - Route Error '{}'", route.label(), e.0);
                    route.err(&e.0, "Protocol Error");
                    return false;
                }
            };
            at += used;
            match apply(core, route, &chunk, op, &mut phase) {
                Step::Go => {}
                Step::Stop => return false,
                Step::ToSelf => return true,
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

/// A zeroed buffer of at least `want` bytes starting with `data`.
fn regrow(data: &[u8], want: usize) -> BytesMut {
    let mut fresh = BytesMut::zeroed(want.max(data.len() + 512));
    fresh[..data.len()].copy_from_slice(data);
    fresh
}

enum Step {
    Go,
    Stop,
    ToSelf,
}

fn apply(
    core: &Rc<ClusterCore>,
    route: &Rc<Route>,
    chunk: &Bytes,
    op: RouteOp<'_>,
    phase: &mut Phase,
) -> Step {
    if *phase == Phase::AwaitConnect && !matches!(op, RouteOp::Connect(_)) {
        route.err("Authorization Violation", "Authentication Failure");
        return Step::Stop;
    }
    match op {
        RouteOp::Ping => route.send(b"PONG\r\n"),
        RouteOp::Pong => {
            route.pings_out.set(0);
            if let Some(sent) = route.ping_sent.take() {
                route.rtt.set(Some(sent.elapsed()));
            }
        }
        RouteOp::Ok => {}
        RouteOp::Err(text) => {
            log_error!(
                "{} - Router Error {}",
                route.label(),
                String::from_utf8_lossy(text)
            );
            route.close("Parse Error");
            return Step::Stop;
        }
        RouteOp::Connect(json) => {
            if *phase != Phase::AwaitConnect {
                return Step::Go;
            }
            if let Err((text, reason)) = check_connect(core, route, json) {
                log_error!("{} - {text}", route.label());
                route.err(&text, reason);
                return Step::Stop;
            }
            *phase = Phase::AwaitInfo;
        }
        RouteOp::Info(json) => {
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(json) else {
                route.err("Invalid INFO", "Protocol Error");
                return Step::Stop;
            };
            match *phase {
                Phase::AwaitConnect => return Step::Stop,
                Phase::AwaitInfo => {
                    match handshake_done(core, route, &info) {
                        Step::Go => {}
                        other => return other,
                    }
                    *phase = Phase::Up;
                }
                Phase::Up => on_info_update(core, route, &info),
            }
        }
        _ if *phase != Phase::Up => {
            route.err("Authorization Violation", "Authentication Failure");
            return Step::Stop;
        }
        RouteOp::Sub(i) => {
            let Some(account) = core.account_by_name(i.account) else {
                log_debug!(
                    "{} - Ignoring interest for unknown account {}",
                    route.label(),
                    String::from_utf8_lossy(i.account)
                );
                return Step::Go;
            };
            let weight = i.queue.map_or(1, |(_, w)| w.max(1));
            core.set_route_interest(route, account, i.subject, i.queue.map(|q| q.0), weight);
        }
        RouteOp::Unsub(i) => {
            if let Some(account) = core.account_by_name(i.account) {
                core.set_route_interest(route, account, i.subject, i.queue.map(|q| q.0), 0);
            }
        }
        RouteOp::Msg(m) => {
            route.in_msgs.set(route.in_msgs.get() + 1);
            route
                .in_bytes
                .set(route.in_bytes.get() + m.payload.len() as u64);
            let Some(account) = core.account_by_name(m.account) else {
                return Step::Go;
            };
            let part = |p: &[u8]| {
                if p.is_empty() {
                    Bytes::new()
                } else {
                    chunk.slice_ref(p)
                }
            };
            core.deliver_from_route(
                account,
                part(m.subject),
                part(m.reply),
                m.queues,
                m.hdr_len,
                part(m.payload),
            );
        }
    }
    Step::Go
}

/// Checks an accepted peer's CONNECT: `Err((text, close reason))` refuses it.
fn check_connect(
    core: &ClusterCore,
    route: &Route,
    json: &[u8],
) -> Result<(), (String, &'static str)> {
    let violation = || {
        (
            "Authorization Violation".to_string(),
            "Authentication Failure",
        )
    };
    let c: serde_json::Value = serde_json::from_slice(json).map_err(|_| violation())?;
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("");
    if c.get("lang").is_some() {
        return Err((
            "attempted to connect to route port".into(),
            "Protocol Error",
        ));
    }
    if !s("gateway").is_empty() {
        return Err((
            format!(
                "Rejecting connection from gateway \"{}\" on the Route port",
                s("gateway")
            ),
            "Protocol Error",
        ));
    }
    if let Some(auth) = &core.opts.borrow().auth {
        let ok = match &auth.token {
            Some(t) => s("auth_token") == t || s("pass") == t,
            None => {
                auth.user.as_deref().is_none_or(|u| s("user") == u)
                    && auth.pass.as_deref().is_none_or(|p| s("pass") == p)
            }
        };
        if !ok {
            return Err(violation());
        }
    }
    check_cluster_name(
        core,
        s("cluster"),
        c.get("cluster_dynamic").and_then(|v| v.as_bool()) == Some(true),
    )?;
    route
        .headers
        .set(c.get("headers").and_then(|v| v.as_bool()) == Some(true));
    Ok(())
}

/// A peer's cluster name against ours; a generated name gives way to a configured
/// one (or to a larger generated one), as nats-server's does.
fn check_cluster_name(
    core: &ClusterCore,
    theirs: &str,
    theirs_dynamic: bool,
) -> Result<(), (String, &'static str)> {
    let ours = core.name.borrow().clone();
    if theirs.is_empty() || theirs == ours {
        return Ok(());
    }
    if core.dynamic.get() && (!theirs_dynamic || theirs > ours.as_str()) {
        log_info!("Cluster name updated to {theirs}");
        *core.name.borrow_mut() = theirs.to_string();
        core.dynamic.set(theirs_dynamic);
        return Ok(());
    }
    if theirs_dynamic {
        return Ok(());
    }
    Err((
        format!("Rejecting connection, cluster name \"{theirs}\" does not match \"{ours}\""),
        "Cluster Name Conflict",
    ))
}

/// The peer's INFO on a route that is not up yet: registers it (or finds it is a
/// duplicate, or this server itself).
fn handshake_done(core: &Rc<ClusterCore>, route: &Rc<Route>, info: &serde_json::Value) -> Step {
    let s = |k: &str| {
        info.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let remote_id = s("server_id");
    if remote_id == core.server.server_id {
        log_debug!("{} - Detected route to self, ignoring", route.label());
        route.close("Duplicate Route");
        return Step::ToSelf;
    }
    if route.solicited {
        if let Err((text, reason)) = check_cluster_name(
            core,
            &s("cluster"),
            info.get("cluster_dynamic").and_then(|v| v.as_bool()) == Some(true),
        ) {
            log_error!("{} - {text}", route.label());
            route.err(&text, reason);
            return Step::Stop;
        }
        route
            .headers
            .set(info.get("headers").and_then(|v| v.as_bool()) == Some(true));
        route.send(&info_line(core, false));
    }
    *route.remote_id.borrow_mut() = remote_id.clone();
    *route.remote_name.borrow_mut() = s("server_name");
    *route.remote_url.borrow_mut() = Some(route_url_of(route, info));
    *route.remote_info.borrow_mut() = Some(info.clone());
    if let Some(existing) = core.route_to(&remote_id) {
        // Both servers dialed each other. Both keep the connection dialed by the
        // server with the smaller id, so they agree on which one survives.
        let ours_wins = |r: &Route| r.solicited == (core.server.server_id < remote_id);
        if !ours_wins(route) || ours_wins(&existing) {
            route.close("Duplicate Route");
            return Step::Stop;
        }
        existing.close("Duplicate Route");
        writer::shutdown(&existing.stream);
        core.unregister(&existing);
        existing.registered.set(false);
    }
    *route.client_urls.borrow_mut() = urls_of(info);
    route.registered.set(true);
    core.register(route);
    core.refresh_connect_urls();
    route.ping_sent.set(Some(std::time::Instant::now()));
    route.send(b"PING\r\n");
    gossip(core, route);
    Step::Go
}

/// The URL other servers reach the peer's route listener at: its advertised `ip`, else
/// its INFO's host and port (the connection's address for a wildcard host).
fn route_url_of(route: &Route, info: &serde_json::Value) -> String {
    if let Some(ip) = info.get("ip").and_then(|v| v.as_str()) {
        return ip.to_string();
    }
    let host = info.get("host").and_then(|v| v.as_str()).unwrap_or("");
    let port = info.get("port").and_then(|v| v.as_u64()).unwrap_or(0);
    let host = if crate::server::listen::is_wildcard(host) {
        route
            .peer
            .map(|p| p.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".into())
    } else {
        host.to_string()
    };
    format!(
        "nats-route://{}/",
        crate::server::listen::host_port(&host, port)
    )
}

/// Tells the other routes about a new peer (and the new peer about them), so that
/// every server of the cluster connects to every other one.
fn gossip(core: &Rc<ClusterCore>, route: &Rc<Route>) {
    let announce = |about: &Route| -> Option<Vec<u8>> {
        let mut info = about.remote_info.borrow().clone()?;
        let obj = info.as_object_mut()?;
        obj.insert("ip".into(), about.remote_url.borrow().clone()?.into());
        obj.remove("nonce");
        let mut line = b"INFO ".to_vec();
        line.extend_from_slice(serde_json::to_string(&info).ok()?.as_bytes());
        line.extend_from_slice(b"\r\n");
        Some(line)
    };
    for other in core.routes() {
        if other.id == route.id {
            continue;
        }
        if let Some(line) = announce(route) {
            other.send(&line);
        }
        if let Some(line) = announce(&other) {
            route.send(&line);
        }
    }
}

/// The `connect_urls` of an INFO.
fn urls_of(info: &serde_json::Value) -> Vec<String> {
    info.get("connect_urls")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An INFO on an established route: news of the peer itself (its client URLs, lame
/// duck mode), or of a server the peer knows and we may not.
fn on_info_update(core: &Rc<ClusterCore>, route: &Route, info: &serde_json::Value) {
    let id = info.get("server_id").and_then(|v| v.as_str()).unwrap_or("");
    if id == *route.remote_id.borrow() {
        let urls = if info.get("ldm").and_then(|v| v.as_bool()) == Some(true) {
            Vec::new()
        } else {
            urls_of(info)
        };
        *route.client_urls.borrow_mut() = urls;
        core.refresh_connect_urls();
        return;
    }
    if id.is_empty() || id == core.server.server_id {
        return;
    }
    if core.route_to(id).is_some() {
        return;
    }
    let Some(url) = info
        .get("ip")
        .and_then(|v| v.as_str())
        .and_then(RouteUrl::parse)
    else {
        return;
    };
    let mut url = url;
    if url.user.is_none() {
        if let Some(a) = &core.opts.borrow().auth {
            url.user = a.user.clone();
            url.pass = a.pass.clone().or_else(|| a.token.clone());
        }
    }
    // The server with the smaller id dials, so two servers learning of each other
    // at once do not both connect.
    if core.server.server_id.as_str() > id {
        return;
    }
    log_debug!("Connecting to implicit route {}", url.host_port());
    glommio::spawn_local(solicit(core.clone(), url, true)).detach();
}

/// This server's route INFO line (`nonce`: the first INFO on an accepted route).
fn info_line(core: &ClusterCore, nonce: bool) -> Vec<u8> {
    let server = &core.server;
    let opts = core.opts.borrow();
    let mut info = serde_json::json!({
        "server_id": server.server_id,
        "server_name": server.server_name,
        "version": crate::server::COMPAT_VERSION,
        "proto": 3,
        "go": format!("natrium {}", crate::server::VERSION),
        "host": opts.host,
        "port": core.port,
        "headers": !server.opts.no_header_support,
        "max_payload": server.opts.max_payload,
        "cluster": *core.name.borrow(),
        "lnoc": true,
        "lnocu": true,
    });
    let obj = info.as_object_mut().expect("object");
    if opts.auth.is_some() {
        obj.insert("auth_required".into(), true.into());
    }
    if core.dynamic.get() {
        obj.insert("cluster_dynamic".into(), true.into());
    }
    if nonce {
        obj.insert("nonce".into(), random_nonce().into());
    }
    if !opts.no_advertise {
        obj.insert("connect_urls".into(), server.own_client_urls().into());
    }
    let mut line = b"INFO ".to_vec();
    line.extend_from_slice(info.to_string().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// The INFO telling peers this server is in lame duck mode.
pub fn ldm_line(core: &ClusterCore) -> Vec<u8> {
    let mut line = info_line(core, false);
    let json = line[5..line.len() - 2].to_vec();
    if let Ok(mut info) = serde_json::from_slice::<serde_json::Value>(&json) {
        if let Some(obj) = info.as_object_mut() {
            obj.insert("ldm".into(), true.into());
            obj.remove("connect_urls");
        }
        line = format!("INFO {info}\r\n").into_bytes();
    }
    line
}

/// The CONNECT this server sends on a route it dialed.
fn connect_line(core: &ClusterCore, url: &RouteUrl) -> Vec<u8> {
    let mut c = serde_json::json!({
        "echo": true,
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
        "headers": !core.server.opts.no_header_support,
        "name": core.server.server_id,
        "cluster": *core.name.borrow(),
        "lnoc": true,
        "lnocu": true,
    });
    let obj = c.as_object_mut().expect("object");
    if core.dynamic.get() {
        obj.insert("cluster_dynamic".into(), true.into());
    }
    if let Some(u) = &url.user {
        obj.insert("user".into(), u.clone().into());
    }
    if let Some(p) = &url.pass {
        obj.insert("pass".into(), p.clone().into());
    }
    let mut line = b"CONNECT ".to_vec();
    line.extend_from_slice(c.to_string().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

fn random_nonce() -> String {
    let kp = nkeys::KeyPair::new_user();
    kp.public_key()[1..12].to_string()
}
