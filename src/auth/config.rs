//! The `authorization { ... }` section and `no_auth_user`, parsed into [`AuthConfig`]
//! with nats-server's error messages and positions (checked against `nats-server -t`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::permissions::{PermEntry, Permissions, ResponsePerm, SubjectPerm};
use crate::account::imports::{
    check_service_imports, check_stream_imports, ResponseType, Rewrite, ServiceExport,
    ServiceImport, StreamExport, StreamImport, DEFAULT_RESPONSE_THRESHOLD,
};
use crate::config::file::{parse_go_duration, render};
use crate::config::value::{Entry, Item, Map, Pos, Value};
use crate::config::Options;

/// Authentication flags (`--user`, `--pass`, `--auth`); secrets never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthFlags {
    /// `--user`.
    pub user: Option<String>,
    /// `--pass`.
    pub pass: Option<String>,
    /// `--auth` (token).
    pub token: Option<String>,
}

impl fmt::Debug for AuthFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFlags")
            .field("user", &self.user)
            .field("pass", &self.pass.as_ref().map(|_| "[REDACTED]"))
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// A configured user (password or nkey).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// User name (empty for nkey users).
    pub name: String,
    /// Plain or bcrypt password.
    pub password: String,
    /// Public user nkey (`U...`).
    pub nkey: Option<String>,
    /// Permissions (own, else the section's default).
    pub permissions: Option<Arc<Permissions>>,
    /// `allowed_connection_types` lets plain client connections (`STANDARD`) in:
    /// true when the list is empty or names it (natrium serves no other kind).
    pub standard_allowed: bool,
    /// The account it is listed in (`accounts { A { users } }`); `None` = `$G`.
    pub account: Option<Arc<str>>,
    /// That account's limits (`accounts { A { limits {} } }`).
    pub limits: AccountLimits,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"[REDACTED]")
            .field("nkey", &self.nkey)
            .field("permissions", &self.permissions)
            .field("standard_allowed", &self.standard_allowed)
            .field("account", &self.account)
            .finish()
    }
}

/// Everything client authentication needs, built from the options.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// `users` entries with a user name.
    pub users: HashMap<String, Arc<User>>,
    /// `users` entries with an nkey, by public key.
    pub nkeys: HashMap<String, Arc<User>>,
    /// `authorization { token }` (or `--auth`); may be a bcrypt hash.
    pub token: Option<String>,
    /// `authorization { user, password }` (or `--user`/`--pass`).
    pub single: Option<(String, String)>,
    /// `no_auth_user`.
    pub no_auth_user: Option<String>,
    /// Accounts the `accounts` section defines, in config order.
    pub accounts: Vec<Arc<str>>,
    /// Stream imports between them (checked against the exports).
    pub stream_imports: Vec<StreamImport>,
    /// Service imports between them (checked, with their exports' response types).
    pub service_imports: Vec<ServiceImport>,
    /// Stream exports by exporting account (config accounts; for monitoring).
    pub stream_exports: Vec<(Arc<str>, StreamExport)>,
    /// Service exports by exporting account (config accounts; for monitoring).
    pub service_exports: Vec<(Arc<str>, ServiceExport)>,
    /// Operator mode: the trusted keys and the resolver's accounts.
    pub trust: Option<Arc<super::operator::Trust>>,
    /// Imports of account JWTs left out (not granted by their export), for the log.
    pub import_warnings: Vec<String>,
    /// Subject mappings by account (`$G` for the top-level `mappings`).
    pub mappings: Vec<(Arc<str>, Vec<crate::account::mapping::Mapping>)>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("users", &self.users)
            .field("nkeys", &self.nkeys)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("single", &self.single.as_ref().map(|(u, _)| u))
            .field("no_auth_user", &self.no_auth_user)
            .field("accounts", &self.accounts)
            .finish()
    }
}

impl AuthConfig {
    /// Clients must authenticate (the auth timer runs).
    pub fn required(&self) -> bool {
        self.trust.is_some()
            || !self.users.is_empty()
            || !self.nkeys.is_empty()
            || self.token.is_some()
            || self.single.is_some()
    }

    /// INFO's `auth_required`: false when `no_auth_user` lets clients in without
    /// credentials.
    pub fn info_auth_required(&self) -> bool {
        self.required() && self.no_auth_user.is_none()
    }

    /// Some password is not a bcrypt hash (nats-server warns at start).
    pub fn has_plaintext_passwords(&self) -> bool {
        self.users
            .values()
            .any(|u| u.nkey.is_none() && !super::is_bcrypt(&u.password))
            || self
                .single
                .as_ref()
                .is_some_and(|(_, p)| !super::is_bcrypt(p))
    }

    /// INFO carries a nonce (nkey users exist).
    pub fn needs_nonce(&self) -> bool {
        !self.nkeys.is_empty() || self.trust.is_some()
    }

