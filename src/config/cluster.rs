//! The `cluster {}` block and the cluster flags, as nats-server reads them: where
//! this server listens for routes, which routes it solicits, and how they
//! authenticate.

use std::time::Duration;

use super::file::{boolean, duration, int, listen, render, seconds, string, Report};
use super::options::Options;
use super::value::{Entry, Value};

/// nats-server's default cluster port (`DEFAULT_ROUTE_PORT`).
pub const DEFAULT_ROUTE_PORT: i32 = 6222;
/// Route pings are sent at most this far apart (nats-server caps them at 30s).
pub const MAX_ROUTE_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Cluster settings in force: a cluster listener and the routes to solicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Cluster name; `None` until configured (a random one is then generated).
    pub name: Option<String>,
    /// The name was generated at start, not configured (a peer's configured name
    /// then wins).
    pub dynamic_name: bool,
    /// Route listener host.
    pub host: String,
    /// Route listener port (`-1` = a free one, 0 = none configured: the default).
    pub port: i32,
    /// Address advertised to peers instead of the listener's.
    pub advertise: Option<String>,
    /// Do not tell clients about the other servers.
    pub no_advertise: bool,
    /// Routes to solicit.
    pub routes: Vec<RouteUrl>,
    /// Credentials peers must present.
    pub auth: Option<RouteAuth>,
    /// Attempts at an implicit (gossiped) route before giving up.
    pub connect_retries: i64,
    /// `pool_size` as configured (natrium runs one connection per peer).
    pub pool_size: i64,
    /// Interval between route PINGs.
    pub ping_interval: Duration,
    /// Unanswered PINGs before a route is closed.
    pub ping_max: u32,
    /// Route TLS (`tls {}`): mutual, served and dialed.
    pub tls: Option<crate::tls::TlsConfig>,
    /// `permissions`: `publish` = import (what routes may send here: the interest
    /// this server announces), `subscribe` = export (the interest it accepts).
    pub permissions: Option<crate::auth::permissions::Permissions>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            name: None,
            dynamic_name: false,
            host: "0.0.0.0".into(),
            port: 0,
            advertise: None,
            no_advertise: false,
            routes: Vec::new(),
            auth: None,
            connect_retries: 0,
            pool_size: 3,
            ping_interval: MAX_ROUTE_PING_INTERVAL,
            ping_max: 2,
            tls: None,
            permissions: None,
        }
    }
}

/// A route to solicit: `nats-route://[user:pass@]host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteUrl {
    /// Host name or address (resolved when dialing).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Userinfo of the URL.
    pub user: Option<String>,
    /// Password of the URL.
    pub pass: Option<String>,
}

impl RouteUrl {
    /// Parses a route URL as Go's `url.Parse` accepts it for routes.
    pub fn parse(s: &str) -> Option<RouteUrl> {
        let (scheme, rest) = s.trim().split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return None;
        }
        let rest = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if hostport.contains(char::is_whitespace) {
            return None;
        }
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']')?;
                (h.to_string(), after.strip_prefix(':').unwrap_or(""))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (hostport.to_string(), ""),
            },
        };
        let port = if port.is_empty() {
            DEFAULT_ROUTE_PORT as u16
        } else {
            port.parse().ok()?
        };
        let (user, pass) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        Some(RouteUrl {
            host,
            port,
            user,
            pass,
        })
    }

    /// `host:port` to dial.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `cluster.authorization`: what a peer's CONNECT must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAuth {
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub pass: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// How long a peer has to send CONNECT.
    pub timeout: Option<Duration>,
}

impl RouteAuth {
    /// Whether a peer's CONNECT (`user`, `pass`, `auth_token`) presents these
    /// credentials.
    pub fn accepts(&self, connect: &serde_json::Value) -> bool {
        let s = |k: &str| connect.get(k).and_then(|v| v.as_str()).unwrap_or("");
        match &self.token {
            Some(t) => s("auth_token") == t || s("pass") == t,
            None => {
                self.user.as_deref().is_none_or(|u| s("user") == u)
                    && self.pass.as_deref().is_none_or(|p| s("pass") == p)
            }
        }
    }
}

/// Applies the `cluster` block onto `opts.cluster`; errors rendered at their keys.
pub fn check_entry(entry: &Entry, opts: &mut Options, r: &mut Report) {
    let Some(map) = entry.item.value.as_map() else {
        r.errors.push(render(
            &entry.key_pos,
            &entry.item.value.conversion_error("map[string]interface {}"),
        ));
        return;
    };
    let mut c = opts.cluster.take().unwrap_or_default();
    for e in map.entries() {
        if let Err(msg) = apply_field(e, &mut c, r) {
            r.errors.push(render(&e.key_pos, &msg));
        }
    }
    opts.cluster = Some(c);
}

