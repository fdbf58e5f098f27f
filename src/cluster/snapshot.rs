//! What monitoring reads of the cluster core: one snapshot per route and per leaf
//! connection, taken on the core's executor and sent back over the control channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::ClusterCore;

/// A request from the control plane to the cluster core.
pub enum ClusterCommand {
    /// Describe every route and leaf connection (with their subscriptions when `subs`).
    Snapshot {
        /// Include each connection's subscription subjects.
        subs: bool,
        /// Where the answer goes.
        reply: crossbeam_channel::Sender<ClusterSnapshot>,
    },
    /// The server entered lame duck mode: tell the peers (`"ldm":true`), so that
    /// their clients stop reconnecting here.
    LameDuck,
    /// Reloaded cluster settings: dial added routes, close removed ones.
    Reload(Box<crate::config::cluster::ClusterOptions>),
    /// Reloaded leaf node remotes: dial added ones, close removed ones.
    LeafRemotes(Vec<crate::config::leafnode::RemoteLeaf>),
    /// The stream imports in force changed (a reload, an account JWT update).
    Imports(Vec<crate::account::imports::StreamImport>),
}

/// How many connections the cluster core holds, kept current on every register and
/// unregister so that `/varz` reads them without asking the core.
#[derive(Debug, Default)]
pub struct LinkCounts {
    /// Registered routes.
    pub routes: AtomicU64,
    /// Distinct servers behind those routes.
    pub remotes: AtomicU64,
    /// Registered leaf connections.
    pub leafs: AtomicU64,
}

impl LinkCounts {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The cluster core's connections as monitoring shows them.
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    /// The registered routes.
    pub routes: Vec<RouteSnapshot>,
    /// The registered leaf connections.
    pub leafs: Vec<LeafSnapshot>,
    /// The registered gateway connections.
    pub gateways: Vec<GatewaySnapshot>,
}

/// One gateway connection as `/gatewayz` shows it.
#[derive(Clone, Debug)]
pub struct GatewaySnapshot {
    /// Connection id.
    pub id: u64,
    /// The remote cluster's gateway name.
    pub name: String,
    /// This server dialed it (messages go out on it).
    pub outbound: bool,
    /// Dialed because the configuration lists that gateway.
    pub configured: bool,
    /// The peer's server id.
    pub remote_id: String,
    /// The peer's address.
    pub ip: String,
    /// The peer's port.
    pub port: u16,
    /// When the connection was made.
    pub start: SystemTime,
    /// When the peer last sent something.
    pub last_activity: SystemTime,
    /// Last PING round trip.
    pub rtt: Option<Duration>,
    /// Bytes queued for the peer.
    pub pending: usize,
    /// Messages from the peer.
    pub in_msgs: u64,
    /// Messages to the peer.
    pub out_msgs: u64,
    /// Payload bytes from the peer.
    pub in_bytes: u64,
    /// Payload bytes to the peer.
    pub out_bytes: u64,
    /// Interest the peer told (outbound).
    pub subscriptions: usize,
    /// Per account in interest-only mode: its name and (outbound) the peer's interest
    /// in it.
    pub accounts: Vec<(String, usize)>,
}

/// One leaf connection as `/leafz` shows it.
#[derive(Clone, Debug)]
pub struct LeafSnapshot {
    /// Connection id.
    pub id: u64,
    /// The peer's server name.
    pub name: String,
    /// This server is the spoke (it dialed the hub).
    pub is_spoke: bool,
    /// The local account the connection is bound to.
    pub account: String,
    /// The peer's address.
    pub ip: String,
    /// The peer's port.
    pub port: u16,
    /// Last PING round trip.
    pub rtt: Option<Duration>,
    /// Messages from the peer.
    pub in_msgs: u64,
    /// Messages to the peer.
    pub out_msgs: u64,
    /// Payload bytes from the peer.
    pub in_bytes: u64,
    /// Payload bytes to the peer.
    pub out_bytes: u64,
    /// The subjects the peer is interested in (a queue's subject once per group, as
    /// nats-server lists them); empty strings when the subjects were not asked for.
    pub subscriptions: Vec<String>,
}