    /// Adds a user by name, or by nkey for nkey users; nats-server's text when one is
    /// there already.
    fn add_user(&mut self, u: User) -> Result<(), String> {
        let (map, key, what) = match &u.nkey {
            Some(nk) => (&mut self.nkeys, nk.clone(), "nkey"),
            None => (&mut self.users, u.name.clone(), "user"),
        };
        if map.insert(key.clone(), Arc::new(u)).is_some() {
            return Err(format!("Duplicate {what} \"{key}\" detected"));
        }
        Ok(())
    }

    /// The config in force for `opts`: the `authorization` section (already checked
    /// by the config file loader), overridden by `--user`/`--pass`/`--auth`, plus
    /// `no_auth_user`. Errors are the start-up checks nats-server does.
    pub fn from_options(opts: &Options) -> Result<AuthConfig, String> {
        let mut cfg = AuthConfig::default();
        if let Some(item) = opts.section("authorization") {
            let mut errors = Vec::new();
            let section = parse_section(item, &mut errors);
            if let Some(e) = errors.into_iter().next() {
                return Err(e.1);
            }
            cfg = section.cfg;
        }
        if let Some(item) = opts.section("accounts") {
            let mut errors = Vec::new();
            let section = parse_accounts(item, &mut errors);
            if let Some(e) = errors.into_iter().next() {
                return Err(e.1);
            }
            for u in section.users {
                cfg.add_user(u)?;
            }
            cfg.accounts = section.names;
            cfg.stream_imports = section.imports;
            cfg.service_imports = section.service_imports;
            cfg.stream_exports = section.exports;
            cfg.service_exports = section.service_exports;
            cfg.mappings = section.mappings;
        }
        if let Some(item) = opts.section("mappings") {
            let mut errors = Vec::new();
            let list = parse_mappings(item, &mut errors);
            if let Some(e) = errors.into_iter().next() {
                return Err(e.1);
            }
            cfg.mappings
                .push((Arc::from(crate::account::GLOBAL_NAME), list));
        }
        // Flags win over the file, as in nats-server.
        let flags = &opts.auth_flags;
        if let Some(user) = &flags.user {
            let pass = flags.pass.clone().unwrap_or_default();
            cfg.single = Some((user.clone(), pass));
        } else if let (Some(pass), Some((_, p))) = (&flags.pass, cfg.single.as_mut()) {
            *p = pass.clone();
        }
        if let Some(token) = &flags.token {
            cfg.token = Some(token.clone());
        }
        if let Some(trust) = super::operator::Trust::from_options(opts)? {
            if opts.no_auth_user.is_some() {
                return Err("no_auth_user not compatible with Trusted Operator".into());
            }
            if let Some(sys) = &trust.system_account {
                if !trust.accounts.contains_key(sys) {
                    return Err("error resolving system account: account missing".into());
                }
            }
            // The resolver's accounts are the server's accounts, named by key.
            cfg.accounts = trust.account_names();
            let (streams, services, warnings) = trust.imports(super::operator::now());
            cfg.stream_imports = streams;
            cfg.service_imports = services;
            cfg.import_warnings = warnings;
            let (mappings, warnings) = trust.mappings();
            cfg.mappings = mappings;
            cfg.import_warnings.extend(warnings);
            cfg.trust = Some(Arc::new(trust));
            return Ok(cfg);
        }
        if let Some(name) = &opts.no_auth_user {
            if cfg.users.is_empty() && cfg.nkeys.is_empty() {
                return Err(format!(
                    "no_auth_user: \"{name}\" present, but users/nkeys are not defined"
                ));
            }
            if !cfg.users.contains_key(name) && !cfg.nkeys.contains_key(name) {
                return Err(format!(
                    "no_auth_user: \"{name}\" not present as user or nkey in authorization \
                     block or account configuration"
                ));
            }
            cfg.no_auth_user = Some(name.clone());
        }
        Ok(cfg)
    }
}

/// What parsing the section produced.
#[derive(Default)]
pub struct Section {
    /// Users, token, single user.
    pub cfg: AuthConfig,
    /// `timeout`.
    pub timeout: Option<Duration>,
}

/// Checks the `authorization` entry of a config file and applies its `timeout` onto
/// `opts`. Returns rendered errors (`file:line:col: message`, or bare messages where
/// nats-server gives no position).
pub fn check_entry(entry: &Entry, opts: &mut Options) -> Vec<String> {
    let mut errors = Vec::new();
    if entry.item.value.as_map().is_none() {
        return vec![render(
            &entry.key_pos,
            &format!(
                "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                entry.item.value.go_type()
            ),
        )];
    }
    let mut key_errors = Vec::new();
    let section = parse_section(&entry.item, &mut key_errors);
    for (pos, msg) in key_errors {
        errors.push(match pos {
            Some(Where::At(p)) => render(&p, &msg),
            Some(Where::Section) => render(&entry.key_pos, &msg),
            None => msg,
        });
    }
    if let Some(t) = section.timeout {
        opts.auth_timeout = t;
    }
    errors
}

