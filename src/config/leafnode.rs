//! The `leafnodes {}` block (alias `leaf`) as nats-server reads it: the port other
//! servers connect to as leaf nodes of this one (the hub side), who may do so and
//! which account each is bound to, and the remotes this server connects to as a leaf.

use std::path::PathBuf;
use std::time::Duration;

use super::cluster::RouteUrl;
use super::file::{boolean, duration, int, listen, render, seconds, string, Report};
use super::options::Options;
use super::value::{Entry, Value};

/// nats-server's default leaf node port (`DEFAULT_LEAFNODE_PORT`).
pub const DEFAULT_LEAFNODE_PORT: u16 = 7422;
/// How long a remote waits before dialing again (`DEFAULT_LEAF_NODE_RECONNECT`).
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(1);

/// Leaf node settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafnodeOptions {
    /// Listener host.
    pub host: String,
    /// Listener port: 0 = none, -1 = any free port.
    pub port: i32,
    /// `host:port` told to leafs instead of the listener's.
    pub advertise: Option<String>,
    /// Do not tell leafs about the other servers of the cluster.
    pub no_advertise: bool,
    /// Who may connect, and the accounts they are bound to.
    pub auth: LeafAuth,
    /// Servers this one connects to as a leaf.
    pub remotes: Vec<RemoteLeaf>,
    /// Delay between attempts to dial a remote.
    pub reconnect: Duration,
    /// Leafs older than this version are refused.
    pub min_version: Option<String>,
    /// TLS on the listener (INFO in plaintext, then TLS, unless `handshake_first`).
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for LeafnodeOptions {
    fn default() -> Self {
        LeafnodeOptions {
            host: "0.0.0.0".into(),
            port: 0,
            advertise: None,
            no_advertise: false,
            auth: LeafAuth::default(),
            remotes: Vec::new(),
            reconnect: DEFAULT_RECONNECT,
            min_version: None,
            tls: None,
        }
    }
}

/// `leafnodes.authorization`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafAuth {
    /// The single user (with `pass`).
    pub user: Option<String>,
    /// Its password.
    pub pass: Option<String>,
    /// The account leafs without a user of their own are bound to.
    pub account: Option<String>,
    /// Users, each bound to an account.
    pub users: Vec<LeafUser>,
    /// How long a leaf has to send CONNECT.
    pub timeout: Option<Duration>,
}

impl LeafAuth {
    /// Whether a leaf must present credentials.
    pub fn required(&self) -> bool {
        self.user.is_some() || !self.users.is_empty()
    }
}

/// One `leafnodes.authorization.users` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafUser {
    /// User name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// The local account its leaf connection is bound to (`$G` when absent).
    pub account: Option<String>,
}

/// One `leafnodes.remotes` entry: a hub this server connects to as a leaf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteLeaf {
    /// URLs to try in turn (with credentials).
    pub urls: Vec<RouteUrl>,
    /// The local account bound to the connection (`$G` when absent).
    pub account: Option<String>,
    /// A `.creds` file: the user JWT and the seed that signs the hub's nonce.
    pub credentials: Option<PathBuf>,
    /// Subjects never taken from the hub.
    pub deny_imports: Vec<String>,
    /// Subjects never sent to the hub.
    pub deny_exports: Vec<String>,
    /// `hub: true`: this server is the hub on the connection it makes.
    pub hub: bool,
    /// The remote's `tls {}`: TLS dialed with these settings.
    pub tls: Option<crate::tls::DialTls>,
    /// A `tls://` URL: TLS even without a `tls {}` block (system roots).
    pub tls_scheme: bool,
}

/// Applies the `leafnodes` block onto `opts.leafnodes`; errors rendered at their keys.
pub fn check_entry(entry: &Entry, opts: &mut Options, r: &mut Report) {
    let Some(map) = entry.item.value.as_map() else {
        r.errors.push(render(
            &entry.key_pos,
            &entry.item.value.conversion_error("map[string]interface {}"),
        ));
        return;
    };
    let mut l = opts.leafnodes.take().unwrap_or_default();
    for e in map.entries() {
        if let Err(msg) = apply_field(e, &mut l, r) {
            r.errors.push(render(&e.key_pos, &msg));
        }
    }
    opts.leafnodes = Some(l);
}

fn refuse(e: &Entry, what: &str, r: &mut Report) {
    r.refused.push(render(
        &e.key_pos,
        &format!(
            "leafnode {what} is not supported by natrium yet, and running without it would \
             be unsafe"
        ),
    ));
}

fn apply_field(e: &Entry, l: &mut LeafnodeOptions, r: &mut Report) -> Result<(), String> {
    let v = &e.item.value;
    match e.key.to_ascii_lowercase().as_str() {
        "listen" => {
            let (host, port) = listen(v)?;
            if let Some(h) = host {
                l.host = h;
            }
            l.port = port;
        }
        "port" => l.port = i32::try_from(int(v)?).map_err(|_| "port value is out of range")?,
        "host" | "net" => l.host = string(v)?,
        "advertise" => l.advertise = Some(string(v)?),
        "no_advertise" => l.no_advertise = boolean(v)?,
        "reconnect" | "reconnect_delay" | "reconnect_interval" => {
            l.reconnect = duration(e, "reconnect", true, r)?
        }
        "min_version" | "minimum_version" => l.min_version = Some(string(v)?),
        "authorization" => l.auth = leaf_auth(e, r)?,
        "remotes" => {
            let Value::Array(items) = v else {
                return Err(v.conversion_error("[]interface {}"));
            };
            for item in items {
                let Some(m) = item.value.as_map() else {
                    return Err(item.value.conversion_error("map[string]interface {}"));
                };
                let mut remote = RemoteLeaf::default();
                for re in m.entries() {
                    if let Err(msg) = remote_field(re, &mut remote, r) {
                        r.errors.push(render(&re.key_pos, &msg));
                    }
                }
                if remote.urls.is_empty() {
                    r.errors.push(render(
                        &e.key_pos,
                        "leafnode remote requires at least one url",
                    ));
                }
                l.remotes.push(remote);
            }
        }
        "tls" => l.tls = crate::tls::parse_entry(e, r),
        // Read by nats-server; natrium runs without them: no compression is
        // negotiated (both sides then run uncompressed), interest is never isolated.
        "compression" | "isolate_leafnode_interest" | "write_deadline" | "write_timeout" => {}
        other => return Err(format!("unknown field \"{other}\"")),
    }
    Ok(())
}

