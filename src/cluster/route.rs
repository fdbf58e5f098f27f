//! One route connection: the handshake (INFO and CONNECT, either side first), the
//! read loop over the route protocol, the writer and the pings.
//!
//! natrium announces no `route_pool_size` and no `compression`, so a nats-server 2.15
//! peer treats it as a "no pool" server: one connection per peer pair carries every
//! account, with account names on every line.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpStream;

use super::link::{self, Link, LinkKind, Step};
use super::{ClusterCore, InterestKey};
use crate::config::cluster::RouteUrl;
use crate::proto::route::RouteOp;
use crate::{log_debug, log_error, log_info};

/// How long to wait before dialing a route again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// One route connection.
pub struct Route {
    /// The connection itself.
    pub link: Rc<Link>,
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
    /// The websocket URLs the peer announced (`ws_connect_urls`).
    pub ws_urls: RefCell<Vec<String>>,
    /// Both sides support headers.
    pub headers: Cell<bool>,
    /// What the peer wants: (account, subject, queue) -> weight.
    pub interest: RefCell<HashMap<InterestKey, u32>>,
    /// Dialed because the configuration lists it.
    pub configured: bool,
    /// The URL it was dialed at.
    pub url: Option<RouteUrl>,
    registered: Cell<bool>,
}