/// Parses `cluster.permissions` as nats-server does: a user permissions map whose
/// publish side (`import`, `publish`) is what the route may send this server and
/// whose subscribe side (`export`, `subscribe`) is what it may ask for. Returned
/// as [`Permissions`] with those meanings, or rendered errors.
pub fn parse_route_permissions(entry: &Entry) -> Result<Permissions, Vec<String>> {
    let mut errors = Vec::new();
    let perms = parse_permissions(entry, &mut errors);
    let mut rendered: Vec<String> = errors
        .into_iter()
        .map(|(pos, msg)| match pos {
            Some(Where::At(p)) => render(&p, &msg),
            _ => render(&entry.key_pos, &msg),
        })
        .collect();
    if perms.as_ref().is_some_and(|p| p.response.is_some()) {
        rendered.push(render(
            &entry.key_pos,
            "Cluster permissions do not support dynamic responses",
        ));
    }
    match perms {
        Some(p) if rendered.is_empty() => Ok(p),
        _ => Err(rendered),
    }
}

/// Checks the `accounts` entry of a config file. Returns rendered errors, and the
/// fields natrium does not enforce yet (the server refuses to start with them; a
/// `-t` check still passes, as the file is valid for nats-server).
pub fn check_accounts_entry(entry: &Entry) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let section = parse_accounts(&entry.item, &mut errors);
    let render_all = |list: Errors| -> Vec<String> {
        list.into_iter()
            .map(|(pos, msg)| match pos {
                Some(Where::At(p)) => render(&p, &msg),
                Some(Where::Section) => render(&entry.key_pos, &msg),
                None => msg,
            })
            .collect()
    };
    (render_all(errors), render_all(section.not_yet))
}

/// What the `accounts` section defines.
#[derive(Default)]
struct AccountsSection {
    /// Account names in config order.
    names: Vec<Arc<str>>,
    /// Every account's users, each with its account set.
    users: Vec<User>,
    /// Fields nats-server knows that natrium does not enforce yet.
    not_yet: Errors,
    /// Stream exports, by exporting account.
    exports: Vec<(Arc<str>, StreamExport)>,
    /// Stream imports.
    imports: Vec<StreamImport>,
    /// Service exports, by exporting account.
    service_exports: Vec<(Arc<str>, ServiceExport)>,
    /// Service imports.
    service_imports: Vec<ServiceImport>,
    /// Account limits, by account.
    limits: HashMap<Arc<str>, AccountLimits>,
    /// Subject mappings, by account.
    mappings: Vec<(Arc<str>, Vec<crate::account::mapping::Mapping>)>,
}

/// Account fields nats-server knows that natrium does not enforce yet: refused, since
/// running without them would silently change what crosses account boundaries or
/// what an account may do.
const ACCOUNT_FIELDS_NOT_YET: &[&str] = &["nkey", "jetstream", "msg_trace"];

/// An account's limits from config (`limits {}`):
/// connections, subscriptions per connection, payload; `None` = unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub conns: Option<usize>,
    pub subs: Option<usize>,
    pub payload: Option<usize>,
}

/// `accounts { A { users [...] default_permissions {...} } B {} }` or `accounts [A, B]`.
/// `mappings { src: dest, src2: [ {destination: d, weight: 40%}, ... ] }`.
fn parse_mappings(item: &Item, errors: &mut Errors) -> Vec<crate::account::mapping::Mapping> {
    let mut out = Vec::new();
    let Some(map) = item.value.as_map() else {
        errors.push((
            Some(Where::At(item.pos.clone())),
            format!("Expected a mappings map, got {}", show(&item.value)),
        ));
        return out;
    };
    for e in map.entries() {
        let at = || Some(Where::At(e.key_pos.clone()));
        let one =
            |v: &Value| -> Result<(String, u8), String> {
                if let Some(s) = v.as_str() {
                    return Ok((s.to_string(), 100));
                }
                let m = v
                    .as_map()
                    .ok_or_else(|| format!("Expected a mapping destination, got {}", show(v)))?;
                let mut dest = None;
                let mut weight = 100u8;
                for f in m.entries() {
                    match f.key.to_ascii_lowercase().as_str() {
                        "destination" | "dest" => dest = f.item.value.as_str().map(str::to_string),
                        "weight" => {
                            let w = match &f.item.value {
                                Value::Int(n) => Some(*n),
                                Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
                                _ => None,
                            };
                            weight = w
                                .filter(|w| (0..=100).contains(w))
                                .map(|w| w as u8)
                                .ok_or_else(|| {
                                    format!(
                                        "Invalid weight {} for mapping destination",
                                        show(&f.item.value)
                                    )
                                })?;
                        }
                        // Cluster-scoped destinations need cluster-aware mappings.
                        "cluster" => return Err(
                            "cluster-scoped mapping destinations are not supported by natrium yet"
                                .into(),
                        ),
                        other => {
                            return Err(format!("Unknown field {other:?} for mapping destination"))
                        }
                    }
                }
                Ok((
                    dest.ok_or("mapping destination without a destination subject")?,
                    weight,
                ))
            };
        let parsed = match &e.item.value {
            Value::Array(list) => list
                .iter()
                .map(|i| one(&i.value))
                .collect::<Result<Vec<_>, _>>(),
            v => one(v).map(|d| vec![d]),
        };
        match parsed.and_then(|d| crate::account::mapping::Mapping::new(&e.key, &d)) {
            Ok(m) => out.push(m),
            Err(why) => errors.push((at(), why)),
        }
    }
    out
}

