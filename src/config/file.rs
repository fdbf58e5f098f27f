//! Applies a parsed nats-server config file onto [`Options`].
//!
//! Option names, aliases, value forms and error messages follow nats-server 2.15
//! (checked with `nats-server -t`). Keys are matched case-insensitively. Errors
//! and warnings are rendered like nats-server's: `file:line:col: message`, at the
//! position of the entry's key, with nats-server's column numbering (0-based on
//! a file's first line, 1-based after it: a quirk of its lexer, reproduced).
//!
//! Sections for features implemented later (cluster, auth, TLS, JetStream...) are
//! kept raw in [`Options::config_sections`]; [`Report::unsupported`] says which
//! ones the running server ignores and [`Report::refused`] which ones it must not
//! ignore (security: running without the configured auth/TLS would be unsafe).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::options::Options;
use super::parser;
use super::value::{Entry, Map, Pos, Value};

/// What applying a config file found besides the options themselves.
#[derive(Debug, Default)]
pub struct Report {
    /// nats-server errors, rendered `file:line:col: message`, in file order.
    pub errors: Vec<String>,
    /// nats-server warnings (`invalid use of field ...`), rendered likewise.
    /// `-t` fails on them; a normal start prints them and goes on.
    pub warnings: Vec<String>,
    /// One line per section for a feature natrium lacks: log as a warning, ignore.
    pub unsupported: Vec<String>,
    /// Sections natrium cannot honour and must not silently ignore (auth, TLS).
    pub refused: Vec<String>,
}

/// Top-level keys kept raw for later features: (canonical name, aliases, policy).
pub const SECTIONS: &[(&str, &[&str], Policy)] = &[
    ("authorization", &[], Policy::Auth),
    ("accounts", &[], Policy::Accounts),
    ("tls", &[], Policy::Tls),
    (
        "operator",
        &[
            "operators",
            "root",
            "roots",
            "root_operator",
            "root_operators",
        ],
        Policy::Keep,
    ),
    ("trusted", &["trusted_keys"], Policy::Keep),
    (
        "resolver",
        &["account_resolver", "accounts_resolver"],
        Policy::Keep,
    ),
    ("resolver_tls", &[], Policy::Keep),
    ("resolver_preload", &[], Policy::Keep),
    ("resolver_pinned_accounts", &[], Policy::Keep),
    ("default_sentinel", &[], Policy::Refuse),
    ("allow_non_tls", &[], Policy::Tls),
    ("ocsp", &[], Policy::Warn),
    ("ocsp_cache", &[], Policy::Warn),
    ("cluster", &[], Policy::Cluster),
    ("gateway", &[], Policy::Gateway),
    ("leafnodes", &["leaf"], Policy::Leafnodes),
    ("jetstream", &[], Policy::JetStream),
    ("store_dir", &[], Policy::Keep),
    ("default_js_domain", &[], Policy::Keep),
    ("websocket", &["ws"], Policy::Websocket),
    ("mqtt", &[], Policy::Warn),
    ("system_account", &["system"], Policy::Keep),
    (
        "no_system_account",
        &["no_system", "no_sys_acc"],
        Policy::Keep,
    ),
    ("mappings", &["maps"], Policy::Keep),
    ("server_tags", &[], Policy::Parsed),
    ("server_metadata", &[], Policy::Parsed),
    ("feature_flags", &[], Policy::Keep),
    ("proxies", &[], Policy::Warn),
    ("proxy_protocol", &[], Policy::WarnIfTrue),
    ("prof_port", &[], Policy::Keep),
    ("prof_block_rate", &[], Policy::Keep),
];

/// What the running server does with a kept section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Keep silently (no behaviour depends on it yet, or harmless to ignore).
    Keep,
    /// Keep (the reload diff compares it raw) and parse into an option: server tags
    /// and metadata, which `/varz` shows.
    Parsed,
    /// Keep, and warn once that the feature is not available.
    Warn,
    /// Like `Warn`, only when the value is `true`.
    WarnIfTrue,
    /// Refuse to start: ignoring it would weaken security.
    Refuse,
    /// Sets [`Options::jetstream`] when enabled (the server warns about it).
    JetStream,
    /// Parsed by `crate::tls` into [`Options::tls`] / [`Options::allow_non_tls`].
    Tls,
    /// Checked by `crate::auth::config` (kept raw; `timeout` sets `auth_timeout`).
    Auth,
    /// `accounts {}`: checked by `crate::auth::config` (kept raw).
    Accounts,
    /// `cluster {}`: parsed by `super::cluster` into [`Options::cluster`].
    Cluster,
    /// `websocket {}`: parsed by `config::websocket` into [`Options::websocket`].
    Websocket,
    /// `leafnodes {}`: parsed by `config::leafnode` into [`Options::leafnodes`].
    Leafnodes,
    /// `gateway {}`: parsed by `config::gateway` into [`Options::gateway`].
    Gateway,
}

