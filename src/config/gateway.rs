//! The `gateway {}` block as nats-server reads it: this cluster's gateway name, the
//! port other clusters connect to, and the gateways (other clusters) to dial.

use std::time::Duration;

use super::cluster::{RouteAuth, RouteUrl};
use super::file::{boolean, int, listen, render, string, Report};
use super::options::Options;
use super::value::{Entry, Value};

/// Gateway pings are sent at most this far apart (nats-server caps them at 15s).
pub const MAX_GATEWAY_PING_INTERVAL: Duration = Duration::from_secs(15);

/// Gateway settings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GatewayOptions {
    /// This cluster's gateway name.
    pub name: String,
    /// Listener host.
    pub host: String,
    /// Listener port (0: none configured, -1: a free one).
    pub port: i32,
    /// `host:port` told to other clusters instead of the listener's.
    pub advertise: Option<String>,
    /// Credentials other clusters must present.
    pub auth: Option<RouteAuth>,
    /// Attempts at an implicit (gossiped) gateway before giving up.
    pub connect_retries: i64,
    /// Refuse clusters that are not configured here.
    pub reject_unknown_cluster: bool,
    /// Gateway TLS (`tls {}`): mutual, served and dialed.
    pub tls: Option<crate::tls::TlsConfig>,
    /// The other clusters to dial.
    pub gateways: Vec<RemoteGateway>,
}

/// One configured remote gateway (another cluster).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RemoteGateway {
    /// The remote cluster's gateway name.
    pub name: String,
    /// Where its servers listen for gateways.
    pub urls: Vec<RouteUrl>,
    /// Its own `tls {}` for dialing it (else the block's).
    pub tls: Option<crate::tls::TlsConfig>,
}

/// Applies the `gateway` block onto `opts.gateway`; errors rendered at their keys.
pub fn check_entry(entry: &Entry, opts: &mut Options, r: &mut Report) {
    let Some(map) = entry.item.value.as_map() else {
        r.errors.push(render(
            &entry.key_pos,
            &entry.item.value.conversion_error("map[string]interface {}"),
        ));
        return;
    };
    let mut g = opts.gateway.take().unwrap_or_else(|| GatewayOptions {
        host: "0.0.0.0".into(),
        ..Default::default()
    });
    for e in map.entries() {
        if let Err(msg) = apply_field(e, &mut g, r) {
            r.errors.push(render(&e.key_pos, &msg));
        }
    }
    opts.gateway = Some(g);
}

fn apply_field(e: &Entry, g: &mut GatewayOptions, r: &mut Report) -> Result<(), String> {
    let v = &e.item.value;
    match e.key.to_ascii_lowercase().as_str() {
        "name" => {
            let name = string(v)?;
            if name.contains(' ') {
                return Err("gateway name cannot contain spaces".into());
            }
            g.name = name;
        }
        "listen" => {
            let (host, port) = listen(v)?;
            if let Some(h) = host {
                g.host = h;
            }
            g.port = port;
        }
        "port" => g.port = i32::try_from(int(v)?).map_err(|_| "port value is out of range")?,
        "host" | "net" => g.host = string(v)?,
        "advertise" => g.advertise = Some(string(v)?),
        "connect_retries" => g.connect_retries = int(v)?,
        "reject_unknown" | "reject_unknown_cluster" => g.reject_unknown_cluster = boolean(v)?,
        "authorization" => g.auth = Some(super::cluster::route_auth(v)?),
        "tls" => g.tls = crate::tls::parse_entry_for(e, r, crate::tls::Side::Route),
        "gateways" => {
            let Value::Array(items) = v else {
                return Err(v.conversion_error("[]interface {}"));
            };
            for item in items {
                let Some(m) = item.value.as_map() else {
                    return Err(item.value.conversion_error("map[string]interface {}"));
                };
                let mut remote = RemoteGateway::default();
                for f in m.entries() {
                    if let Err(msg) = remote_field(f, &mut remote, r) {
                        r.errors.push(render(&f.key_pos, &msg));
                    }
                }
                g.gateways.push(remote);
            }
        }
        // Read by nats-server; natrium keeps its own timing and writes.
        "connect_backoff" | "write_deadline" | "write_timeout" | "send_qsub_interest_only" => {}
        other => return Err(format!("unknown field \"{other}\"")),
    }
    Ok(())
}

fn remote_field(e: &Entry, remote: &mut RemoteGateway, r: &mut Report) -> Result<(), String> {
    let v = &e.item.value;
    match e.key.to_ascii_lowercase().as_str() {
        "name" => remote.name = string(v)?,
        "url" | "urls" => {
            let urls = super::cluster::url_list(v)?;
            for u in &urls {
                // A gateway URL needs its scheme, as nats-server's url.Parse reads it.
                let parsed = u.contains("://").then(|| RouteUrl::parse(u)).flatten();
                let Some(url) = parsed else {
                    return Err(format!("error parsing gateway url [\"{u}\"]"));
                };
                remote.urls.push(url);
            }
        }
        "tls" => remote.tls = crate::tls::parse_entry_for(e, r, crate::tls::Side::Route),
        other => return Err(format!("unknown field \"{other}\"")),
    }
    Ok(())
}

