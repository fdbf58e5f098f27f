//! One leaf node connection, either side: the hub's (a leaf server dialed this one)
//! and the spoke's (this server dialed a remote), the handshake of each, and the ops
//! of the leaf protocol. A leaf connection is bound to one local account; its lines
//! carry no account.
//!
//! natrium announces no `compression` and sends `"compress_mode":"not supported"`,
//! so a nats-server 2.15 peer runs the connection uncompressed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpStream;

use super::link::{self, Link, LinkKind, Step};
use super::ClusterCore;
use crate::account::AccountId;
use crate::config::leafnode::RemoteLeaf;
use crate::net::stream::{ConnStream, TlsState};
use crate::proto::route::RouteOp;
use crate::{log_debug, log_error, log_info};

/// A subject and optional queue group, within the leaf's account.
pub type LeafKey = (Bytes, Option<Bytes>);

/// How long a remote waits after the hub refused it for a loop, a permission
/// violation or a cluster name clash, as nats-server waits.
const REFUSED_DELAY: Duration = Duration::from_secs(30);
/// How long the spoke waits for the hub's first INFO.
const FIRST_INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the spoke waits for the hub's INFO that answers its CONNECT.
const CONNECT_INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// One leaf node connection.
pub struct Leaf {
    /// The connection itself.
    pub link: Rc<Link>,
    /// The nonce of the hub's first INFO (hub side), signed by a JWT user's key.
    pub nonce: String,
    /// This server is the spoke on this connection (it dialed a hub).
    pub spoke: Cell<bool>,
    /// The local account the connection is bound to.
    pub account: Cell<AccountId>,
    /// That account's name.
    pub account_name: RefCell<String>,
    /// The peer's server id.
    pub remote_id: RefCell<String>,
    /// The peer's server name.
    pub remote_name: RefCell<String>,
    /// The peer's cluster name (messages and interest never go back to it).
    pub remote_cluster: RefCell<String>,
    /// The account the peer bound on its side (hub: what its INFO says).
    pub remote_account: RefCell<String>,
    /// Both sides support headers.
    pub headers: Cell<bool>,
    /// What the peer wants: (subject, queue) -> weight.
    pub interest: RefCell<HashMap<LeafKey, u32>>,
    /// What this server told the peer it wants: (subject, queue) -> weight.
    pub told: RefCell<HashMap<LeafKey, u32>>,
    /// Subjects never taken from the peer (a remote's `deny_imports`).
    pub deny_imports: Vec<Bytes>,
    /// Subjects never sent to the peer (a remote's `deny_exports`).
    pub deny_exports: Vec<Bytes>,
    /// The URL this spoke dialed.
    pub url: Option<crate::config::cluster::RouteUrl>,
    registered: Cell<bool>,
    /// The hub refused this spoke in a way that asks for a longer wait.
    refused: Cell<bool>,
}

impl std::ops::Deref for Leaf {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.link
    }
}

impl Leaf {
    /// Whether a message on `subject` may go to the peer.
    pub fn exports(&self, subject: &[u8]) -> bool {
        !self
            .deny_exports
            .iter()
            .any(|d| crate::subject::matches(d, subject))
    }

    /// Whether a message on `subject` may come from the peer, and interest in it be
    /// sent there.
    pub fn imports(&self, subject: &[u8]) -> bool {
        !self
            .deny_imports
            .iter()
            .any(|d| crate::subject::matches(d, subject))
    }

    /// Registered with the cluster core (the handshake is done).
    pub fn is_up(&self) -> bool {
        self.registered.get()
    }
}

/// Where the handshake is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Hub side: the leaf's CONNECT must come first.
    AwaitConnect,
    /// Spoke side: the hub's first INFO.
    AwaitInfo,
    /// Spoke side: CONNECT sent, the hub's `connect_info` INFO completes it.
    AwaitConnectInfo,
    /// Registered with the cluster core.
    Up,
}