/// One route as `/routez` shows it.
#[derive(Clone, Debug)]
pub struct RouteSnapshot {
    /// Route id.
    pub rid: u64,
    /// The peer's server id.
    pub remote_id: String,
    /// The peer's server name.
    pub remote_name: String,
    /// This server dialed it.
    pub did_solicit: bool,
    /// Dialed because the configuration lists it (not learned by gossip).
    pub is_configured: bool,
    /// The peer's address.
    pub ip: String,
    /// The peer's port.
    pub port: u16,
    /// When the connection was made.
    pub start: SystemTime,
    /// When the peer last sent something.
    pub last_activity: SystemTime,
    /// Last PING round trip.
    pub rtt: Option<Duration>,
    /// Bytes queued for the peer.
    pub pending_size: usize,
    /// Messages from the peer.
    pub in_msgs: u64,
    /// Messages to the peer.
    pub out_msgs: u64,
    /// Payload bytes from the peer.
    pub in_bytes: u64,
    /// Payload bytes to the peer.
    pub out_bytes: u64,
    /// The subjects the peer is interested in.
    pub subscriptions: Vec<String>,
}

impl ClusterCore {
    /// The registered routes and leaf connections.
    pub fn snapshot(&self, subs: bool) -> ClusterSnapshot {
        ClusterSnapshot {
            routes: self.route_snapshots(subs),
            leafs: self.leaf_snapshots(subs),
            gateways: self.gateway_snapshots(),
        }
    }

    fn gateway_snapshots(&self) -> Vec<GatewaySnapshot> {
        let gateways = self.gateways();
        let mut out: Vec<GatewaySnapshot> = gateways
            .iter()
            .map(|g| {
                let interest = g.interest.borrow();
                let mut accounts: std::collections::BTreeMap<String, usize> = g
                    .switched
                    .borrow()
                    .iter()
                    .map(|a| (self.server.account_name(*a), 0))
                    .collect();
                for (account, _, _) in interest.keys() {
                    *accounts
                        .entry(self.server.account_name(*account))
                        .or_default() += 1;
                }
                GatewaySnapshot {
                    id: g.id,
                    name: g.name.borrow().clone(),
                    outbound: g.outbound(),
                    configured: g.configured,
                    remote_id: g.remote_id.borrow().clone(),
                    ip: g.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
                    port: g.peer.map_or(0, |p| p.port()),
                    start: g.start,
                    last_activity: g.last_activity.get(),
                    rtt: g.rtt.get(),
                    pending: g.pending(),
                    in_msgs: g.in_msgs.get(),
                    out_msgs: g.out_msgs.get(),
                    in_bytes: g.in_bytes.get(),
                    out_bytes: g.out_bytes.get(),
                    subscriptions: interest.len(),
                    accounts: accounts.into_iter().collect(),
                }
            })
            .collect();
        out.sort_by_key(|g| g.id);
        out
    }

    fn leaf_snapshots(&self, subs: bool) -> Vec<LeafSnapshot> {
        let mut leafs: Vec<LeafSnapshot> = self
            .leafs()
            .iter()
            .filter(|l| l.is_up())
            .map(|l| {
                let interest = l.interest.borrow();
                LeafSnapshot {
                    id: l.id,
                    name: l.remote_name.borrow().clone(),
                    is_spoke: l.spoke.get(),
                    account: l.account_name.borrow().clone(),
                    ip: l.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
                    port: l.peer.map_or(0, |p| p.port()),
                    rtt: l.rtt.get(),
                    in_msgs: l.in_msgs.get(),
                    out_msgs: l.out_msgs.get(),
                    in_bytes: l.in_bytes.get(),
                    out_bytes: l.out_bytes.get(),
                    subscriptions: if subs {
                        interest
                            .keys()
                            .map(|(s, _)| String::from_utf8_lossy(s).into_owned())
                            .collect()
                    } else {
                        vec![String::new(); interest.len()]
                    },
                }
            })
            .collect();
        leafs.sort_by_key(|l| l.id);
        leafs
    }

    fn route_snapshots(&self, subs: bool) -> Vec<RouteSnapshot> {
        self.routes()
            .iter()
            .map(|r| {
                let interest = r.interest.borrow();
                RouteSnapshot {
                    rid: r.id,
                    remote_id: r.remote_id.borrow().clone(),
                    remote_name: r.remote_name.borrow().clone(),
                    did_solicit: r.solicited,
                    is_configured: r.configured,
                    ip: r.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
                    port: r.peer.map_or(0, |p| p.port()),
                    start: r.start,
                    last_activity: r.last_activity.get(),
                    rtt: r.rtt.get(),
                    pending_size: r.pending(),
                    in_msgs: r.in_msgs.get(),
                    out_msgs: r.out_msgs.get(),
                    in_bytes: r.in_bytes.get(),
                    out_bytes: r.out_bytes.get(),
                    subscriptions: if subs {
                        interest
                            .keys()
                            .map(|(_, s, _)| String::from_utf8_lossy(s).into_owned())
                            .collect()
                    } else {
                        vec![String::new(); interest.len()]
                    },
                }
            })
            .collect()
    }
}
