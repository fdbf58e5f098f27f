//! `/varz`: server settings and totals, with nats-server's field names and order.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::format::{go_float, rfc3339, secs, to_json, uptime};
use super::http::Response;
use super::Monitor;
use crate::cluster::snapshot::LinkCounts;
use crate::server::{ServerShared, COMPAT_VERSION, VERSION};
use crate::shard::snapshot::ShardSnapshot;

/// A block of a feature natrium does not have yet: `{}`.
#[derive(Serialize)]
pub struct Empty {}

/// The `cluster` section: empty without a cluster, as nats-server shows it.
#[derive(Serialize, Default)]
pub struct VarzCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_port: Option<u16>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    auth_timeout: Option<f64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    tls_timeout: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_verify: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert_not_after: Option<String>,
}

/// nats-server's TLS timeout when none is configured, and the auth timeout that
/// follows from it (the TLS timeout plus one second with TLS, else two seconds).
fn tls_timeouts(
    tls: Option<&crate::tls::TlsConfig>,
    auth: Option<std::time::Duration>,
) -> (f64, f64) {
    let tls_timeout = tls.map_or(2.0, |t| secs(t.timeout));
    let auth = auth.map_or(
        if tls.is_some() {
            tls_timeout + 1.0
        } else {
            2.0
        },
        secs,
    );
    (auth, tls_timeout)
}

/// `tls_cert_not_after` of a served certificate.
fn not_after(tls: Option<&crate::tls::TlsConfig>) -> Option<String> {
    tls.and_then(|t| super::format::cert_not_after(&t.cert_file))
        .map(super::format::rfc3339)
}

impl VarzCluster {
    fn of(server: &ServerShared) -> VarzCluster {
        let Some(c) = &server.opts.cluster else {
            // A gateway alone names the cluster, and that is all nats-server shows.
            return VarzCluster {
                name: server.opts.gateway.as_ref().map(|g| g.name.clone()),
                ..Default::default()
            };
        };
        let (timeout, tls_timeout) =
            tls_timeouts(c.tls.as_ref(), c.auth.as_ref().and_then(|a| a.timeout));
        VarzCluster {
            name: c.name.clone(),
            addr: Some(c.host.clone()),
            cluster_port: Some(
                server
                    .cluster_port
                    .load(std::sync::atomic::Ordering::Relaxed) as u16,
            ),
            auth_timeout: Some(timeout),
            tls_timeout: Some(tls_timeout),
            tls_required: c.tls.is_some(),
            tls_verify: c.tls.is_some(),
            urls: c.routes.iter().map(|u| u.host_port()).collect(),
            pool_size: Some(c.pool_size),
            tls_cert_not_after: not_after(c.tls.as_ref()),
        }
    }
}

/// `/varz` `gateway`: nats-server's fields, `{}` without a `gateway {}` block.
#[derive(Serialize, Default)]
struct VarzGateway {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    auth_timeout: Option<f64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    tls_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gateways: Vec<VarzRemoteGateway>,
}

#[derive(Serialize)]
struct VarzRemoteGateway {
    name: String,
    urls: Vec<String>,
}

impl VarzGateway {
    fn of(server: &ServerShared) -> VarzGateway {
        let Some(g) = &server.opts.gateway else {
            return VarzGateway::default();
        };
        let (timeout, tls_timeout) =
            tls_timeouts(g.tls.as_ref(), g.auth.as_ref().and_then(|a| a.timeout));
        VarzGateway {
            name: Some(g.name.clone()),
            host: Some(g.host.clone()),
            port: Some(
                server
                    .gateway_port
                    .load(std::sync::atomic::Ordering::Relaxed) as u16,
            ),
            auth_timeout: Some(timeout),
            tls_timeout: Some(tls_timeout),
            gateways: g
                .gateways
                .iter()
                .map(|r| VarzRemoteGateway {
                    name: r.name.clone(),
                    urls: r.urls.iter().map(|u| u.host_port()).collect(),
                })
                .collect(),
        }
    }
}