/// Parses `path` and applies it onto `opts` (which should hold the defaults;
/// flags are re-applied afterwards). A parse error is returned rendered;
/// option errors are in the report. Sets `config_file` and `config_digest`.
pub fn load(path: &Path, opts: &mut Options) -> Result<Report, String> {
    match std::fs::File::open(path) {
        Err(e) => {
            let why = crate::logging::go_error_text(&e);
            return Err(format!("open {}: {why}", path.display()));
        }
        // Opening a directory works; Go's read of it is what fails.
        Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
            return Err(format!("read {}: is a directory", path.display()));
        }
        Ok(_) => {}
    }
    let map = parser::parse_file(path).map_err(|e| match &e.pos {
        Some(p) => render(p, &e.message),
        None => e.message.clone(),
    })?;
    opts.config_file = Some(path.to_path_buf());
    opts.config_digest = Some(digest(&map));
    let mut report = apply(&map, opts);
    if map.is_empty() {
        // A warning, like nats-server's: a normal start prints it, `-t` fails on it.
        report.warnings.insert(
            0,
            format!("{}: config has no values or is empty", path.display()),
        );
    }
    Ok(report)
}

/// Applies a parsed config map onto `opts`.
pub fn apply(map: &Map, opts: &mut Options) -> Report {
    let mut r = Report::default();
    for entry in map.entries() {
        if let Err(msg) = apply_entry(entry, opts, &mut r) {
            r.errors.push(render(&entry.key_pos, &msg));
        }
    }
    // Operator mode: the operator JWTs and the preloaded accounts are read now, so
    // that `-t` reports them and the system account is known.
    match crate::auth::operator::Trust::from_options(opts) {
        Ok(Some(trust)) => opts.operator_system_account = trust.system_account,
        Ok(None) => {}
        Err(msg) => {
            let at = ["operator", "trusted", "resolver", "resolver_preload"]
                .iter()
                .find_map(|k| map.entries().iter().find(|e| canonical(&e.key) == *k));
            r.errors.push(match at {
                Some(e) => render(&e.key_pos, &msg),
                None => msg,
            });
        }
    }
    r
}

/// The canonical name of a top-level section key (its aliases resolved).
fn canonical(key: &str) -> &'static str {
    let key = key.to_ascii_lowercase();
    SECTIONS
        .iter()
        .find(|(n, aliases, _)| *n == key || aliases.contains(&key.as_str()))
        .map_or("", |(n, _, _)| n)
}

/// Checks between options, done at start-up (not by `-t`), like nats-server.
pub fn validate(o: &Options) -> Result<(), String> {
    if let Some(ws) = &o.websocket {
        if ws.tls.is_none() && !ws.no_tls {
            return Err("websocket requires TLS configuration".into());
        }
        // A JWT cookie needs operator mode, as nats-server checks.
        let operator_mode = o.section("operator").is_some() || o.section("trusted").is_some();
        if let Some(c) = ws.jwt_cookie.as_ref().filter(|_| !operator_mode) {
            return Err(format!(
                "trusted operators or trusted keys configuration is required for JWT \
                 authentication via cookie \"{c}\""
            ));
        }
    }
    super::gateway::validate(o)?;
    // Auth (issue #5): no_auth_user must name a configured user.
    let auth = crate::auth::config::AuthConfig::from_options(o)?;
    // A leaf node remote binds a local account that must exist (nats-server checks).
    if let Some(l) = &o.leafnodes {
        for r in &l.remotes {
            let Some(name) = &r.account else { continue };
            let known = name == crate::account::GLOBAL_NAME
                || o.system_account().as_deref() == Some(name.as_str())
                || auth.accounts.iter().any(|a| **a == **name);
            if !known {
                return Err(format!(
                    "cannot find local account {name:?} specified in leafnode remote"
                ));
            }
        }
    }
    if o.max_payload > o.max_pending {
        return Err(format!(
            "max_payload ({}) cannot be higher than max_pending ({})",
            o.max_payload, o.max_pending
        ));
    }
    Ok(())
}

/// `file:line:col: msg` with nats-server's column numbering.
pub fn render(pos: &Pos, msg: &str) -> String {
    let col = if pos.line <= 1 { pos.go_col() } else { pos.col };
    format!(
        "{}:{}:{}: {}",
        clean(&pos.file).display(),
        pos.line,
        col,
        msg
    )
}

/// Drops `.` components like Go's `filepath.Clean` (`./a.conf` -> `a.conf`).
fn clean(p: &Path) -> PathBuf {
    let out: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

pub(super) fn int(v: &Value) -> Result<i64, String> {
    v.as_int().ok_or_else(|| v.conversion_error("int64"))
}

pub(super) fn string(v: &Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| v.conversion_error("string"))
}

