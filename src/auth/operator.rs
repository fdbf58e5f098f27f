//! Operator mode (decentralized security): the trusted operators and keys, the
//! account JWTs a `MEMORY` resolver preloads, and the login of a client that
//! presents a user JWT, with nats-server's checks in its order: the JWT's own
//! signature and validity, its account (issued by a trusted key, not expired), the
//! user's issuer (the account or one of its signing keys; a scoped key's template
//! replaces the user's permissions), the nonce signature unless a bearer token,
//! revocations, source networks, connect times and connection types.
//!
//! Decisions, like the rest of `auth`: claims and CONNECT in, an identity or a
//! failure out; no connection is known here. The full resolver's directory is the
//! one piece of state it touches (read when the trust is built, written by
//! [`Trust::store`] and [`Trust::delete`], which callers run off the executor).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::jwt::{self, Claims};
use super::permissions::{PermEntry, Permissions, ResponsePerm, SubjectPerm};
use super::{Failure, Identity};
use crate::account::imports::{
    ResponseType, Rewrite, ServiceExport, ServiceImport, StreamExport, StreamImport,
};
use crate::proto::connect::ConnectOpts;

/// A user signing key of an account: plain, or scoped with the template of
/// permissions and limits every user it signs gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    /// The template (`None`: a plain signing key).
    pub scope: Option<Value>,
}

/// An account as its JWT describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Public key (the account's name in operator mode).
    pub key: String,
    /// `name`.
    pub name: String,
    /// Expires (unix seconds, 0 = never).
    pub exp: i64,
    /// Keys that may sign its users, besides the account key itself.
    pub signing_keys: HashMap<String, SigningKey>,
    /// Revoked users (or `*`): JWTs issued at or before the time are refused.
    pub revocations: HashMap<String, i64>,
    /// Permissions of users whose JWT sets none.
    pub default_permissions: Option<Permissions>,
    /// `limits.disallow_bearer`.
    pub disallow_bearer: bool,
    /// `limits.conn`, `limits.subs`, `limits.payload` (`None`: unlimited).
    pub limits: (Option<usize>, Option<usize>, Option<usize>),
    /// The `nats` object, for exports and imports.
    nats: Value,
    /// The JWT itself (what `CLAIMS.LOOKUP` answers).
    pub jwt: String,
}

/// Where account JWTs come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Resolver {
    /// `resolver: MEMORY`: `resolver_preload` only.
    #[default]
    Memory,
    /// `resolver: URL(http://...)`: account JWTs fetched when first needed.
    Url(super::url_resolver::ResolverUrl),
    /// `resolver { type: full, dir }`: JWTs kept as `<dir>/<account key>.jwt`,
    /// updated at run time through `$SYS.REQ.CLAIMS.UPDATE` (and deleted through
    /// `$SYS.REQ.CLAIMS.DELETE` with `allow_delete`).
    Full {
        /// The directory.
        dir: std::path::PathBuf,
        /// `allow_delete`.
        allow_delete: bool,
        /// `type: cache`: updates are taken only for accounts already held (a lone
        /// server has no full resolver to look the others up from).
        cache: bool,
    },
}

/// Subject mappings by account.
pub type AccountMappings = Vec<(Arc<str>, Vec<crate::account::mapping::Mapping>)>;

/// [`Trust::store`]'s refusal of an account a cache resolver does not hold.
pub const CACHE_SKIPPED: &str = "jwt update cache skipped";

/// What operator mode trusts and knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// Where the accounts come from.
    pub resolver: Resolver,
    /// The operators' identity keys (`operator`), empty with bare `trusted_keys`.
    pub operator_keys: HashSet<String>,
    /// Keys that may sign account JWTs: the operators' identity keys (unless strict
    /// signing key use) and signing keys, or `trusted_keys`.
    pub keys: HashSet<String>,
    /// The system account's key (`system_account`, else the operator's).
    pub system_account: Option<String>,
    /// Accounts the resolver holds, by key.
    pub accounts: HashMap<String, Arc<Account>>,
    /// `resolver_pinned_accounts`: only users of these accounts may log in.
    pub pinned: Option<HashSet<String>>,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads an operator JWT: inline, or the file a path names (decorated or not).
fn operator_jwt(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.starts_with("eyJ") {
        return Ok(t.to_string());
    }
    let body = std::fs::read_to_string(t).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file or directory".to_string()
        } else {
            e.to_string()
        };
        format!("error parsing operator JWT: open {t}: {why}")
    })?;
    jwt::parse_decorated(&body)
        .0
        .ok_or_else(|| format!("error parsing operator JWT: {t}: no JWT found"))
}