/// `/varz` `leaf`: nats-server's fields, `{}` without a `leafnodes {}` block; the
/// listener's fields only when it listens.
#[derive(Serialize, Default)]
struct VarzLeaf {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    auth_timeout: Option<f64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    tls_timeout: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_verify: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remotes: Vec<VarzRemoteLeaf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert_not_after: Option<String>,
}

#[derive(Serialize)]
struct VarzRemoteLeaf {
    local_account: String,
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny: Option<VarzDeny>,
}

#[derive(Serialize)]
struct VarzDeny {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    imports: Vec<String>,
}

impl VarzLeaf {
    fn of(server: &ServerShared) -> VarzLeaf {
        let Some(l) = &server.opts.leafnodes else {
            return VarzLeaf::default();
        };
        let port = server.leaf_port.load(std::sync::atomic::Ordering::Relaxed) as u16;
        let listening = port != 0;
        let remotes = l
            .remotes
            .iter()
            .map(|r| VarzRemoteLeaf {
                local_account: r.account.clone().unwrap_or_else(|| "$G".into()),
                urls: r.urls.iter().map(|u| u.host_port()).collect(),
                deny: (!r.deny_exports.is_empty() || !r.deny_imports.is_empty()).then(|| {
                    VarzDeny {
                        exports: r.deny_exports.clone(),
                        imports: r.deny_imports.clone(),
                    }
                }),
            })
            .collect();
        let tls = l.tls.as_ref().filter(|_| listening);
        let (auth_timeout, tls_timeout) = tls_timeouts(tls, l.auth.timeout);
        VarzLeaf {
            host: listening.then(|| l.host.clone()),
            port: listening.then_some(port),
            auth_timeout: listening.then_some(auth_timeout),
            tls_timeout: listening.then_some(tls_timeout),
            tls_required: tls.is_some(),
            tls_verify: tls.is_some_and(|t| t.verify),
            remotes,
            tls_cert_not_after: not_after(tls),
        }
    }
}

/// `/varz` `websocket`: nats-server's fields, `{}` without a websocket listener.
#[derive(Serialize, Default)]
struct Websocket {
    #[serde(skip_serializing_if = "String::is_empty")]
    host: String,
    #[serde(skip_serializing_if = "is_zero_i32")]
    port: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    advertise: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    no_auth_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    jwt_cookie: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    handshake_timeout: u64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_float_opt"
    )]
    auth_timeout: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_tls: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    same_origin: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    compression: bool,
}

impl Websocket {
    /// `bound`: the port the listener got (the configured one may be -1).
    fn of(ws: Option<&crate::config::websocket::WebsocketOpts>, bound: u16) -> Websocket {
        let Some(ws) = ws else {
            return Websocket::default();
        };
        Websocket {
            host: ws.host.clone(),
            port: if bound > 0 { bound.into() } else { ws.port },
            advertise: ws.advertise.clone().unwrap_or_default(),
            no_auth_user: ws.no_auth_user.clone().unwrap_or_default(),
            jwt_cookie: ws.jwt_cookie.clone().unwrap_or_default(),
            handshake_timeout: ws.handshake_timeout.as_nanos() as u64,
            auth_timeout: ws.auth.timeout.map(|t| t.as_secs_f64()),
            no_tls: ws.no_tls,
            same_origin: ws.same_origin,
            allowed_origins: ws.allowed_origins.clone(),
            compression: ws.compression,
        }
    }
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn go_float_opt<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    go_float(&v.unwrap_or_default(), s)
}

/// Slow consumer / stale connection counts by connection kind.
#[derive(Serialize, Default)]
pub struct KindCounts {
    clients: u64,
    routes: u64,
    gateways: u64,
    leafs: u64,
}