/// An authorization `timeout`: seconds, integer or float, as nats-server reads it.
pub(super) fn seconds(v: &Value) -> Result<Duration, String> {
    let secs = match v {
        Value::Int(n) => *n as f64,
        Value::Float(f) => *f,
        other => return Err(other.conversion_error("float64")),
    };
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

pub(super) fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| v.conversion_error("bool"))
}

/// `server_tags` (a string or a list of strings) onto `tags` as nats-server keeps
/// them: trimmed, lower-cased, without empty ones or duplicates.
fn add_tags(v: &Value, tags: &mut Vec<String>) -> Result<(), String> {
    let mut add = |t: &str| {
        let t = t.trim().to_lowercase();
        if !t.is_empty() && !tags.contains(&t) {
            tags.push(t);
        }
    };
    match v {
        Value::String(s) => add(s),
        Value::Array(items) => {
            for item in items {
                let Some(t) = item.value.as_str() else {
                    // Go names its config token type here.
                    return Err(
                        "error parsing tags: unsupported type *conf.token where string is expected"
                            .into(),
                    );
                };
                add(t);
            }
        }
        other => {
            return Err(format!(
                "error parsing tags: unsupported type {}",
                other.go_type()
            ))
        }
    }
    Ok(())
}

/// `server_metadata` (a map of strings) onto `metadata`. A value that is not a string
/// is reported at its own key, and ends the block, as nats-server's failed type
/// assertion does.
fn add_metadata(
    v: &Value,
    metadata: &mut BTreeMap<String, String>,
    r: &mut Report,
) -> Result<(), String> {
    let Value::Map(m) = v else {
        return Err(format!(
            "error parsing metadata: unsupported type {}",
            v.go_type()
        ));
    };
    for entry in m.entries() {
        match &entry.item.value {
            Value::String(s) => {
                metadata.insert(entry.key.clone(), s.clone());
            }
            other => {
                r.errors
                    .push(render(&entry.key_pos, &other.conversion_error("string")));
                break;
            }
        }
    }
    Ok(())
}

fn int_limited(v: &Value, name: &str) -> Result<usize, String> {
    let n = int(v)?;
    if n > i32::MAX as i64 {
        return Err(format!("{name} value is too big"));
    }
    Ok(n.max(0) as usize)
}

fn to_i32(n: i64, name: &str) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| format!("{name} value {n} is out of range"))
}

/// A duration option: a Go duration string, or (with a warning) seconds.
pub(super) fn duration(
    e: &Entry,
    name: &str,
    int_seconds: bool,
    r: &mut Report,
) -> Result<Duration, String> {
    let v = &e.item.value;
    if let Value::String(s) = v {
        return parse_go_duration(s)
            .map(nanos_to_duration)
            .map_err(|err| format!("error parsing {name}: {err}"));
    }
    if !int_seconds {
        return Err(v.conversion_error("string"));
    }
    r.warnings.push(render(
        &e.key_pos,
        &format!("invalid use of field \"{name}\": {name} should be converted to a duration"),
    ));
    Ok(Duration::from_secs(int(v)?.max(0) as u64))
}

fn nanos_to_duration(n: i128) -> Duration {
    Duration::from_nanos(n.clamp(0, u64::MAX as i128) as u64)
}

/// Splits `host:port` like Go's `net.SplitHostPort` (`[v6]:port` too).
fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host.to_string(), port.to_string()));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

/// `listen`-style values: a port, or `host:port` (`:port`). Host `None` = unchanged.
pub(super) fn listen(v: &Value) -> Result<(Option<String>, i32), String> {
    match v {
        Value::Int(p) => Ok((None, to_i32(*p, "port")?)),
        Value::String(s) => {
            let (host, port) = split_host_port(s)
                .ok_or_else(|| format!("could not parse address string \"{s}\""))?;
            let port: i64 = port
                .parse()
                .map_err(|_| format!("could not parse port \"{port}\""))?;
            let host = (!host.is_empty()).then_some(host);
            Ok((host, to_i32(port, "port")?))
        }
        other => Err(format!(
            "expected port or host:port, got {}",
            other.go_type()
        )),
    }
}