fn apply_field(e: &Entry, c: &mut ClusterOptions, r: &mut Report) -> Result<(), String> {
    let v = &e.item.value;
    match e.key.to_ascii_lowercase().as_str() {
        "name" => {
            let name = string(v)?;
            if name.contains(' ') {
                return Err("cluster name cannot contain spaces".into());
            }
            c.name = Some(name);
        }
        "listen" => {
            let (host, port) = listen(v)?;
            if let Some(h) = host {
                c.host = h;
            }
            c.port = port;
        }
        "port" => c.port = i32::try_from(int(v)?).map_err(|_| "port value is out of range")?,
        "host" | "net" => c.host = string(v)?,
        "advertise" | "cluster_advertise" => c.advertise = Some(string(v)?),
        "no_advertise" => c.no_advertise = boolean(v)?,
        "connect_retries" => c.connect_retries = int(v)?,
        "pool_size" => c.pool_size = int(v)?,
        "ping_interval" => {
            c.ping_interval = duration(e, "ping_interval", true, r)?.min(MAX_ROUTE_PING_INTERVAL)
        }
        "ping_max" => c.ping_max = int(v)?.clamp(0, u32::MAX as i64) as u32,
        "routes" => {
            let urls = url_list(v)?;
            for u in &urls {
                let Some(url) = RouteUrl::parse(u) else {
                    let shown: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
                    return Err(format!("error parsing route url [{}]", shown.join(" ")));
                };
                c.routes.push(url);
            }
        }
        "authorization" => c.auth = Some(route_auth(v)?),
        // Read by nats-server; natrium runs without them and says so in nothing
        // but behaviour: one connection per peer (pinned accounts share it), no
        // compression (negotiated off with every peer).
        "compression" | "accounts" | "connect_backoff" | "write_deadline" | "write_timeout"
        | "policies" => {}
        "tls" => c.tls = crate::tls::parse_entry_for(e, r, crate::tls::Side::Route),
        "permissions" => match crate::auth::config::parse_route_permissions(e) {
            Ok(p) => c.permissions = Some(p),
            Err(errors) => r.errors.extend(errors),
        },
        other => return Err(format!("unknown field \"{other}\"")),
    }
    Ok(())
}

/// A URL list as nats-server takes one: an array of strings, or one string.
pub fn url_list(v: &Value) -> Result<Vec<&str>, String> {
    match v {
        Value::Array(items) => Ok(items.iter().filter_map(|i| i.value.as_str()).collect()),
        Value::String(s) => Ok(vec![s.as_str()]),
        other => Err(other.conversion_error("[]interface {}")),
    }
}

/// An `authorization {}` block of the cluster or gateway kind: user, password or
/// token, timeout.
pub fn route_auth(v: &Value) -> Result<RouteAuth, String> {
    let Some(m) = v.as_map() else {
        return Err(v.conversion_error("map[string]interface {}"));
    };
    let mut a = RouteAuth::default();
    for e in m.entries() {
        let v = &e.item.value;
        match e.key.to_ascii_lowercase().as_str() {
            "user" | "username" => a.user = Some(string(v)?),
            "pass" | "password" => a.pass = Some(string(v)?),
            "token" => a.token = Some(string(v)?),
            "timeout" => a.timeout = Some(seconds(v)?),
            _ => {}
        }
    }
    Ok(a)
}

/// Puts the cluster flags (`--cluster`, `--routes`, `--cluster_name`, ...) over the
/// file's block, as nats-server does.
pub fn apply_flags(o: &mut Options) -> Result<(), String> {
    for flag in o.cluster_flags.clone() {
        let (name, value) = flag.split_once('=').unwrap_or((flag.as_str(), ""));
        let c = o.cluster.get_or_insert_with(ClusterOptions::default);
        match name {
            "cluster" | "cluster_listen" => {
                if value.is_empty() {
                    continue;
                }
                // Port -1 asks for a free port, which a URL cannot say.
                let random = value.ends_with(":-1");
                let parsed = match value.strip_suffix(":-1") {
                    Some(v) => RouteUrl::parse(&format!("{v}:0")),
                    None => RouteUrl::parse(value),
                };
                let url = parsed.ok_or_else(|| format!("error parsing cluster url {value:?}"))?;
                c.host = url.host;
                c.port = if random { -1 } else { url.port as i32 };
                if let (Some(user), pass) = (url.user, url.pass) {
                    c.auth = Some(RouteAuth {
                        user: Some(user),
                        pass,
                        ..Default::default()
                    });
                }
            }
            "routes" => {
                c.routes.clear();
                for u in value.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                    c.routes.push(
                        RouteUrl::parse(u).ok_or_else(|| format!("error parsing route url {u}"))?,
                    );
                }
            }
            "cluster_name" => c.name = Some(value.to_string()),
            "cluster_advertise" => c.advertise = Some(value.to_string()),
            "no_advertise" => c.no_advertise = value != "false",
            "connect_retries" => c.connect_retries = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls_parse_as_go_reads_them() {
        let u = RouteUrl::parse("nats-route://ruser:T0p$ecret@127.0.0.1:4244").unwrap();
        assert_eq!(u.host_port(), "127.0.0.1:4244");
        assert_eq!(u.user.as_deref(), Some("ruser"));
        assert_eq!(u.pass.as_deref(), Some("T0p$ecret"));
        assert_eq!(RouteUrl::parse("nats://h").unwrap().port, 6222);
        assert_eq!(
            RouteUrl::parse("nats://[::1]:7").unwrap().host_port(),
            "[::1]:7"
        );
        assert!(RouteUrl::parse("foo://bad url").is_none());
        assert!(RouteUrl::parse("no-scheme:1").is_none());
        assert!(RouteUrl::parse("nats://h:notaport").is_none());
    }
}