/// Keeps a leaf connection to `remote`: dials its URLs in turn, again after every
/// close, until the server stops.
pub async fn solicit(core: Rc<ClusterCore>, remote: Rc<RemoteLeaf>) {
    let mut attempt = 0usize;
    loop {
        if core
            .server
            .shutdown
            .load(std::sync::atomic::Ordering::Relaxed)
            || !core.leaf_opts().remotes.contains(&remote)
        {
            return;
        }
        let url = &remote.urls[attempt % remote.urls.len()];
        attempt += 1;
        log_debug!(
            "Trying to connect as leafnode to remote server on {:?}",
            url.host_port()
        );
        let mut delay = core.leaf_opts().reconnect;
        match link::dial(&url.host_port()).await {
            Ok(tcp) => {
                if serve(core.clone(), tcp, Some(remote.clone()), attempt - 1).await {
                    delay = REFUSED_DELAY;
                }
            }
            Err(e) => {
                let every = core.server.opts.connect_error_reports.max(1) as usize;
                if attempt == 1 || attempt.is_multiple_of(every) {
                    log_error!(
                        "Error trying to connect as leafnode to remote server {:?} (attempt \
                         {attempt}): dial tcp {}: connect: {}",
                        url.host_port(),
                        url.host_port(),
                        crate::logging::go_error_text(&e)
                    );
                }
            }
        }
        glommio::timer::sleep(delay).await;
    }
}

/// Runs one leaf connection until it closes: dialed to `remote` (URL number `url`)
/// or accepted. True when the hub asked the spoke to wait longer before dialing again.
pub async fn serve(
    core: Rc<ClusterCore>,
    tcp: TcpStream,
    remote: Option<Rc<RemoteLeaf>>,
    url: usize,
) -> bool {
    let id = core.next_link_id();
    let peer = tcp.peer_addr().ok();
    let who = link::label(peer, LinkKind::Leaf, id);
    match &remote {
        Some(r) => log_info!(
            "{who} - Leafnode connection created for account: {} ",
            r.account.as_deref().unwrap_or("$G")
        ),
        None => log_info!("{who} - Leafnode connection created "),
    }
    let nonce = link::random_nonce();
    let negotiated = match &remote {
        Some(r) => spoke_negotiate(&r.urls[url % r.urls.len()].host, r, tcp, &who).await,
        None => hub_negotiate(&core, id, &nonce, tcp, &who).await,
    };
    let (stream, state, pre, info_sent) = match negotiated {
        Ok(v) => v,
        Err(reason) => {
            log_info!("{who} - Leafnode connection closed: {reason}");
            return false;
        }
    };
    let link = Rc::new(Link::with_stream(
        &core,
        LinkKind::Leaf,
        remote.is_some(),
        (id, peer),
        stream,
        state,
    ));
    let patterns = |v: Option<&Vec<String>>| -> Vec<Bytes> {
        v.map(|v| v.iter().map(|s| Bytes::from(s.clone())).collect())
            .unwrap_or_default()
    };
    let (account, account_name) = match &remote {
        Some(r) => {
            let name = r.account.clone().unwrap_or_else(|| "$G".into());
            (core.server.account_id(&name), name)
        }
        None => (core.server.account_id("$G"), "$G".to_string()),
    };
    let leaf = Rc::new(Leaf {
        link: link.clone(),
        nonce,
        spoke: Cell::new(remote.as_ref().is_some_and(|r| !r.hub)),
        account: Cell::new(account),
        account_name: RefCell::new(account_name.clone()),
        remote_id: RefCell::new(String::new()),
        remote_name: RefCell::new(String::new()),
        remote_cluster: RefCell::new(String::new()),
        remote_account: RefCell::new(String::new()),
        headers: Cell::new(false),
        interest: RefCell::new(HashMap::new()),
        told: RefCell::new(HashMap::new()),
        deny_imports: patterns(remote.as_ref().map(|r| &r.deny_imports)),
        deny_exports: patterns(remote.as_ref().map(|r| &r.deny_exports)),
        url: remote.as_ref().map(|r| r.urls[url % r.urls.len()].clone()),
        registered: Cell::new(false),
        refused: Cell::new(false),
    });
    let writer = glommio::spawn_local(link::write_loop(link.clone()));
    let server = core.server.clone();
    let pinger = glommio::spawn_local(link::ping_loop(link.clone(), move || {
        (server.opts.ping_interval, server.opts.ping_max.max(1))
    }));
    let mut phase = if remote.is_some() {
        Phase::AwaitInfo
    } else {
        if !info_sent {
            leaf.send(&hub_info(&core, &leaf, true));
        }
        leaf.awaiting_connect.set(true);
        Phase::AwaitConnect
    };
    // A handshake that does not finish in time ends the connection.
    let deadline = match remote {
        Some(_) => FIRST_INFO_TIMEOUT + CONNECT_INFO_TIMEOUT,
        None => core
            .leaf_opts()
            .auth
            .timeout
            .unwrap_or(core.server.opts.auth_timeout)
            .max(Duration::from_millis(100)),
    };
    let watchdog = {
        let leaf = leaf.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(deadline).await;
            if !leaf.is_up() && !leaf.is_closed() {
                log_error!("{} - Leafnode handshake timeout", leaf.label());
                leaf.err("Stale Leaf Node Connection - Closing", "Stale Connection");
                leaf.shutdown();
            }
        })
    };
    link::read_loop(&core, &link, &pre, |chunk, op| {
        apply(&core, &leaf, remote.as_deref(), chunk, op, &mut phase)
    })
    .await;
    watchdog.cancel().await;
    leaf.close(leaf.close_reason());
    writer.await;
    pinger.cancel().await;
    leaf.shutdown();
    if leaf.registered.replace(false) {
        core.unregister_leaf(&leaf);
    }
    let who = leaf.remote_name.borrow().clone();
    if who.is_empty() {
        log_info!(
            "{} - Leafnode connection closed: {}",
            leaf.label(),
            leaf.close_reason()
        );
    } else {
        log_info!(
            "{} - Leafnode connection closed: {} - Remote: {who}",
            leaf.label(),
            leaf.close_reason()
        );
    }
    leaf.refused.get()
}

