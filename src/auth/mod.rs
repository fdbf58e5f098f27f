//! Client authentication (token, user/password with plain or bcrypt passwords, nkeys,
//! `no_auth_user`) and authorization (per-user publish/subscribe permissions), with
//! nats-server's order of evaluation and error texts.
//!
//! Everything per connection lives on the connection's shard; bcrypt comparisons run
//! on glommio's blocking thread pool, never on the executor thread.

pub mod config;
pub mod nkey;
pub mod permissions;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

pub use config::{AuthConfig, User};
pub use permissions::{ClientPerms, Permissions};

use crate::client::Client;
use crate::proto::connect::ConnectOpts;
use crate::shard::ShardCtx;

/// The authentication state of one connection. `repr(C)` with `hook` first: it is
/// read on every delivery, next to the client's other hot fields.
#[derive(Default)]
#[repr(C)]
pub struct ClientAuth {
    /// Deliveries must go through [`ClientAuth::on_deliver`] (read per delivery).
    pub hook: Cell<bool>,
    /// Authenticated (or no auth required and CONNECT seen).
    pub done: Cell<bool>,
    /// The nonce sent in INFO (nkey users configured).
    pub nonce: RefCell<Option<String>>,
    /// The user name or nkey the connection authenticated as.
    pub user: RefCell<Option<String>>,
    /// Permissions in force, with their caches.
    pub perms: RefCell<Option<Rc<ClientPerms>>>,
}

impl ClientAuth {
    /// Puts an authenticated identity in force.
    pub fn set_identity(&self, id: Identity) {
        *self.user.borrow_mut() = id.user;
        *self.perms.borrow_mut() = id.perms.map(|p| Rc::new(ClientPerms::new(p)));
        self.done.set(true);
        self.refresh_hook();
    }

    /// Recomputes [`ClientAuth::hook`].
    pub fn refresh_hook(&self) {
        let on = self
            .perms
            .borrow()
            .as_ref()
            .is_some_and(|p| p.needs_delivery_hook());
        self.hook.set(on);
    }

    /// `"$G/user:name"` for log lines, once known.
    pub fn label(&self) -> String {
        match self.user.borrow().as_deref() {
            Some(u) => format!(" - \"$G/user:{u}\""),
            None => String::new(),
        }
    }

    /// Checked for each delivery when [`ClientAuth::hook`] is set: false when the
    /// subscriber's deny list filters the subject; records reply permissions.
    pub fn on_deliver(&self, subject: &[u8], reply: &[u8]) -> bool {
        match self.perms.borrow().as_ref() {
            Some(p) => p.on_deliver(subject, reply),
            None => true,
        }
    }
}

/// Who a connection authenticated as.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// User name or nkey; `None` for token, anonymous.
    pub user: Option<String>,
    /// Permissions; `None` = everything allowed.
    pub perms: Option<Arc<Permissions>>,
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
}

impl Failure {
    /// nats-server's log text: `authentication error - User "x"`.
    pub fn log_text(&self) -> String {
        match self {
            Failure::Anonymous => "authentication error".into(),
            Failure::User(u) => format!("authentication error - User \"{u}\""),
            Failure::Nkey(k) => format!("authentication error - Nkey \"{k}\""),
            Failure::Token => "authentication error - Token \"[REDACTED]\"".into(),
        }
    }
}

fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// What the client offered, for the failure log line.
fn failure(opts: &ConnectOpts) -> Failure {
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
pub fn decide(cfg: &AuthConfig, opts: &ConnectOpts, nonce: Option<&str>) -> Decision {
    if !cfg.required() {
        return Decision::Ok(Identity::default());
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
        let ident = Identity {
            user: Some(u.nkey.clone().unwrap_or_else(|| u.name.clone())),
            perms: u.permissions.clone(),
        };
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
                perms: None,
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
) -> Result<Identity, Failure> {
    match decide(cfg, opts, nonce) {
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

/// The identity `no_auth_user` gives a client whose first op is not CONNECT.
pub fn no_auth_identity(cfg: &AuthConfig) -> Option<Identity> {
    let name = cfg.no_auth_user.as_ref()?;
    let u = cfg.users.get(name).or_else(|| cfg.nkeys.get(name))?;
    Some(Identity {
        user: Some(u.nkey.clone().unwrap_or_else(|| u.name.clone())),
        perms: u.permissions.clone(),
    })
}

/// The INFO for a new connection on `ctx`'s shard: `auth_required` and, when nkey
/// users exist, a fresh nonce (remembered for the signature check).
pub fn client_info(ctx: &ShardCtx, client: &Client) -> Vec<u8> {
    let auth = ctx.auth();
    let nonce = auth.needs_nonce().then(nkey::new_nonce);
    let line = ctx.server.client_info_auth(
        client.cid,
        client.peer,
        auth.info_auth_required(),
        nonce.as_deref(),
    );
    *client.auth.nonce.borrow_mut() = nonce;
    line
}

/// Starts the auth timer when auth is required: a client not authenticated within
/// `authorization.timeout` gets `-ERR 'Authentication Timeout'` and is closed.
/// Dropping the task cancels the timer.
pub fn start_timer(ctx: &Rc<ShardCtx>, client: &Rc<Client>) -> Option<glommio::Task<()>> {
    if !ctx.auth().required() || client.is_closed() {
        return None;
    }
    let timeout = ctx.opts().auth_timeout;
    let client = client.clone();
    Some(glommio::spawn_local(async move {
        glommio::timer::sleep(timeout).await;
        if !client.auth.done.get() && !client.is_closed() {
            crate::log_debug!(
                "{} - cid:{} - Authentication Timeout",
                peer_text(&client),
                client.cid
            );
            client.close(Some("Authentication Timeout"), "Authentication Timeout");
        }
    }))
}

fn peer_text(client: &Client) -> String {
    client.peer.map(|p| p.to_string()).unwrap_or_default()
}

/// After a reload changed the auth config: every authenticated connection of this
/// shard is checked again with the credentials it sent. One that no longer passes is
/// closed; otherwise the new permissions apply, and subscriptions they no longer
/// allow are removed with `Permissions Violation for Subscription to "s" (sid "x")`.
pub fn recheck_clients(ctx: &ShardCtx, auth: &AuthConfig) {
    let clients: Vec<Rc<Client>> = ctx.state.borrow().clients.values().cloned().collect();
    for c in clients {
        if c.is_closed() || !c.auth.done.get() {
            continue;
        }
        let opts = c.opts.borrow().clone();
        let nonce = c.auth.nonce.borrow().clone();
        match decide(auth, &opts, nonce.as_deref()) {
            Decision::Fail(why) => revoke(&c, &why),
            Decision::Ok(ident) => apply_identity(ctx, &c, ident),
            Decision::Bcrypt { hash, pass, ident } => {
                apply_identity(ctx, &c, ident);
                let client = c.clone();
                glommio::spawn_local(async move {
                    if !compare_passwords(&hash, &pass).await {
                        revoke(&client, &failure(&client.opts.borrow()));
                    }
                })
                .detach();
            }
        }
    }
}

fn revoke(c: &Client, why: &Failure) {
    crate::log_debug!(
        "{} - cid:{}{} - Closing after reload: {}",
        peer_text(c),
        c.cid,
        c.auth.label(),
        why.log_text()
    );
    c.close(None, "Client Closed");
}

fn apply_identity(ctx: &ShardCtx, c: &Client, ident: Identity) {
    c.auth.set_identity(ident);
    let perms = c.auth.perms.borrow().clone();
    let Some(perms) = perms else {
        return;
    };
    let mut subs: Vec<_> = c.subs.borrow().values().cloned().collect();
    subs.sort_by_key(|s| s.sid.clone());
    for sub in subs {
        if perms.can_subscribe(&sub.subject, sub.queue.as_deref()) {
            continue;
        }
        c.subs.borrow_mut().remove(&sub.sid);
        ctx.remove_sub(&mut ctx.state.borrow_mut(), &sub);
        let subject = String::from_utf8_lossy(&sub.subject);
        let sid = String::from_utf8_lossy(&sub.sid);
        let text = match &sub.queue {
            Some(q) => format!(
                "Permissions Violation for Subscription to \"{subject}\" using queue \"{}\" \
                 (sid \"{sid}\")",
                String::from_utf8_lossy(q)
            ),
            None => {
                format!("Permissions Violation for Subscription to \"{subject}\" (sid \"{sid}\")")
            }
        };
        crate::log_error!(
            "{} - cid:{}{} - {text}",
            peer_text(c),
            c.cid,
            c.auth.label()
        );
        c.send_err(&text);
    }
    c.auth.refresh_hook();
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
