//! Point-in-time copies of a shard's counters and connections, taken on the shard and
//! handed to the control plane (monitoring) so that nothing reads shard state from
//! another thread.

use std::time::{Duration, SystemTime};

use super::{ShardCtx, ShardStats};
use crate::client::Client;
use crate::sublist::SublistStats;

/// One subscription, as `/connz?subs=detail` and `/subsz?subs=1` show it.
#[derive(Clone, Debug)]
pub struct SubSnapshot {
    /// Subject pattern.
    pub subject: String,
    /// Queue group, if any.
    pub queue: Option<String>,
    /// Subscription id chosen by the client.
    pub sid: String,
    /// Messages delivered so far.
    pub msgs: u64,
    /// Auto-unsubscribe limit (0 = none).
    pub max: u64,
}

/// One connection, as monitoring shows it.
#[derive(Clone, Debug)]
pub struct ConnSnapshot {
    /// Connection id.
    pub cid: u64,
    /// Shard serving it.
    pub shard: usize,
    /// Remote IP.
    pub ip: String,
    /// Remote port.
    pub port: u16,
    /// When it was accepted.
    pub start: SystemTime,
    /// Last time data arrived from it.
    pub last_activity: SystemTime,
    /// Last measured round trip (server PING to PONG).
    pub rtt: Option<Duration>,
    /// Bytes queued for it.
    pub pending_bytes: usize,
    /// Messages and bytes received from it.
    pub in_msgs: u64,
    /// Payload bytes received from it.
    pub in_bytes: u64,
    /// Messages sent to it.
    pub out_msgs: u64,
    /// Payload bytes sent to it.
    pub out_bytes: u64,
    /// Number of subscriptions.
    pub num_subs: usize,
    /// Subscriptions (sorted by subject, then sid), when asked.
    pub subs: Vec<SubSnapshot>,
    /// nats-server's "raw auth user": the user or nkey it authenticated as (also
    /// through `no_auth_user` or a mapped certificate), else the CONNECT user, else
    /// `[REDACTED]` for a token; empty when none.
    pub user: String,
    /// The account it authenticated into; empty for the global account `$G` (which
    /// nats-server's `/connz` does not name).
    pub account: String,
    /// Negotiated TLS version (`1.3`), empty for plain connections.
    pub tls_version: String,
    /// Go's name of the negotiated cipher suite.
    pub tls_cipher: String,
    /// CONNECT name, lang and version.
    pub name: String,
    /// Client library language.
    pub lang: String,
    /// Client library version.
    pub version: String,
    /// Why it closed (closed connections only).
    pub reason: String,
    /// When it closed (closed connections only).
    pub stop: Option<SystemTime>,
    /// Came in on the websocket listener (`type: websocket`).
    pub websocket: bool,
    /// The account's name tag: a JWT account's name, else the account's name.
    pub name_tag: String,
    /// The user JWT it logged in with (JWT logins only).
    pub jwt: String,
    /// The user JWT's issuer.
    pub issuer_key: String,
    /// The user JWT's tags.
    pub tags: Vec<String>,
}

/// One shard's counters and connections.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    /// Shard id.
    pub id: usize,
    /// Core it is pinned to.
    pub core: usize,
    /// Message counters.
    pub stats: ShardStats,
    /// Subscriptions held by this shard's clients.
    pub subscriptions: usize,
    /// Entries in this shard's replica of the other shards' interest.
    pub remote_interest: usize,
    /// Connections this shard has accepted since it started.
    pub total_connections: u64,
    /// Counters of this shard's own interest table (all accounts together).
    pub sublist: SublistStats,
    /// The same per account, by account id.
    pub accounts: Vec<SublistStats>,
    /// Open connections.
    pub conns: Vec<ConnSnapshot>,
    /// Recently closed connections, oldest first.
    pub closed: Vec<ConnSnapshot>,
}

