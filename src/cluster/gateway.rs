//! Gateway connections: this cluster's links to other clusters of a supercluster.
//!
//! Each server keeps one *outbound* connection to every other cluster and accepts any
//! number of *inbound* ones. Messages go out only on outbound connections; interest
//! comes back on them, sent by the peer's inbound side. natrium runs every account in
//! interest-only mode from the start, as nats-server 2.9+ does (`gateway_iom`): as the
//! inbound side it sends, per account, `INFO gateway_cmd:2`, every `RS+` of the
//! cluster's interest and `INFO gateway_cmd:3`, then keeps the peer up to date; as
//! the outbound side it sends a message only where the peer said it wants it.
//!
//! Replies: a request whose reply subject was subscribed very recently leaves with
//! the reply rewritten to `_GR_.<cluster hash>.<server hash>.<reply>`, so that the
//! response comes straight back even before the remote cluster has heard of the
//! subscription; the receiving side strips the prefix for its clients and sends
//! their response to the cluster the hash names.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;

use super::link::{self, Link, LinkKind, Step};
use super::{ClusterCore, CoreState, InterestKey};
use crate::account::AccountId;
use crate::config::cluster::RouteUrl;
use crate::config::gateway::GatewayOptions;
use crate::proto::route::RouteOp;
use crate::server::ServerShared;
use crate::{log_debug, log_error, log_info};

/// How long to wait before dialing a gateway again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long a new subscription's replies are rewritten, and a rewritten reply is
/// remembered (nats-server's `recSubExp`).
pub const RECENT_SUB_TTL: Duration = Duration::from_secs(2);
/// The prefix of a rewritten reply.
pub const REPLY_PREFIX: &[u8] = b"_GR_.";
/// `_GR_.` + 6 + `.` + 6 + `.`: where the original reply starts.
pub const REPLY_OFFSET: usize = 19;
/// What a hub with gateways tells its leafs it wants, so that responses on
/// rewritten replies come back to it.
pub const REPLY_WILDCARD: &[u8] = b"_GR_.>";
/// The pseudo link that stands for "a rewritten reply's response goes out directly".
pub const REPLY_LINK: u64 = u64::MAX;

/// One gateway connection.
pub struct Gateway {
    /// The connection itself.
    pub link: Rc<Link>,
    /// The remote cluster's gateway name.
    pub name: RefCell<String>,
    /// The peer's server id.
    pub remote_id: RefCell<String>,
    /// The peer's gateway URLs (its `gateway_urls`).
    pub urls: RefCell<Vec<String>>,
    /// Dialed because the configuration lists that gateway.
    pub configured: bool,
    /// The peer takes headers.
    pub headers: Cell<bool>,
    /// Outbound: what the remote cluster wants, (account, subject, queue) -> weight.
    pub interest: RefCell<HashMap<InterestKey, u32>>,
    /// Inbound: the accounts the peer was switched to interest-only for.
    pub switched: RefCell<HashSet<AccountId>>,
    /// Inbound: the interest the peer was told of (a queue group counts once).
    pub told: RefCell<HashSet<InterestKey>>,
    /// Inbound: accounts the peer was told `A-` for (unknown here).
    pub refused_accounts: RefCell<HashSet<Bytes>>,
    registered: Cell<bool>,
}

impl std::ops::Deref for Gateway {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.link
    }
}

impl Gateway {
    /// This server dialed it: messages go out on it.
    pub fn outbound(&self) -> bool {
        self.link.solicited
    }
}

/// `hash(x, 6)` as nats-server names clusters and servers in rewritten replies: the
/// first 6 bytes of SHA-256, each as a base-62 digit.
pub fn hash6(data: &[u8]) -> [u8; 6] {
    use sha2::Digest;
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let sum = sha2::Sha256::digest(data);
    let mut out = [0u8; 6];
    for (o, b) in out.iter_mut().zip(sum.iter()) {
        *o = DIGITS[(*b % 62) as usize];
    }
    out
}

/// The `host:port` other clusters reach this server's gateway listener at.
pub fn own_url(server: &ServerShared, g: &GatewayOptions) -> String {
    if let Some(a) = &g.advertise {
        return a.clone();
    }
    let port = server
        .gateway_port
        .load(std::sync::atomic::Ordering::Relaxed) as u16;
    crate::server::listen::local_host_port(&g.host, port)
}

/// The `_GR_.<cluster>.<server>.` prefix of this server's rewritten replies.
pub fn reply_prefix(gateway_name: &str, server_id: &str) -> Bytes {
    let mut p = Vec::with_capacity(REPLY_OFFSET);
    p.extend_from_slice(REPLY_PREFIX);
    p.extend_from_slice(&hash6(gateway_name.as_bytes()));
    p.push(b'.');
    p.extend_from_slice(&hash6(server_id.as_bytes()));
    p.push(b'.');
    Bytes::from(p)
}

/// `subject` is a rewritten reply (`_GR_.xxxxxx.yyyyyy.<reply>`).
pub fn is_routed_reply(subject: &[u8]) -> bool {
    subject.len() > REPLY_OFFSET
        && subject.starts_with(REPLY_PREFIX)
        && subject[11] == b'.'
        && subject[18] == b'.'
}

