//! Client authentication (token, user/password with plain or bcrypt passwords, nkeys,
//! `no_auth_user`) and authorization (per-user publish/subscribe permissions), with
//! nats-server's order of evaluation and error texts.
//!
//! Pure decisions: credentials (CONNECT, nonce) in, an identity or a failure out. This
//! module knows no connection and no shard (their side is `client::auth`); bcrypt
//! comparisons run on glommio's blocking thread pool, never on the executor thread.

pub mod config;
pub mod jwt;
pub mod nkey;
pub mod operator;
pub mod permissions;
pub mod url_resolver;

use std::sync::Arc;

pub use config::{AuthConfig, User};
pub use permissions::{ClientPerms, Permissions};

use crate::proto::connect::ConnectOpts;

/// Who a connection authenticated as.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// User name or nkey; `None` for token, anonymous.
    pub user: Option<String>,
    /// Permissions; `None` = everything allowed.
    pub perms: Option<Arc<Permissions>>,
    /// The account it belongs to; `None` = the global account `$G`.
    pub account: Option<Arc<str>>,
    /// Its own subscription limit (a user JWT's or its account's `subs`); `None`
    /// = the server's.
    pub max_subs: Option<usize>,
    /// Its own payload limit (the JWTs' `payload`); `None` = the server's.
    pub max_payload: Option<usize>,
    /// Connections its account may have (the account JWT's `conn`); `None` = any.
    pub account_conns: Option<usize>,
    /// When its credentials expire (unix seconds: the user or account JWT's `exp`);
    /// the connection is closed then.
    pub expires: Option<i64>,
    /// What monitoring shows of a JWT login.
    pub jwt: Option<Arc<JwtFacts>>,
    /// Its account was fetched for this login (URL resolver): the shards' trust
    /// should learn it.
    pub fetched_account: bool,
}

/// The facts of a JWT login that `/connz` shows (with `auth`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtFacts {
    /// The key that signed the user JWT (the account or its signing key).
    pub issuer_key: String,
    /// The account JWT's name.
    pub name_tag: String,
    /// The user JWT's tags.
    pub tags: Vec<String>,
    /// The user JWT's name.
    pub user_name: String,
}

impl Identity {
    /// The identity of a configured user.
    pub fn of(u: &User) -> Identity {
        Identity {
            user: Some(u.nkey.clone().unwrap_or_else(|| u.name.clone())),
            perms: u.permissions.clone(),
            account: u.account.clone(),
            max_subs: u.limits.subs,
            max_payload: u.limits.payload,
            account_conns: u.limits.conns,
            ..Identity::default()
        }
    }

    /// The account's name (`$G` when none was configured).
    pub fn account_name(&self) -> &str {
        self.account
            .as_deref()
            .unwrap_or(crate::account::GLOBAL_NAME)
    }
}

/// Why authentication failed, for the log line (never carries a secret).
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// No credential named.
    Anonymous,
    /// A user name was given.
    User(String),
    /// An nkey was given.
    Nkey(String),
    /// A token was given.
    Token,
    /// A JWT login was refused: `reason` is logged first (as an error when
    /// `error`), then `shown`'s text.
    Jwt {
        reason: String,
        error: bool,
        shown: Box<Failure>,
    },
}

impl Failure {
    /// nats-server's log text: `authentication error - User "x"`.
    pub fn log_text(&self) -> String {
        match self {
            Failure::Anonymous => "authentication error".into(),
            Failure::User(u) => format!("authentication error - User \"{u}\""),
            Failure::Nkey(k) => format!("authentication error - Nkey \"{k}\""),
            Failure::Token => "authentication error - Token \"[REDACTED]\"".into(),
            Failure::Jwt { shown, .. } => shown.log_text(),
        }
    }
}

fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// What the client offered, for the failure log line.
/// The failure to report for a CONNECT whose credentials did not pass.
pub fn failure(opts: &ConnectOpts) -> Failure {
    if let Some(k) = given(&opts.nkey) {
        Failure::Nkey(k.to_string())
    } else if let Some(u) = given(&opts.user) {
        Failure::User(u.to_string())
    } else if given(&opts.auth_token).is_some() {
        Failure::Token
    } else {
        Failure::Anonymous
    }
}

/// A bcrypt hash as nats-server recognises one: `^\$2[abxy]\$\d{2}\$.*`.
pub fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 7
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Equality that does not stop at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// nats-server's `comparePasswords`: bcrypt when the configured value is a bcrypt
/// hash (run on the blocking thread pool), else constant-time equality.
pub async fn compare_passwords(server: &str, client: &str) -> bool {
    if !is_bcrypt(server) {
        return constant_time_eq(server.as_bytes(), client.as_bytes());
    }
    let (hash, pass) = (server.to_string(), client.to_string());
    let check = move || {
        std::panic::catch_unwind(|| bcrypt::verify(pass, &hash).unwrap_or(false)).unwrap_or(false)
    };
    glommio::executor().spawn_blocking(check).await
}

