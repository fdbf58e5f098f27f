//! `/metrics`: Prometheus text exposition format (version 0.0.4). Server totals, the
//! same figures per shard (label `shard`, with the `core` it is pinned to) so that the
//! load per core is visible, and the standard `process_*` metrics.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::http::Response;
use super::misc;
use super::varz::totals;
use super::Monitor;
use crate::server::{COMPAT_VERSION, VERSION};
use crate::shard::snapshot::ShardSnapshot;

/// Escapes a label value (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    /// A server-wide family and its per-shard twin `natrium_shard_*`.
    fn pair(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        total: u64,
        snaps: &[ShardSnapshot],
        per: impl Fn(&ShardSnapshot) -> u64,
    ) {
        let full = format!("natrium_{name}");
        self.family(&full, kind, help);
        self.sample(&full, "", total);
        let shard = format!("natrium_shard_{name}");
        self.family(&shard, kind, &format!("{help}, per shard"));
        for s in snaps {
            let l = format!("shard=\"{}\",core=\"{}\"", s.id, s.core);
            self.sample(&shard, &l, per(s));
        }
    }
}

/// Renders the metrics page.
pub(super) fn metrics(m: &Monitor) -> Response {
    let snaps = m.snapshots(false);
    let t = totals(&snaps);
    let server = &m.server;
    let mut o = Out(String::with_capacity(8192));

    o.family(
        "natrium_info",
        "gauge",
        "Server identity; the value is always 1",
    );
    let l = format!(
        "server_id=\"{}\",server_name=\"{}\",version=\"{}\",nats_compat=\"{}\"",
        label(&server.server_id),
        label(&server.server_name),
        label(VERSION),
        label(COMPAT_VERSION)
    );
    o.sample("natrium_info", &l, 1);
    o.family(
        "natrium_uptime_seconds",
        "gauge",
        "Seconds since the server started",
    );
    o.sample(
        "natrium_uptime_seconds",
        "",
        format!("{:.3}", m.server.monitor.uptime().as_secs_f64()),
    );
    o.family(
        "natrium_shards",
        "gauge",
        "Client shards (one executor per core)",
    );
    o.sample("natrium_shards", "", server.controls.len());
    o.family(
        "natrium_shards_reporting",
        "gauge",
        "Shards that answered this scrape's snapshot request",
    );
    o.sample("natrium_shards_reporting", "", snaps.len());

    o.pair(
        "connections",
        "gauge",
        "Open client connections",
        server.connection_count().max(0) as u64,
        &snaps,
        |s| s.conns.len() as u64,
    );
    o.pair(
        "connections_total",
        "counter",
        "Client connections accepted since start",
        t.total_connections,
        &snaps,
        |s| s.total_connections,
    );
    o.pair(
        "subscriptions",
        "gauge",
        "Client subscriptions",
        t.subscriptions as u64,
        &snaps,
        |s| s.subscriptions as u64,
    );
    o.pair(
        "in_msgs_total",
        "counter",
        "Messages received from clients",
        t.in_msgs,
        &snaps,
        |s| s.stats.in_msgs,
    );
    o.pair(
        "in_bytes_total",
        "counter",
        "Payload bytes received from clients",
        t.in_bytes,
        &snaps,
        |s| s.stats.in_bytes,
    );
    o.pair(
        "out_msgs_total",
        "counter",
        "Messages delivered to clients",
        t.out_msgs,
        &snaps,
        |s| s.stats.out_msgs,
    );
    o.pair(
        "out_bytes_total",
        "counter",
        "Payload bytes delivered to clients",
        t.out_bytes,
        &snaps,
        |s| s.stats.out_bytes,
    );
    o.pair(
        "slow_consumers_total",
        "counter",
        "Connections closed as slow consumers",
        t.slow_consumers,
        &snaps,
        |s| s.stats.slow_consumers,
    );
    o.pair(
        "pending_bytes",
        "gauge",
        "Bytes queued for clients and not yet written",
        snaps
            .iter()
            .flat_map(|s| s.conns.iter())
            .map(|c| c.pending_bytes as u64)
            .sum(),
        &snaps,
        |s| s.conns.iter().map(|c| c.pending_bytes as u64).sum(),
    );
    o.family(
        "natrium_shard_remote_interest",
        "gauge",
        "Entries in a shard's replica of the other shards' interest",
    );
    for s in &snaps {
        let l = format!("shard=\"{}\",core=\"{}\"", s.id, s.core);
        o.sample("natrium_shard_remote_interest", &l, s.remote_interest);
    }

    links(&mut o, server);

    o.family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds",
    );
    o.sample(
        "process_cpu_seconds_total",
        "",
        format!("{:.2}", misc::process_cpu_seconds()),
    );
    o.family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes",
    );
    o.sample("process_resident_memory_bytes", "", misc::process_rss());
    o.family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes",
    );
    o.sample("process_virtual_memory_bytes", "", misc::process_vsize());
    o.family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors",
    );
    o.sample("process_open_fds", "", misc::process_open_fds());
    o.family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors",
    );
    o.sample("process_max_fds", "", misc::process_max_fds());
    let start = m
        .server
        .monitor
        .start
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    o.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds",
    );
    o.sample("process_start_time_seconds", "", format!("{start:.3}"));
    o.family("natrium_cores", "gauge", "CPUs this process may run on");
    o.sample("natrium_cores", "", super::varz::cores());

    Response {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        cors: false,
        body: o.0.into_bytes(),
    }
}

