//! The smaller endpoints: `/` (index), `/routez` and `/leafz` (from the cluster core),
//! `/gatewayz` (from the cluster core), `/accountz`, `/accstatz`, `/healthz`,
//! and process figures.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::connz::account_label;
use super::format::{rfc3339, to_json, to_json_compact};
use super::http::{Request, Response};
use super::query::{bool_param, subs_param};
use super::subsz::{account_sublist_stats, SublistStatz};
use super::Monitor;
use crate::cluster::snapshot::{LeafSnapshot, RouteSnapshot};
use crate::server::{ServerShared, COMPAT_VERSION};
use crate::shard::snapshot::ShardSnapshot;

/// The endpoints listed on the index page.
const LINKS: [(&str, &str); 10] = [
    ("varz", "General"),
    ("connz", "Connections"),
    ("accountz", "Accounts"),
    ("accstatz", "Account Stats"),
    ("subsz", "Subscriptions"),
    ("routez", "Routes"),
    ("leafz", "LeafNodes"),
    ("gatewayz", "Gateways"),
    ("healthz", "Health Probe"),
    ("metrics", "Prometheus Metrics"),
];

pub(super) fn index(_m: &Monitor) -> Response {
    let mut html = String::from(
        "<html lang=\"en\">\n<head>\n<title>natrium monitoring</title>\n\
         <style type=\"text/css\">body { font-family: sans-serif; margin-left: 32px } \
         a { display: block; padding-bottom: 6px }</style>\n</head>\n<body>\n",
    );
    html.push_str(&format!(
        "<h1>natrium</h1>\n<p>compatible with nats-server v{COMPAT_VERSION}</p>\n"
    ));
    for (path, title) in LINKS {
        html.push_str(&format!(
            "<a href=./{path}>{title} <small>/{path}</small></a>\n"
        ));
    }
    html.push_str("</body>\n</html>\n");
    Response {
        status: 200,
        content_type: "text/html; charset=utf-8",
        cors: false,
        body: html.into_bytes(),
    }
}

/// The `/routez` document.
#[derive(Serialize)]
pub struct Routez {
    server_id: String,
    server_name: String,
    now: String,
    num_routes: usize,
    routes: Vec<RouteInfo>,
}

#[derive(Serialize)]
struct RouteInfo {
    rid: u64,
    remote_id: String,
    remote_name: String,
    did_solicit: bool,
    is_configured: bool,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    rtt: String,
    uptime: String,
    idle: String,
    pending_size: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions_list: Option<Vec<String>>,
    compression: &'static str,
}

pub(super) fn routez(m: &Monitor, req: &Request) -> Result<Response, String> {
    let (list, detail) = subs_param(req)?;
    let subs = list || detail;
    let body = routez_doc(&m.server, subs, m.server.cluster_snapshot(subs).routes);
    Ok(Response::json(to_json(&body)))
}

/// The `/routez` document from the cluster core's snapshot.
pub fn routez_doc(server: &ServerShared, subs: bool, routes: Vec<RouteSnapshot>) -> Routez {
    let now = SystemTime::now();
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let routes: Vec<RouteInfo> = routes
        .into_iter()
        .map(|r| RouteInfo {
            rid: r.rid,
            remote_id: r.remote_id,
            remote_name: r.remote_name,
            did_solicit: r.did_solicit,
            is_configured: r.is_configured,
            ip: r.ip,
            port: r.port,
            start: rfc3339(r.start),
            last_activity: rfc3339(r.last_activity),
            rtt: r.rtt.map(super::format::rtt).unwrap_or_default(),
            uptime: super::format::uptime(since(r.start)),
            idle: super::format::uptime(since(r.last_activity)),
            pending_size: r.pending_size,
            in_msgs: r.in_msgs,
            out_msgs: r.out_msgs,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            subscriptions: r.subscriptions.len(),
            subscriptions_list: (subs && !r.subscriptions.is_empty()).then_some(r.subscriptions),
            compression: "off",
        })
        .collect();
    Routez {
        server_id: server.server_id.clone(),
        server_name: server.server_name.clone(),
        now: rfc3339(now),
        num_routes: routes.len(),
        routes,
    }
}