/// nats-server 2.15.1's feature flags. They switch JetStream behaviours, and natrium
/// has no JetStream, so none is in force here, whatever the config says.
/// The feature flags nats-server 2.15.1 reports (none is in force here: they switch
/// JetStream behaviour).
pub const FEATURE_FLAGS: &[&str] = &[
    "js_ack_fc_v2",
    "js_api_reply_v2",
    "js_raft_delete_range",
    "js_snapshot_sources",
];

#[derive(Serialize, Default)]
struct DiskIoWait {
    waiters: u64,
    waits: u64,
    wait_time: u64,
    max_wait_time: u64,
}

/// The `/varz` document.
#[derive(Serialize)]
pub struct Varz {
    server_id: String,
    server_name: String,
    version: String,
    proto: u32,
    git_commit: String,
    go: String,
    host: String,
    port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_verify: bool,
    max_connections: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_subscriptions: Option<usize>,
    ping_interval: u64,
    ping_max: u32,
    http_host: String,
    http_port: u16,
    http_base_path: String,
    https_port: i32,
    #[serde(serialize_with = "go_float")]
    auth_timeout: f64,
    max_control_line: usize,
    max_payload: usize,
    max_pending: usize,
    cluster: VarzCluster,
    gateway: VarzGateway,
    leaf: VarzLeaf,
    mqtt: Empty,
    websocket: Websocket,
    jetstream: Empty,
    #[serde(serialize_with = "go_float")]
    tls_timeout: f64,
    write_deadline: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_timeout: Option<String>,
    start: String,
    now: String,
    uptime: String,
    mem: u64,
    cores: usize,
    gomaxprocs: usize,
    #[serde(serialize_with = "go_float")]
    cpu: f64,
    connections: i64,
    total_connections: u64,
    routes: u64,
    remotes: u64,
    leafnodes: u64,
    in_msgs: u64,
    in_bytes: u64,
    in_client_msgs: u64,
    in_client_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    out_client_msgs: u64,
    out_client_bytes: u64,
    slow_consumers: u64,
    stale_connections: u64,
    stalled_clients: u64,
    subscriptions: usize,
    http_req_stats: BTreeMap<String, u64>,
    config_load_time: String,
    config_digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    feature_flags: BTreeMap<&'static str, bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_account: Option<String>,
    slow_consumer_stats: KindCounts,
    stale_connection_stats: KindCounts,
    disk_io_wait_stats: DiskIoWait,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert_not_after: Option<String>,
}

/// Server-wide totals summed over the shards' snapshots.
#[derive(Default, Debug, Clone, Copy)]
pub struct Totals {
    /// Messages from clients.
    pub in_msgs: u64,
    /// Payload bytes from clients.
    pub in_bytes: u64,
    /// Messages to clients.
    pub out_msgs: u64,
    /// Payload bytes to clients.
    pub out_bytes: u64,
    /// Slow consumers.
    pub slow_consumers: u64,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Open connections seen in the snapshots.
    pub connections: usize,
}

/// Sums the shards' counters.
pub fn totals(snaps: &[ShardSnapshot]) -> Totals {
    let mut t = Totals::default();
    for s in snaps {
        t.in_msgs += s.stats.in_msgs;
        t.in_bytes += s.stats.in_bytes;
        t.out_msgs += s.stats.out_msgs;
        t.out_bytes += s.stats.out_bytes;
        t.slow_consumers += s.stats.slow_consumers;
        t.subscriptions += s.subscriptions;
        t.total_connections += s.total_connections;
        t.connections += s.conns.len();
    }
    t
}

/// The system account as configured: `$SYS` unless `system_account` names another,
/// none with `no_system_account`.
pub fn system_account(opts: &crate::config::Options) -> Option<String> {
    opts.system_account()
}

/// Number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub(super) fn varz(m: &Monitor) -> Response {
    Response::json(to_json(&build(&m.server, &m.snapshots(false))))
}

