//! The cluster core: connections to other servers (routes to the servers of this
//! cluster, leaf node connections to hubs and from leafs) and the interest
//! bookkeeping between them and the client shards. It runs on its own executor (a
//! dedicated core) and talks to the client shards only through the mesh's envelopes.
//!
//! * Client shards tell it about every subscription gained or lost, as they tell each
//!   other ([`Envelope::Interest`]). It keeps a replica of that interest (to hand
//!   messages from other servers to the shards that want them) and a count per
//!   account, subject and queue across all shards.
//! * What each link is told ([`interest`]): routes get this server's interest and that
//!   of the leafs it is the hub for; a leaf gets what it may receive by the
//!   reference's rules (a hub tells a leaf everything of the bound account, a spoke
//!   tells its hub only its own clients' and its own leafs' interest).
//! * What a link wants (`RS+`/`LS+`) it tells the client shards as if it were a
//!   shard with that many subscriptions, so a shard's one match finds remote interest
//!   beside the other shards' and sends one envelope here per message.
//! * Messages ([`deliver`]) go where the interest said, never back where they came
//!   from and never from one route to another (the cluster is a full mesh).

pub mod deliver;
pub mod gateway;
pub mod interest;
pub mod leaf;
pub mod link;
pub mod route;
pub mod snapshot;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::account::AccountId;
use crate::bus::Envelope;
use crate::config::cluster::ClusterOptions;
use crate::config::gateway::GatewayOptions;
use crate::config::leafnode::LeafnodeOptions;
use crate::server::acceptor::Port;
use crate::server::ServerShared;
use crate::sublist::Sublist;

use gateway::Gateway;
use leaf::Leaf;
use route::Route;

/// An account, subject and optional queue group.
type InterestKey = (AccountId, Bytes, Option<Bytes>);

/// One stream import, as the cluster core applies it.
#[derive(PartialEq)]
struct Tap {
    from: AccountId,
    pattern: Bytes,
    into: AccountId,
    rewrite: crate::account::imports::Rewrite,
}

impl Tap {
    /// The subject in the exporting account that an importer's interest in
    /// `subject` stands for (the import's own subject where they only overlap).
    fn shadow(&self, subject: &[u8]) -> Option<Bytes> {
        use crate::account::imports::{is_subset, Rewrite};
        use crate::subject::collide;
        let seen: Bytes = match &self.rewrite {
            Rewrite::Keep => Bytes::copy_from_slice(subject),
            Rewrite::Prefix(p) => {
                let p = p.as_bytes();
                match subject.strip_prefix(p).and_then(|s| s.strip_prefix(b".")) {
                    Some(rest) => Bytes::copy_from_slice(rest),
                    None => {
                        let mut any = p.to_vec();
                        any.extend_from_slice(b".>");
                        return collide(subject, &any).then(|| self.pattern.clone());
                    }
                }
            }
            Rewrite::To(t) => {
                return collide(subject, t.as_bytes()).then(|| self.pattern.clone());
            }
        };
        if is_subset(&seen, &self.pattern) {
            Some(seen)
        } else {
            collide(&seen, &self.pattern).then(|| self.pattern.clone())
        }
    }
}

/// The cluster core's state; all of it belongs to its executor.
pub struct ClusterCore {
    /// This executor's mesh id.
    pub id: usize,
    /// Links to the client shards.
    pub mesh: shards::Shard<Envelope>,
    /// Server-wide settings.
    pub server: Arc<ServerShared>,
    /// Cluster settings in force (replaced on reload).
    pub opts: RefCell<ClusterOptions>,
    /// The cluster's name (configured, generated, or adopted from a peer).
    pub name: RefCell<String>,
    /// The name was generated here, not configured: a peer's configured name wins.
    pub dynamic: Cell<bool>,
    /// The port routes connect to.
    pub port: u16,
    /// Leaf node settings in force.
    leafnodes: RefCell<LeafnodeOptions>,
    /// The port leafs connect to (0: none).
    pub leaf_port: u16,
    /// Gateway settings (empty when none are configured).
    gateway: RefCell<GatewayOptions>,
    /// Mesh ids of the client shards.
    clients: Vec<usize>,
    /// The configured stream imports: this server imports what other servers send
    /// in the exporting account, and announces interest there for its importers.
    taps: RefCell<Vec<Tap>>,
    state: RefCell<CoreState>,
}