fn parse_accounts(item: &Item, errors: &mut Errors) -> AccountsSection {
    let mut out = AccountsSection::default();
    if let Some(list) = item.value.as_array() {
        for name in list {
            match &name.value {
                Value::String(n) => out.names.push(Arc::from(n.as_str())),
                other => errors.push((
                    Some(Where::At(name.pos.clone())),
                    format!("Expected account name to be a string, got {}", show(other)),
                )),
            }
        }
        return out;
    }
    let Some(map) = item.value.as_map() else {
        errors.push((
            Some(Where::Section),
            item.value.conversion_error("map[string]interface {}"),
        ));
        return out;
    };
    let mut seen: std::collections::HashSet<String> = Default::default();
    for acc in map.entries() {
        let at = Some(Where::At(acc.key_pos.clone()));
        if acc.key == crate::account::GLOBAL_NAME {
            errors.push((at, format!("\"{}\" is a Reserved Account", acc.key)));
            continue;
        }
        let Some(fields) = acc.item.value.as_map() else {
            errors.push((at, "Expected map entries for accounts".into()));
            continue;
        };
        let name: Arc<str> = Arc::from(acc.key.as_str());
        out.names.push(name.clone());
        let mut users = Vec::new();
        let mut users_at = acc.key_pos.clone();
        let mut default_perms = None;
        for e in fields.entries() {
            let at = || Some(Where::At(e.key_pos.clone()));
            let key = e.key.to_ascii_lowercase();
            match key.as_str() {
                "users" => {
                    users = parse_users(e, errors);
                    users_at = e.key_pos.clone();
                }
                "default_permission" | "default_permissions" => {
                    default_perms = parse_permissions(e, errors).map(Arc::new);
                }
                "mappings" | "maps" => {
                    let list = parse_mappings(&e.item, errors);
                    out.mappings.push((name.clone(), list));
                }
                "exports" => parse_exports(e, &name, &mut out, errors),
                "imports" => parse_imports(e, &name, &mut out, errors),
                "limits" => match e.item.value.as_map() {
                    Some(m) => {
                        for le in m.entries() {
                            let k = le.key.to_ascii_lowercase();
                            if matches!(k.as_str(), "max_leafnodes" | "max_leafs") {
                                not_yet(&mut out, &le.key_pos, &format!("\"{}\"", le.key));
                            } else if let Err(msg) = account_limit(&mut out, &name, le) {
                                errors.push((Some(Where::At(le.key_pos.clone())), msg));
                            }
                        }
                    }
                    None => errors.push((
                        at(),
                        format!(
                            "Expected account limits to be a map/struct, got {}",
                            show(&e.item.value)
                        ),
                    )),
                },

                k if ACCOUNT_FIELDS_NOT_YET.contains(&k) => out.not_yet.push((
                    at(),
                    format!(
                        "account \"{}\" is not supported by natrium yet, and running \
                         without it would change what crosses account boundaries",
                        e.key
                    ),
                )),
                _ => errors.push((at(), format!("unknown field \"{}\"", e.key))),
            }
        }
        for mut u in users {
            let key = u.nkey.clone().unwrap_or_else(|| u.name.clone());
            if !seen.insert(key.clone()) {
                errors.push((
                    Some(Where::At(users_at.clone())),
                    format!("Duplicate user \"{key}\" detected"),
                ));
                continue;
            }
            if u.permissions.is_none() {
                u.permissions = default_perms.clone();
            }
            u.account = Some(name.clone());
            u.limits = out.limits.get(&name).copied().unwrap_or_default();
            out.users.push(u);
        }
    }
    if let Err(e) = check_stream_imports(&out.names, &out.exports, &out.imports) {
        errors.push((Some(Where::Section), e));
    }
    if let Err(e) =
        check_service_imports(&out.names, &out.service_exports, &mut out.service_imports)
    {
        errors.push((Some(Where::Section), e));
    }
    out
}

/// One account limit (`max_connections`, `max_subscriptions`, `max_payload`; a
/// negative value is unlimited, as nats-server reads it).
fn account_limit(out: &mut AccountsSection, account: &Arc<str>, e: &Entry) -> Result<(), String> {
    let Some(n) = e.item.value.as_int() else {
        return Err(e.item.value.conversion_error("int64"));
    };
    let n = usize::try_from(n).ok();
    let l = out.limits.entry(account.clone()).or_default();
    match e.key.to_ascii_lowercase().as_str() {
        "max_connections" | "max_conn" => l.conns = n,
        "max_subscriptions" | "max_subs" => l.subs = n,
        "max_payload" | "max_pay" => l.payload = n,
        other => return Err(format!("Unknown field {other:?} parsing account limits")),
    }
    Ok(())
}