/// The `/gatewayz` document.
#[derive(Serialize)]
pub struct Gatewayz {
    server_id: String,
    now: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// `null` when a `gw_name` filter matches no outbound gateway, as nats-server.
    outbound_gateways: Option<BTreeMap<String, GatewayInfo>>,
    inbound_gateways: BTreeMap<String, Vec<GatewayInfo>>,
}

#[derive(Serialize)]
struct GatewayInfo {
    configured: bool,
    connection: GatewayConn,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<Vec<GatewayAccount>>,
}

#[derive(Serialize)]
struct GatewayConn {
    cid: u64,
    kind: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    rtt: String,
    uptime: String,
    idle: String,
    pending_bytes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    name: String,
}

#[derive(Serialize)]
struct GatewayAccount {
    name: String,
    interest_mode: &'static str,
    interest_only_threshold: u32,
    #[serde(skip_serializing_if = "is_zero")]
    num_subs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(super) fn gatewayz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let accs = bool_param(req, "accs")?;
    subs_param(req)?;
    let only = req.get("gw_name").unwrap_or_default().to_string();
    let snaps = m.server.cluster_snapshot(false).gateways;
    Ok(Response::json(to_json(&gatewayz_doc(
        &m.server, snaps, accs, &only,
    ))))
}

/// The `/gatewayz` document from the cluster core's snapshot: every gateway, or the
/// one named `only`; with `accs`, each connection's accounts.
pub fn gatewayz_doc(
    server: &ServerShared,
    gateways: Vec<crate::cluster::snapshot::GatewaySnapshot>,
    accs: bool,
    only: &str,
) -> Gatewayz {
    let now = SystemTime::now();
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let g = server.opts.gateway.as_ref();
    let mut doc = Gatewayz {
        server_id: server.server_id.clone(),
        now: rfc3339(now),
        name: g.map(|g| g.name.clone()),
        host: g.map(|g| g.host.clone()),
        port: g.map(|_| {
            server
                .gateway_port
                .load(std::sync::atomic::Ordering::Relaxed) as u16
        }),
        outbound_gateways: Some(BTreeMap::new()),
        inbound_gateways: BTreeMap::new(),
    };
    for s in gateways {
        if !only.is_empty() && s.name != only {
            continue;
        }
        let accounts = accs.then(|| {
            s.accounts
                .iter()
                .map(|(name, n)| GatewayAccount {
                    name: name.clone(),
                    interest_mode: "Interest-Only",
                    interest_only_threshold: 1000,
                    num_subs: *n,
                })
                .collect()
        });
        let info = GatewayInfo {
            configured: s.configured,
            connection: GatewayConn {
                cid: s.id,
                kind: "Gateway",
                ip: s.ip,
                port: s.port,
                start: rfc3339(s.start),
                last_activity: rfc3339(s.last_activity),
                rtt: s.rtt.map_or_else(|| "0s".into(), super::format::rtt),
                uptime: super::format::uptime(since(s.start)),
                idle: super::format::uptime(since(s.last_activity)),
                pending_bytes: s.pending,
                in_msgs: s.in_msgs,
                out_msgs: s.out_msgs,
                in_bytes: s.in_bytes,
                out_bytes: s.out_bytes,
                subscriptions: s.subscriptions,
                name: s.remote_id,
            },
            accounts,
        };
        if s.outbound {
            doc.outbound_gateways
                .get_or_insert_with(BTreeMap::new)
                .insert(s.name, info);
        } else {
            doc.inbound_gateways.entry(s.name).or_default().push(info);
        }
    }
    if !only.is_empty() && doc.outbound_gateways.as_ref().is_some_and(|m| m.is_empty()) {
        doc.outbound_gateways = None;
    }
    doc
}

/// The `/leafz` document.
#[derive(Serialize)]
pub struct Leafz {
    server_id: String,
    now: String,
    leafnodes: usize,
    leafs: Vec<LeafInfo>,
}

#[derive(Serialize)]
struct LeafInfo {
    id: u64,
    name: String,
    is_spoke: bool,
    account: String,
    ip: String,
    port: u16,
    rtt: String,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions_list: Option<Vec<String>>,
    compression: &'static str,
}

pub(super) fn leafz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let subs = bool_param(req, "subs")?;
    let acc = req.get("acc").unwrap_or_default();
    let leafs = m.server.cluster_snapshot(subs).leafs;
    Ok(Response::json(to_json(&leafz_doc(
        &m.server, subs, acc, leafs,
    ))))
}