struct CoreState {
    /// Per account: the client shards' interest (item: shard mesh id).
    shards: Vec<Sublist<u16>>,
    /// Per account, subject and queue: subscriptions across all client shards (and
    /// this server's own loop-detection subjects).
    local: HashMap<InterestKey, u32>,
    /// Per account: what each route and leaf wants (item: link id, count: weight).
    remote: Vec<Sublist<u64>>,
    /// Per account, subject and queue: the routes' weights summed.
    routes_total: HashMap<InterestKey, u32>,
    /// What the routes were told (all routes are told the same).
    told_routes: HashMap<InterestKey, u32>,
    /// Registered routes, by id.
    routes: BTreeMap<u64, Rc<Route>>,
    /// Registered leaf connections, by id.
    leafs: BTreeMap<u64, Rc<Leaf>>,
    /// Registered gateway connections (outbound and inbound), by id.
    gateways: BTreeMap<u64, Rc<Gateway>>,
    /// Per account, subject and queue: the outbound gateways' queue weights summed,
    /// and what the client shards were told of them (nothing while this cluster has
    /// a member of the group).
    gw_queues: HashMap<InterestKey, u32>,
    gw_queues_told: HashMap<InterestKey, u32>,
    /// Gateways a dialer runs for, by name.
    gw_soliciting: HashSet<String>,
    /// Per account: plain subscriptions of this server's clients made in the last
    /// two seconds (replies to them leave rewritten), and their expiry order.
    recent: Vec<Sublist<u16>>,
    recent_order: VecDeque<(std::time::Instant, AccountId, Bytes)>,
    /// Rewritten replies stripped for this cluster's clients: (account, reply) ->
    /// (the rewritten reply, expiry), and their expiry order.
    routed_replies: HashMap<(AccountId, Bytes), (Bytes, std::time::Instant)>,
    routed_order: VecDeque<(std::time::Instant, (AccountId, Bytes))>,
    /// `_GR_.<cluster hash>.<server hash>.`: this server's rewritten reply prefix.
    reply_prefix: Bytes,
    /// Per account: its loop-detection subject (`$LDS.<random>`), once a leaf uses it.
    lds: Vec<Bytes>,
    next_link: u64,
    rng: u64,
    /// Account ids by name, for messages from routes (looked up per message: foldhash).
    by_name: HashMap<Bytes, AccountId, foldhash::fast::RandomState>,
    /// Account names by id, for lines to routes.
    names: Vec<Bytes>,
    targets: Vec<deliver::ShardTarget>,
    /// Scratch space for one message's links and queue picks (kept, not reallocated).
    scratch_links: Vec<u64>,
    scratch_picks: Vec<(u64, Bytes)>,
    scratch_candidates: Vec<(deliver::Hop, u32)>,
}