/// Not yet enforced: recorded so that the server refuses to start.
fn not_yet(out: &mut AccountsSection, pos: &Pos, what: &str) {
    out.not_yet.push((
        Some(Where::At(pos.clone())),
        format!(
            "account {what}: not supported by natrium yet, and running without it would \
             change what crosses account boundaries"
        ),
    ));
}

/// The maps of an `exports`/`imports` array.
fn entry_maps<'a>(e: &'a Entry, errors: &mut Errors) -> Vec<(&'a Item, &'a Map)> {
    let Some(list) = e.item.value.as_array() else {
        errors.push((
            Some(Where::At(e.key_pos.clone())),
            format!("{} should be an array, got {}", e.key, show(&e.item.value)),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in list {
        match item.value.as_map() {
            Some(m) => out.push((item, m)),
            None => errors.push((
                Some(Where::At(item.pos.clone())),
                format!("{} entry should be a map, got {}", e.key, show(&item.value)),
            )),
        }
    }
    out
}

/// `exports [ {stream: s, accounts: [..]} {service: s, accounts, response_type,
/// response_threshold} ]` (latency tracking is not enforced yet).
fn parse_exports(e: &Entry, account: &Arc<str>, out: &mut AccountsSection, errors: &mut Errors) {
    for (item, map) in entry_maps(e, errors) {
        let (mut stream, mut service, mut accounts) = (None, None, None);
        let mut response = ResponseType::Singleton;
        let mut threshold = DEFAULT_RESPONSE_THRESHOLD;
        for f in map.entries() {
            match f.key.to_ascii_lowercase().as_str() {
                "stream" => stream = string_at(f, errors),
                "service" => service = string_at(f, errors),
                "accounts" => accounts = Some(parse_names(f, errors)),
                "response" | "response_type" => {
                    if let Some(t) = string_at(f, errors) {
                        match ResponseType::parse(&t) {
                            Some(r) => response = r,
                            None => errors.push((
                                Some(Where::At(f.key_pos.clone())),
                                format!("Unknown response type: \"{t}\""),
                            )),
                        }
                    }
                }
                "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                    if let Some(t) = string_at(f, errors) {
                        match parse_go_duration(&t) {
                            Ok(ns) => {
                                threshold =
                                    Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64)
                            }
                            Err(err) => errors.push((Some(Where::At(f.key_pos.clone())), err)),
                        }
                    }
                }
                other => not_yet(out, &f.key_pos, &format!("export field \"{other}\"")),
            }
        }
        match (stream, service) {
            (Some(subject), _) => out
                .exports
                .push((account.clone(), StreamExport { subject, accounts })),
            (None, Some(subject)) => out.service_exports.push((
                account.clone(),
                ServiceExport {
                    subject,
                    accounts,
                    response,
                    threshold,
                },
            )),
            (None, None) => errors.push((
                Some(Where::At(item.pos.clone())),
                "Export needs a stream or service subject".into(),
            )),
        }
    }
}

/// The `{account: A, subject: s}` of an import.
fn parse_source(f: &Entry, errors: &mut Errors) -> Option<(String, String)> {
    let Some(m) = f.item.value.as_map() else {
        errors.push((
            Some(Where::At(f.key_pos.clone())),
            f.item.value.conversion_error("map[string]interface {}"),
        ));
        return None;
    };
    let (mut from, mut subject) = (None, None);
    for g in m.entries() {
        match g.key.to_ascii_lowercase().as_str() {
            "account" => from = string_at(g, errors),
            "subject" => subject = string_at(g, errors),
            other => errors.push((
                Some(Where::At(g.key_pos.clone())),
                format!("unknown field \"{other}\""),
            )),
        }
    }
    from.zip(subject)
}

/// `imports [ {stream: {account: A, subject: s}, prefix: p | to: t}
/// {service: {account: A, subject: s}, to: t} ]`.
fn parse_imports(e: &Entry, account: &Arc<str>, out: &mut AccountsSection, errors: &mut Errors) {
    for (item, map) in entry_maps(e, errors) {
        let (mut stream, mut service) = (None, None);
        let (mut prefix, mut to) = (None, None);
        for f in map.entries() {
            match f.key.to_ascii_lowercase().as_str() {
                "stream" => stream = parse_source(f, errors),
                "service" => service = parse_source(f, errors),
                "prefix" => prefix = string_at(f, errors),
                "to" => to = string_at(f, errors),
                other => not_yet(out, &f.key_pos, &format!("import field \"{other}\"")),
            }
        }
        match (stream, service) {
            (Some((from, subject)), _) => out.imports.push(StreamImport {
                from: Arc::from(from.as_str()),
                subject,
                into: account.clone(),
                rewrite: match (prefix, to) {
                    (Some(p), _) => Rewrite::Prefix(p),
                    (None, Some(t)) => Rewrite::To(t),
                    (None, None) => Rewrite::Keep,
                },
            }),
            (None, Some((from, subject))) => out.service_imports.push(ServiceImport {
                from: Arc::from(from.as_str()),
                local: to.unwrap_or_else(|| subject.clone()),
                subject,
                into: account.clone(),
                response: ResponseType::Singleton,
                threshold: DEFAULT_RESPONSE_THRESHOLD,
            }),
            (None, None) => errors.push((
                Some(Where::At(item.pos.clone())),
                "Import needs a stream or a service (account and subject)".into(),
            )),
        }
    }
}