impl std::ops::Deref for Route {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.link
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
        match link::dial(&url.host_port()).await {
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
    // With cluster TLS the handshake comes before any protocol byte, both ways.
    let tls = core.opts.borrow().tls.clone();
    let dial = match (&tls, &url) {
        (Some(t), Some(u)) => t.dial.as_ref().map(|d| (d, u.host.as_str())),
        _ => None,
    };
    let serve_tls = if url.is_none() { tls.as_ref() } else { None };
    let (id, stream, state) = match link::secure(&core, LinkKind::Route, tcp, serve_tls, dial).await
    {
        Ok(v) => v,
        Err((who, reason)) => {
            log_info!("{who} - Router connection closed: {reason}");
            return Ended::Closed(None);
        }
    };
    let link = Rc::new(Link::with_stream(
        &core,
        LinkKind::Route,
        url.is_some(),
        id,
        stream,
        state,
    ));
    let route = Rc::new(Route {
        link: link.clone(),
        configured,
        url: url.clone(),
        remote_id: RefCell::new(String::new()),
        remote_name: RefCell::new(String::new()),
        remote_url: RefCell::new(None),
        remote_info: RefCell::new(None),
        client_urls: RefCell::new(Vec::new()),
        ws_urls: RefCell::new(Vec::new()),
        headers: Cell::new(false),
        interest: RefCell::new(HashMap::new()),
        registered: Cell::new(false),
    });
    log_info!("{} - Route connection created", route.label());
    let writer = glommio::spawn_local(link::write_loop(link.clone()));
    let pinging = core.clone();
    let pinger = glommio::spawn_local(link::ping_loop(link.clone(), move || {
        let o = pinging.opts.borrow();
        (o.ping_interval, o.ping_max)
    }));
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
    let mut phase = phase;
    let end = link::read_loop(&core, &link, &[], |chunk, op| {
        apply(&core, &route, chunk, op, &mut phase)
    })
    .await;
    let to_self = matches!(end, Step::ToSelf);
    route.close(route.close_reason());
    writer.await;
    pinger.cancel().await;
    route.shutdown();
    if route.registered.get() {
        core.unregister(&route);
    }
    log_info!(
        "{} - Router connection closed: {}",
        route.label(),
        route.close_reason()
    );
    if to_self {
        return Ended::ToSelf;
    }
    let remote = route.remote_id.borrow().clone();
    Ended::Closed((!remote.is_empty()).then_some(remote))
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
        RouteOp::Pong => route.pong(),
        // Only gateways speak of whole accounts; the route parser never makes these.
        RouteOp::Ok | RouteOp::AccountSub(_) | RouteOp::AccountUnsub(_) => {}
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
                if reason == "Authentication Failure" {
                    // nats-server's words for a refused route login.
                    log_error!("{} - authentication error", route.label());
                } else {
                    log_error!("{} - {text}", route.label());
                }
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
            if !core.route_exports(i.subject) {
                log_debug!(
                    "{} - Can not export {:?}, ignoring remote subscription request",
                    route.label(),
                    String::from_utf8_lossy(i.subject)
                );
                return Step::Go;
            }
            let weight = i.queue.map_or(1, |(_, w)| w.max(1));
            core.set_route_interest(route, account, i.subject, i.queue.map(|q| q.0), weight);
        }
        RouteOp::Unsub(i) => {
            if let Some(account) = core.account_by_name(i.account) {
                core.set_route_interest(route, account, i.subject, i.queue.map(|q| q.0), 0);
            }
        }
        RouteOp::Msg(m) => {
            route.count_in(m.payload.len());
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
            if core.gateways_enabled() && super::gateway::is_routed_reply(m.subject) {
                core.deliver_routed_reply(
                    false,
                    account,
                    part(m.subject),
                    part(m.reply),
                    m.queues,
                    m.hdr_len,
                    part(m.payload),
                );
                return Step::Go;
            }
            core.deliver_from_cluster_link(
                super::deliver::Source::Route,
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
    let opts = core.opts.borrow();
    if opts.tls.as_ref().is_some_and(|t| t.map) {
        // verify_and_map: the certificate names the cluster user; nothing else counts.
        let user = opts.auth.as_ref().and_then(|a| a.user.as_deref());
        let cert = route.tls.as_ref().and_then(|t| t.peer.as_ref());
        let named = match (user, cert) {
            (Some(u), Some(c)) => c.map_user(std::iter::once(u)).is_some(),
            _ => false,
        };
        if !named {
            return Err(violation());
        }
    } else if opts.auth.as_ref().is_some_and(|a| !a.accepts(&c)) {
        return Err(violation());
    }
    drop(opts);
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
        existing.shutdown();
        core.unregister(&existing);
        existing.registered.set(false);
    }
    *route.client_urls.borrow_mut() = urls_of(info, "connect_urls");
    *route.ws_urls.borrow_mut() = urls_of(info, "ws_connect_urls");
    route.registered.set(true);
    core.register(route);
    core.gossip_gateways_to(route);
    core.refresh_connect_urls();
    route.ping();
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
        Some(link::json_line("INFO", &info))
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
fn urls_of(info: &serde_json::Value, key: &str) -> Vec<String> {
    info.get(key)
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
    if core.on_route_gateway_info(info) {
        return;
    }
    let id = info.get("server_id").and_then(|v| v.as_str()).unwrap_or("");
    if id == *route.remote_id.borrow() {
        let ldm = info.get("ldm").and_then(|v| v.as_bool()) == Some(true);
        let urls = |key| if ldm { Vec::new() } else { urls_of(info, key) };
        *route.client_urls.borrow_mut() = urls("connect_urls");
        *route.ws_urls.borrow_mut() = urls("ws_connect_urls");
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
    // Dial whatever the ids: a nats-server seed tells only the servers that were
    // there before of a newcomer (not the newcomer of them), so waiting for the
    // other side to dial can wait for ever. Two servers that dial each other at
    // once keep one route (see the duplicate check in `handshake_done`).
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
    if opts.tls.is_some() {
        obj.insert("tls_required".into(), true.into());
        obj.insert("tls_verify".into(), true.into());
    }
    if let Some(p) = &opts.permissions {
        // As nats-server announces them: import is the publish side, export the
        // subscribe side.
        for (key, side) in [("import", &p.publish), ("export", &p.subscribe)] {
            if let Some(side) = side {
                obj.insert(key.into(), permission_json(side));
            }
        }
    }
    if core.dynamic.get() {
        obj.insert("cluster_dynamic".into(), true.into());
    }
    if nonce {
        obj.insert("nonce".into(), link::random_nonce().into());
    }
    if !opts.no_advertise {
        obj.insert("connect_urls".into(), server.own_client_urls().into());
        let ws = server.own_ws_urls();
        if !ws.is_empty() {
            obj.insert("ws_connect_urls".into(), ws.into());
        }
    }
    link::json_line("INFO", &info)
}

/// `{"allow":[...],"deny":[...]}` of one side of the cluster's permissions.
fn permission_json(p: &crate::auth::permissions::SubjectPerm) -> serde_json::Value {
    let list = |l: &Option<Vec<crate::auth::permissions::PermEntry>>| {
        l.as_ref()
            .map(|v| v.iter().map(|e| e.subject.clone()).collect::<Vec<_>>())
    };
    let mut m = serde_json::Map::new();
    if let Some(a) = list(&p.allow) {
        m.insert("allow".into(), a.into());
    }
    if let Some(d) = list(&p.deny) {
        m.insert("deny".into(), d.into());
    }
    serde_json::Value::Object(m)
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
        "tls_required": core.opts.borrow().tls.is_some(),
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
    link::json_line("CONNECT", &c)
}