impl ClusterCore {
    /// The cluster core on mesh executor `mesh.id()`.
    pub fn new(
        mesh: shards::Shard<Envelope>,
        server: Arc<ServerShared>,
        opts: ClusterOptions,
        port: u16,
        leaf_port: u16,
    ) -> Rc<ClusterCore> {
        let clients = (0..mesh.count())
            .filter(|&i| mesh.roles()[i] == shards::Role::Client)
            .collect();
        let leafnodes = server.opts.leafnodes.clone().unwrap_or_default();
        // Without a cluster, a leaf's cluster name is its server name when it has
        // remotes (as nats-server names it), else there is none.
        let (name, dynamic) = match (&opts.name, server.opts.cluster.is_some()) {
            (Some(n), _) => (n.clone(), opts.dynamic_name),
            (None, true) => (random_name(), true),
            (None, false) if server.opts.gateway.is_some() => (
                server.opts.gateway.as_ref().expect("gateway").name.clone(),
                false,
            ),
            (None, false) if !leafnodes.remotes.is_empty() => (server.server_name.clone(), false),
            (None, false) => (String::new(), false),
        };
        let id = mesh.id();
        let executors = mesh.count();
        let gateway = server.opts.gateway.clone().unwrap_or_default();
        let taps = RefCell::new(taps_of(&server, &server.auth.stream_imports));
        let reply_prefix = gateway::reply_prefix(&gateway.name, &server.server_id);
        Rc::new(ClusterCore {
            id,
            mesh,
            server,
            opts: RefCell::new(opts),
            name: RefCell::new(name),
            dynamic: Cell::new(dynamic),
            port,
            leafnodes: RefCell::new(leafnodes),
            leaf_port,
            gateway: RefCell::new(gateway),
            clients,
            taps,
            state: RefCell::new(CoreState {
                shards: Vec::new(),
                local: HashMap::new(),
                remote: Vec::new(),
                routes_total: HashMap::new(),
                told_routes: HashMap::new(),
                routes: BTreeMap::new(),
                leafs: BTreeMap::new(),
                gateways: BTreeMap::new(),
                gw_queues: HashMap::new(),
                gw_queues_told: HashMap::new(),
                gw_soliciting: HashSet::new(),
                recent: Vec::new(),
                recent_order: VecDeque::new(),
                routed_replies: HashMap::new(),
                routed_order: VecDeque::new(),
                reply_prefix,
                lds: Vec::new(),
                next_link: 0,
                rng: 0x2545_F491_4F6C_DD1D,
                by_name: HashMap::default(),
                names: Vec::new(),
                targets: (0..executors)
                    .map(|_| deliver::ShardTarget::default())
                    .collect(),
                scratch_links: Vec::new(),
                scratch_picks: Vec::new(),
                scratch_candidates: Vec::new(),
            }),
        })
    }

    /// Applies one envelope from a client shard.
    pub fn on_envelope(&self, from: usize, env: Envelope) {
        match env {
            Envelope::Interest {
                account,
                subject,
                queue,
                add,
                n,
            } => self.on_shard_interest(from, account, subject, queue, add, n),
            Envelope::Msg(m) => self.on_shard_msg(&m),
            Envelope::Barrier(token) => self.mesh.send(from, Envelope::BarrierAck(token)),
            Envelope::Ask { token, subs } => {
                let report = Box::new(self.snapshot(subs));
                self.mesh.send(from, Envelope::Answer { token, report });
            }
            Envelope::Response { .. }
            | Envelope::BarrierAck(_)
            | Envelope::Delivered { .. }
            | Envelope::Answer { .. } => {}
        }
    }

    /// Puts reloaded settings in force: a new name, new credentials for later
    /// handshakes, routes dialed for URLs added and closed for URLs removed.
    pub fn reload(self: &Rc<Self>, new: ClusterOptions) {
        let old = self.opts.replace(new.clone());
        if let Some(name) = new.name.clone().filter(|n| *n != *self.name.borrow()) {
            if !new.dynamic_name {
                *self.name.borrow_mut() = name;
                self.dynamic.set(false);
            }
        }
        if old.permissions != new.permissions {
            self.reapply_route_permissions();
        }
        for url in new.routes.iter().filter(|u| !old.routes.contains(u)) {
            glommio::spawn_local(route::solicit(self.clone(), url.clone(), false)).detach();
        }
        for r in self.routes() {
            let removed = r
                .url
                .as_ref()
                .is_some_and(|u| r.configured && !new.routes.contains(u));
            if removed {
                r.close("Route Removed");
                r.shutdown();
            }
        }
    }

    /// Puts reloaded leaf node remotes in force: added ones are dialed, connections
    /// to removed ones closed (their dialers stop).
    pub fn reload_leaf_remotes(self: &Rc<Self>, remotes: Vec<crate::config::leafnode::RemoteLeaf>) {
        let old = std::mem::replace(&mut self.leafnodes.borrow_mut().remotes, remotes.clone());
        for remote in remotes.iter().filter(|r| !old.contains(r)) {
            glommio::spawn_local(leaf::solicit(self.clone(), Rc::new(remote.clone()))).detach();
        }
        for gone in old.iter().filter(|r| !remotes.contains(r)) {
            for l in self.leafs() {
                if l.spoke.get() && l.url.as_ref().is_some_and(|u| gone.urls.contains(u)) {
                    l.close("Leafnode Removed");
                    l.shutdown();
                }
            }
        }
    }