/// The outcome of checking credentials without running bcrypt.
pub enum Decision {
    /// Authenticated.
    Ok(Identity),
    /// Refused.
    Fail(Failure),
    /// Authenticated if the client's password matches this bcrypt hash.
    Bcrypt {
        /// Configured hash.
        hash: String,
        /// What the client sent.
        pass: String,
        /// Who the client is if it matches.
        ident: Identity,
    },
}

fn compare_or_defer(server: &str, client: &str, ident: Identity, why: Failure) -> Decision {
    if is_bcrypt(server) {
        Decision::Bcrypt {
            hash: server.to_string(),
            pass: client.to_string(),
            ident,
        }
    } else if constant_time_eq(server.as_bytes(), client.as_bytes()) {
        Decision::Ok(ident)
    } else {
        Decision::Fail(why)
    }
}

/// Checks a CONNECT's credentials (nats-server's `processClientOrLeafAuthentication`
/// for clients): nkey users, then users (with the `no_auth_user` fallback), then the
/// token, then the single user. bcrypt comparisons are left to the caller.
pub fn decide(
    cfg: &AuthConfig,
    opts: &ConnectOpts,
    nonce: Option<&str>,
    origin: &operator::Origin,
) -> Decision {
    if !cfg.required() {
        return Decision::Ok(Identity::default());
    }
    // Operator mode: a user JWT or nothing.
    if let Some(trust) = &cfg.trust {
        return match operator::login(trust, opts, nonce, origin, operator::now()) {
            Ok(id) => Decision::Ok(id),
            Err(why) => Decision::Fail(why),
        };
    }
    let fail = || Decision::Fail(failure(opts));
    let mut found: Option<(&Arc<User>, bool)> = None;
    if !cfg.nkeys.is_empty() && given(&opts.nkey).is_some() {
        match cfg.nkeys.get(given(&opts.nkey).unwrap_or_default()) {
            Some(u) => found = Some((u, true)),
            None => return fail(),
        }
    } else if !cfg.users.is_empty() {
        if let Some(name) = given(&opts.user) {
            match cfg.users.get(name) {
                Some(u) => found = Some((u, false)),
                None => return fail(),
            }
        }
    }
    let anonymous = given(&opts.user).is_none()
        && given(&opts.pass).is_none()
        && given(&opts.auth_token).is_none()
        && given(&opts.nkey).is_none()
        && given(&opts.jwt).is_none();
    let mut via_no_auth = false;
    if found.is_none() && anonymous {
        if let Some(name) = &cfg.no_auth_user {
            if let Some(u) = cfg.users.get(name) {
                found = Some((u, false));
            } else if let Some(u) = cfg.nkeys.get(name) {
                found = Some((u, true));
            }
            via_no_auth = found.is_some();
        }
    }
    if let Some((u, is_nkey)) = found {
        // `allowed_connection_types` without STANDARD: checked before the
        // credentials, as nats-server does (only plain client connections exist here).
        if !u.standard_allowed {
            return Decision::Fail(if via_no_auth {
                match &u.nkey {
                    Some(k) => Failure::Nkey(k.clone()),
                    None => Failure::User(u.name.clone()),
                }
            } else {
                failure(opts)
            });
        }
        let ident = Identity::of(u);
        if via_no_auth {
            return Decision::Ok(ident);
        }
        if is_nkey {
            let (Some(sig), Some(nonce), Some(key)) = (given(&opts.sig), nonce, &u.nkey) else {
                return fail();
            };
            if !nkey::verify(key, nonce, sig) {
                return fail();
            }
            return Decision::Ok(ident);
        }
        let pass = given(&opts.pass).unwrap_or_default();
        return compare_or_defer(&u.password, pass, ident, failure(opts));
    }
    if let Some(token) = &cfg.token {
        let sent = given(&opts.auth_token).unwrap_or_default();
        return compare_or_defer(token, sent, Identity::default(), failure(opts));
    }
    if let Some((name, pass)) = &cfg.single {
        if given(&opts.user) == Some(name.as_str()) {
            let ident = Identity {
                user: Some(name.clone()),
                ..Identity::default()
            };
            let sent = given(&opts.pass).unwrap_or_default();
            return compare_or_defer(pass, sent, ident, failure(opts));
        }
    }
    fail()
}