fn apply_entry(e: &Entry, o: &mut Options, r: &mut Report) -> Result<(), String> {
    let v = &e.item.value;
    let key = e.key.to_ascii_lowercase();
    match key.as_str() {
        "listen" => {
            let (host, port) = listen(v)?;
            if let Some(h) = host {
                o.host = h;
            }
            o.port = port;
        }
        "host" | "net" => o.host = string(v)?,
        "port" => o.port = to_i32(int(v)?, "port")?,
        "server_name" => {
            let name = string(v)?;
            if name.contains(' ') {
                return Err("server name cannot contain spaces".into());
            }
            o.server_name = Some(name);
        }
        "client_advertise" => o.client_advertise = Some(string(v)?),
        "http" | "https" => {
            let (host, port) = listen(v)?;
            if host.is_some() {
                o.http_host = host;
            }
            if key == "http" {
                o.http_port = port;
            } else {
                o.https_port = port;
            }
        }
        "http_port" | "monitor_port" => o.http_port = to_i32(int(v)?, "http_port")?,
        "https_port" => o.https_port = to_i32(int(v)?, "https_port")?,
        "http_base_path" => o.http_base_path = Some(string(v)?),
        // nats-server names the key as written in its messages (`MAX_PAYLOAD value ...`).
        "max_payload" => o.max_payload = int_limited(v, &e.key)?,
        "max_control_line" => o.max_control_line = int_limited(v, &e.key)?,
        "max_pending" => o.max_pending = int(v)?.max(0) as usize,
        "max_connections" | "max_conn" => o.max_connections = int(v)?,
        "max_subscriptions" | "max_subs" => o.max_subscriptions = int(v)?.max(0) as usize,
        "max_sub_tokens" | "max_subscription_tokens" => {
            let n = int(v)?;
            if n > 255 {
                return Err(format!("{} value is too big", e.key));
            }
            if n <= 0 {
                return Err(format!("{} value can not be negative", e.key));
            }
            o.max_sub_tokens = n as u8;
        }
        "ping_interval" => o.ping_interval = duration(e, "ping_interval", true, r)?,
        "ping_max" => o.ping_max = int(v)?.clamp(0, u32::MAX as i64) as u32,
        "write_deadline" => o.write_deadline = duration(e, "write_deadline", true, r)?,
        "write_timeout" => o.write_timeout = Some(string(v)?),
        "lame_duck_duration" => {
            let d = duration(e, "lame_duck_duration", false, r)?;
            if d < Duration::from_secs(30) {
                return Err(format!(
                    "invalid lame_duck_duration of {}, minimum is 30 seconds",
                    go_duration_string(d)
                ));
            }
            o.lame_duck_duration = d;
        }
        "lame_duck_grace_period" => {
            o.lame_duck_grace_period = duration(e, "lame_duck_grace_period", false, r)?
        }
        "debug" => o.debug = boolean(v)?,
        "trace" => o.trace = boolean(v)?,
        "trace_verbose" => {
            o.trace_verbose = boolean(v)?;
            if o.trace_verbose {
                o.trace = true;
            }
        }
        "trace_headers" => o.trace_headers = boolean(v)?,
        "logtime" => o.logtime = boolean(v)?,
        "logtime_utc" => o.logtime_utc = boolean(v)?,
        "syslog" => o.syslog = boolean(v)?,
        "remote_syslog" => o.remote_syslog = Some(string(v)?),
        "logfile" | "log_file" => o.log_file = Some(PathBuf::from(string(v)?)),
        "logfile_size_limit" | "log_size_limit" => o.log_size_limit = int(v)?,
        "logfile_max_num" | "log_max_num" => o.log_max_num = int(v)?,
        "pidfile" | "pid_file" => o.pid_file = Some(PathBuf::from(string(v)?)),
        "ports_file_dir" => o.ports_file_dir = Some(PathBuf::from(string(v)?)),
        "no_auth_user" => o.no_auth_user = Some(string(v)?),
        "no_header_support" => o.no_header_support = boolean(v)?,
        "disable_sublist_cache" | "no_sublist_cache" => o.disable_sublist_cache = boolean(v)?,
        "max_traced_msg_len" => o.max_traced_msg_len = int(v)?,
        "max_closed_clients" => o.max_closed_clients = int(v)?,
        "connect_error_reports" => o.connect_error_reports = int(v)?,
        "reconnect_error_reports" => o.reconnect_error_reports = int(v)?,
        "no_fast_producer_stall" => o.no_fast_producer_stall = boolean(v)?,
        _ => {
            let Some((name, _, policy)) = SECTIONS
                .iter()
                .find(|(n, aliases, _)| *n == key || aliases.contains(&key.as_str()))
            else {
                if e.used_as_variable {
                    return Ok(());
                }
                return Err(format!("unknown field \"{}\"", e.key));
            };
            o.config_sections.insert(name.to_string(), e.item.clone());
            let at = render(&e.key_pos, "");
            let at = at.trim_end_matches(": ");
            match policy {
                Policy::Keep => {}
                Policy::Parsed => match *name {
                    "server_tags" => add_tags(v, &mut o.tags)?,
                    _ => add_metadata(v, &mut o.metadata, r)?,
                },
                Policy::Warn => r.unsupported.push(format!(
                    "{at}: \"{}\" is not supported by natrium yet; ignoring it",
                    e.key
                )),
                Policy::WarnIfTrue => {
                    if v.as_bool() == Some(true) {
                        r.unsupported.push(format!(
                            "{at}: \"{}\" is not supported by natrium yet; ignoring it",
                            e.key
                        ));
                    }
                }
                Policy::Refuse => r.refused.push(format!(
                    "{at}: \"{}\" is not supported by natrium yet, and running without it \
                     would be unsafe",
                    e.key
                )),
                // ----- Auth (issue #5): `authorization {}`, checked into src/auth -----
                Policy::Auth => r.errors.extend(crate::auth::config::check_entry(e, o)),
                Policy::Accounts => {
                    let (errors, refused) = crate::auth::config::check_accounts_entry(e);
                    r.errors.extend(errors);
                    r.refused.extend(refused);
                }
                Policy::Cluster => super::cluster::check_entry(e, o, r),
                Policy::Leafnodes => super::leafnode::check_entry(e, o, r),
                Policy::Gateway => super::gateway::check_entry(e, o, r),
                // ----- TLS (issue #5): `tls {}` and `allow_non_tls` -----
                Policy::Tls => {
                    if *name == "tls" {
                        o.tls = crate::tls::parse_entry(e, r).map(std::sync::Arc::new);
                    } else if let Some(b) = crate::tls::parse_allow_non_tls(e, r) {
                        o.allow_non_tls = b;
                    }
                }
                Policy::Websocket => o.websocket = super::websocket::parse_entry(e, r),
                Policy::JetStream => {
                    o.jetstream = match v {
                        Value::Bool(b) => *b,
                        Value::String(s) => {
                            !matches!(s.to_ascii_lowercase().as_str(), "disabled" | "false")
                        }
                        Value::Map(m) => m
                            .get("enabled")
                            .and_then(|i| i.value.as_bool())
                            .unwrap_or(true),
                        _ => true,
                    };
                }
            }
        }
    }
    Ok(())
}