    /// A new route id.
    pub fn next_link_id(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        st.next_link += 1;
        st.next_link
    }

    /// Leaf node settings in force.
    pub fn leaf_opts(&self) -> std::cell::Ref<'_, LeafnodeOptions> {
        self.leafnodes.borrow()
    }

    /// The leaf connections registered now.
    pub fn leafs(&self) -> Vec<Rc<Leaf>> {
        self.state.borrow().leafs.values().cloned().collect()
    }

    /// The routes registered now.
    pub fn routes(&self) -> Vec<Rc<Route>> {
        self.state.borrow().routes.values().cloned().collect()
    }

    /// The registered route to server `server_id`, if any.
    pub fn route_to(&self, server_id: &str) -> Option<Rc<Route>> {
        let st = self.state.borrow();
        st.routes
            .values()
            .find(|r| *r.remote_id.borrow() == server_id)
            .cloned()
    }

    /// The client URLs of every server in the cluster (this one first), from the
    /// routes' INFOs: what clients are told to reconnect to.
    pub fn cluster_client_urls(&self) -> Vec<String> {
        let mut urls = self.server.own_client_urls();
        for r in self.routes() {
            for u in r.client_urls.borrow().iter() {
                if !urls.contains(u) {
                    urls.push(u.clone());
                }
            }
        }
        urls
    }

    /// The websocket URLs of every server in the cluster, this one's first.
    pub fn cluster_ws_urls(&self) -> Vec<String> {
        let mut urls = self.server.own_ws_urls();
        for r in self.routes() {
            for u in r.ws_urls.borrow().iter() {
                if !urls.contains(u) {
                    urls.push(u.clone());
                }
            }
        }
        urls
    }

    /// Tells clients (new ones through the INFO template, protocol-1 ones by an async
    /// INFO) when the cluster's client or websocket URLs changed.
    pub fn refresh_connect_urls(&self) {
        let urls = self.cluster_client_urls();
        // Alone, a server tells websocket clients no URLs (as nats-server).
        let ws = if self.routes().is_empty() {
            Vec::new()
        } else {
            self.cluster_ws_urls()
        };
        let ws_changed = self.server.set_ws_connect_urls(ws);
        if self.server.set_connect_urls(urls) | ws_changed {
            self.server
                .tell_shards(|_| crate::shard::control::ShardCommand::ConnectUrls);
        }
    }

    /// The id of account `name` as a route names it; `None` for an account this
    /// server does not know (its messages are dropped, as nats-server drops them).
    pub fn account_by_name(&self, name: &[u8]) -> Option<AccountId> {
        if let Some(id) = self.state.borrow().by_name.get(name) {
            return Some(*id);
        }
        let id = self
            .server
            .account_lookup(std::str::from_utf8(name).ok()?)?;
        self.state
            .borrow_mut()
            .by_name
            .insert(Bytes::copy_from_slice(name), id);
        Some(id)
    }

    fn account_name(server: &ServerShared, st: &mut CoreState, account: AccountId) -> Bytes {
        let i = account.index();
        if let Some(n) = st.names.get(i).filter(|n| !n.is_empty()) {
            return n.clone();
        }
        if st.names.len() <= i {
            st.names.resize(i + 1, Bytes::new());
        }
        st.names[i] = Bytes::from(server.account_name(account));
        st.names[i].clone()
    }
}

/// The cluster core's form of stream imports.
fn taps_of(server: &ServerShared, imports: &[crate::account::imports::StreamImport]) -> Vec<Tap> {
    imports
        .iter()
        .map(|imp| Tap {
            from: server.account_id(&imp.from),
            pattern: Bytes::copy_from_slice(imp.subject.as_bytes()),
            into: server.account_id(&imp.into),
            rewrite: imp.rewrite.clone(),
        })
        .collect()
}