fn apply(
    core: &Rc<ClusterCore>,
    leaf: &Rc<Leaf>,
    remote: Option<&RemoteLeaf>,
    chunk: &Bytes,
    op: RouteOp<'_>,
    phase: &mut Phase,
) -> Step {
    if *phase == Phase::AwaitConnect && !matches!(op, RouteOp::Connect(_)) {
        log_error!("{} - authentication error", leaf.label());
        leaf.err("Authorization Violation", "Authentication Failure");
        return Step::Stop;
    }
    match op {
        RouteOp::Ping => {
            leaf.send(b"PONG\r\n");
            return Step::Go;
        }
        RouteOp::Pong => {
            leaf.pong();
            return Step::Go;
        }
        RouteOp::Ok => return Step::Go,
        RouteOp::Err(text) => {
            let text = String::from_utf8_lossy(text);
            log_error!("{} - Leafnode Error {text}", leaf.label());
            let text = text.to_ascii_lowercase();
            if [
                "loop detected",
                "permissions violation",
                "same cluster name",
            ]
            .iter()
            .any(|w| text.contains(w))
            {
                leaf.refused.set(true);
            }
            leaf.close("Client Closed");
            return Step::Stop;
        }
        _ => {}
    }
    match (*phase, op) {
        (Phase::AwaitConnect, RouteOp::Connect(json)) => {
            // Unreadable JSON: nats-server logs Go's error and just closes.
            if let Err(e) = crate::events::gojson::decode(json, "leafConnectInfo", &[]) {
                log_error!("{} - {e}", leaf.label());
                leaf.close("Protocol Error");
                return Step::Stop;
            }
            leaf.awaiting_connect.set(false);
            if let Err(no) = check_connect(core, leaf, json) {
                log_error!("{} - {}", leaf.label(), no.log.as_ref().unwrap_or(&no.text));
                leaf.err(&no.text, no.reason);
                return Step::Stop;
            }
            leaf.send(&hub_info(core, leaf, false));
            *phase = Phase::Up;
            up(core, leaf);
        }
        (Phase::AwaitInfo, RouteOp::Info(json)) => {
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(json) else {
                leaf.err("Invalid INFO", "Protocol Error");
                return Step::Stop;
            };
            let looks_like_leaf = info.get("client_id").and_then(|v| v.as_u64()).unwrap_or(0) != 0
                && info.get("leafnode_urls").is_some();
            if !looks_like_leaf {
                log_error!(
                    "{} - Attempted to connect to wrong port (not a leafnode port)",
                    leaf.label()
                );
                leaf.close("Wrong Port");
                return Step::Stop;
            }
            let s = |k: &str| {
                info.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            *leaf.remote_id.borrow_mut() = s("server_id");
            *leaf.remote_name.borrow_mut() = s("server_name");
            *leaf.remote_cluster.borrow_mut() = s("cluster");
            leaf.headers
                .set(info.get("headers").and_then(|v| v.as_bool()) == Some(true));
            if leaf.remote_id.borrow().as_str() == core.server.server_id {
                log_error!("{} - Leafnode connection to self, closing", leaf.label());
                leaf.close("Duplicate Remote LeafNode Connection");
                leaf.refused.set(true);
                return Step::Stop;
            }
            let remote = remote.expect("a spoke has its remote");
            match spoke_connect(core, leaf, remote, &s("nonce")) {
                Ok(line) => leaf.send(&line),
                Err(e) => {
                    log_error!("{} - {e}", leaf.label());
                    leaf.close("Client Closed");
                    return Step::Stop;
                }
            }
            log_debug!("{} - Remote leafnode connect msg sent", leaf.label());
            if info.get("info_on_connect").and_then(|v| v.as_bool()) == Some(true) {
                *phase = Phase::AwaitConnectInfo;
            } else {
                *phase = Phase::Up;
                up(core, leaf);
            }
        }
        (Phase::AwaitConnectInfo, RouteOp::Info(json)) => {
            let info: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
            if let Some(acc) = info.get("remote_account").and_then(|v| v.as_str()) {
                *leaf.remote_account.borrow_mut() = acc.to_string();
            }
            *phase = Phase::Up;
            up(core, leaf);
        }
        (Phase::Up, RouteOp::Info(_)) | (_, RouteOp::Connect(_)) => {}
        (Phase::Up, RouteOp::Sub(i)) => {
            let subject = i.subject;
            if core.is_own_lds(leaf.account.get(), subject) {
                let acc = leaf.account_name.borrow().clone();
                let text = format!(
                    "Loop detected for leafnode account={acc:?}. Delaying attempt to \
                     reconnect for 30s"
                );
                log_error!("{} - {text}", leaf.label());
                leaf.err(&text, "Leafnode Loop Detected");
                leaf.refused.set(true);
                return Step::Stop;
            }
            if !crate::subject::is_valid_subject(subject) {
                return Step::Go;
            }
            // Interest the peer may not receive: a remote's deny_exports.
            if crate::subject::is_literal(subject) && !leaf.exports(subject) {
                return Step::Go;
            }
            let weight = i.queue.map_or(1, |(_, w)| w.max(1));
            core.set_leaf_interest(leaf, subject, i.queue.map(|q| q.0), weight);
        }
        (Phase::Up, RouteOp::Unsub(i)) => {
            core.set_leaf_interest(leaf, i.subject, i.queue.map(|q| q.0), 0);
        }
        (Phase::Up, RouteOp::Msg(m)) => {
            leaf.count_in(m.payload.len());
            if !leaf.imports(m.subject) {
                return Step::Go;
            }
            let part = |p: &[u8]| {
                if p.is_empty() {
                    Bytes::new()
                } else {
                    chunk.slice_ref(p)
                }
            };
            core.deliver_from_leaf(
                leaf,
                part(m.subject),
                part(m.reply),
                m.queues,
                m.hdr_len,
                part(m.payload),
            );
        }
        (_, _) => {
            leaf.err("Authorization Violation", "Authentication Failure");
            return Step::Stop;
        }
    }
    Step::Go
}

/// The handshake is done: register, tell the peer this side's interest, ping.
fn up(core: &Rc<ClusterCore>, leaf: &Rc<Leaf>) {
    leaf.registered.set(true);
    core.register_leaf(leaf);
    leaf.ping();
}

/// Why a hub refuses a leaf's CONNECT.
struct Refusal {
    /// The `-ERR` text.
    text: String,
    /// The close reason.
    reason: &'static str,
    /// The log line, where it is not the `-ERR` text.
    log: Option<String>,
}

fn refuse(text: impl Into<String>, reason: &'static str) -> Refusal {
    Refusal {
        text: text.into(),
        reason,
        log: None,
    }
}

/// Checks a leaf's CONNECT on the hub side and binds the connection to its account.
fn check_connect(core: &ClusterCore, leaf: &Leaf, json: &[u8]) -> Result<(), Refusal> {
    let c: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    // As nats-server logs it: the user named, the peer told less.
    let violation = || Refusal {
        text: "Authorization Violation".into(),
        reason: "Authentication Failure",
        log: Some(match s("user") {
            u if u.is_empty() => "authentication error".into(),
            u => format!("authentication error - User {u:?}"),
        }),
    };
    if !c.is_object() {
        return Err(violation());
    }
    if c.get("lang").is_some() {
        return Err(refuse(
            "attempted to connect to leaf node port",
            "Incorrect Port",
        ));
    }
    if !s("gateway").is_empty() {
        return Err(refuse(
            format!(
                "Rejecting connection from gateway \"{}\" on the leafnode port",
                s("gateway")
            ),
            "Wrong Gateway",
        ));
    }
    let cluster = s("cluster");
    if cluster.contains(' ') {
        return Err(refuse(
            "cluster name cannot contain spaces",
            "Protocol Error",
        ));
    }
    if !cluster.is_empty() && cluster == *core.name.borrow() {
        return Err(refuse(
            "remote leafnode has same cluster name",
            "Cluster Name Conflict",
        ));
    }
    let opts = core.leaf_opts();
    if let Some(min) = &opts.min_version {
        if version_below(&s("version"), min) {
            return Err(refuse(
                format!("connection rejected since minimum version required is {min:?}"),
                "Minimum Version Required",
            ));
        }
    }
    let auth = &opts.auth;
    let (user, pass) = (s("user"), s("pass"));
    let account = if !auth.users.is_empty() {
        let u = auth
            .users
            .iter()
            .find(|u| u.user == user && u.pass == pass)
            .ok_or_else(violation)?;
        u.account.clone()
    } else if let Some(want) = &auth.user {
        if *want != user || auth.pass.as_deref().unwrap_or("") != pass {
            return Err(violation());
        }
        auth.account.clone()
    } else if let Some(trust) = current_trust(core) {
        // Operator mode: the leaf logs in with a user JWT like a client, as a
        // LEAFNODE connection, and is bound to the JWT's account.
        let given = |k: &str| Some(s(k)).filter(|v| !v.is_empty());
        let connect = crate::proto::connect::ConnectOpts {
            jwt: given("jwt"),
            sig: given("sig"),
            user: given("user"),
            ..Default::default()
        };
        let origin = crate::auth::operator::Origin {
            ip: leaf.peer.map(|p| p.ip()),
            kind: "LEAFNODE",
        };
        let now = crate::auth::operator::now();
        match crate::auth::operator::login(&trust, &connect, Some(&leaf.nonce), &origin, now) {
            Ok(id) => id.account.map(|a| a.to_string()),
            Err(why) => {
                if let crate::auth::Failure::Jwt { reason, .. } = &why {
                    log_debug!("{} - {reason}", leaf.label());
                }
                return Err(violation());
            }
        }
    } else {
        auth.account.clone()
    };
    let name = account.unwrap_or_else(|| "$G".into());
    let Some(id) = core.server.account_lookup(&name) else {
        log_error!("{} - Account {name:?} not found", leaf.label());
        return Err(violation());
    };
    leaf.account.set(id);
    *leaf.account_name.borrow_mut() = name;
    *leaf.remote_id.borrow_mut() = s("server_id");
    *leaf.remote_name.borrow_mut() = s("name");
    *leaf.remote_cluster.borrow_mut() = cluster;
    *leaf.remote_account.borrow_mut() = s("remote_account");
    leaf.headers
        .set(c.get("headers").and_then(|v| v.as_bool()) == Some(true));
    // `is_hub`: the peer is the hub of this connection, this server its spoke.
    leaf.spoke
        .set(c.get("is_hub").and_then(|v| v.as_bool()) == Some(true));
    Ok(())
}

/// `version` (as `x.y.z`) is older than `min`.
fn version_below(version: &str, min: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['.', '-'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parse(version) < parse(min)
}

/// Operator mode's trust as it is now (account JWTs change at run time with the
/// full resolver); `None` outside operator mode, which a reload cannot switch on
/// or off, so other servers do not rebuild their authentication per leaf.
fn current_trust(core: &ClusterCore) -> Option<std::sync::Arc<crate::auth::operator::Trust>> {
    core.server.auth.trust.as_ref()?;
    crate::auth::AuthConfig::from_options(&core.server.current_opts())
        .ok()
        .and_then(|a| a.trust)
}

/// The hub's INFO: the first one (with a nonce) on accepting, the `connect_info` one
/// after the leaf's CONNECT was accepted.
fn hub_info(core: &ClusterCore, leaf: &Leaf, first: bool) -> Vec<u8> {
    let account = (!first).then(|| leaf.account_name.borrow().clone());
    hub_info_for(core, leaf.id, account, &leaf.nonce)
}

/// The hub's INFO for connection `id`: the first one when `account` is None, else
/// the `connect_info` one naming the bound account.
fn hub_info_for(core: &ClusterCore, id: u64, account: Option<String>, nonce: &str) -> Vec<u8> {
    let first = account.is_none();
    let server = &core.server;
    let opts = core.leaf_opts();
    let port = core.leaf_port;
    let advertised = opts
        .advertise
        .clone()
        .unwrap_or_else(|| crate::server::listen::local_host_port(&opts.host, port));
    let mut info = serde_json::json!({
        "server_id": server.server_id,
        "server_name": server.server_name,
        "version": crate::server::COMPAT_VERSION,
        "proto": 3,
        "go": format!("natrium {}", crate::server::VERSION),
        "host": opts.host,
        "port": port,
        "headers": !server.opts.no_header_support,
        "auth_required": true,
        "max_payload": server.opts.max_payload,
        "client_id": id,
        "api_lvl": crate::server::API_LEVEL,
    });
    let obj = info.as_object_mut().expect("object");
    if let Some(tls) = &opts.tls {
        obj.insert("tls_required".into(), true.into());
        if tls.verify {
            obj.insert("tls_verify".into(), true.into());
        }
    }
    let cluster = core.name.borrow();
    if !cluster.is_empty() {
        obj.insert("cluster".into(), cluster.clone().into());
    }
    if first {
        obj.insert("nonce".into(), nonce.into());
        obj.insert("info_on_connect".into(), true.into());
        obj.insert("ip".into(), advertised.clone().into());
    } else {
        obj.insert("connect_info".into(), true.into());
        obj.insert("remote_account".into(), account.unwrap_or_default().into());
    }
    let urls: Vec<String> = if opts.no_advertise {
        Vec::new()
    } else {
        vec![advertised]
    };
    obj.insert("leafnode_urls".into(), urls.into());
    link::json_line("INFO", &info)
}

/// A negotiated leaf connection: the stream, the TLS state, bytes already read
/// (the spoke's view of the hub's first INFO) and whether the first INFO was sent.
type Negotiated = (ConnStream, Option<TlsState>, Vec<u8>, bool);

/// The hub's side before the protocol: with `tls {}`, the first INFO in plaintext
/// (it says `tls_required`) and then the TLS handshake; TLS at once with
/// `handshake_first` (the INFO then goes inside it).
async fn hub_negotiate(
    core: &ClusterCore,
    id: u64,
    nonce: &str,
    mut tcp: TcpStream,
    who: &str,
) -> Result<Negotiated, &'static str> {
    let tls = core.leaf_opts().tls.clone();
    let Some(tls) = tls else {
        return Ok((ConnStream::Plain(tcp), None, Vec::new(), false));
    };
    let mut info_sent = false;
    if !tls.handshake_first {
        use futures_lite::AsyncWriteExt;
        let info = hub_info_for(core, id, None, nonce);
        tcp.write_all(&info).await.map_err(|_| "Write Error")?;
        info_sent = true;
    }
    let (stream, state) = crate::net::stream::link_accept(&tls, tcp, "leafnode", who).await?;
    Ok((stream, Some(state), Vec::new(), info_sent))
}

/// The spoke's side before the protocol: TLS at once with `handshake_first`;
/// otherwise the hub's first INFO is read in plaintext, and TLS follows when the
/// remote asks for it (`tls {}`, a `tls://` URL) or the INFO requires it.
async fn spoke_negotiate(
    host: &str,
    remote: &RemoteLeaf,
    mut tcp: TcpStream,
    who: &str,
) -> Result<Negotiated, &'static str> {
    use crate::net::stream::link_dial;
    if let Some(tls) = remote.tls.as_ref().filter(|t| t.handshake_first) {
        let (stream, state) = link_dial(tls, host, tcp, "leafnode", who).await?;
        return Ok((stream, Some(state), Vec::new(), false));
    }
    let (pre, line) = link::read_first_line(&mut tcp, 1 << 16, FIRST_INFO_TIMEOUT)
        .await
        .inspect_err(|why| {
            if *why == "Stale Connection" {
                log_error!("{who} - Did not get the remote leafnode's INFO, timed-out");
            }
        })?;
    let required = pre[..line]
        .strip_prefix(b"INFO ")
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(json.trim_ascii()).ok())
        .and_then(|info| info.get("tls_required").and_then(|v| v.as_bool()))
        .unwrap_or(false);
    if !(required || remote.tls.is_some() || remote.tls_scheme) {
        return Ok((ConnStream::Plain(tcp), None, pre, false));
    }
    if pre.len() > line {
        // A TLS hub says nothing after its INFO until the handshake.
        log_error!("{who} - TLS leafnode handshake error: unexpected data after INFO");
        return Err("TLS Handshake Failure");
    }
    let tls = match &remote.tls {
        Some(t) => t.clone(),
        None => crate::tls::default_dial().map_err(|e| {
            log_error!("{who} - TLS leafnode handshake error: {e}");
            "TLS Handshake Failure"
        })?,
    };
    let (stream, state) = link_dial(&tls, host, tcp, "leafnode", who).await?;
    // The INFO was read in plaintext: the protocol starts with it.
    Ok((stream, Some(state), pre, false))
}

