//! The connection's side of authentication: its auth state, the INFO nonce, the auth
//! timer, and re-checking connections when a reload changes the users. The decisions
//! themselves are `crate::auth`'s.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::Client;
use crate::auth::{compare_passwords, decide, failure, AuthConfig, ClientPerms, Decision};
use crate::auth::{nkey, Failure, Identity};
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
    /// The account's name, for log lines (`$G` until authenticated elsewhere).
    pub account_name: RefCell<Option<std::sync::Arc<str>>>,
    /// The user's own subscription limit (a user JWT's `subs`).
    pub max_subs: Cell<Option<usize>>,
    /// The user's own payload limit (a user JWT's `payload`).
    pub max_payload: Cell<Option<usize>>,
    /// The connection counts against its account's `conn` limit.
    pub account_counted: Cell<bool>,
    /// A JWT login's facts, for monitoring.
    pub jwt: RefCell<Option<std::sync::Arc<crate::auth::JwtFacts>>>,
}

impl ClientAuth {
    /// Puts an authenticated identity in force.
    pub fn set_identity(&self, id: Identity) {
        *self.account_name.borrow_mut() = id.account;
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

    /// The account's name (`$G` when no configuration put the client elsewhere).
    pub fn account(&self) -> String {
        let account = self.account_name.borrow();
        account
            .as_deref()
            .unwrap_or(crate::account::GLOBAL_NAME)
            .to_string()
    }

    /// `"<account>/user:name"` for log lines, once known.
    pub fn label(&self) -> String {
        let account = self.account();
        match self.user.borrow().as_deref() {
            Some(u) => format!(" - \"{account}/user:{u}\""),
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

/// The INFO for a new connection on `ctx`'s shard: `auth_required` and, when nkey
/// users exist, a fresh nonce (remembered for the signature check).
pub fn client_info(ctx: &ShardCtx, client: &Client) -> Vec<u8> {
    let auth = ctx.auth_for(client);
    let nonce = auth.needs_nonce().then(nkey::new_nonce);
    let line = ctx.server.client_info_auth(
        client.cid,
        client.peer,
        auth.info_auth_required(),
        nonce.as_deref(),
        client.websocket.get(),
    );
    *client.auth.nonce.borrow_mut() = nonce;
    line
}

/// Starts the auth timer when auth is required: a client not authenticated within
/// `authorization.timeout` gets `-ERR 'Authentication Timeout'` and is closed.
/// Dropping the task cancels the timer.
pub fn start_timer(ctx: &Rc<ShardCtx>, client: &Rc<Client>) -> Option<glommio::Task<()>> {
    if !ctx.auth_for(client).required() || client.is_closed() {
        return None;
    }
    let ws_timeout = client
        .websocket
        .get()
        .then(|| ctx.opts().websocket.as_ref().and_then(|w| w.auth.timeout))
        .flatten();
    let timeout = ws_timeout.unwrap_or(ctx.opts().auth_timeout);
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

/// Where a connection comes from, for the checks of a user JWT.
pub fn origin(client: &Client) -> crate::auth::operator::Origin {
    crate::auth::operator::Origin {
        ip: client.peer.map(|p| p.ip()),
        kind: if client.websocket.get() {
            "WEBSOCKET"
        } else {
            "STANDARD"
        },
    }
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
        match decide(auth, &opts, nonce.as_deref(), &origin(&c)) {
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

/// Closes `client` with nats-server's `-ERR 'User Authentication Expired'` when its
/// JWT expires (`at`, unix seconds). The timer holds the client weakly: a
/// connection that closes first is not kept alive by it.
pub fn close_at_expiry(client: &Rc<Client>, at: i64) {
    let left = (at - crate::auth::operator::now()).max(0) as u64;
    let weak = Rc::downgrade(client);
    glommio::spawn_local(async move {
        // Go's check is `time.Now() > exp`: the second after `exp`.
        glommio::timer::sleep(std::time::Duration::from_secs(left + 1)).await;
        if let Some(c) = weak.upgrade() {
            if !c.is_closed() {
                crate::log_debug!(
                    "{} - cid:{} - User Authentication Expired",
                    peer_text(&c),
                    c.cid
                );
                c.close(
                    Some("User Authentication Expired"),
                    "Authentication Expired",
                );
            }
        }
    })
    .detach();
}

/// Puts an authenticated identity in force on a connection, its account included.
/// Call before the connection's first SUB: subscriptions stay in the table of the
/// account they were made in.
pub fn admit(ctx: &ShardCtx, c: &Client, ident: Identity) {
    c.auth.max_subs.set(ident.max_subs);
    c.auth.max_payload.set(ident.max_payload);
    *c.auth.jwt.borrow_mut() = ident.jwt.clone();
    c.account.set(ctx.server.account_id(ident.account_name()));
    c.auth.set_identity(ident);
}

fn apply_identity(ctx: &ShardCtx, c: &Client, ident: Identity) {
    // A reload that moved the user to another account: its subscriptions and
    // replies belong to the old one, so the connection goes (as with nats-server).
    if ctx.server.account_id(ident.account_name()) != c.account.get() {
        revoke(c, &Failure::User(ident.user.clone().unwrap_or_default()));
        return;
    }
    c.auth.set_identity(ident);
    let perms = c.auth.perms.borrow().clone();
    let Some(perms) = perms else {
        return;
    };
    let mut subs: Vec<_> = c.subs.borrow().iter().map(|s| s.0.clone()).collect();
    subs.sort_by_key(|s| s.sid.clone());
    for sub in subs {
        if perms.can_subscribe(&sub.subject, sub.queue.as_deref()) {
            continue;
        }
        c.forget_sub(&sub.sid);
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