/// The `/leafz` document from the cluster core's snapshot: every leaf connection, or
/// those bound to account `acc` when it is not empty.
pub fn leafz_doc(server: &ServerShared, subs: bool, acc: &str, leafs: Vec<LeafSnapshot>) -> Leafz {
    let leafs: Vec<LeafInfo> = leafs
        .into_iter()
        .filter(|l| acc.is_empty() || l.account == acc)
        .map(|l| LeafInfo {
            id: l.id,
            name: l.name,
            is_spoke: l.is_spoke,
            account: l.account,
            ip: l.ip,
            port: l.port,
            rtt: l.rtt.map(super::format::rtt).unwrap_or_default(),
            in_msgs: l.in_msgs,
            out_msgs: l.out_msgs,
            in_bytes: l.in_bytes,
            out_bytes: l.out_bytes,
            subscriptions: l.subscriptions.len(),
            subscriptions_list: (subs && !l.subscriptions.is_empty()).then_some(l.subscriptions),
            compression: "off",
        })
        .collect();
    Leafz {
        server_id: server.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        leafnodes: leafs.len(),
        leafs,
    }
}

/// One account in `/accountz?acc=` (and `$SYS.REQ.ACCOUNT.<acc>.INFO`).
#[derive(Serialize)]
pub struct AccountDetail {
    account_name: String,
    update_time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_system: bool,
    expired: bool,
    complete: bool,
    jetstream_enabled: bool,
    leafnode_connections: usize,
    client_connections: usize,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<ExportInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    imports: Vec<ImportInfo>,
    name_tag: String,
    sublist_stats: SublistStatz,
    /// Subject mappings: source -> destinations with cumulative weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    mappings: Option<std::collections::BTreeMap<String, Vec<serde_json::Value>>>,
}

/// One export in `/accountz?acc=`.
#[derive(Serialize)]
struct ExportInfo {
    subject: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<&'static str>,
}

/// One import in `/accountz?acc=`, the system account's service imports included.
#[derive(Serialize)]
struct ImportInfo {
    subject: String,
    account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    local_subject: String,
    #[serde(rename = "type")]
    kind: &'static str,
    invalid: bool,
    share: bool,
    tracking: bool,
}

/// `acc`'s exports and imports as nats-server lists them.
fn exports_and_imports(
    auth: &crate::auth::AuthConfig,
    acc: &str,
    system: Option<&str>,
) -> (Vec<ExportInfo>, Vec<ImportInfo>) {
    use crate::account::imports::{ResponseType, Rewrite};
    let mut exports: Vec<ExportInfo> = auth
        .service_exports
        .iter()
        .filter(|(a, _)| &**a == acc)
        .map(|(_, e)| ExportInfo {
            subject: e.subject.clone(),
            kind: "service",
            response_type: Some(match e.response {
                ResponseType::Singleton => "Singleton",
                ResponseType::Stream => "Streamed",
                ResponseType::Chunked => "Chunked",
            }),
        })
        .collect();
    exports.extend(
        auth.stream_exports
            .iter()
            .filter(|(a, _)| &**a == acc)
            .map(|(_, e)| ExportInfo {
                subject: e.subject.clone(),
                kind: "stream",
                response_type: None,
            }),
    );
    let import =
        |subject: String, account: String, to: Option<String>, local: String, kind, share| {
            ImportInfo {
                subject,
                account,
                to,
                local_subject: local,
                kind,
                invalid: false,
                share,
                tracking: false,
            }
        };
    let mut imports: Vec<ImportInfo> = Vec::new();
    for i in auth.stream_imports.iter().filter(|i| &*i.into == acc) {
        let (to, local) = match &i.rewrite {
            Rewrite::Keep => (None, i.subject.clone()),
            Rewrite::Prefix(p) => (None, format!("{p}.{}", i.subject)),
            Rewrite::To(t) => (Some(t.clone()), t.clone()),
        };
        imports.push(import(
            i.subject.clone(),
            i.from.to_string(),
            to,
            local,
            "stream",
            false,
        ));
    }
    for i in auth.service_imports.iter().filter(|i| &*i.into == acc) {
        let to = Some(i.local.clone());
        imports.push(import(
            i.subject.clone(),
            i.from.to_string(),
            to,
            i.local.clone(),
            "service",
            false,
        ));
    }
    if let Some(sys) = system.filter(|s| *s != acc) {
        let connz = format!("$SYS.REQ.ACCOUNT.{acc}.CONNZ");
        for (subject, to, share) in [
            (connz.clone(), "$SYS.REQ.ACCOUNT.PING.CONNZ", false),
            (connz, "$SYS.REQ.SERVER.PING.CONNZ", false),
            (
                format!("$SYS.REQ.ACCOUNT.{acc}.STATZ"),
                "$SYS.REQ.ACCOUNT.PING.STATZ",
                false,
            ),
            (
                format!("$SYS.REQ.USER.{acc}.INFO"),
                "$SYS.REQ.USER.INFO",
                true,
            ),
        ] {
            imports.push(import(
                subject,
                sys.to_string(),
                Some(to.into()),
                to.into(),
                "service",
                share,
            ));
        }
    }
    (exports, imports)
}