/// The checks nats-server makes at start (not by `-t`).
pub fn validate(o: &Options) -> Result<(), String> {
    let Some(g) = &o.gateway else {
        return Ok(());
    };
    if g.name.is_empty() {
        return Err("gateway has no name".into());
    }
    let named_system = o.section("system_account").is_some() || o.operator_system_account.is_some();
    if o.leafnodes.is_some() && !named_system {
        return Err(
            "leaf nodes and gateways (both being defined) require a system account to also be \
             configured"
                .into(),
        );
    }
    if g.port == 0 {
        return Err(format!(
            "gateway {:?} has no port specified (select -1 for random port)",
            g.name
        ));
    }
    let cluster = o.cluster.as_ref().filter(|c| !c.dynamic_name);
    if let Some(name) = cluster.and_then(|c| c.name.as_ref()) {
        if *name != g.name {
            return Err("cluster name conflicts between cluster and gateway definitions".into());
        }
    }
    for (i, remote) in g.gateways.iter().enumerate() {
        if remote.name.is_empty() {
            return Err(format!("gateway in the list {i} has no name"));
        }
        if remote.urls.is_empty() {
            return Err(format!("gateway {:?} has no URL", remote.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Options, Report) {
        let map =
            crate::config::parser::parse_str(text, std::path::Path::new("t.conf")).expect("parses");
        let mut o = Options::default();
        let r = crate::config::file::apply(&map, &mut o);
        (o, r)
    }

    #[test]
    fn gateway_block_reads_as_nats_server_reads_it() {
        let (o, r) = read(
            "gateway { name: GA, listen: 127.0.0.1:17401, reject_unknown_cluster: true,\n\
             gateways: [{name: GB, url: \"nats://u:p@127.0.0.1:17402\"},\n\
             {name: GC, urls: [\"nats://127.0.0.1:17403\", \"nats://h:17404\"]}] }\n",
        );
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let g = o.gateway.as_ref().expect("gateway");
        assert_eq!(
            (g.name.as_str(), g.host.as_str(), g.port),
            ("GA", "127.0.0.1", 17401)
        );
        assert!(g.reject_unknown_cluster);
        assert_eq!(g.gateways.len(), 2);
        assert_eq!(g.gateways[0].urls[0].user.as_deref(), Some("u"));
        assert_eq!(g.gateways[1].urls[1].host_port(), "h:17404");
        assert!(validate(&o).is_ok());
    }

    #[test]
    fn bad_gateway_blocks_get_the_reference_errors() {
        let (_, r) = read("gateway { name: \"G A\", port: 1 }\n");
        assert!(
            r.errors[0].ends_with("gateway name cannot contain spaces"),
            "{:?}",
            r.errors
        );
        let (_, r) = read("gateway { name: GA, port: 1, bogus: 1 }\n");
        assert!(
            r.errors[0].ends_with("unknown field \"bogus\""),
            "{:?}",
            r.errors
        );
        let (_, r) = read(
            "gateway { name: GA, port: 1, gateways: [{name: GB, urls: [\"127.0.0.1:2\"]}] }\n",
        );
        assert!(
            r.errors[0].ends_with("error parsing gateway url [\"127.0.0.1:2\"]"),
            "{:?}",
            r.errors
        );
        for (text, want) in [
            ("gateway { listen: 127.0.0.1:1 }", "gateway has no name"),
            (
                "gateway { name: GA }",
                "gateway \"GA\" has no port specified (select -1 for random port)",
            ),
            (
                "gateway { name: GA, port: 1, gateways: [{name: GB}] }",
                "gateway \"GB\" has no URL",
            ),
            (
                "gateway { name: GA, port: 1, gateways: [{url: \"nats://h:1\"}] }",
                "gateway in the list 0 has no name",
            ),
            (
                "cluster { name: X, port: 2 }\ngateway { name: GA, port: 1 }",
                "cluster name conflicts between cluster and gateway definitions",
            ),
            (
                "leafnodes { port: 3 }\ngateway { name: GA, port: 1 }",
                "leaf nodes and gateways (both being defined) require a system account to \
                 also be configured",
            ),
        ] {
            let (o, r) = read(text);
            assert!(r.errors.is_empty(), "{text}: {:?}", r.errors);
            assert_eq!(validate(&o).unwrap_err(), want, "{text}");
        }
    }
}