/// A list of account names.
fn parse_names(e: &Entry, errors: &mut Errors) -> Vec<Arc<str>> {
    let Some(list) = e.item.value.as_array() else {
        errors.push((
            Some(Where::At(e.key_pos.clone())),
            e.item.value.conversion_error("[]interface {}"),
        ));
        return Vec::new();
    };
    list.iter()
        .filter_map(|i| match &i.value {
            Value::String(s) => Some(Arc::from(s.as_str())),
            other => {
                errors.push((
                    Some(Where::At(i.pos.clone())),
                    other.conversion_error("string"),
                ));
                None
            }
        })
        .collect()
}

/// nats-server's default auth timeout, put into `opts` once TLS is known (call it
/// after the `--tls*` flags are applied): without an explicit (non-zero)
/// `authorization { timeout }`, it is the TLS handshake timeout plus one second when
/// TLS is configured, else 2 seconds.
pub fn apply_default_timeout(opts: &mut Options) {
    let explicit = !opts.auth_timeout.is_zero()
        && opts
            .section("authorization")
            .and_then(|item| item.value.as_map())
            .is_some_and(|m| {
                m.entries()
                    .iter()
                    .any(|e| e.key.eq_ignore_ascii_case("timeout"))
            });
    if !explicit {
        opts.auth_timeout = match &opts.tls {
            Some(tls) => tls.timeout + Duration::from_secs(1),
            None => DEFAULT_AUTH_TIMEOUT,
        };
    }
}

/// nats-server's `AUTH_TIMEOUT` without TLS.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where an error is reported.
#[derive(Clone)]
enum Where {
    At(Pos),
    /// At the `authorization` key.
    Section,
}

type Errors = Vec<(Option<Where>, String)>;

fn string_at(e: &Entry, errors: &mut Errors) -> Option<String> {
    match &e.item.value {
        Value::String(s) => Some(s.clone()),
        other => {
            errors.push((
                Some(Where::At(e.key_pos.clone())),
                other.conversion_error("string"),
            ));
            None
        }
    }
}

/// Go's `%v` of a config value, for "got ..." messages.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Datetime(d) => d.clone(),
        Value::Map(_) => "map[...]".into(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|i| show(&i.value))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn parse_section(item: &Item, errors: &mut Errors) -> Section {
    let mut out = Section::default();
    let Some(map) = item.value.as_map() else {
        errors.push((
            Some(Where::Section),
            item.value.conversion_error("map[string]interface {}"),
        ));
        return out;
    };
    let (mut user, mut pass, mut token) = (None, None, None);
    let mut users: Option<Vec<User>> = None;
    let mut default_perms = None;
    for e in map.entries() {
        let at = || Some(Where::At(e.key_pos.clone()));
        match e.key.to_ascii_lowercase().as_str() {
            "user" | "username" => user = string_at(e, errors),
            "pass" | "password" => pass = string_at(e, errors),
            "token" => token = string_at(e, errors),
            "timeout" => {
                let secs = match &e.item.value {
                    Value::Int(i) => Some(Duration::from_secs((*i).max(0) as u64)),
                    Value::Float(f) => Some(Duration::from_secs_f64(f.max(0.0))),
                    Value::String(s) => match parse_go_duration(s) {
                        Ok(ns) => Some(Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64)),
                        Err(err) => {
                            errors.push((
                                at(),
                                format!("error parsing authorization config, 'timeout' {err}"),
                            ));
                            None
                        }
                    },
                    other => {
                        errors.push((
                            at(),
                            format!(
                                "error parsing authorization config, 'timeout' wrong type {}",
                                other.go_type()
                            ),
                        ));
                        None
                    }
                };
                out.timeout = secs;
            }
            "users" => users = Some(parse_users(e, errors)),
            "default_permission" | "default_permissions" | "permissions" => {
                default_perms = parse_permissions(e, errors).map(Arc::new);
            }
            _ => errors.push((at(), format!("unknown field \"{}\"", e.key))),
        }
    }
    if token.is_some() && (user.is_some() || pass.is_some()) {
        errors.push((
            Some(Where::Section),
            "Cannot have a user/pass and token".into(),
        ));
    }
    if let Some(list) = users {
        if token.is_some() {
            errors.push((
                Some(Where::Section),
                "Can not have a token and a users array".into(),
            ));
        }
        if user.is_some() {
            errors.push((
                Some(Where::Section),
                "Can not have a single user/pass and a users array".into(),
            ));
        }
        for mut u in list {
            if u.permissions.is_none() {
                u.permissions = default_perms.clone();
            }
            if let Err(e) = out.cfg.add_user(u) {
                errors.push((Some(Where::Section), e));
            }
        }
    }
    out.cfg.token = token;
    if let Some(u) = user {
        out.cfg.single = Some((u, pass.unwrap_or_default()));
    }
    out
}