/// The spoke's CONNECT to its hub.
fn spoke_connect(
    core: &ClusterCore,
    leaf: &Leaf,
    remote: &RemoteLeaf,
    nonce: &str,
) -> Result<Vec<u8>, String> {
    let mut c = serde_json::json!({
        "version": crate::server::COMPAT_VERSION,
        "server_id": core.server.server_id,
        "name": core.server.server_name,
        "cluster": *core.name.borrow(),
        "headers": !core.server.opts.no_header_support,
        "compress_mode": "not supported",
        "remote_account": *leaf.account_name.borrow(),
        "protocol": 3,
    });
    let obj = c.as_object_mut().expect("object");
    if remote.hub {
        obj.insert("is_hub".into(), true.into());
    }
    if !remote.deny_imports.is_empty() {
        obj.insert("deny_pub".into(), remote.deny_imports.clone().into());
    }
    if let Some(u) = &leaf.url {
        match (&u.user, &u.pass) {
            (Some(user), Some(pass)) => {
                obj.insert("user".into(), user.clone().into());
                obj.insert("pass".into(), pass.clone().into());
            }
            // A URL with only a user name carries a token, as nats-server reads it.
            (Some(token), None) => {
                obj.insert("auth_token".into(), token.clone().into());
            }
            _ => {}
        }
    }
    if let Some(path) = &remote.credentials {
        // A `.creds` file: its user JWT, and the hub's nonce signed with its seed
        // (read at every connect, as nats-server does, so a new file is picked up).
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("Error reading credentials file {path:?}: {e}"))?;
        let (Some(jwt), Some(seed)) = crate::auth::jwt::parse_decorated(&text) else {
            return Err(format!(
                "Error reading credentials file {path:?}: no JWT and seed"
            ));
        };
        let key = nkeys::KeyPair::from_seed(&seed)
            .map_err(|e| format!("Error reading credentials file {path:?}: {e}"))?;
        let sig = key
            .sign(nonce.as_bytes())
            .map_err(|e| format!("Error signing the hub's nonce: {e}"))?;
        obj.insert("jwt".into(), jwt.into());
        obj.insert(
            "sig".into(),
            data_encoding::BASE64URL_NOPAD.encode(&sig).into(),
        );
    }
    Ok(link::json_line("CONNECT", &c))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_compare_as_numbers() {
        assert!(super::version_below("2.9.0", "2.10.0"));
        assert!(!super::version_below("2.15.1", "2.10.0"));
        assert!(!super::version_below("2.10.0", "2.10.0"));
    }
}