// ----- Go durations --------------------------------------------------------

/// Parses a Go duration string (`1h2m3.5s`, `500ms`, `-1s`, `0`) into
/// nanoseconds, with Go's error messages.
pub fn parse_go_duration(orig: &str) -> Result<i128, String> {
    let quoted = format!("\"{orig}\"");
    let invalid = || format!("time: invalid duration {quoted}");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let int_part: i128 = if int_len > 0 {
            s[..int_len].parse().map_err(|_| invalid())?
        } else {
            0
        };
        s = &s[int_len..];
        let mut frac = 0i128;
        let mut scale = 1i128;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            frac_len = s.bytes().take_while(|c| c.is_ascii_digit()).count();
            for c in s[..frac_len].bytes().take(18) {
                frac = frac * 10 + (c - b'0') as i128;
                scale *= 10;
            }
            s = &s[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let mult: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration {quoted}"
                ))
            }
        };
        // Checked: a long run of digits overflows even i128 (found by fuzzing).
        total = int_part
            .checked_mul(mult)
            .and_then(|v| v.checked_add(frac * mult / scale))
            .and_then(|v| total.checked_add(v))
            .filter(|&t| t <= i64::MAX as i128)
            .ok_or_else(invalid)?;
    }
    Ok(if neg { -total } else { total })
}

/// Formats like Go's `time.Duration.String` (`1m30s`, `500ms`, `1h0m0s`).
pub fn go_duration_string(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, digits: u32| -> String {
        let p = 10u128.pow(digits);
        let (i, f) = (v / p, v % p);
        if f == 0 {
            return i.to_string();
        }
        let f = format!("{:0width$}", f, width = digits as usize);
        format!("{i}.{}", f.trim_end_matches('0'))
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 6));
    }
    let secs = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s * 1_000_000_000 + sub, 9));
    out.push('s');
    out
}

// ----- digest ---------------------------------------------------------------

/// `sha256:<hex>` of the map's JSON encoding as Go's `encoding/json` writes it
/// (sorted keys, HTML-safe escaping, trailing newline): nats-server's digest.
pub fn digest(map: &Map) -> String {
    let mut json = String::new();
    json_map(map, &mut json);
    json.push('\n');
    let sum = sha256(json.as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn json_map(map: &Map, out: &mut String) {
    let mut entries: Vec<&Entry> = map.entries().iter().collect();
    entries.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    out.push('{');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&e.key, out);
        out.push(':');
        json_value(&e.item.value, out);
    }
    out.push('}');
}

fn json_value(v: &Value, out: &mut String) {
    match v {
        Value::String(s) | Value::Datetime(s) => json_string(s, out),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&go_float(*f)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Map(m) => json_map(m, out),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(&item.value, out);
            }
            out.push(']');
        }
    }
}

fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => s,
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// SHA-256 (FIPS 180-4); small inputs only, so a plain implementation.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load_str(text: &str) -> (Options, Report) {
        let map = parser::parse_str_with_env(text, Path::new("t.conf"), &|_| None).unwrap();
        let mut o = Options::default();
        let r = apply(&map, &mut o);
        (o, r)
    }

    fn ok(text: &str) -> Options {
        let (o, r) = load_str(text);
        assert!(
            r.errors.is_empty() && r.warnings.is_empty(),
            "{text}: {r:?}"
        );
        o
    }

    fn err(text: &str) -> Vec<String> {
        let (_, r) = load_str(text);
        assert!(!r.errors.is_empty(), "{text}: expected an error");
        r.errors
    }

    #[test]
    fn listen_forms() {
        let o = ok("listen: 127.0.0.1:4001");
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4001));
        let o = ok("listen: \":4002\"");
        assert_eq!((o.host.as_str(), o.port), ("0.0.0.0", 4002));
        let o = ok("listen: 4003");
        assert_eq!(o.port, 4003);
        let o = ok("listen: \"[::1]:4004\"");
        assert_eq!((o.host.as_str(), o.port), ("::1", 4004));
        let o = ok("host: 10.0.0.1\nport: 4005");
        assert_eq!((o.host.as_str(), o.port), ("10.0.0.1", 4005));
        assert_eq!(ok("net: 10.0.0.2").host, "10.0.0.2");
        assert_eq!(ok("port: -1").port, -1);
        assert_eq!(
            err("listen: \"abc\""),
            ["t.conf:1:0: could not parse address string \"abc\""]
        );
        assert_eq!(
            err("listen: \"a:b\""),
            ["t.conf:1:0: could not parse port \"b\""]
        );
        assert_eq!(
            err("listen: true"),
            ["t.conf:1:0: expected port or host:port, got bool"]
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_aliases_work() {
        let o = ok("PORT: 4000\nServer_Name: a\nmax_conn: 7\nmax_subs: 9\nno_sublist_cache: true");
        assert_eq!(o.port, 4000);
        assert_eq!(o.server_name.as_deref(), Some("a"));
        assert_eq!(o.max_connections, 7);
        assert_eq!(o.max_subscriptions, 9);
        assert!(o.disable_sublist_cache);
        let o = ok("pid_file: /tmp/p\nlogfile: /tmp/l\nlog_size_limit: 1KB\nlogfile_max_num: 3");
        assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/p")));
        assert_eq!(o.log_file, Some(PathBuf::from("/tmp/l")));
        assert_eq!((o.log_size_limit, o.log_max_num), (1024, 3));
        let o = ok("pidfile: /tmp/q\nlog_file: /tmp/m\nports_file_dir: /tmp");
        assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/q")));
        assert_eq!(o.log_file, Some(PathBuf::from("/tmp/m")));
        assert_eq!(o.ports_file_dir, Some(PathBuf::from("/tmp")));
    }

    #[test]
    fn limits() {
        let o = ok("max_payload: 2MB\nmax_pending: 100MB\nmax_control_line: 8KB\nping_max: 5");
        assert_eq!(o.max_payload, 2 << 20);
        assert_eq!(o.max_pending, 100 << 20);
        assert_eq!(o.max_control_line, 8 << 10);
        assert_eq!(o.ping_max, 5);
        // 0 in a file means refuse every client.
        assert_eq!(ok("max_connections: 0").max_connections, 0);
        assert_eq!(ok("max_sub_tokens: 10").max_sub_tokens, 10);
        assert_eq!(
            err("max_payload: 3GB"),
            ["t.conf:1:0: max_payload value is too big"]
        );
        assert_eq!(
            err("max_control_line: 5GB"),
            ["t.conf:1:0: max_control_line value is too big"]
        );
        assert_eq!(
            err("max_payload: \"x\""),
            ["t.conf:1:0: interface conversion: interface {} is string, not int64"]
        );
        assert_eq!(
            err("max_payload: 1.5"),
            ["t.conf:1:0: interface conversion: interface {} is float64, not int64"]
        );
        assert_eq!(
            err("max_connections: [1]"),
            ["t.conf:1:0: interface conversion: interface {} is []interface {}, not int64"]
        );
    }

    #[test]
    fn validation_is_separate() {
        let (o, r) = load_str("max_payload: 10\nmax_pending: 5");
        assert!(r.errors.is_empty());
        assert_eq!(
            validate(&o).unwrap_err(),
            "max_payload (10) cannot be higher than max_pending (5)"
        );
        assert!(validate(&Options::default()).is_ok());
    }

    #[test]
    fn durations() {
        let o = ok("ping_interval: \"2m30s\"\nwrite_deadline: \"500ms\"");
        assert_eq!(o.ping_interval, Duration::from_secs(150));
        assert_eq!(o.write_deadline, Duration::from_millis(500));
        let o = ok("lame_duck_duration: \"1h\"\nlame_duck_grace_period: \"1.5s\"");
        assert_eq!(o.lame_duck_duration, Duration::from_secs(3600));
        assert_eq!(o.lame_duck_grace_period, Duration::from_millis(1500));
        // integers are seconds, with nats-server's warning
        let (o, r) = load_str("port: 1\nping_interval: 5");
        assert_eq!(o.ping_interval, Duration::from_secs(5));
        assert_eq!(
            r.warnings,
            ["t.conf:2:1: invalid use of field \"ping_interval\": ping_interval should be converted to a duration"]
        );
        let (_, r) = load_str("ping_interval: true");
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(
            r.errors,
            ["t.conf:1:0: interface conversion: interface {} is bool, not int64"]
        );
        assert_eq!(
            err("ping_interval: \"5x\""),
            ["t.conf:1:0: error parsing ping_interval: time: unknown unit \"x\" in duration \"5x\""]
        );
        assert_eq!(
            err("lame_duck_duration: \"x\""),
            ["t.conf:1:0: error parsing lame_duck_duration: time: invalid duration \"x\""]
        );
        assert_eq!(
            err("lame_duck_duration: 5"),
            ["t.conf:1:0: interface conversion: interface {} is int64, not string"]
        );
        assert_eq!(
            err("lame_duck_duration: \"5s\""),
            ["t.conf:1:0: invalid lame_duck_duration of 5s, minimum is 30 seconds"]
        );
    }

    #[test]
    fn go_duration_parser() {
        let p = |s: &str| parse_go_duration(s);
        assert_eq!(p("1m30s"), Ok(90_000_000_000));
        assert_eq!(p("500ms"), Ok(500_000_000));
        assert_eq!(p("2h"), Ok(7_200_000_000_000));
        assert_eq!(p("1.5s"), Ok(1_500_000_000));
        assert_eq!(p(".5s"), Ok(500_000_000));
        assert_eq!(p("10us"), Ok(10_000));
        assert_eq!(p("10µs"), Ok(10_000));
        assert_eq!(p("3ns"), Ok(3));
        assert_eq!(p("0"), Ok(0));
        // Found by fuzzing (fuzz/artifacts): digits that overflow i128 once scaled.
        let long = format!("100s8{}s", "0".repeat(37));
        assert_eq!(p(&long), Err(format!("time: invalid duration \"{long}\"")));
        assert!(p(&format!("{}h", "9".repeat(38))).is_err());
        assert_eq!(p("-5s"), Ok(-5_000_000_000));
        assert_eq!(p("5"), Err("time: missing unit in duration \"5\"".into()));
        assert_eq!(p(""), Err("time: invalid duration \"\"".into()));
        assert_eq!(p("."), Err("time: invalid duration \".\"".into()));
        assert_eq!(p("s"), Err("time: invalid duration \"s\"".into()));
        assert_eq!(
            p("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
        let f = |ms: u64| go_duration_string(Duration::from_millis(ms));
        assert_eq!(f(5000), "5s");
        assert_eq!(f(90_000), "1m30s");
        assert_eq!(f(3_600_000), "1h0m0s");
        assert_eq!(f(1500), "1.5s");
        assert_eq!(f(500), "500ms");
        assert_eq!(f(0), "0s");
    }

    #[test]
    fn booleans_strings_and_names() {
        let o =
            ok("debug: true\ntrace: on\nlogtime: no\nno_header_support: yes\nlogtime_utc: true");
        assert!(o.debug && o.trace && !o.logtime && o.no_header_support && o.logtime_utc);
        let o = ok("trace_verbose: true\nsyslog: false\nremote_syslog: \"udp://x:514\"");
        assert!(o.trace && o.trace_verbose && !o.syslog);
        assert_eq!(
            err("debug: 1\ntrace: 2"),
            [
                "t.conf:1:0: interface conversion: interface {} is int64, not bool",
                "t.conf:2:1: interface conversion: interface {} is int64, not bool"
            ]
        );
        assert_eq!(
            err("no_header_support: \"x\""),
            ["t.conf:1:0: interface conversion: interface {} is string, not bool"]
        );
        assert_eq!(
            err("server_name: \"a b\""),
            ["t.conf:1:0: server name cannot contain spaces"]
        );
        assert_eq!(
            err("server_name: 5"),
            ["t.conf:1:0: interface conversion: interface {} is int64, not string"]
        );
        let o = ok("no_auth_user: bob\nclient_advertise: \"x:1\"\nwrite_timeout: close");
        assert_eq!(o.no_auth_user.as_deref(), Some("bob"));
        assert_eq!(o.client_advertise.as_deref(), Some("x:1"));
        assert_eq!(o.write_timeout.as_deref(), Some("close"));
    }

    #[test]
    fn monitoring_ports() {
        let o = ok("http: 8222");
        assert_eq!((o.http_host.as_deref(), o.http_port), (None, 8222));
        let o = ok("http: \"127.0.0.1:8223\"");
        assert_eq!(
            (o.http_host.as_deref(), o.http_port),
            (Some("127.0.0.1"), 8223)
        );
        let o = ok("https: \"127.0.0.1:8224\"\nhttp_base_path: /m");
        assert_eq!(
            (o.https_port, o.http_base_path.as_deref()),
            (8224, Some("/m"))
        );
        assert_eq!(ok("http_port: 1").http_port, 1);
        assert_eq!(ok("monitor_port: 2").http_port, 2);
        assert_eq!(ok("https_port: 3").https_port, 3);
        assert_eq!(
            err("http: \"abc\""),
            ["t.conf:1:0: could not parse address string \"abc\""]
        );
        assert_eq!(
            err("http_port: \"x\""),
            ["t.conf:1:0: interface conversion: interface {} is string, not int64"]
        );
    }

    #[test]
    fn unknown_fields_and_positions() {
        assert_eq!(err("foo: 1"), ["t.conf:1:0: unknown field \"foo\""]);
        assert_eq!(
            err("port: 1\n  foo_bar: 1"),
            ["t.conf:2:3: unknown field \"foo_bar\""]
        );
        assert_eq!(err("    port: \"abc\"").len(), 1);
        assert!(err("    port: \"abc\"")[0].starts_with("t.conf:1:4: "));
        // a variable that was used is not an unknown field; an unused one is
        let o = ok("a = 4100\nport = $a");
        assert_eq!(o.port, 4100);
        assert_eq!(err("b = 1\nport = 2"), ["t.conf:1:0: unknown field \"b\""]);
    }

    #[test]
    fn sections_are_kept_with_policies() {
        let (o, r) = load_str(
            "cluster { name: c, listen: 127.0.0.1:6222 }\nleaf { }\njetstream { store_dir: /tmp/x }\n\
             websocket { port: 1 }\nmqtt { port: 2 }\ngateway { name: g }\nserver_tags: [a, b]\n\
             system_account: SYS\nstore_dir: /tmp/y\nmappings { a: b }",
        );
        assert!(
            r.errors.is_empty() && r.warnings.is_empty() && r.refused.is_empty(),
            "{r:?}"
        );
        for name in [
            "cluster",
            "leafnodes",
            "jetstream",
            "websocket",
            "mqtt",
            "gateway",
            "server_tags",
            "system_account",
            "store_dir",
            "mappings",
        ] {
            assert!(o.section(name).is_some(), "{name}");
        }
        assert!(o.jetstream);
        // one line per unsupported block (mqtt); jetstream is reported by the server
        // itself, and cluster, gateway, websocket, leafnodes and mappings are parsed
        assert_eq!(r.unsupported.len(), 1, "{:?}", r.unsupported);
        assert!(
            r.unsupported[0].starts_with("t.conf:5:1: \"mqtt\" is not supported"),
            "{:?}",
            r.unsupported
        );
        let c = o.cluster.as_ref().expect("cluster options");
        assert_eq!(
            (c.name.as_deref(), c.host.as_str(), c.port),
            (Some("c"), "127.0.0.1", 6222)
        );
        let (o, r) = load_str("authorization { user: a, password: b }\ntls { cert_file: x }");
        // tls is parsed now (issue #5): a cert without key_file is an error.
        assert_eq!(
            r.errors,
            ["t.conf:2:1: missing 'key_file' in TLS configuration"]
        );
        assert!(o.section("authorization").unwrap().value.as_map().is_some());
        assert!(!load_str("jetstream: disabled").0.jetstream);
        assert!(!load_str("jetstream { enabled: false }").0.jetstream);
        assert!(load_str("jetstream: enabled").0.jetstream);
    }

    #[test]
    fn digest_matches_nats_server() {
        // Digests printed by `nats-server -t` 2.15.1 for these files.
        let d = |text: &str| {
            digest(&parser::parse_str_with_env(text, Path::new("t.conf"), &|_| None).unwrap())
        };
        assert_eq!(
            d("port: 4000\nserver_name: foo\nmax_payload: 2MB\n"),
            "sha256:85c7e2fa24e136b96bde7353e1723bfb3d623c44fa18fdbc1e7647f69d2a1c4e"
        );
        assert_eq!(
            d("jetstream {}\ncluster { name: x, listen: 127.0.0.1:6222 }\nleafnodes {}\n"),
            "sha256:ac2b68ab45d4e92865a37a870ebc19a914819d5ebec18302211cc46c14efe322"
        );
        assert_eq!(
            d("a = 1\nport = $a\n"),
            "sha256:a4674c0c66dc793076b14a24edf2ceedf3ad31488e51ee3a2f93e065cc621501"
        );
        let mut s = String::new();
        json_string("a<b>&\u{1}\t\"", &mut s);
        assert_eq!(s, "\"a\\u003cb\\u003e\\u0026\\u0001\\t\\\"\"");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1e-7), "1e-7");
    }

    #[test]
    fn sha256_known_vectors() {
        let hex = |b: [u8; 32]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(
            hex(sha256(&long)),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn render_cleans_paths() {
        let p = Pos::new(std::sync::Arc::new(PathBuf::from("./sub/./i.conf")), 2, 3);
        assert_eq!(render(&p, "x"), "sub/i.conf:2:3: x");
    }
}
