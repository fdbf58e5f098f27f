//! System account events: what the server itself publishes in the system account
//! (`$SYS` unless configured otherwise) about its clients, with nats-server's
//! subjects and JSON. Published from the client's shard as ordinary messages
//! (`Origin::Server`), so system-account subscribers on any shard get them. The
//! request services and the periodic `STATSZ` are in [`service`].

pub mod gojson;
pub mod service;

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::bus::{Message, Origin};
use crate::client::Client;
use crate::monitor::format::rfc3339;
use crate::monitor::varz::{system_account, FEATURE_FLAGS};
use crate::shard::ShardCtx;

/// `$SYS.ACCOUNT.<acc>.CONNECT` once a client is admitted into its account.
pub fn client_connect(ctx: &ShardCtx, client: &Client) {
    let subject = format!("$SYS.ACCOUNT.{}.CONNECT", client.auth.account());
    publish(ctx, &subject, |server| {
        json!({
            "type": "io.nats.server.advisory.v1.client_connect",
            "id": event_id(),
            "timestamp": rfc3339(SystemTime::now()),
            "server": server,
            "client": client_info(client, None),
        })
    });
}

/// `$SYS.ACCOUNT.<acc>.DISCONNECT` when an admitted client's connection ends, and
/// `$SYS.SERVER.<id>.CLIENT.AUTH.ERR` (the same event) when it failed to
/// authenticate.
pub fn client_disconnect(ctx: &ShardCtx, client: &Client) {
    let subject = if client.connected.get() {
        format!("$SYS.ACCOUNT.{}.DISCONNECT", client.auth.account())
    } else if client.close_reason.get() == AUTH_FAILURE {
        format!("$SYS.SERVER.{}.CLIENT.AUTH.ERR", ctx.server.server_id)
    } else {
        return;
    };
    let stop = SystemTime::now();
    publish(ctx, &subject, |server| {
        json!({
            "type": "io.nats.server.advisory.v1.client_disconnect",
            "id": event_id(),
            "timestamp": rfc3339(stop),
            "server": server,
            "client": client_info(client, Some(stop)),
            // The server's view: what it sent the client and received from it.
            "sent": {"msgs": client.stats.out_msgs.get(), "bytes": client.stats.out_bytes.get()},
            "received": {"msgs": client.stats.in_msgs.get(), "bytes": client.stats.in_bytes.get()},
            "reason": client.close_reason.get(),
        })
    });
}

/// The close reason of a connection that failed to authenticate.
const AUTH_FAILURE: &str = "Authentication Failure";

/// Publishes `body(server info)` on `subject` in the system account, when there is
/// one and someone there listens (the JSON is not built otherwise).
fn publish(ctx: &ShardCtx, subject: &str, body: impl FnOnce(Value) -> Value) {
    let opts = ctx.server.current_opts();
    let Some(sys) = system_account(&opts).and_then(|name| ctx.server.account_lookup(&name)) else {
        return;
    };
    if !ctx.has_interest(sys, subject.as_bytes()) {
        return;
    }
    let server = server_info(&ctx.server);
    let payload = Bytes::from(body(server).to_string());
    let subject = Bytes::copy_from_slice(subject.as_bytes());
    let reply = Bytes::new();
    let msg = Message::owned(&subject, &reply, 0, &payload);
    let mut st = ctx.state.borrow_mut();
    ctx.publish(&mut st, sys, &msg, Origin::Server, false);
}

/// The header a request carries its requester in (nats-server's `ClientInfoHdr`).
pub const REQUEST_INFO: &str = "Nats-Request-Info";

/// The `server` object of every system event and response, with the next event
/// sequence number.
pub fn server_info(server: &crate::server::ServerShared) -> Value {
    let opts = server.current_opts();
    let seq = server.event_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let flags: Map<String, Value> = FEATURE_FLAGS
        .iter()
        .map(|&f| (f.to_string(), Value::from(false)))
        .collect();
    let mut info = json!({
        "name": server.server_name,
        "host": opts.host,
        "id": server.server_id,
        "ver": crate::server::COMPAT_VERSION,
        "feature_flags": flags,
        "jetstream": false,
        "flags": 0,
        "seq": seq,
        "time": rfc3339(SystemTime::now()),
    });
    if let Some(cluster) = opts.cluster.as_ref().and_then(|c| c.name.clone()) {
        info["cluster"] = cluster.into();
    }
    if !opts.tags.is_empty() {
        info["tags"] = opts.tags.clone().into();
    }
    info
}

/// The `client` object of connect and disconnect events.
fn client_info(client: &Client, stop: Option<SystemTime>) -> Value {
    let opts = client.opts.borrow();
    let account = client.auth.account();
    let mut info = Map::new();
    info.insert("start".into(), rfc3339(client.start).into());
    if let Some(peer) = client.peer {
        info.insert("host".into(), peer.ip().to_canonical().to_string().into());
    }
    info.insert("id".into(), client.cid.into());
    info.insert("acc".into(), account.clone().into());
    // The authenticated user, else (a failed attempt) the one CONNECT named.
    let user = client
        .auth
        .user
        .borrow()
        .clone()
        .or_else(|| opts.user.clone());
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        info.insert("user".into(), user.into());
    }
    for (key, value) in [
        ("name", &opts.name),
        ("lang", &opts.lang),
        ("ver", &opts.version),
    ] {
        if !value.is_empty() {
            info.insert(key.into(), value.as_str().into());
        }
    }
    if let Some(stop) = stop {
        if let Some(rtt) = client.rtt.get() {
            info.insert("rtt".into(), (rtt.as_nanos() as u64).into());
        }
        info.insert("stop".into(), rfc3339(stop).into());
    }
    // A JWT login: the user JWT, who signed it, the account JWT's name, the tags.
    let facts = client.auth.jwt.borrow().clone();
    match &facts {
        Some(f) => {
            if let Some(jwt) = opts.jwt.as_deref().filter(|j| !j.is_empty()) {
                info.insert("jwt".into(), jwt.into());
            }
            info.insert("issuer_key".into(), f.issuer_key.clone().into());
            info.insert("name_tag".into(), f.name_tag.clone().into());
            if !f.tags.is_empty() {
                info.insert("tags".into(), f.tags.clone().into());
            }
        }
        None => {
            info.insert("name_tag".into(), account.into());
        }
    }
    info.insert("kind".into(), "Client".into());
    info.insert("client_type".into(), "nats".into());
    Value::Object(info)
}

/// A unique event id (22 characters, like the reference's NUIDs).
pub(crate) fn event_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| ALPHABET[rand::random::<u8>() as usize % ALPHABET.len()] as char)
        .collect()
}