impl ConnSnapshot {
    /// Copies one connection's monitoring view.
    pub fn of(client: &Client, shard: usize, subs: bool) -> ConnSnapshot {
        let opts = client.opts.borrow();
        let list = if subs {
            let mut list: Vec<SubSnapshot> = client
                .subs
                .borrow()
                .iter()
                .map(|s| &s.0)
                .map(|s| SubSnapshot {
                    subject: String::from_utf8_lossy(&s.subject).into_owned(),
                    queue: s
                        .queue
                        .as_ref()
                        .map(|q| String::from_utf8_lossy(q).into_owned()),
                    sid: String::from_utf8_lossy(&s.sid).into_owned(),
                    msgs: s.delivered.get(),
                    max: s.max.get(),
                })
                .collect();
            list.sort_by(|a, b| a.subject.cmp(&b.subject).then_with(|| a.sid.cmp(&b.sid)));
            list
        } else {
            Vec::new()
        };
        let user = client
            .auth
            .user
            .borrow()
            .clone()
            .or_else(|| opts.nkey.clone().filter(|k| !k.is_empty()))
            .or_else(|| opts.user.clone().filter(|u| !u.is_empty()))
            .or_else(|| {
                opts.auth_token
                    .as_ref()
                    .filter(|t| !t.is_empty())
                    .map(|_| "[REDACTED]".to_string())
            })
            .unwrap_or_default();
        let (tls_version, tls_cipher) = client
            .tls
            .borrow()
            .as_ref()
            .map(|t| (t.version.to_string(), t.cipher.clone()))
            .unwrap_or_default();
        let facts = client.auth.jwt.borrow().clone();
        ConnSnapshot {
            cid: client.cid,
            shard,
            websocket: client.websocket.get(),
            ip: client.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            port: client.peer.map(|p| p.port()).unwrap_or_default(),
            start: client.start,
            last_activity: client.last_activity.get(),
            rtt: client.rtt.get(),
            pending_bytes: client.out.borrow().pending(),
            in_msgs: client.stats.in_msgs.get(),
            in_bytes: client.stats.in_bytes.get(),
            out_msgs: client.stats.out_msgs.get(),
            out_bytes: client.stats.out_bytes.get(),
            num_subs: client.subs.borrow().len(),
            subs: list,
            name: opts.name.clone(),
            lang: opts.lang.clone(),
            version: opts.version.clone(),
            user,
            account: client
                .auth
                .account_name
                .borrow()
                .as_deref()
                .unwrap_or_default()
                .to_string(),
            tls_version,
            tls_cipher,
            reason: String::new(),
            stop: None,
            name_tag: facts
                .as_ref()
                .map(|f| f.name_tag.clone())
                .unwrap_or_else(|| client.auth.account()),
            jwt: if facts.is_some() {
                opts.jwt.clone().unwrap_or_default()
            } else {
                String::new()
            },
            issuer_key: facts
                .as_ref()
                .map(|f| f.issuer_key.clone())
                .unwrap_or_default(),
            tags: facts.as_ref().map(|f| f.tags.clone()).unwrap_or_default(),
        }
    }
}

impl ShardCtx {
    /// This shard's counters and connections now.
    pub fn snapshot(&self, subs: bool) -> ShardSnapshot {
        let st = self.state.borrow();
        let mut conns: Vec<ConnSnapshot> = st
            .clients
            .values()
            .map(|c| ConnSnapshot::of(c, self.index, subs))
            .collect();
        conns.sort_by_key(|c| c.cid);
        ShardSnapshot {
            id: self.index,
            core: self.mesh.core(),
            stats: st.stats.clone(),
            subscriptions: st.all_tables().iter().map(|t| t.local.len()).sum(),
            remote_interest: st.all_tables().iter().map(|t| t.remote.len()).sum(),
            total_connections: st.next_cid,
            accounts: st.all_tables().iter().map(|t| t.local.stats()).collect(),
            sublist: st
                .all_tables()
                .iter()
                .map(|t| t.local.stats())
                .reduce(|a, b| a.merge(&b))
                .unwrap_or_default(),
            conns,
            closed: st.closed.iter().cloned().collect(),
        }
    }
}