/// The `/accountz` document.
#[derive(Serialize)]
pub struct Accountz {
    server_id: String,
    now: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    system_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_detail: Option<AccountDetail>,
}

pub(super) fn accountz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let acc = req.get("acc").unwrap_or("");
    let snaps = if acc.is_empty() {
        Vec::new()
    } else {
        m.snapshots(true)
    };
    Ok(Response::json(to_json(&accountz_doc(
        &m.server, acc, &snaps,
    )?)))
}

/// Every account's name, the system account's included.
fn all_accounts(server: &ServerShared) -> Vec<String> {
    let mut names = server.account_names();
    if let Some(sys) = super::varz::system_account(&server.current_opts()) {
        if !names.contains(&sys) {
            names.push(sys);
        }
    }
    names
}

/// The `/accountz` document: the account names, or one account's detail (from
/// snapshots taken with their subscriptions).
pub fn accountz_doc(
    server: &ServerShared,
    acc: &str,
    snaps: &[ShardSnapshot],
) -> Result<Accountz, String> {
    let system = super::varz::system_account(&server.current_opts());
    let mut body = Accountz {
        server_id: server.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        system_account: system.clone().unwrap_or_default(),
        accounts: None,
        account_detail: None,
    };
    if acc.is_empty() {
        body.accounts = Some(all_accounts(server));
    } else {
        body.account_detail = Some(account_detail(server, acc, snaps)?);
    }
    Ok(body)
}

/// One account's detail, or nats-server's error when there is no such account.
pub fn account_detail(
    server: &ServerShared,
    acc: &str,
    snaps: &[ShardSnapshot],
) -> Result<AccountDetail, String> {
    if !all_accounts(server).iter().any(|n| n == acc) {
        return Err(format!("Account {acc} does not exist"));
    }
    let system = super::varz::system_account(&server.current_opts());
    let conns = snaps.iter().flat_map(|s| s.conns.iter());
    let (clients, subscriptions) = conns
        .filter(|c| account_label(c) == acc)
        .fold((0, 0), |(n, s), c| (n + 1, s + c.num_subs));
    let stats = match server.account_lookup(acc) {
        Some(id) => account_sublist_stats(snaps, id.index()),
        None => account_sublist_stats(&[], 0),
    };
    // Read from the options in force (cold: a monitoring request).
    let auth = crate::auth::AuthConfig::from_options(&server.current_opts()).ok();
    let (exports, imports) = auth
        .as_ref()
        .map(|a| exports_and_imports(a, acc, system.as_deref()))
        .unwrap_or_default();
    let mappings = auth
        .and_then(|auth| {
            let list = auth.mappings.into_iter().find(|(a, _)| &**a == acc)?.1;
            let map: std::collections::BTreeMap<String, Vec<serde_json::Value>> = list
                .iter()
                .map(|m| {
                    let dests = m
                        .destinations()
                        .into_iter()
                        .map(|(subject, weight)| serde_json::json!({"subject": subject, "weight": weight}))
                        .collect();
                    (String::from_utf8_lossy(m.source()).into_owned(), dests)
                })
                .collect();
            (!map.is_empty()).then_some(map)
        });
    Ok(AccountDetail {
        exports,
        imports,
        mappings,
        account_name: acc.into(),
        update_time: rfc3339(server.monitor.start),
        is_system: system.as_deref() == Some(acc),
        expired: false,
        complete: true,
        jetstream_enabled: false,
        leafnode_connections: 0,
        client_connections: clients,
        subscriptions,
        name_tag: acc.into(),
        sublist_stats: stats,
    })
}