impl Trust {
    /// Operator mode as the options configure it: `operator` (files or inline
    /// JWTs) or `trusted_keys`, `system_account`, and the `MEMORY` resolver's
    /// `resolver_preload`. `Ok(None)` outside operator mode.
    pub fn from_options(opts: &crate::config::Options) -> Result<Option<Trust>, String> {
        let strings = |name: &str| -> Vec<String> {
            match opts.section(name).map(|i| &i.value) {
                Some(crate::config::value::Value::String(s)) => vec![s.clone()],
                Some(crate::config::value::Value::Array(a)) => a
                    .iter()
                    .filter_map(|i| i.value.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let operator_texts = strings("operator");
        let trusted = strings("trusted");
        if operator_texts.is_empty() && trusted.is_empty() {
            return Ok(None);
        }
        if !operator_texts.is_empty() && !trusted.is_empty() {
            return Err("conflicting options for 'TrustedKeys' and 'TrustedOperators'".into());
        }
        let mut t = Trust::default();
        let mut operator_system: Option<String> = None;
        let mut account_server_url: Option<String> = None;
        for text in &operator_texts {
            let token = operator_jwt(text)?;
            let c = jwt::decode(&token).map_err(|e| format!("error parsing operator JWT: {e}"))?;
            if c.kind() != "operator" || c.iss != c.sub {
                return Err(format!(
                    "error parsing operator JWT: not an operator JWT ({:?})",
                    c.kind()
                ));
            }
            let strict = c
                .nats
                .get("strict_signing_key_usage")
                .and_then(Value::as_bool)
                == Some(true);
            if !strict {
                t.keys.insert(c.sub.clone());
            }
            for k in list(&c.nats, "signing_keys") {
                t.keys.insert(k);
            }
            t.operator_keys.insert(c.sub.clone());
            if operator_system.is_none() && !c.str("system_account").is_empty() {
                operator_system = Some(c.str("system_account").to_string());
            }
            if account_server_url.is_none() && !c.str("account_server_url").is_empty() {
                account_server_url = Some(c.str("account_server_url").to_string());
            }
        }
        for k in trusted {
            if nkeys::KeyPair::from_public_key(&k).is_err() || !k.starts_with('O') {
                return Err(format!(
                    "trusted Keys {k:?} are not valid operator public keys"
                ));
            }
            t.keys.insert(k);
        }
        let pinned = strings("resolver_pinned_accounts");
        if !pinned.is_empty() {
            t.pinned = Some(pinned.into_iter().collect());
        }
        t.system_account = opts
            .section("system_account")
            .and_then(|i| i.value.as_str())
            .map(str::to_string)
            .or(operator_system);
        t.resolver = match (opts.section("resolver"), &account_server_url) {
            // nats-server: an operator's account server and no resolver make a URL one.
            (None, Some(base)) => Resolver::Url(super::url_resolver::ResolverUrl::parse(
                &format!("{}/accounts/", base.trim_end_matches('/')),
            )?),
            (r, _) => resolver_of(r.map(|i| &i.value))?,
        };
        if let Resolver::Url(url) = &mut t.resolver {
            if let Some(item) = opts.section("resolver_tls") {
                let entry = crate::config::value::Entry {
                    key: "resolver_tls".into(),
                    key_pos: item.pos.clone(),
                    item: item.clone(),
                    used_as_variable: false,
                };
                let mut report = crate::config::file::Report::default();
                let tls = crate::tls::parse_dial_entry(&entry, &mut report);
                if let Some(e) = report.errors.first() {
                    return Err(e.clone());
                }
                url.set_tls(tls);
            }
        }
        if let Resolver::Url(url) = &t.resolver {
            super::url_resolver::check_once(url)?;
            // Accounts this process fetched before (a reload or an update rebuilds
            // the trust): a JWT that no longer checks out is left out.
            for token in super::url_resolver::fetched() {
                let _ = t.add_account(&token);
            }
        }
        if let (Resolver::Url(url), Some(sys)) = (&t.resolver, &t.system_account) {
            if !t.accounts.contains_key(sys) {
                // Once per process, at start-up (later rebuilds find it remembered).
                let token = url
                    .fetch(sys, super::url_resolver::FETCH_TIMEOUT)
                    .map_err(|e| format!("error resolving system account: {e}"))?;
                let acc = t
                    .read_account(&token)
                    .map_err(|e| format!("error resolving system account: {e}"))?;
                if acc.key != *sys {
                    return Err(format!(
                        "error resolving system account: the answer holds the JWT of {}",
                        acc.key
                    ));
                }
                super::url_resolver::remember(sys, &token);
                t.accounts.insert(acc.key.clone(), Arc::new(acc));
            }
        }
        if let Some(item) = opts.section("resolver_preload") {
            let Some(map) = item.value.as_map() else {
                return Err("resolver preload should be a map of account public key to jwt".into());
            };
            for e in map.entries() {
                let Some(token) = e.item.value.as_str() else {
                    return Err(format!(
                        "preload map value should be a string JWT, for {}",
                        e.key
                    ));
                };
                let key = t.add_account(token).map_err(|why| {
                    format!(
                        "invalid account JWT for {:?} in resolver_preload: {why}",
                        e.key
                    )
                })?;
                if key != e.key {
                    return Err(format!(
                        "invalid account JWT in resolver_preload: key {:?} holds the JWT of {key:?}",
                        e.key
                    ));
                }
            }
        }
        if let Resolver::Full { dir, .. } = &t.resolver {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("resolver dir {}: {e}", dir.display()))?;
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("resolver dir {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("jwt") {
                    continue;
                }
                // A file that does not hold a trusted account JWT is left out.
                if let Ok(token) = std::fs::read_to_string(&path) {
                    let _ = t.add_account(&token);
                }
            }
        }
        Ok(Some(t))
    }

    /// Adds an account JWT issued by a trusted key (what `resolver_preload` does).
    pub fn add_account(&mut self, token: &str) -> Result<String, String> {
        let acc = self.read_account(token)?;
        let key = acc.key.clone();
        self.accounts.insert(key.clone(), Arc::new(acc));
        Ok(key)
    }

    /// Checks an account JWT pushed by `$SYS.REQ.CLAIMS.UPDATE` (or the per-account
    /// subject naming `subject_key`) and stores it in the full resolver's directory,
    /// atomically (a temporary file renamed over the old one). Returns the account's
    /// key; the error carries the account (`n/a` when unknown) and nats-server's words.
    pub fn store(
        &self,
        token: &str,
        subject_key: Option<&str>,
    ) -> Result<String, (String, String)> {
        let Resolver::Full { dir, cache, .. } = &self.resolver else {
            return Err(("n/a".into(), "resolver does not support updates".into()));
        };
        let account = subject_key.unwrap_or("n/a").to_string();
        let claims = jwt::decode(token).map_err(|e| (account.clone(), e))?;
        if subject_key.is_some_and(|k| k != claims.sub) {
            return Err((account, "subject does not match jwt content".into()));
        }
        let acc = self
            .read_account(token)
            .map_err(|e| (claims.sub.clone(), e))?;
        if *cache && !self.accounts.contains_key(&acc.key) {
            return Err((acc.key, CACHE_SKIPPED.into()));
        }
        if let Some(old) = self.accounts.get(&acc.key) {
            if old.jwt == acc.jwt {
                return Ok(acc.key);
            }
        }
        write_atomically(&dir.join(format!("{}.jwt", acc.key)), acc.jwt.as_bytes())
            .map_err(|e| (acc.key.clone(), e))?;
        Ok(acc.key)
    }

    /// `$SYS.REQ.CLAIMS.DELETE`: a generic claim signed by a trusted operator key
    /// naming `accounts`; their JWTs are removed. Returns how many.
    pub fn delete(&self, token: &str) -> Result<usize, String> {
        let Resolver::Full {
            dir, allow_delete, ..
        } = &self.resolver
        else {
            return Err("not supported".into());
        };
        let c = jwt::decode(token)?;
        if !self.operator_keys.contains(&c.iss) && !self.keys.contains(&c.iss) {
            return Err(format!("not signed by a trusted operator: {}", c.iss));
        }
        if !allow_delete {
            return Err("delete is not allowed (allow_delete: false)".into());
        }
        let mut n = 0;
        for key in list(&c.nats, "accounts") {
            if nkeys::KeyPair::from_public_key(&key).is_err() || !key.starts_with('A') {
                continue;
            }
            if std::fs::remove_file(dir.join(format!("{key}.jwt"))).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// An account JWT, checked against the trusted keys.
    pub fn read_account(&self, token: &str) -> Result<Account, String> {
        let c = jwt::decode(token)?;
        if c.kind() != "account" {
            return Err(format!("not an account JWT ({:?})", c.kind()));
        }
        if !self.keys.contains(&c.iss) {
            return Err(format!("issuer {:?} is not trusted", c.iss));
        }
        let mut signing_keys = HashMap::new();
        if let Some(Value::Array(keys)) = c.nats.get("signing_keys") {
            for k in keys {
                match k {
                    Value::String(s) => {
                        signing_keys.insert(s.clone(), SigningKey { scope: None });
                    }
                    Value::Object(o) => {
                        let key = o.get("key").and_then(Value::as_str).unwrap_or("");
                        let scope = o.get("template").cloned().unwrap_or(Value::Null);
                        signing_keys.insert(key.to_string(), SigningKey { scope: Some(scope) });
                    }
                    _ => {}
                }
            }
        }
        let revocations = c
            .nats
            .get("revocations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let default_permissions = c.nats.get("default_permissions").and_then(permissions_of);
        let disallow_bearer = c
            .nats
            .get("limits")
            .and_then(|l| l.get("disallow_bearer"))
            .and_then(Value::as_bool)
            == Some(true);
        let limits = c.nats.get("limits").cloned().unwrap_or(Value::Null);
        let limits = (
            limit(&limits, "conn"),
            limit(&limits, "subs"),
            limit(&limits, "payload"),
        );
        Ok(Account {
            key: c.sub.clone(),
            name: c.name.clone(),
            exp: c.exp,
            signing_keys,
            revocations,
            default_permissions,
            disallow_bearer,
            limits,
            nats: c.nats,
            jwt: token.trim().to_string(),
        })
    }

    /// The account names operator mode registers: every preloaded account, by key.
    pub fn account_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<&String> = self.accounts.keys().collect();
        names.sort();
        names.into_iter().map(|n| Arc::from(n.as_str())).collect()
    }

    /// The accounts' subject mappings (`mappings` of the account JWTs:
    /// `{"src": [{"subject": "dest", "weight": 40}, ...]}`); a mapping that does not
    /// compile is left out with a warning.
    pub fn mappings(&self) -> (AccountMappings, Vec<String>) {
        let (mut out, mut warnings) = (Vec::new(), Vec::new());
        for name in self.account_names() {
            let acc = &self.accounts[&*name];
            let Some(map) = acc.nats.get("mappings").and_then(Value::as_object) else {
                continue;
            };
            let mut list = Vec::new();
            for (src, dests) in map {
                let dests: Vec<(String, u8)> = dests
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter(|d| {
                        d.get("cluster")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .is_empty()
                    })
                    .map(|d| {
                        let w = d.get("weight").and_then(Value::as_u64).unwrap_or(100);
                        (
                            d.get("subject")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            w.min(255) as u8,
                        )
                    })
                    .collect();
                match crate::account::mapping::Mapping::new(src, &dests) {
                    Ok(m) => list.push(m),
                    Err(e) => warnings.push(format!("Account {name}: mapping left out: {e}")),
                }
            }
            out.push((name, list));
        }
        (out, warnings)
    }

    /// The accounts' exports and imports, as the `accounts {}` configuration gives
    /// them: imports an export does not grant (no activation token, a token that is
    /// forged, expired or for another account) are left out with a warning, as
    /// nats-server loads the account without them.
    pub fn imports(&self, now: i64) -> (Vec<StreamImport>, Vec<ServiceImport>, Vec<String>) {
        let names = self.account_names();
        let mut warnings = Vec::new();
        let mut stream_exports: Vec<(Arc<str>, StreamExport)> = Vec::new();
        let mut service_exports: Vec<(Arc<str>, ServiceExport)> = Vec::new();
        // Pass 1: exports; token-required ones admit only importers with a valid token.
        for acc in self.accounts.values() {
            let from: Arc<str> = Arc::from(acc.key.as_str());
            for ex in array(&acc.nats, "exports") {
                let subject = ex
                    .get("subject")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let token_req = ex.get("token_req").and_then(Value::as_bool) == Some(true);
                let accounts = token_req.then(|| self.token_holders(acc, &subject, now));
                if ex.get("type").and_then(Value::as_str) == Some("service") {
                    let response = match ex.get("response_type").and_then(Value::as_str) {
                        Some("Stream") => ResponseType::Stream,
                        Some("Chunked") => ResponseType::Chunked,
                        _ => ResponseType::Singleton,
                    };
                    let threshold = ex
                        .get("response_threshold")
                        .and_then(Value::as_i64)
                        .filter(|n| *n > 0)
                        .map_or(Duration::from_secs(2), |n| Duration::from_nanos(n as u64));
                    service_exports.push((
                        from.clone(),
                        ServiceExport {
                            subject,
                            accounts,
                            response,
                            threshold,
                        },
                    ));
                } else {
                    stream_exports.push((from.clone(), StreamExport { subject, accounts }));
                }
            }
        }
        // Pass 2: imports, each checked on its own.
        let mut streams = Vec::new();
        let mut services = Vec::new();
        let mut keys: Vec<&String> = self.accounts.keys().collect();
        keys.sort();
        for key in keys {
            let acc = &self.accounts[key];
            let into: Arc<str> = Arc::from(acc.key.as_str());
            for im in array(&acc.nats, "imports") {
                let text = |k: &str| im.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let from: Arc<str> = Arc::from(text("account").as_str());
                let subject = text("subject");
                let local = text("local_subject");
                let to = text("to");
                if im.get("type").and_then(Value::as_str) == Some("service") {
                    let local = [local, to].into_iter().find(|s| !s.is_empty());
                    let mut one = vec![ServiceImport {
                        from: from.clone(),
                        subject: subject.clone(),
                        into: into.clone(),
                        local: local.unwrap_or_else(|| subject.clone()),
                        response: ResponseType::Singleton,
                        threshold: Duration::from_secs(2),
                    }];
                    match crate::account::imports::check_service_imports(
                        &names,
                        &service_exports,
                        &mut one,
                    ) {
                        Ok(()) => services.extend(one),
                        Err(e) => warnings.push(format!("account {}: {e}", acc.key)),
                    }
                } else {
                    let rewrite = if !local.is_empty() {
                        Rewrite::To(local)
                    } else if !to.is_empty() {
                        Rewrite::Prefix(to)
                    } else {
                        Rewrite::Keep
                    };
                    let imp = StreamImport {
                        from: from.clone(),
                        subject,
                        into: into.clone(),
                        rewrite,
                    };
                    let mut with: Vec<StreamImport> = streams.clone();
                    with.push(imp.clone());
                    match crate::account::imports::check_stream_imports(
                        &names,
                        &stream_exports,
                        &with,
                    ) {
                        Ok(()) => streams.push(imp),
                        Err(e) => warnings.push(format!("account {}: {e}", acc.key)),
                    }
                }
            }
        }
        (streams, services, warnings)
    }

    /// The accounts holding a valid activation token for `exporter`'s `subject`.
    fn token_holders(&self, exporter: &Account, subject: &str, now: i64) -> Vec<Arc<str>> {
        let mut holders = Vec::new();
        for acc in self.accounts.values() {
            for im in array(&acc.nats, "imports") {
                let from = im.get("account").and_then(Value::as_str).unwrap_or("");
                let token = im.get("token").and_then(Value::as_str).unwrap_or("");
                if from != exporter.key || token.is_empty() {
                    continue;
                }
                let Ok(c) = jwt::decode(token) else {
                    continue;
                };
                let issuer_ok = c.iss == exporter.key
                    || (exporter.signing_keys.contains_key(&c.iss)
                        && c.str("issuer_account") == exporter.key);
                let granted = c.str("subject");
                let revoked = exporter
                    .revocations
                    .get(&acc.key)
                    .is_some_and(|at| c.iat <= *at);
                if c.kind() == "activation"
                    && issuer_ok
                    && c.sub == acc.key
                    && !c.expired(now)
                    && !revoked
                    && crate::account::imports::is_subset(granted.as_bytes(), subject.as_bytes())
                {
                    holders.push(Arc::from(acc.key.as_str()));
                }
            }
        }
        holders
    }
}

/// A JWT limit: `-1` is unlimited (`None`); absent is 0, as nats-server reads it
/// (a JWT without limits allows nothing).
fn limit(v: &Value, key: &str) -> Option<usize> {
    match v.get(key).and_then(Value::as_i64) {
        Some(n) if n < 0 => None,
        Some(n) => Some(n as usize),
        None => Some(0),
    }
}

/// The smaller of two limits (`None`: unlimited).
fn tighter(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The strings of `v[key]` (a string or an array of strings).
fn list(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The objects of the array `v[key]`.
fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|x| x.is_object())
}

/// One side (`pub`/`sub`) of JWT permissions: `None` when it sets nothing.
fn side(v: Option<&Value>, queues: bool) -> Option<SubjectPerm> {
    let v = v?;
    let entries = |k: &str| -> Option<Vec<PermEntry>> {
        let l = list(v, k);
        (!l.is_empty()).then(|| {
            l.iter()
                .filter_map(|s| PermEntry::parse(s, queues))
                .collect()
        })
    };
    let p = SubjectPerm {
        allow: entries("allow"),
        deny: entries("deny"),
    };
    (p.allow.is_some() || p.deny.is_some()).then_some(p)
}

/// The permissions of a user (or template, or account default) claim: `None`
/// when it sets none.
fn permissions_of(v: &Value) -> Option<Permissions> {
    let mut p = Permissions {
        publish: side(v.get("pub"), false),
        subscribe: side(v.get("sub"), true),
        response: v
            .get("resp")
            .filter(|r| r.is_object())
            .map(|r| ResponsePerm {
                max: r.get("max").and_then(Value::as_i64).unwrap_or(1),
                expires: Duration::from_nanos(
                    r.get("ttl").and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
                ),
            }),
    };
    if p.publish.is_none() && p.subscribe.is_none() && p.response.is_none() {
        return None;
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

/// A user claim sets no permissions or limits at all (what a scoped signing key
/// requires: -1 limits count as set).
fn sets_nothing(n: &Value) -> bool {
    let empty_side = |k: &str| {
        n.get(k)
            .is_none_or(|s| list(s, "allow").is_empty() && list(s, "deny").is_empty())
    };
    let zero = |k: &str| n.get(k).and_then(Value::as_i64).unwrap_or(0) == 0;
    empty_side("pub")
        && empty_side("sub")
        && n.get("resp").is_none_or(Value::is_null)
        && zero("subs")
        && zero("data")
        && zero("payload")
        && list(n, "src").is_empty()
        && n.get("times")
            .and_then(Value::as_array)
            .is_none_or(|t| t.is_empty())
        && n.get("bearer_token").and_then(Value::as_bool) != Some(true)
        && list(n, "allowed_connection_types").is_empty()
}

/// A scoped key's template with its functions replaced for this user.
fn expand(template: &Value, user: &Claims, account: &Account) -> Result<Value, String> {
    let tags = |c: &Value| -> Vec<(String, String)> {
        list(c, "tags")
            .into_iter()
            .filter_map(|t| {
                let (k, v) = t.split_once(':')?;
                Some((k.to_ascii_lowercase(), v.to_string()))
            })
            .collect()
    };
    let user_tags = tags(&user.nats);
    let account_tags = tags(&account.nats);
    let one = |s: &str| -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find("{{") {
            out.push_str(&rest[..at]);
            let Some(end) = rest[at..].find("}}") else {
                return Err(format!("template {s:?} is not terminated"));
            };
            let f = rest[at + 2..at + end].trim();
            let arg = |name: &str| {
                f.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('('))
                    .and_then(|r| r.strip_suffix(')'))
                    .map(|a| a.trim().to_ascii_lowercase())
            };
            let value = match f {
                "name()" => user.name.clone(),
                "subject()" => user.sub.clone(),
                "account-name()" => account.name.clone(),
                "account-subject()" => account.key.clone(),
                _ => {
                    let (tags, key) = match (arg("tag"), arg("account-tag")) {
                        (Some(k), _) => (&user_tags, k),
                        (_, Some(k)) => (&account_tags, k),
                        _ => return Err(format!("template function {f:?} is unknown")),
                    };
                    tags.iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| format!("generated invalid subject {s:?}"))?
                }
            };
            out.push_str(&value);
            rest = &rest[at + end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    };
    let mut t = template.clone();
    for k in ["pub", "sub"] {
        if let Some(side) = t.get_mut(k).and_then(Value::as_object_mut) {
            for l in ["allow", "deny"] {
                if let Some(Value::Array(items)) = side.get_mut(l) {
                    for item in items.iter_mut() {
                        if let Value::String(s) = item {
                            *s = one(s)?;
                        }
                    }
                }
            }
        }
    }
    Ok(t)
}

/// Is `ip` inside one of the `src` networks (`a.b.c.d/n`, IPv6 too, or a bare
/// address)?
fn in_networks(ip: IpAddr, src: &[String]) -> bool {
    src.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .any(|net| {
            let (addr, bits) = match net.split_once('/') {
                Some((a, b)) => (a, b.parse::<u32>().ok()),
                None => (net, None),
            };
            let Ok(addr) = addr.parse::<IpAddr>() else {
                return false;
            };
            let ip = match (ip, addr) {
                (IpAddr::V6(v6), IpAddr::V4(_)) => match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => return false,
                },
                _ => ip,
            };
            match (ip, addr) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    let n = bits.unwrap_or(32).min(32);
                    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
                    u32::from(a) & mask == u32::from(b) & mask
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    let n = bits.unwrap_or(128).min(128);
                    let mask = if n == 0 { 0 } else { u128::MAX << (128 - n) };
                    u128::from(a) & mask == u128::from(b) & mask
                }
                _ => false,
            }
        })
}

/// Is `now` (unix seconds) inside one of the `times` windows (`HH:MM:SS`, UTC)?
/// A window whose end is before its start runs over midnight.
fn in_times(times: &[Value], now: i64) -> Result<bool, String> {
    let secs = |s: &str| -> Option<i64> {
        let mut it = s.split(':').map(|p| p.parse::<i64>().ok());
        let (h, m, s) = (it.next()??, it.next()??, it.next()??);
        Some(h * 3600 + m * 60 + s)
    };
    let of_day = now.rem_euclid(86_400);
    for w in times {
        let (Some(start), Some(end)) = (
            w.get("start").and_then(Value::as_str).and_then(secs),
            w.get("end").and_then(Value::as_str).and_then(secs),
        ) else {
            return Err("invalid connect times".into());
        };
        let inside = if start <= end {
            (start..=end).contains(&of_day)
        } else {
            of_day >= start || of_day <= end
        };
        if inside {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why a JWT login was refused, and whether nats-server logs that as an error
/// (`Bad src Ip`, connect times) rather than at debug level.
type Refusal = (String, bool);

fn refuse(reason: impl Into<String>) -> Refusal {
    (reason.into(), false)
}

/// The connection a login comes from.
pub struct Origin {
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// Its connection type as `allowed_connection_types` names them: `STANDARD`,
    /// `WEBSOCKET`, `LEAFNODE`.
    pub kind: &'static str,
}

/// Logs in a client that sent a user JWT (see the module docs). A refusal is
/// [`Failure::Jwt`]: its reason goes to the log before nats-server's
/// `authentication error` line.
/// The issuer account of the CONNECT's user JWT when the trust does not know it
/// (what a URL resolver should fetch); `None` for anything else, including a JWT
/// that does not decode (the login refuses it on its own).
pub fn missing_account(trust: &Trust, opts: &ConnectOpts) -> Option<String> {
    let token = opts.jwt.as_deref().filter(|j| !j.is_empty())?;
    let user = jwt::decode(token).ok()?;
    if user.kind() != "user" {
        return None;
    }
    let account = match user.str("issuer_account") {
        "" => user.iss.clone(),
        a => a.to_string(),
    };
    let plausible = account.starts_with('A') && nkeys::KeyPair::from_public_key(&account).is_ok();
    let pinned_out = trust.pinned.as_ref().is_some_and(|p| !p.contains(&account));
    (plausible && !pinned_out && !trust.accounts.contains_key(&account)).then_some(account)
}

pub fn login(
    trust: &Trust,
    opts: &ConnectOpts,
    nonce: Option<&str>,
    origin: &Origin,
    now: i64,
) -> Result<Identity, Failure> {
    check(trust, opts, nonce, origin, now).map_err(|(reason, error)| Failure::Jwt {
        reason,
        error,
        shown: Box::new(super::failure(opts)),
    })
}

fn check(
    trust: &Trust,
    opts: &ConnectOpts,
    nonce: Option<&str>,
    origin: &Origin,
    now: i64,
) -> Result<Identity, Refusal> {
    let Some(token) = opts.jwt.as_deref().filter(|j| !j.is_empty()) else {
        return Err(refuse("Authentication requires a user JWT"));
    };
    let user = jwt::decode(token).map_err(|e| refuse(format!("User JWT not valid: {e}")))?;
    if user.kind() != "user" {
        return Err(refuse(format!(
            "User JWT not valid: type is {:?}",
            user.kind()
        )));
    }
    if user.expired(now) {
        return Err(refuse("User JWT has expired"));
    }
    let issuer_account = match user.str("issuer_account") {
        "" => user.iss.clone(),
        a => a.to_string(),
    };
    if trust
        .pinned
        .as_ref()
        .is_some_and(|p| !p.contains(&issuer_account))
    {
        return Err(refuse(format!(
            "Account {issuer_account} not listed as operator pinned account"
        )));
    }
    let Some(account) = trust.accounts.get(&issuer_account) else {
        return Err(refuse(format!(
            "Account JWT not found for {issuer_account:?}"
        )));
    };
    if account.exp > 0 && now > account.exp {
        return Err(refuse("Account JWT has expired"));
    }
    let scope = if user.iss == account.key {
        None
    } else {
        match account.signing_keys.get(&user.iss) {
            Some(k) => k.scope.clone(),
            None => {
                return Err(refuse(format!(
                    "User JWT issuer {:?} is not known to account {:?}",
                    user.iss, account.key
                )))
            }
        }
    };
    let claims = match &scope {
        Some(template) => {
            if !sets_nothing(&user.nats) {
                return Err(refuse(
                    "User JWT is not valid: scoped users require no permissions or limits set",
                ));
            }
            expand(template, &user, account).map_err(refuse)?
        }
        None => user.nats.clone(),
    };
    let bearer = claims.get("bearer_token").and_then(Value::as_bool) == Some(true);
    if bearer && account.disallow_bearer {
        return Err(refuse(
            "User JWT is a bearer token, which the account disallows",
        ));
    }
    if !bearer {
        let (Some(sig), Some(nonce)) = (opts.sig.as_deref().filter(|s| !s.is_empty()), nonce)
        else {
            return Err(refuse("Signature not present"));
        };
        if !super::nkey::verify(&user.sub, nonce, sig) {
            return Err(refuse("Signature not verified"));
        }
    }
    let revoked_at = |k: &str| account.revocations.get(k).copied();
    if revoked_at(&user.sub)
        .into_iter()
        .chain(revoked_at("*"))
        .any(|at| user.iat <= at)
    {
        return Err(refuse("User authentication revoked"));
    }
    let src = list(&claims, "src");
    if !src.is_empty() && !origin.ip.is_some_and(|ip| in_networks(ip, &src)) {
        let ip = origin.ip.map(|i| i.to_string()).unwrap_or_default();
        return Err((format!("Bad src Ip {ip}"), true));
    }
    if let Some(times) = claims
        .get("times")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        let location = claims
            .get("times_location")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !location.is_empty() && !location.eq_ignore_ascii_case("UTC") {
            return Err(refuse(format!(
                "natrium checks connect times in UTC only, not in {location:?}"
            )));
        }
        if !in_times(times, now).map_err(refuse)? {
            return Err(("Outside connect times".into(), true));
        }
    }
    let types = list(&claims, "allowed_connection_types");
    if !types.is_empty() {
        let mine = origin.kind;
        if !types.iter().any(|t| t.eq_ignore_ascii_case(mine)) {
            return Err(refuse(format!(
                "Connection type {mine:?} is not allowed for this user"
            )));
        }
    }
    let perms = permissions_of(&claims).or_else(|| account.default_permissions.clone());
    let (conns, account_subs, account_payload) = account.limits;
    Ok(Identity {
        user: Some(user.sub.clone()),
        perms: perms.map(Arc::new),
        account: Some(Arc::from(account.key.as_str())),
        max_subs: tighter(limit(&claims, "subs"), account_subs),
        max_payload: tighter(limit(&claims, "payload"), account_payload),
        account_conns: conns,
        expires: [user.exp, account.exp].into_iter().filter(|&e| e > 0).min(),
        jwt: Some(Arc::new(super::JwtFacts {
            issuer_key: user.iss.clone(),
            name_tag: account.name.clone(),
            tags: list(&user.nats, "tags"),
            user_name: user.name.clone(),
        })),
        fetched_account: false,
    })
}

/// Writes `data` to `path` so that a crash leaves the old file or the new one.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("jwt.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("storing {}: {e}", path.display()))
}

/// The `resolver` setting.
fn resolver_of(v: Option<&crate::config::value::Value>) -> Result<Resolver, String> {
    use crate::config::value::Value as C;
    match v {
        Some(C::String(s)) if matches!(s.to_ascii_uppercase().as_str(), "MEMORY" | "MEM") => {
            Ok(Resolver::Memory)
        }
        Some(C::String(s))
            if s.len() > 5 && s[..4].eq_ignore_ascii_case("URL(") && s.ends_with(')') =>
        {
            Ok(Resolver::Url(super::url_resolver::ResolverUrl::parse(
                &s[4..s.len() - 1],
            )?))
        }
        None => Err("operator mode requires an account resolver".into()),
        Some(C::Map(m)) => {
            let get = |k: &str| {
                m.entries()
                    .iter()
                    .find(|e| e.key.eq_ignore_ascii_case(k))
                    .map(|e| &e.item.value)
            };
            let kind = get("type").and_then(|v| v.as_str()).unwrap_or("");
            match kind.to_ascii_lowercase().as_str() {
                kind @ ("full" | "cache") => Ok(Resolver::Full {
                    dir: std::path::PathBuf::from(
                        get("dir").and_then(|v| v.as_str()).unwrap_or("./jwt"),
                    ),
                    allow_delete: kind == "full"
                        && get("allow_delete").and_then(|v| v.as_bool()) == Some(true),
                    cache: kind == "cache",
                }),
                other => Err(format!("resolver type {other:?}: want full or cache")),
            }
        }
        Some(_) => Err("resolver: want MEMORY, URL(<url>) or a map with a type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_times() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(in_networks(ip, &["127.0.0.0/8".into()]));
        assert!(!in_networks(ip, &["10.1.2.0/24".into()]));
        assert!(in_networks(ip, &["10.0.0.1, 127.0.0.1".into()]));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(in_networks(mapped, &["127.0.0.0/8".into()]));
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert!(in_networks(v6, &["fd00::/8".into()]));
        let w = |s: &str, e: &str| serde_json::json!({"start": s, "end": e});
        // 01:00:00 UTC
        assert!(in_times(&[w("00:30:00", "02:00:00")], 3600).unwrap());
        assert!(!in_times(&[w("00:00:00", "00:00:01")], 3600).unwrap());
        assert!(in_times(&[w("23:00:00", "01:30:00")], 3600).unwrap());
        assert!(in_times(&[w("bad", "01:30:00")], 3600).is_err());
    }

    #[test]
    fn scoped_templates_expand_the_users_names() {
        let user = Claims {
            iss: "AK".into(),
            sub: "UKEY".into(),
            name: "bob".into(),
            iat: 0,
            exp: 0,
            nbf: 0,
            nats: serde_json::json!({"tags": ["dept:eng"]}),
        };
        let account = Account {
            key: "AKEY".into(),
            name: "acme".into(),
            exp: 0,
            signing_keys: HashMap::new(),
            revocations: HashMap::new(),
            default_permissions: None,
            disallow_bearer: false,
            limits: (None, None, None),
            nats: serde_json::json!({}),
            jwt: String::new(),
        };
        let t = serde_json::json!({"pub": {"allow": ["a.{{name()}}.{{subject()}}", "{{account-name()}}.{{tag(dept)}}"]}});
        let out = expand(&t, &user, &account).unwrap();
        assert_eq!(out["pub"]["allow"][0], "a.bob.UKEY");
        assert_eq!(out["pub"]["allow"][1], "acme.eng");
        let bad = serde_json::json!({"pub": {"allow": ["{{tag(missing)}}"]}});
        assert!(expand(&bad, &user, &account).is_err());
        assert!(!sets_nothing(&serde_json::json!({"subs": -1})));
        assert!(sets_nothing(
            &serde_json::json!({"type": "user", "pub": {}, "sub": {}})
        ));
    }
}