/// The `/varz` document from the shards' snapshots.
pub fn build(server: &ServerShared, snaps: &[ShardSnapshot]) -> Varz {
    let stats = &server.monitor;
    // The options in force: reloaded values (max_payload, ...) show at once.
    let opts = server.current_opts();
    // Whether credentials are configured at all: unlike a client's INFO, not hidden
    // by no_auth_user.
    let auth_required = server.auth.required();
    let tls_required = opts.tls.is_some() && !opts.allow_non_tls;
    let tls_verify = opts.tls.as_ref().is_some_and(|t| t.verify);
    let t = totals(snaps);
    let start = rfc3339(stats.start);
    // Without a monitoring port, nats-server shows the configured host and port 0.
    let (http_host, http_port, https) = match stats.http.get() {
        Some(h) => (h.host.clone(), h.port, h.https),
        None => (
            opts.http_host.clone().unwrap_or_else(|| opts.host.clone()),
            0,
            false,
        ),
    };
    Varz {
        server_id: server.server_id.clone(),
        server_name: server.server_name.clone(),
        version: COMPAT_VERSION.into(),
        proto: 1,
        git_commit: String::new(),
        go: format!("natrium {VERSION}"),
        host: opts.host.clone(),
        port: server.port,
        max_connections: opts.max_connections,
        max_subscriptions: (opts.max_subscriptions > 0).then_some(opts.max_subscriptions),
        ping_interval: opts.ping_interval.as_nanos() as u64,
        ping_max: opts.ping_max,
        http_host,
        http_port: if https { 0 } else { http_port },
        http_base_path: opts.http_base_path.clone().unwrap_or_default(),
        https_port: if https { http_port as i32 } else { 0 },
        auth_timeout: secs(opts.auth_timeout),
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
        max_pending: opts.max_pending,
        auth_required,
        tls_required,
        tls_verify,
        cluster: VarzCluster::of(server),
        gateway: VarzGateway::of(server),
        leaf: VarzLeaf::of(server),
        mqtt: Empty {},
        websocket: Websocket::of(opts.websocket.as_ref(), server.ws_port),
        jetstream: Empty {},
        tls_timeout: opts.tls.as_ref().map_or(2.0, |t| secs(t.timeout)),
        write_deadline: opts.write_deadline.as_nanos() as u64,
        write_timeout: opts.write_timeout.clone(),
        start: start.clone(),
        now: rfc3339(SystemTime::now()),
        uptime: uptime(stats.uptime()),
        mem: super::misc::process_rss(),
        cores: cores(),
        gomaxprocs: server.controls.len(),
        cpu: stats.cpu_percent(),
        connections: server.connection_count(),
        total_connections: t.total_connections,
        routes: LinkCounts::get(&server.link_counts.routes),
        remotes: LinkCounts::get(&server.link_counts.remotes),
        leafnodes: LinkCounts::get(&server.link_counts.leafs),
        in_msgs: t.in_msgs,
        in_bytes: t.in_bytes,
        in_client_msgs: t.in_msgs,
        in_client_bytes: t.in_bytes,
        out_msgs: t.out_msgs,
        out_bytes: t.out_bytes,
        out_client_msgs: t.out_msgs,
        out_client_bytes: t.out_bytes,
        slow_consumers: t.slow_consumers,
        stale_connections: 0,
        stalled_clients: 0,
        subscriptions: t.subscriptions,
        http_req_stats: stats.req_stats(),
        config_load_time: start,
        config_digest: opts.config_digest.clone().unwrap_or_default(),
        tags: opts.tags.clone(),
        metadata: opts.metadata.clone(),
        feature_flags: FEATURE_FLAGS.iter().map(|&f| (f, false)).collect(),
        system_account: system_account(&opts),
        slow_consumer_stats: KindCounts {
            clients: t.slow_consumers,
            ..Default::default()
        },
        stale_connection_stats: KindCounts::default(),
        disk_io_wait_stats: DiskIoWait::default(),
        tls_cert_not_after: opts
            .tls
            .as_ref()
            .and_then(|t| super::format::cert_not_after(&t.cert_file))
            .map(rfc3339),
    }
}