/// Authenticates a CONNECT; bcrypt runs on the blocking thread pool.
pub async fn authenticate(
    cfg: &AuthConfig,
    opts: &ConnectOpts,
    nonce: Option<&str>,
    origin: &operator::Origin,
) -> Result<Identity, Failure> {
    if let Some(fetched) = fetch_missing_account(cfg, opts, nonce, origin).await {
        return fetched;
    }
    match decide(cfg, opts, nonce, origin) {
        Decision::Ok(id) => Ok(id),
        Decision::Fail(why) => Err(why),
        Decision::Bcrypt { hash, pass, ident } => {
            if compare_passwords(&hash, &pass).await {
                Ok(ident)
            } else {
                Err(failure(opts))
            }
        }
    }
}

/// With the URL resolver, a user JWT whose account is not known yet: the account's
/// JWT is fetched on the blocking pool, checked, remembered, and the login decided
/// against the trust with it. `None` when there is nothing to fetch.
async fn fetch_missing_account(
    cfg: &AuthConfig,
    opts: &ConnectOpts,
    nonce: Option<&str>,
    origin: &operator::Origin,
) -> Option<Result<Identity, Failure>> {
    let trust = cfg.trust.as_ref()?;
    let operator::Resolver::Url(url) = &trust.resolver else {
        return None;
    };
    let key = operator::missing_account(trust, opts)?;
    let (url, fetch_key) = (url.clone(), key.clone());
    let got = glommio::executor()
        .spawn_blocking(move || url.fetch(&fetch_key, url_resolver::FETCH_TIMEOUT))
        .await;
    // nats-server says why at debug level, then the usual authentication error.
    let refused = |why: String| Failure::Jwt {
        reason: format!("Account JWT lookup error: {why}"),
        error: false,
        shown: Box::new(failure(opts)),
    };
    let jwt = match got {
        Ok(jwt) => jwt,
        Err(e) => return Some(Err(refused(e))),
    };
    let acc = match trust.read_account(&jwt) {
        Ok(a) if a.key == key => a,
        Ok(a) => {
            return Some(Err(refused(format!(
                "the answer holds the JWT of {}",
                a.key
            ))))
        }
        Err(e) => return Some(Err(refused(format!("invalid account JWT: {e}")))),
    };
    url_resolver::remember(&key, &jwt);
    // This login decides against the trust with the account; the shards learn it
    // through the refresh their caller asks for.
    let mut with = (**trust).clone();
    with.accounts.insert(key, Arc::new(acc));
    Some(
        operator::login(&with, opts, nonce, origin, operator::now()).map(|id| Identity {
            fetched_account: true,
            ..id
        }),
    )
}

/// The identity `no_auth_user` gives a client whose first op is not CONNECT.
pub fn no_auth_identity(cfg: &AuthConfig) -> Option<Identity> {
    let name = cfg.no_auth_user.as_ref()?;
    let u = cfg.users.get(name).or_else(|| cfg.nkeys.get(name))?;
    Some(Identity::of(u))
}

/// A CONNECT argument with the values of `pass`, `auth_token` and `sig` replaced by
/// `[REDACTED]`, for trace lines (nats-server's `removeSecretsFromTrace`).
pub fn redact_connect(json: &str) -> String {
    let mut out = json.to_string();
    for key in ["\"pass\"", "\"auth_token\"", "\"sig\""] {
        let mut from = 0;
        while let Some(at) = out[from..].find(key).map(|i| i + from) {
            let b = out.as_bytes();
            let mut i = at + key.len();
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            if i >= b.len() || b[i] != b':' {
                from = at + key.len();
                continue;
            }
            i += 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            if i >= b.len() || b[i] != b'"' {
                from = i;
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end] != b'"' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(b.len());
            out.replace_range(start..end, "[REDACTED]");
            from = start + "[REDACTED]".len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_redacted_like_nats_server() {
        assert_eq!(
            redact_connect(
                r#"{"user":"a","pass":"b","auth_token":"tok","verbose":false, "sig":"zz", "pass": "ag\"ain"}"#
            ),
            r#"{"user":"a","pass":"[REDACTED]","auth_token":"[REDACTED]","verbose":false, "sig":"[REDACTED]", "pass": "[REDACTED]"}"#
        );
        assert_eq!(
            redact_connect(r#"{"pass":1,"x":"pass"}"#),
            r#"{"pass":1,"x":"pass"}"#
        );
        assert_eq!(
            redact_connect(r#"{"pass":"unterminated"#),
            r#"{"pass":"[REDACTED]"#
        );
    }

    use super::*;

    #[test]
    fn bcrypt_detection() {
        assert!(is_bcrypt("$2a$04$abc"));
        assert!(is_bcrypt("$2b$10$abc"));
        assert!(is_bcrypt("$2y$10$"));
        assert!(!is_bcrypt("$2c$10$abc"));
        assert!(!is_bcrypt("$2a$1$abc"));
        assert!(!is_bcrypt("secret"));
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