fn leaf_auth(e: &Entry, r: &mut Report) -> Result<LeafAuth, String> {
    let v = &e.item.value;
    let Some(m) = v.as_map() else {
        return Err(v.conversion_error("map[string]interface {}"));
    };
    let mut a = LeafAuth::default();
    for f in m.entries() {
        let v = &f.item.value;
        match f.key.to_ascii_lowercase().as_str() {
            "user" | "username" => a.user = Some(string(v)?),
            "pass" | "password" => a.pass = Some(string(v)?),
            "account" => a.account = Some(string(v)?),
            "timeout" => a.timeout = Some(seconds(v)?),
            "users" => {
                let Value::Array(items) = v else {
                    return Err(v.conversion_error("[]interface {}"));
                };
                for item in items {
                    let Some(um) = item.value.as_map() else {
                        return Err(item.value.conversion_error("map[string]interface {}"));
                    };
                    let mut u = LeafUser::default();
                    for ue in um.entries() {
                        let v = &ue.item.value;
                        match ue.key.to_ascii_lowercase().as_str() {
                            "user" | "username" => u.user = string(v)?,
                            "pass" | "password" => u.pass = string(v)?,
                            "account" => u.account = Some(string(v)?),
                            "nkey" | "permissions" => refuse(ue, "user nkeys and permissions", r),
                            other => {
                                r.errors.push(render(
                                    &ue.key_pos,
                                    &format!("unknown field \"{other}\""),
                                ));
                            }
                        }
                    }
                    a.users.push(u);
                }
            }
            "nkey" | "token" => refuse(f, "authorization by nkey or token", r),
            other => return Err(format!("unknown field \"{other}\"")),
        }
    }
    Ok(a)
}

fn remote_field(e: &Entry, remote: &mut RemoteLeaf, r: &mut Report) -> Result<(), String> {
    let v = &e.item.value;
    let strings = |v: &Value| -> Result<Vec<String>, String> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| string(&i.value))
                .collect::<Result<_, _>>(),
            Value::String(s) => Ok(vec![s.clone()]),
            other => Err(other.conversion_error("[]interface {}")),
        }
    };
    match e.key.to_ascii_lowercase().as_str() {
        "url" | "urls" => {
            for u in strings(v)? {
                let scheme = u.split("://").next().unwrap_or("").to_ascii_lowercase();
                if scheme == "tls" {
                    remote.tls_scheme = true;
                }
                if matches!(scheme.as_str(), "ws" | "wss") {
                    refuse(e, &format!("remote over {scheme}://"), r);
                    continue;
                }
                let url = parse_url(&u)
                    .ok_or_else(|| format!("error parsing leafnode remote url {u:?}"))?;
                remote.urls.push(url);
            }
        }
        "account" | "local" => remote.account = Some(string(v)?),
        "credentials" | "creds" => remote.credentials = Some(PathBuf::from(string(v)?)),
        "deny_imports" | "deny_import" => remote.deny_imports = strings(v)?,
        "deny_exports" | "deny_export" => remote.deny_exports = strings(v)?,
        "hub" => remote.hub = boolean(v)?,
        "tls" => remote.tls = crate::tls::parse_dial_entry(e, r),
        "nkey" | "proxy" => refuse(e, &format!("remote \"{}\"", e.key), r),
        "compression"
        | "ws_compression"
        | "ws_no_masking"
        | "first_info_timeout"
        | "disabled"
        | "dont_randomize"
        | "no_randomize"
        | "ignore_discovered_servers"
        | "request_isolation"
        | "local_isolation"
        | "jetstream_cluster_migrate"
        | "jetstream_cluster_migrate_delay" => {}
        other => return Err(format!("unknown field \"{other}\"")),
    }
    Ok(())
}

/// A remote's URL; the leaf node port when it names none.
pub fn parse_url(s: &str) -> Option<RouteUrl> {
    let mut url = RouteUrl::parse(s)?;
    let rest = s.split_once("://").map_or("", |(_, r)| r);
    let hostport = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let has_port = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").is_some(),
        None => hostport.contains(':'),
    };
    if !has_port {
        url.port = DEFAULT_LEAFNODE_PORT;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_default_to_the_leaf_port() {
        assert_eq!(parse_url("nats://h").unwrap().port, 7422);
        assert_eq!(parse_url("nats://u:p@h:5").unwrap().port, 5);
        assert_eq!(parse_url("nats-leaf://[::1]").unwrap().port, 7422);
        assert_eq!(parse_url("nats://[::1]:9").unwrap().port, 9);
    }
}