#[derive(Serialize, Default)]
struct MsgBytes {
    msgs: u64,
    bytes: u64,
}

#[derive(Serialize, Default)]
struct DataStats {
    msgs: u64,
    bytes: u64,
    gateways: MsgBytes,
    routes: MsgBytes,
    leafs: MsgBytes,
}

/// One account's connection and message counts (`/accstatz`, `$SYS` CONNS events).
#[derive(Serialize)]
pub struct AccountStat {
    acc: String,
    name: String,
    conns: usize,
    leafnodes: usize,
    total_conns: usize,
    num_subscriptions: usize,
    sent: DataStats,
    received: DataStats,
    slow_consumers: u64,
}

impl AccountStat {
    /// Open client connections of the account.
    pub fn conns(&self) -> usize {
        self.conns
    }
}

/// The `/accstatz` document.
#[derive(Serialize)]
pub struct Accstatz {
    server_id: String,
    now: String,
    account_statz: Vec<AccountStat>,
}

pub(super) fn accstatz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let unused = bool_param(req, "unused")?;
    let snaps = m.snapshots(false);
    Ok(Response::json(to_json(&accstatz_doc(
        &m.server,
        unused,
        &[],
        &snaps,
    ))))
}

impl Accstatz {
    /// No account listed.
    pub fn is_empty(&self) -> bool {
        self.account_statz.is_empty()
    }
}

/// `acc`'s counts: its open connections and what they sent and received, and its
/// subscriptions on every shard.
pub fn account_stat(server: &ServerShared, acc: &str, snaps: &[ShardSnapshot]) -> AccountStat {
    let mut st = AccountStat {
        acc: acc.into(),
        name: acc.into(),
        conns: 0,
        leafnodes: 0,
        total_conns: 0,
        num_subscriptions: 0,
        sent: DataStats::default(),
        received: DataStats::default(),
        slow_consumers: 0,
    };
    for c in snaps
        .iter()
        .flat_map(|s| s.conns.iter())
        .filter(|c| account_label(c) == acc)
    {
        st.conns += 1;
        st.sent.msgs += c.out_msgs;
        st.sent.bytes += c.out_bytes;
        st.received.msgs += c.in_msgs;
        st.received.bytes += c.in_bytes;
    }
    st.total_conns = st.conns;
    if let Some(id) = server.account_lookup(acc) {
        st.num_subscriptions = account_sublist_stats(snaps, id.index()).num_subscriptions;
    }
    st
}

/// The `/accstatz` document: accounts with connections (all with `unused`), only
/// those named in `only` when it is not empty.
pub fn accstatz_doc(
    server: &ServerShared,
    unused: bool,
    only: &[String],
    snaps: &[ShardSnapshot],
) -> Accstatz {
    let mut names = all_accounts(server);
    if !only.is_empty() {
        names.retain(|n| only.contains(n));
    }
    let list = names
        .iter()
        .map(|n| account_stat(server, n, snaps))
        .filter(|s| unused || s.conns > 0)
        .collect();
    Accstatz {
        server_id: server.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        account_statz: list,
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// `/healthz`: core NATS is healthy once it serves; JetStream options are checked for
/// syntax only.
pub(super) fn healthz(req: &Request) -> Result<Response, String> {
    for key in [
        "js-enabled-only",
        "js-server-only",
        "js-meta-only",
        "js-enabled",
        "details",
    ] {
        bool_param(req, key)?;
    }
    Ok(Response::json(to_json_compact(&Health { status: "ok" })))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// Resident set size in bytes (`/proc/self/statm`).
pub fn process_rss() -> u64 {
    statm(1)
}

/// Virtual memory size in bytes.
pub fn process_vsize() -> u64 {
    statm(0)
}

fn statm(field: usize) -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(field)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size())
}

/// User plus system CPU time of the process, in seconds (`/proc/self/stat`).
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14, stime 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// Open file descriptors of the process.
pub fn process_open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The process's soft limit on open files.
pub fn process_max_fds() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}