impl ClusterCore {
    /// Puts new stream imports in force: the interest announced in exporting
    /// accounts for this server's importers follows.
    pub fn set_taps(&self, imports: &[crate::account::imports::StreamImport]) {
        let new = taps_of(&self.server, imports);
        if *self.taps.borrow() == new {
            return;
        }
        let importers: HashSet<AccountId> = self
            .taps
            .borrow()
            .iter()
            .chain(new.iter())
            .map(|t| t.into)
            .collect();
        let mut st = self.state.borrow_mut();
        let keys: Vec<(InterestKey, u32)> = st
            .local
            .iter()
            .filter(|(k, _)| importers.contains(&k.0) && !k.1.starts_with(b"$LDS."))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        for (key, n) in &keys {
            self.shadow_interest(&mut st, key, false, *n);
        }
        *self.taps.borrow_mut() = new;
        for (key, n) in &keys {
            self.shadow_interest(&mut st, key, true, *n);
        }
    }
}

/// A random cluster name, as nats-server makes one when none is configured.
pub fn random_name() -> String {
    let kp = nkeys::KeyPair::new_server();
    kp.public_key()[1..23].to_string()
}

/// The cluster core's executor: accepts routes on the descriptor hand-off `handoff`,
/// dials the configured ones, and applies the client shards' envelopes until the
/// server stops.
pub async fn core_main(
    mesh: shards::Shard<Envelope>,
    server: Arc<ServerShared>,
    handoff: std::os::fd::RawFd,
    ready: crossbeam_channel::Sender<()>,
) {
    use std::os::fd::FromRawFd;
    let opts = server.opts.cluster.clone().unwrap_or_default();
    let port = server
        .cluster_port
        .load(std::sync::atomic::Ordering::Relaxed) as u16;
    let leaf_port = server.leaf_port.load(std::sync::atomic::Ordering::Relaxed) as u16;
    let core = ClusterCore::new(mesh, server.clone(), opts, port, leaf_port);
    if server.opts.cluster.is_some() {
        crate::log_info!("Cluster name is {}", core.name.borrow());
        if core.dynamic.get() {
            crate::log_warn!("Cluster name was dynamically generated, consider setting one");
        }
    }
    let pump = core.clone();
    core.mesh.on_receive(move |from, env| {
        pump.on_envelope(from, env);
        None
    });
    // SAFETY: the cluster core alone owns this end of its socket pair.
    let wake = unsafe { glommio::net::UnixStream::from_raw_fd(handoff) };
    let accepting = core.clone();
    let acceptor = glommio::spawn_local(crate::server::acceptor::read_accepted(
        wake,
        // The leaf listener's connections come tagged.
        move |stream, port| {
            let core = accepting.clone();
            glommio::spawn_local(async move {
                match port {
                    Port::Second => {
                        leaf::serve(core, stream, None, 0).await;
                    }
                    Port::Gateway => {
                        gateway::serve(core, stream, None).await;
                    }
                    Port::Main => {
                        route::serve(core, stream, None).await;
                    }
                }
            })
            .detach();
        },
        // Its commands come over its own channel, polled (no marks on this pair).
        || {},
    ));
    let routes = core.opts.borrow().routes.clone();
    for url in routes {
        glommio::spawn_local(route::solicit(core.clone(), url, false)).detach();
    }
    if core.gateways_enabled() {
        core.start_gateways();
    }
    let remotes = core.leaf_opts().remotes.clone();
    for remote in remotes {
        glommio::spawn_local(leaf::solicit(core.clone(), Rc::new(remote))).detach();
    }
    let _ = ready.send(());
    let commands = server.cluster_commands();
    while !server.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        while let Some(cmd) = commands.as_ref().and_then(|c| c.try_recv().ok()) {
            match cmd {
                snapshot::ClusterCommand::Snapshot { subs, reply } => {
                    let _ = reply.send(core.snapshot(subs));
                }
                snapshot::ClusterCommand::Reload(opts) => core.reload(*opts),
                snapshot::ClusterCommand::Imports(list) => core.set_taps(&list),
                snapshot::ClusterCommand::LeafRemotes(list) => core.reload_leaf_remotes(list),
                snapshot::ClusterCommand::LameDuck => {
                    let line = route::ldm_line(&core);
                    for r in core.routes() {
                        r.send(&line);
                    }
                }
            }
        }
        core.expire_gateway_state();
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(acceptor);
    for r in core.routes() {
        r.close("Server Shutdown");
    }
    for l in core.leafs() {
        l.close("Server Shutdown");
    }
    for g in core.gateways() {
        g.close("Server Shutdown");
    }
    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
}