fn parse_users(e: &Entry, errors: &mut Errors) -> Vec<User> {
    let mut out = Vec::new();
    let Some(list) = e.item.value.as_array() else {
        errors.push((
            Some(Where::At(e.key_pos.clone())),
            format!(
                "Expected users field to be an array, got {}",
                show(&e.item.value)
            ),
        ));
        return out;
    };
    for item in list {
        let Some(map) = item.value.as_map() else {
            errors.push((
                Some(Where::At(item.pos.clone())),
                format!(
                    "Expected user entry to be a map/struct, got {}",
                    show(&item.value)
                ),
            ));
            continue;
        };
        if let Some(u) = parse_user(map, item, errors) {
            out.push(u);
        }
    }
    out
}

/// Connection kinds `allowed_connection_types` may name (nats-server's list).
const CONNECTION_TYPES: &[&str] = &[
    "STANDARD",
    "WEBSOCKET",
    "LEAFNODE",
    "LEAFNODE_WS",
    "MQTT",
    "MQTT_WS",
    "IN_PROCESS",
];

/// A user's `allowed_connection_types` (a string or a list of them, any case):
/// whether plain client connections (`STANDARD`) may use it. None after an error
/// (an unknown kind, or a value that is not a string).
fn parse_connection_types(e: &Entry, errors: &mut Errors) -> Option<bool> {
    let at = || Some(Where::At(e.key_pos.clone()));
    let names: Vec<String> = match &e.item.value {
        Value::String(s) => vec![s.to_ascii_uppercase()],
        Value::Array(items) => {
            let mut names = Vec::new();
            for i in items {
                match &i.value {
                    Value::String(s) => names.push(s.to_ascii_uppercase()),
                    other => {
                        errors.push((
                            at(),
                            format!(
                                "error parsing allowed connection types: unsupported type {}",
                                other.go_type()
                            ),
                        ));
                        return None;
                    }
                }
            }
            names
        }
        other => {
            errors.push((
                at(),
                format!(
                    "error parsing allowed connection types: unsupported type {}",
                    other.go_type()
                ),
            ));
            return None;
        }
    };
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !CONNECTION_TYPES.contains(&n.as_str()))
        .map(|n| format!("{n:?}"))
        .collect();
    if !unknown.is_empty() {
        errors.push((
            at(),
            format!("invalid connection types [{}]", unknown.join(" ")),
        ));
        return None;
    }
    Some(names.is_empty() || names.iter().any(|n| n == "STANDARD"))
}

fn parse_user(map: &Map, item: &Item, errors: &mut Errors) -> Option<User> {
    let mut u = User {
        name: String::new(),
        password: String::new(),
        nkey: None,
        permissions: None,
        standard_allowed: true,
        account: None,
        limits: AccountLimits::default(),
    };
    let mut last = item.pos.clone();
    let mut ok = true;
    let mut has_pass = false;
    for e in map.entries() {
        last = e.key_pos.clone();
        let at = || Some(Where::At(e.key_pos.clone()));
        match e.key.to_ascii_lowercase().as_str() {
            "user" | "username" => u.name = string_at(e, errors)?,
            "pass" | "password" => {
                u.password = string_at(e, errors)?;
                has_pass = true;
            }
            "nkey" => {
                let nk = string_at(e, errors)?;
                let valid = nkeys::KeyPair::from_public_key(&nk)
                    .is_ok_and(|kp| kp.key_pair_type() == nkeys::KeyPairType::User);
                if !valid {
                    errors.push((at(), "Not a valid public nkey for a user".into()));
                    ok = false;
                }
                u.nkey = Some(nk);
            }
            "permission" | "permissions" | "authorization" => {
                u.permissions = parse_permissions(e, errors).map(Arc::new);
            }
            "allowed_connection_types" | "connection_types" | "clients" => {
                match parse_connection_types(e, errors) {
                    Some(standard) => u.standard_allowed = standard,
                    None => ok = false,
                }
            }
            // Accepted and not enforced (no proxies here).
            "proxy_required" => {}
            "account" => errors.push((
                at(),
                "natrium does not support accounts yet: user \"account\" cannot be honoured".into(),
            )),
            _ => {
                errors.push((at(), format!("unknown field \"{}\"", e.key)));
                ok = false;
            }
        }
    }
    if u.nkey.is_some() {
        if !u.name.is_empty() || has_pass {
            errors.push((
                Some(Where::At(last)),
                "Nkey users do not take usernames or passwords".into(),
            ));
            return None;
        }
    } else if u.name.is_empty() {
        errors.push((Some(Where::At(last)), "User entry requires a user".into()));
        return None;
    }
    ok.then_some(u)
}