/// A metric family over links: name, type, help, and the figure of one link.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LinkRow) -> u64,
);

/// One server-to-server connection's figures, labelled by kind and peer.
struct LinkRow {
    kind: &'static str,
    id: u64,
    remote: String,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    pending: usize,
}

/// The cluster core's connections: routes, gateways (each direction) and leafs,
/// counted and with their traffic.
fn links(o: &mut Out, server: &crate::server::ServerShared) {
    if server.cluster_control.is_none() {
        return;
    }
    let snap = server.cluster_snapshot(false);
    let mut rows: Vec<LinkRow> = Vec::new();
    for r in &snap.routes {
        rows.push(LinkRow {
            kind: "route",
            id: r.rid,
            remote: r.remote_name.clone(),
            in_msgs: r.in_msgs,
            out_msgs: r.out_msgs,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            pending: r.pending_size,
        });
    }
    for g in &snap.gateways {
        rows.push(LinkRow {
            kind: if g.outbound {
                "gateway_outbound"
            } else {
                "gateway_inbound"
            },
            id: g.id,
            remote: g.name.clone(),
            in_msgs: g.in_msgs,
            out_msgs: g.out_msgs,
            in_bytes: g.in_bytes,
            out_bytes: g.out_bytes,
            pending: g.pending,
        });
    }
    for l in &snap.leafs {
        rows.push(LinkRow {
            kind: "leaf",
            id: l.id,
            remote: l.name.clone(),
            in_msgs: l.in_msgs,
            out_msgs: l.out_msgs,
            in_bytes: l.in_bytes,
            out_bytes: l.out_bytes,
            pending: 0,
        });
    }
    o.family(
        "natrium_links",
        "gauge",
        "Registered server-to-server connections by kind",
    );
    for kind in ["route", "gateway_outbound", "gateway_inbound", "leaf"] {
        let n = rows.iter().filter(|r| r.kind == kind).count();
        o.sample("natrium_links", &format!("kind=\"{kind}\""), n);
    }
    let series: [Series; 5] = [
        (
            "natrium_link_in_msgs_total",
            "counter",
            "Messages received on a server-to-server connection",
            |r| r.in_msgs,
        ),
        (
            "natrium_link_out_msgs_total",
            "counter",
            "Messages sent on a server-to-server connection",
            |r| r.out_msgs,
        ),
        (
            "natrium_link_in_bytes_total",
            "counter",
            "Payload bytes received on a server-to-server connection",
            |r| r.in_bytes,
        ),
        (
            "natrium_link_out_bytes_total",
            "counter",
            "Payload bytes sent on a server-to-server connection",
            |r| r.out_bytes,
        ),
        (
            "natrium_link_pending_bytes",
            "gauge",
            "Bytes queued for a server-to-server connection",
            |r| r.pending as u64,
        ),
    ];
    for (name, kind, help, value) in series {
        o.family(name, kind, help);
        for r in &rows {
            let l = format!(
                "kind=\"{}\",id=\"{}\",remote=\"{}\"",
                r.kind,
                r.id,
                label(&r.remote)
            );
            o.sample(name, &l, value(r));
        }
    }
}