/// Dials gateway `name` at `urls` and keeps a connection to it while none is up; a
/// configured gateway for ever, an implicit one `connect_retries` more times after
/// each loss.
pub async fn solicit(core: Rc<ClusterCore>, name: String, urls: Vec<RouteUrl>, implicit: bool) {
    let remote_tls = core
        .gateway_opts()
        .gateways
        .iter()
        .find(|g| g.name == name)
        .and_then(|g| g.tls.clone());
    let kind = if implicit { "implicit" } else { "explicit" };
    let mut failures = 0i64;
    let mut next = 0usize;
    loop {
        if core
            .server
            .shutdown
            .load(std::sync::atomic::Ordering::Relaxed)
            || urls.is_empty()
        {
            break;
        }
        if core.outbound_gateway(&name).is_some() {
            glommio::timer::sleep(RECONNECT_DELAY).await;
            continue;
        }
        let url = urls[next % urls.len()].clone();
        next += 1;
        let attempt = failures + 1;
        let every = core.server.opts.connect_error_reports.max(1);
        if attempt == 1 || attempt % every == 0 {
            log_info!(
                "Connecting to {kind} gateway {name:?} ({}) at {} (attempt {attempt})",
                url.host_port(),
                url.host_port()
            );
        }
        match link::dial(&url.host_port()).await {
            Ok(tcp) => {
                let dialed = Dialed {
                    name: name.clone(),
                    url,
                    configured: !implicit,
                    tls: remote_tls.clone(),
                };
                let up = serve(core.clone(), tcp, Some(dialed)).await;
                failures = if up { 0 } else { failures + 1 };
            }
            Err(e) => {
                if attempt == 1 || attempt % every == 0 {
                    log_error!(
                        "Error connecting to {kind} gateway {name:?} ({}) at {} (attempt \
                         {attempt}): dial tcp {}: connect: {}",
                        url.host_port(),
                        url.host_port(),
                        url.host_port(),
                        crate::logging::go_error_text(&e)
                    );
                }
                failures += 1;
            }
        }
        if implicit && failures > core.gateway_opts().connect_retries {
            break;
        }
        glommio::timer::sleep(RECONNECT_DELAY).await;
    }
    core.state.borrow_mut().gw_soliciting.remove(&name);
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

/// A gateway this server dials.
pub struct Dialed {
    /// The remote cluster's gateway name.
    pub name: String,
    /// The URL dialed.
    pub url: RouteUrl,
    /// The configuration lists it.
    pub configured: bool,
    /// Its own TLS settings, if the configuration gives it some.
    pub tls: Option<crate::tls::TlsConfig>,
}

/// Runs one gateway connection until it closes: dialed when `dialed` says so, else
/// accepted. Returns whether it got registered.
pub async fn serve(core: Rc<ClusterCore>, tcp: TcpStream, dialed: Option<Dialed>) -> bool {
    let (name, url, configured, own_tls) = match dialed {
        Some(d) => (d.name, Some(d.url), d.configured, d.tls),
        None => (String::new(), None, false, None),
    };
    // With gateway TLS the handshake comes before any protocol byte, both ways.
    let tls = core.gateway_opts().tls.clone();
    let dial_tls = own_tls.or_else(|| tls.clone());
    let dial = match (&dial_tls, &url) {
        (Some(t), Some(u)) => t.dial.as_ref().map(|d| (d, u.host.as_str())),
        _ => None,
    };
    let serve_tls = if url.is_none() { tls.as_ref() } else { None };
    let (id, stream, state) =
        match link::secure(&core, LinkKind::Gateway, tcp, serve_tls, dial).await {
            Ok(v) => v,
            Err((who, reason)) => {
                log_info!("{who} - Gateway connection closed: {reason}");
                return false;
            }
        };
    let link = Rc::new(Link::with_stream(
        &core,
        LinkKind::Gateway,
        url.is_some(),
        id,
        stream,
        state,
    ));
    let gw = Rc::new(Gateway {
        link: link.clone(),
        name: RefCell::new(name.clone()),
        remote_id: RefCell::new(String::new()),
        urls: RefCell::new(Vec::new()),
        configured,
        headers: Cell::new(false),
        interest: RefCell::new(HashMap::new()),
        switched: RefCell::new(HashSet::new()),
        told: RefCell::new(HashSet::new()),
        refused_accounts: RefCell::new(HashSet::new()),
        registered: Cell::new(false),
    });
    if url.is_some() {
        log_info!(
            "{} - Creating outbound gateway connection to {name:?}",
            gw.label()
        );
    } else {
        log_info!("{} - Processing inbound gateway connection", gw.label());
    }
    let writer = glommio::spawn_local(link::write_loop(link.clone()));
    let pinger = glommio::spawn_local(link::ping_loop(link.clone(), || {
        (crate::config::gateway::MAX_GATEWAY_PING_INTERVAL, 2)
    }));
    let mut phase = match &url {
        Some(_) => Phase::AwaitInfo,
        None => {
            gw.send(&info_line(&core));
            link.awaiting_connect.set(true);
            Phase::AwaitConnect
        }
    };
    let url_for_connect = url.clone();
    link::read_loop(&core, &link, &[], |chunk, op| {
        apply(&core, &gw, url_for_connect.as_ref(), chunk, op, &mut phase)
    })
    .await;
    gw.close(gw.close_reason());
    writer.await;
    pinger.cancel().await;
    gw.shutdown();
    let up = gw.registered.get();
    if up {
        core.unregister_gateway(&gw);
    }
    log_info!(
        "{} - Gateway connection closed: {}",
        gw.label(),
        gw.close_reason()
    );
    up
}

fn apply(
    core: &Rc<ClusterCore>,
    gw: &Rc<Gateway>,
    url: Option<&RouteUrl>,
    chunk: &Bytes,
    op: RouteOp<'_>,
    phase: &mut Phase,
) -> Step {
    if *phase == Phase::AwaitConnect && !matches!(op, RouteOp::Connect(_)) {
        log_error!("{} - authentication error", gw.label());
        gw.err("Authorization Violation", "Authentication Failure");
        return Step::Stop;
    }
    if !gw.outbound() {
        // Interest flows towards the outbound side only; nats-server closes without
        // telling the peer.
        let what = match op {
            RouteOp::Sub(_) => Some("RS+"),
            RouteOp::Unsub(_) => Some("RS-"),
            RouteOp::AccountSub(_) => Some("A+"),
            RouteOp::AccountUnsub(_) => Some("A-"),
            _ => None,
        };
        if let Some(what) = what {
            log_error!(
                "{} - Received {what} from gateway on inbound connection",
                gw.label()
            );
            gw.close("Protocol Violation");
            return Step::Stop;
        }
    }
    match op {
        RouteOp::Ping => gw.send(b"PONG\r\n"),
        RouteOp::Pong => gw.pong(),
        RouteOp::Ok => {}
        RouteOp::Err(text) => {
            log_error!(
                "{} - Gateway Error {}",
                gw.label(),
                String::from_utf8_lossy(text)
            );
            gw.close("Parse Error");
            return Step::Stop;
        }
        RouteOp::Connect(json) => {
            if *phase != Phase::AwaitConnect {
                return Step::Go;
            }
            if let Err((text, reason)) = check_connect(core, gw, json) {
                gw.err(&text, reason);
                return Step::Stop;
            }
            gw.link.awaiting_connect.set(false);
            *phase = Phase::AwaitInfo;
        }
        RouteOp::Info(json) => {
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(json) else {
                gw.err("Invalid INFO", "Protocol Error");
                return Step::Stop;
            };
            match *phase {
                Phase::AwaitConnect => return Step::Stop,
                Phase::AwaitInfo => {
                    let step = match url {
                        Some(url) => outbound_ready(core, gw, url, &info),
                        None => inbound_ready(core, gw, &info),
                    };
                    if !matches!(step, Step::Go) {
                        return step;
                    }
                    *phase = Phase::Up;
                }
                Phase::Up => on_info_update(core, gw, &info),
            }
        }
        _ if *phase != Phase::Up => {
            gw.err("Authorization Violation", "Authentication Failure");
            return Step::Stop;
        }
        RouteOp::Sub(i) => {
            if let Some(account) = core.account_by_name(i.account) {
                let weight = i.queue.map_or(1, |(_, w)| w.max(1));
                core.set_gateway_interest(gw, account, i.subject, i.queue.map(|q| q.0), weight);
            }
        }
        RouteOp::Unsub(i) => {
            if let Some(account) = core.account_by_name(i.account) {
                core.set_gateway_interest(gw, account, i.subject, i.queue.map(|q| q.0), 0);
            }
        }
        RouteOp::AccountSub(a) | RouteOp::AccountUnsub(a) => {
            // Only an optimistic-mode peer speaks of whole accounts; natrium sends
            // nothing it was not asked for, so there is nothing to undo.
            log_debug!(
                "{} - Ignoring account interest notice for {}",
                gw.label(),
                String::from_utf8_lossy(a)
            );
        }
        RouteOp::Msg(m) => {
            gw.count_in(m.payload.len());
            if gw.outbound() {
                // Messages flow on the other connection; nothing to do with this one.
                return Step::Go;
            }
            let part = |p: &[u8]| {
                if p.is_empty() {
                    Bytes::new()
                } else {
                    chunk.slice_ref(p)
                }
            };
            core.deliver_from_gateway(
                gw,
                m.account,
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
    gw: &Gateway,
    json: &[u8],
) -> Result<(), (String, &'static str)> {
    let violation = || {
        (
            "Authorization Violation".to_string(),
            "Authentication Failure",
        )
    };
    let c: serde_json::Value = serde_json::from_slice(json).map_err(|_| violation())?;
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let name = s("gateway");
    if name.is_empty() {
        log_error!("{} - attempted to connect to gateway port", gw.label());
        return Err((
            "attempted to connect to gateway port".into(),
            "Protocol Error",
        ));
    }
    let opts = core.gateway_opts();
    if opts.auth.as_ref().is_some_and(|a| !a.accepts(&c)) {
        log_error!(
            "{} - authentication error - User {:?}",
            gw.label(),
            s("user")
        );
        return Err(violation());
    }
    if opts.reject_unknown_cluster && !opts.gateways.iter().any(|g| g.name == name) {
        log_error!(
            "{} - Rejecting connection from gateway {name:?}",
            gw.label()
        );
        return Err((
            format!("Connection to gateway {:?} rejected", opts.name),
            "Wrong Gateway",
        ));
    }
    *gw.name.borrow_mut() = name;
    Ok(())
}

/// The accepting server's first INFO on a connection this server dialed: checks it
/// is the gateway it wanted, answers with CONNECT and its own INFO, registers.
fn outbound_ready(
    core: &Rc<ClusterCore>,
    gw: &Rc<Gateway>,
    url: &RouteUrl,
    info: &serde_json::Value,
) -> Step {
    let s = |k: &str| {
        info.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let wanted = gw.name.borrow().clone();
    let theirs = s("gateway");
    if theirs.is_empty() {
        let text = format!("Attempt to connect to gateway {wanted:?} using wrong port");
        log_error!("{} - {text}", gw.label());
        gw.err(&text, "Wrong Gateway");
        return Step::Stop;
    }
    let ours = core.gateway_opts().name.clone();
    if theirs != wanted {
        let text = format!(
            "Connection from {theirs:?} rejected, wanted to connect to {wanted:?}, this is {ours:?}"
        );
        log_error!("{} - {text}", gw.label());
        gw.err(&text, "Wrong Gateway");
        return Step::Stop;
    }
    let remote_id = s("server_id");
    if remote_id == core.server.server_id {
        gw.close("Duplicate Gateway");
        return Step::ToSelf;
    }
    *gw.remote_id.borrow_mut() = remote_id.clone();
    *gw.urls.borrow_mut() = urls_of(info);
    gw.headers
        .set(info.get("headers").and_then(|v| v.as_bool()) == Some(true));
    if core.outbound_gateway(&wanted).is_some() {
        gw.close("Duplicate Gateway");
        return Step::Stop;
    }
    gw.send(&connect_line(core, url, gw.link.tls.is_some()));
    gw.send(&info_line(core));
    gw.registered.set(true);
    core.register_gateway(gw);
    log_info!(
        "{} - Outbound gateway connection to {wanted:?} ({remote_id}) registered",
        gw.label()
    );
    gw.ping();
    Step::Go
}

/// The dialing server's INFO after its CONNECT: registers the inbound connection,
/// switches every account to interest-only for it, dials that cluster back when no
/// connection to it is up, and tells it of the other gateways this server knows.
fn inbound_ready(core: &Rc<ClusterCore>, gw: &Rc<Gateway>, info: &serde_json::Value) -> Step {
    let s = |k: &str| {
        info.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let remote_id = s("server_id");
    if !s("gateway").is_empty() {
        *gw.name.borrow_mut() = s("gateway");
    }
    let name = gw.name.borrow().clone();
    *gw.remote_id.borrow_mut() = remote_id.clone();
    *gw.urls.borrow_mut() = urls_of(info);
    gw.headers
        .set(info.get("headers").and_then(|v| v.as_bool()) == Some(true));
    gw.registered.set(true);
    core.register_gateway(gw);
    log_info!(
        "{} - Inbound gateway connection from {name:?} ({remote_id}) registered",
        gw.label()
    );
    core.switch_all_accounts(gw);
    core.solicit_implicit(&name, &gw.urls.borrow());
    // Gossip: the other clusters this one knows, so that the peer dials them too.
    for other in core.gateways() {
        let other_name = other.name.borrow().clone();
        if !other.outbound() || other_name == name {
            continue;
        }
        let mut doc = bare_info(&other_name, 1);
        doc["gateway_urls"] = other.urls.borrow().clone().into();
        gw.send(&link::json_line("INFO", &doc));
    }
    Step::Go
}

/// An INFO on an established connection: gossip of another cluster (command 1) is
/// dialed; the interest-mode commands (2 and 3) need nothing, this server being
/// interest-only from the start.
fn on_info_update(core: &Rc<ClusterCore>, gw: &Gateway, info: &serde_json::Value) {
    let cmd = info
        .get("gateway_cmd")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let name = info
        .get("gateway")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    match cmd {
        1 if !name.is_empty() => core.solicit_implicit(&name, &urls_of(info)),
        2 | 3 => {
            log_debug!(
                "{} - Gateway {:?}: interest-only mode command {cmd}",
                gw.label(),
                name
            );
            let account = info
                .get("gateway_cmd_payload")
                .and_then(|v| v.as_str())
                .and_then(|p| data_encoding::BASE64.decode(p.as_bytes()).ok())
                .and_then(|a| core.account_by_name(&a));
            if let Some(account) = account {
                gw.switched.borrow_mut().insert(account);
            }
        }
        _ => {
            let urls = urls_of(info);
            if !urls.is_empty() {
                *gw.urls.borrow_mut() = urls;
            }
        }
    }
}

/// The `gateway_urls` of an INFO (with its `gateway_url`).
fn urls_of(info: &serde_json::Value) -> Vec<String> {
    let mut urls: Vec<String> = info
        .get("gateway_urls")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(u) = info.get("gateway_url").and_then(|v| v.as_str()) {
        if !urls.iter().any(|x| x == u) {
            urls.push(u.to_string());
        }
    }
    urls
}

/// This server's gateway INFO line.
fn info_line(core: &ClusterCore) -> Vec<u8> {
    let server = &core.server;
    let opts = core.gateway_opts();
    let url = own_url(server, &opts);
    let port = server
        .gateway_port
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut info = serde_json::json!({
        "server_id": server.server_id,
        "server_name": server.server_name,
        "version": crate::server::COMPAT_VERSION,
        "proto": 3,
        "go": format!("natrium {}", crate::server::VERSION),
        "host": opts.host,
        "port": port,
        "headers": !server.opts.no_header_support,
        "max_payload": server.opts.max_payload,
        "gateway": opts.name,
        "gateway_urls": [url.clone()],
        "gateway_url": url,
        "gateway_nrp": true,
        "gateway_iom": true,
    });
    let obj = info.as_object_mut().expect("object");
    if opts.auth.is_some() {
        obj.insert("auth_required".into(), true.into());
    }
    if opts.tls.is_some() {
        obj.insert("tls_required".into(), true.into());
        obj.insert("tls_verify".into(), true.into());
    }
    link::json_line("INFO", &info)
}

/// The CONNECT this server sends on a gateway it dialed (nats-server's fields: the
/// header support is taken from the INFOs, not from here).
fn connect_line(core: &ClusterCore, url: &RouteUrl, tls: bool) -> Vec<u8> {
    let opts = core.gateway_opts();
    let mut c = serde_json::json!({
        "echo": false,
        "verbose": false,
        "pedantic": false,
        "tls_required": tls,
        "headers": false,
        "name": core.server.server_id,
        "cluster": "",
        "gateway": opts.name,
    });
    let obj = c.as_object_mut().expect("object");
    if let Some(u) = &url.user {
        obj.insert("user".into(), u.clone().into());
    }
    if let Some(p) = &url.pass {
        obj.insert("pass".into(), p.clone().into());
    }
    link::json_line("CONNECT", &c)
}

/// `INFO` carrying interest-mode command `cmd` for account `account`, with the
/// empty fields nats-server does not omit.
fn command_line(gateway: &str, cmd: u8, account: &[u8]) -> Vec<u8> {
    let mut doc = bare_info(gateway, cmd);
    doc["gateway_cmd_payload"] = data_encoding::BASE64.encode(account).into();
    link::json_line("INFO", &doc)
}

/// An INFO of gateway commands: nats-server's empty server fields (not omitted),
/// the gateway named, command `cmd`.
fn bare_info(gateway: &str, cmd: u8) -> serde_json::Value {
    serde_json::json!({
        "server_id": "",
        "server_name": "",
        "version": "",
        "proto": 0,
        "go": "",
        "host": "",
        "port": 0,
        "headers": false,
        "max_payload": 0,
        "gateway": gateway,
        "gateway_cmd": cmd,
    })
}

/// Appends the `RS+`/`RS-` line for `key` at weight `w` (0: gone).
fn line(out: &mut BytesMut, account: &[u8], key: &InterestKey, w: u32) {
    if w > 0 {
        crate::proto::route::sub(out, Some(account), &key.1, key.2.as_deref().map(|q| (q, w)));
    } else {
        crate::proto::route::unsub(out, Some(account), &key.1, key.2.as_deref());
    }
}

impl ClusterCore {
    /// Gateway settings (the configured block).
    pub fn gateway_opts(&self) -> std::cell::Ref<'_, GatewayOptions> {
        self.gateway.borrow()
    }

    /// Gateways are configured.
    pub fn gateways_enabled(&self) -> bool {
        self.server.opts.gateway.is_some()
    }

    /// The gateway connections registered now.
    pub fn gateways(&self) -> Vec<Rc<Gateway>> {
        self.state.borrow().gateways.values().cloned().collect()
    }

    /// The registered outbound connection to gateway `name`, if any.
    pub fn outbound_gateway(&self, name: &str) -> Option<Rc<Gateway>> {
        let st = self.state.borrow();
        st.gateways
            .values()
            .find(|g| g.outbound() && *g.name.borrow() == name)
            .cloned()
    }

    /// Starts the configured gateways' dialers.
    pub fn start_gateways(self: &Rc<Self>) {
        let remotes = self.gateway_opts().gateways.clone();
        let ours = self.gateway_opts().name.clone();
        for remote in remotes {
            if remote.name == ours {
                continue;
            }
            self.state
                .borrow_mut()
                .gw_soliciting
                .insert(remote.name.clone());
            glommio::spawn_local(solicit(self.clone(), remote.name, remote.urls, false)).detach();
        }
    }

    /// Dials gateway `name` (learned, not configured) unless a dialer already runs.
    pub fn solicit_implicit(self: &Rc<Self>, name: &str, urls: &[String]) {
        if name == self.gateway_opts().name {
            return;
        }
        let urls: Vec<RouteUrl> = urls
            .iter()
            .filter_map(|u| {
                if u.contains("://") {
                    RouteUrl::parse(u)
                } else {
                    RouteUrl::parse(&format!("nats://{u}"))
                }
            })
            .collect();
        if urls.is_empty() {
            return;
        }
        let mut st = self.state.borrow_mut();
        if !st.gw_soliciting.insert(name.to_string()) {
            return;
        }
        drop(st);
        glommio::spawn_local(solicit(self.clone(), name.to_string(), urls, true)).detach();
    }

    /// Registers a gateway connection whose handshake is done; the cluster hears of
    /// a new outbound one, so that every server of it connects to that cluster too.
    fn register_gateway(&self, gw: &Rc<Gateway>) {
        let mut st = self.state.borrow_mut();
        st.gateways.insert(gw.id, gw.clone());
        drop(st);
        if gw.outbound() {
            let line = self.gateway_gossip_line(gw);
            for r in self.routes() {
                r.send(&line);
            }
        }
    }

    /// The INFO that tells a route of gateway `gw`'s cluster (nats-server marks the
    /// server id with `GW` so it is not taken for a new route).
    fn gateway_gossip_line(&self, gw: &Gateway) -> Vec<u8> {
        let doc = serde_json::json!({
            "server_id": format!("GW{}", self.server.server_id),
            "server_name": self.server.server_name,
            "version": crate::server::COMPAT_VERSION,
            "proto": 3,
            "go": "",
            "host": "",
            "port": 0,
            "headers": false,
            "max_payload": 0,
            "gateway": *gw.name.borrow(),
            "gateway_urls": *gw.urls.borrow(),
            "gateway_cmd": 1,
        });
        link::json_line("INFO", &doc)
    }

    /// Tells a new route of every cluster this server has an outbound gateway to.
    pub fn gossip_gateways_to(&self, route: &super::route::Route) {
        for gw in self.gateways().iter().filter(|g| g.outbound()) {
            route.send(&self.gateway_gossip_line(gw));
        }
    }

    /// A route's INFO about another cluster's gateway (`gateway_cmd` 1): dial it.
    /// Returns whether the INFO was one.
    pub fn on_route_gateway_info(self: &Rc<Self>, info: &serde_json::Value) -> bool {
        if info.get("gateway_cmd").and_then(|v| v.as_u64()) != Some(1) {
            return false;
        }
        if self.gateways_enabled() {
            let name = info.get("gateway").and_then(|v| v.as_str()).unwrap_or("");
            if !name.is_empty() && self.outbound_gateway(name).is_none() {
                self.solicit_implicit(name, &urls_of(info));
            }
        }
        true
    }

    /// Forgets a closed gateway connection and the interest it had.
    fn unregister_gateway(&self, gw: &Gateway) {
        let interest = std::mem::take(&mut *gw.interest.borrow_mut());
        let mut st = self.state.borrow_mut();
        if st
            .gateways
            .get(&gw.id)
            .is_some_and(|g| std::ptr::eq(&**g, gw))
        {
            st.gateways.remove(&gw.id);
        }
        for (key, weight) in interest {
            if key.2.is_some() {
                Self::change_remote_table(&mut st, gw.id, &key, weight, 0);
                let total = st.gw_queues.entry(key.clone()).or_default();
                *total = total.saturating_sub(weight);
                if *total == 0 {
                    st.gw_queues.remove(&key);
                }
                self.gate_gateway_queue(&mut st, &key);
            } else {
                self.change_remote_interest(&mut st, gw.id, &key, weight, 0);
            }
        }
    }

    /// An outbound gateway's peer wants (account, subject, queue) at `weight` (0: no
    /// more).
    fn set_gateway_interest(
        &self,
        gw: &Gateway,
        account: AccountId,
        subject: &[u8],
        queue: Option<&[u8]>,
        weight: u32,
    ) {
        let key = (
            account,
            Bytes::copy_from_slice(subject),
            queue.map(Bytes::copy_from_slice),
        );
        let before =
            super::interest::set_weight(&mut gw.interest.borrow_mut(), key.clone(), weight);
        let mut st = self.state.borrow_mut();
        if key.2.is_some() {
            Self::change_remote_table(&mut st, gw.id, &key, before, weight);
            let total = st.gw_queues.entry(key.clone()).or_default();
            *total = total.saturating_add(weight).saturating_sub(before);
            if *total == 0 {
                st.gw_queues.remove(&key);
            }
            self.gate_gateway_queue(&mut st, &key);
        } else {
            self.change_remote_interest(&mut st, gw.id, &key, before, weight);
        }
    }

    /// Client shards see another cluster's queue group only while this cluster has
    /// no member of it: a shard then never takes a message away from a member here
    /// (nor sends it on a detour here and back, which could reorder it).
    pub(super) fn gate_gateway_queue(&self, st: &mut CoreState, key: &InterestKey) {
        if key.2.is_none() || (st.gw_queues.is_empty() && st.gw_queues_told.is_empty()) {
            return;
        }
        let remote = st.gw_queues.get(key).copied().unwrap_or(0);
        let want = if Self::for_gateways(st, key) {
            0
        } else {
            remote
        };
        let told = st.gw_queues_told.get(key).copied().unwrap_or(0);
        if want == told {
            return;
        }
        if want == 0 {
            st.gw_queues_told.remove(key);
        } else {
            st.gw_queues_told.insert(key.clone(), want);
        }
        if want > told {
            self.tell_shards_interest(key, true, want - told);
        } else {
            self.tell_shards_interest(key, false, told - want);
        }
    }

    /// Whether the other clusters should know of `key`: the whole cluster's
    /// interest (this server's clients, the routes', the leafs').
    fn for_gateways(st: &CoreState, key: &InterestKey) -> bool {
        if key.1.starts_with(b"$LDS.") {
            return false;
        }
        if st.local.contains_key(key) || st.routes_total.contains_key(key) {
            return true;
        }
        let lkey = (key.1.clone(), key.2.clone());
        st.leafs
            .values()
            .any(|l| l.account.get() == key.0 && l.interest.borrow().contains_key(&lkey))
    }

    /// Every interest key of `account` in the cluster.
    fn account_keys(st: &CoreState, account: AccountId) -> HashSet<InterestKey> {
        let mut keys: HashSet<InterestKey> = HashSet::new();
        keys.extend(st.local.keys().filter(|k| k.0 == account).cloned());
        keys.extend(st.routes_total.keys().filter(|k| k.0 == account).cloned());
        for l in st.leafs.values().filter(|l| l.account.get() == account) {
            keys.extend(
                l.interest
                    .borrow()
                    .keys()
                    .map(|(s, q)| (account, s.clone(), q.clone())),
            );
        }
        keys
    }

    /// Switches every account this server knows to interest-only for an inbound peer.
    fn switch_all_accounts(&self, gw: &Gateway) {
        let mut accounts: Vec<AccountId> = Vec::new();
        for name in self.server.account_names() {
            if let Some(id) = self.server.account_lookup(&name) {
                accounts.push(id);
            }
        }
        {
            let st = self.state.borrow();
            accounts.extend(st.local.keys().map(|k| k.0));
            accounts.extend(st.routes_total.keys().map(|k| k.0));
        }
        accounts.sort_unstable_by_key(|a| a.index());
        accounts.dedup();
        let mut st = self.state.borrow_mut();
        for account in accounts {
            self.switch_account(&mut st, gw, account);
        }
    }

    /// Tells an inbound peer all of `account`'s interest between the interest-only
    /// start and complete commands; from then on it hears every change.
    fn switch_account(&self, st: &mut CoreState, gw: &Gateway, account: AccountId) {
        if !gw.switched.borrow_mut().insert(account) {
            return;
        }
        let name = Self::account_name(&self.server, st, account);
        let ours = self.gateway_opts().name.clone();
        log_debug!(
            "Gateway {:?}: switching account {:?} to Interest-Only mode",
            gw.name.borrow(),
            String::from_utf8_lossy(&name)
        );
        let mut out = BytesMut::new();
        out.extend_from_slice(&command_line(&ours, 2, &name));
        let mut told = gw.told.borrow_mut();
        for key in Self::account_keys(st, account) {
            if Self::for_gateways(st, &key) {
                line(&mut out, &name, &key, 1);
                told.insert(key);
            }
        }
        out.extend_from_slice(&command_line(&ours, 3, &name));
        gw.send(&out);
    }

    /// Sends the inbound peers what changed for `key`.
    pub(super) fn tell_gateways(&self, st: &mut CoreState, key: &InterestKey) {
        if st.gateways.is_empty() {
            return;
        }
        let inbound: Vec<Rc<Gateway>> = st
            .gateways
            .values()
            .filter(|g| !g.outbound())
            .cloned()
            .collect();
        if inbound.is_empty() {
            return;
        }
        let now = Self::for_gateways(st, key);
        let name = Self::account_name(&self.server, st, key.0);
        let mut out = BytesMut::new();
        for gw in inbound {
            if !gw.switched.borrow().contains(&key.0) {
                self.switch_account(st, &gw, key.0);
                continue;
            }
            let mut told = gw.told.borrow_mut();
            let news = if now {
                told.insert(key.clone())
            } else {
                told.remove(key)
            };
            if news {
                out.clear();
                line(&mut out, &name, key, u32::from(now));
                gw.send(&out);
            }
        }
    }

    /// A client shard subscribed to `subject`: replies to it leave rewritten for a
    /// while (the remote clusters may not have heard of the subscription yet).
    pub(super) fn note_recent_sub(&self, st: &mut CoreState, account: AccountId, subject: &Bytes) {
        let i = account.index();
        if st.recent.len() <= i {
            st.recent
                .resize_with(i + 1, crate::sublist::Sublist::default);
        }
        st.recent[i].insert_n(subject, None, 0, 1);
        st.recent_order
            .push_back((Instant::now() + RECENT_SUB_TTL, account, subject.clone()));
        Self::expire_recent(st);
    }

    fn expire_recent(st: &mut CoreState) {
        let now = Instant::now();
        while st.recent_order.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, account, subject) = st.recent_order.pop_front().expect("front");
            st.recent[account.index()].remove_n(&subject, None, &0, 1);
        }
    }

    /// The reply to send a message to other clusters with: rewritten when it matches
    /// a subscription made in the last two seconds.
    pub(super) fn gateway_reply(
        &self,
        st: &mut CoreState,
        account: AccountId,
        reply: &Bytes,
    ) -> Bytes {
        Self::expire_recent(st);
        // No subscription is recent (the steady state): no lookup, nothing cached.
        if reply.is_empty() || st.recent_order.is_empty() || is_routed_reply(reply) {
            return reply.clone();
        }
        let recent = st
            .recent
            .get_mut(account.index())
            .is_some_and(|s| !s.match_subject(reply).plain.is_empty());
        if !recent {
            return reply.clone();
        }
        let mut r = BytesMut::with_capacity(REPLY_OFFSET + reply.len());
        r.extend_from_slice(&st.reply_prefix);
        r.extend_from_slice(reply);
        r.freeze()
    }

    /// Remembers that responses to `reply` (a rewritten reply stripped for this
    /// cluster's clients) go straight back as `routed`; until the mapping expires the
    /// client shards send them here.
    pub(super) fn track_routed_reply(
        &self,
        st: &mut CoreState,
        account: AccountId,
        routed: &Bytes,
    ) -> Bytes {
        let reply = routed.slice(REPLY_OFFSET..);
        let key = (account, reply.clone());
        let expires = Instant::now() + RECENT_SUB_TTL;
        let fresh = st
            .routed_replies
            .insert(key.clone(), (routed.clone(), expires))
            .is_none();
        st.routed_order.push_back((expires, key.clone()));
        if fresh {
            let ikey = (account, reply.clone(), None);
            self.change_remote_interest(st, REPLY_LINK, &ikey, 0, 1);
        }
        reply
    }

    /// Forgets rewritten replies and recent subscriptions whose time is up.
    pub fn expire_gateway_state(&self) {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        Self::expire_recent(st);
        let now = Instant::now();
        while st.routed_order.front().is_some_and(|(t, _)| *t <= now) {
            let (_, key) = st.routed_order.pop_front().expect("front");
            let due = st.routed_replies.get(&key).is_some_and(|(_, t)| *t <= now);
            if due {
                st.routed_replies.remove(&key);
                let ikey = (key.0, key.1.clone(), None);
                self.change_remote_interest(st, REPLY_LINK, &ikey, 1, 0);
            }
        }
    }

    /// A message from an inbound gateway: to this cluster's subscribers (and the
    /// queue groups the line names), never to another gateway.
    #[allow(clippy::too_many_arguments)]
    fn deliver_from_gateway(
        &self,
        gw: &Gateway,
        account_name: &[u8],
        subject: Bytes,
        reply: Bytes,
        queues: &[u8],
        hdr_len: usize,
        payload: Bytes,
    ) {
        let Some(account) = self.account_by_name(account_name) else {
            log_debug!(
                "Unknown account {:?} for gateway message on subject: {:?}",
                String::from_utf8_lossy(account_name),
                String::from_utf8_lossy(&subject)
            );
            if gw
                .refused_accounts
                .borrow_mut()
                .insert(Bytes::copy_from_slice(account_name))
            {
                let mut out = BytesMut::new();
                out.extend_from_slice(b"A- ");
                out.extend_from_slice(account_name);
                out.extend_from_slice(b"\r\n");
                gw.send(&out);
            }
            return;
        };
        if !gw.switched.borrow().contains(&account) {
            let mut st = self.state.borrow_mut();
            self.switch_account(&mut st, gw, account);
        }
        if is_routed_reply(&subject) {
            self.deliver_routed_reply(true, account, subject, reply, queues, hdr_len, payload);
            return;
        }
        self.deliver_from_cluster_link(
            super::deliver::Source::Gateway,
            account,
            subject,
            reply,
            queues,
            hdr_len,
            payload,
        );
    }

    /// A response on a rewritten reply (`_GR_.<cluster>.<server>.<reply>`): dropped
    /// if it names another cluster; passed over the route to the server it names;
    /// else delivered here on the original reply subject.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver_routed_reply(
        &self,
        from_gateway: bool,
        account: AccountId,
        subject: Bytes,
        reply: Bytes,
        queues: &[u8],
        hdr_len: usize,
        payload: Bytes,
    ) {
        let (cluster, server) = {
            let st = self.state.borrow();
            (st.reply_prefix.slice(5..11), st.reply_prefix.slice(12..18))
        };
        if subject[5..11] != cluster[..] {
            return;
        }
        if from_gateway && subject[12..18] != server[..] {
            let target = self
                .routes()
                .into_iter()
                .find(|r| hash6(r.remote_id.borrow().as_bytes())[..] == subject[12..18]);
            if let Some(route) = target {
                let name = {
                    let mut st = self.state.borrow_mut();
                    Self::account_name(&self.server, &mut st, account)
                };
                let headers = route.headers.get();
                route.send_with(|out| {
                    crate::proto::route::msg(
                        out,
                        Some(&name),
                        &subject,
                        &reply,
                        &[],
                        hdr_len,
                        &payload,
                        headers,
                    )
                });
                route.count_out(payload.len());
                return;
            }
        }
        let source = if from_gateway {
            super::deliver::Source::Gateway
        } else {
            super::deliver::Source::Route
        };
        let real = subject.slice(REPLY_OFFSET..);
        self.deliver_from_cluster_link(source, account, real, reply, queues, hdr_len, payload);
    }
}