/// Parses a permissions map (user `permissions` or `default_permissions`).
fn parse_permissions(e: &Entry, errors: &mut Errors) -> Option<Permissions> {
    let Some(map) = e.item.value.as_map() else {
        errors.push((
            Some(Where::At(e.key_pos.clone())),
            format!(
                "Expected permissions to be a map/struct, got {}",
                show(&e.item.value)
            ),
        ));
        return None;
    };
    let mut p = Permissions::default();
    for pe in map.entries() {
        let at = || Some(Where::At(pe.key_pos.clone()));
        match pe.key.to_ascii_lowercase().as_str() {
            "pub" | "publish" | "import" => p.publish = parse_subject_perm(pe, false, errors),
            "sub" | "subscribe" | "export" => p.subscribe = parse_subject_perm(pe, true, errors),
            "allow_responses" | "publish_allow_responses" => match &pe.item.value {
                Value::Bool(true) => p.response = Some(ResponsePerm::default()),
                Value::Bool(false) => p.response = None,
                Value::Map(m) => {
                    let mut r = ResponsePerm::default();
                    for re in m.entries() {
                        let rat = || Some(Where::At(re.key_pos.clone()));
                        match re.key.to_ascii_lowercase().as_str() {
                            "max" | "max_msgs" | "max_messages" | "max_responses" => {
                                match re.item.value.as_int() {
                                    Some(n) => r.max = n,
                                    None => errors
                                        .push((rat(), re.item.value.conversion_error("int64"))),
                                }
                            }
                            "expires" | "expiration" | "ttl" => match &re.item.value {
                                Value::String(s) => match parse_go_duration(s) {
                                    Ok(ns) => {
                                        r.expires = Duration::from_nanos(
                                            ns.clamp(0, u64::MAX as i128) as u64,
                                        )
                                    }
                                    Err(err) => errors
                                        .push((rat(), format!("error parsing expires: {err}"))),
                                },
                                other => errors.push((rat(), other.conversion_error("string"))),
                            },
                            _ => errors.push((
                                rat(),
                                format!("Unknown field \"{}\" parsing permissions", re.key),
                            )),
                        }
                    }
                    p.response = Some(r);
                }
                _ => errors.push((
                    at(),
                    "error parsing response permissions, expected a boolean or a map".into(),
                )),
            },
            _ => errors.push((
                at(),
                format!("Unknown field \"{}\" parsing permissions", pe.key),
            )),
        }
    }
    // Reply permissions without publish permissions: only replies may be published.
    if p.response.is_some() && p.publish.is_none() {
        p.publish = Some(SubjectPerm {
            allow: Some(Vec::new()),
            deny: None,
        });
    }
    Some(p)
}

fn parse_subject_perm(e: &Entry, queues: bool, errors: &mut Errors) -> Option<SubjectPerm> {
    match &e.item.value {
        Value::Map(m) => {
            let mut sp = SubjectPerm::default();
            for le in m.entries() {
                let at = Some(Where::At(le.key_pos.clone()));
                match le.key.to_ascii_lowercase().as_str() {
                    "allow" => sp.allow = parse_subjects(&le.item, queues, at, errors),
                    "deny" => sp.deny = parse_subjects(&le.item, queues, at, errors),
                    _ => errors.push((
                        at,
                        format!(
                            "Unknown field name \"{}\" parsing subject permissions, only \
                             'allow' or 'deny' are permitted",
                            le.key
                        ),
                    )),
                }
            }
            Some(sp)
        }
        _ => Some(SubjectPerm {
            allow: parse_subjects(&e.item, queues, None, errors),
            deny: None,
        }),
    }
}

fn parse_subjects(
    item: &Item,
    queues: bool,
    at: Option<Where>,
    errors: &mut Errors,
) -> Option<Vec<PermEntry>> {
    let strings: Vec<&str> = match &item.value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => {
            let mut v = Vec::with_capacity(a.len());
            for i in a {
                match &i.value {
                    Value::String(s) => v.push(s.as_str()),
                    other => {
                        errors.push((
                            at.clone(),
                            format!(
                                "Subject in permissions array cannot be cast to string, got {}",
                                other.go_type()
                            ),
                        ));
                        return None;
                    }
                }
            }
            v
        }
        other => {
            errors.push((
                at,
                format!(
                    "Expected subject permissions to be a subject, or array of subjects, got {}",
                    other.go_type()
                ),
            ));
            return None;
        }
    };
    let mut out = Vec::with_capacity(strings.len());
    for s in strings {
        match PermEntry::parse(s, queues) {
            Some(pe) => out.push(pe),
            None => {
                errors.push((
                    at.clone(),
                    format!("subject \"{s}\" is not a valid subject"),
                ));
                return None;
            }
        }
    }
    Some(out)
}
