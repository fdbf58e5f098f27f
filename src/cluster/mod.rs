//! The cluster core: route connections to the other servers of the cluster and the
//! interest bookkeeping between them and the client shards. It runs on its own
//! executor (a dedicated core) and talks to the client shards only through the
//! mesh's envelopes.
//!
//! * Client shards tell it about every subscription gained or lost, as they tell each
//!   other ([`Envelope::Interest`]). It keeps a replica of that interest (to hand
//!   messages from routes to the shards that want them) and a count per account,
//!   subject and queue across all shards: `RS+` goes to the routes on 0 -> 1 (queue
//!   groups: on every change, with the weight), `RS-` on 1 -> 0.
//! * What a route wants (`RS+`/`LS+`) it tells the client shards as if it were a
//!   shard with that many subscriptions, so a shard's one match finds route interest
//!   beside the other shards' and sends one envelope here per message.
//! * A message from a route goes to local subscribers only, never to another route
//!   (the cluster is a full mesh).

pub mod route;
pub mod snapshot;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::account::AccountId;
use crate::bus::{Envelope, RoutedMsg};
use crate::config::cluster::ClusterOptions;
use crate::server::ServerShared;
use crate::sublist::Sublist;

use route::Route;

/// An account, subject and optional queue group.
type InterestKey = (AccountId, Bytes, Option<Bytes>);

/// Where one message from a route goes on one client shard.
#[derive(Default)]
struct ShardTarget {
    plain: bool,
    queues: Vec<Bytes>,
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
    /// Mesh ids of the client shards.
    clients: Vec<usize>,
    state: RefCell<CoreState>,
}

struct CoreState {
    /// Per account: the client shards' interest (item: shard mesh id).
    shards: Vec<Sublist<u16>>,
    /// Per account, subject and queue: subscriptions across all client shards.
    local: HashMap<InterestKey, u32>,
    /// Per account: what each route wants (item: route id, count: weight).
    routes_interest: Vec<Sublist<u64>>,
    /// Registered routes, by id.
    routes: BTreeMap<u64, Rc<Route>>,
    next_route: u64,
    rng: u64,
    /// Account ids by name, for messages from routes (looked up per message: foldhash).
    by_name: HashMap<Bytes, AccountId, foldhash::fast::RandomState>,
    /// Account names by id, for lines to routes.
    names: Vec<Bytes>,
    targets: Vec<ShardTarget>,
    /// Scratch space for one message's routes and queue picks (kept, not reallocated).
    scratch_routes: Vec<u64>,
    scratch_picks: Vec<(u64, Bytes)>,
}

impl ClusterCore {
    /// The cluster core on mesh executor `mesh.id()`.
    pub fn new(
        mesh: shards::Shard<Envelope>,
        server: Arc<ServerShared>,
        opts: ClusterOptions,
        port: u16,
    ) -> Rc<ClusterCore> {
        let clients = (0..mesh.count())
            .filter(|&i| mesh.roles()[i] == shards::Role::Client)
            .collect();
        let (name, dynamic) = match &opts.name {
            Some(n) => (n.clone(), opts.dynamic_name),
            None => (random_name(), true),
        };
        let id = mesh.id();
        let executors = mesh.count();
        Rc::new(ClusterCore {
            id,
            mesh,
            server,
            opts: RefCell::new(opts),
            name: RefCell::new(name),
            dynamic: Cell::new(dynamic),
            port,
            clients,
            state: RefCell::new(CoreState {
                shards: Vec::new(),
                local: HashMap::new(),
                routes_interest: Vec::new(),
                routes: BTreeMap::new(),
                next_route: 0,
                rng: 0x2545_F491_4F6C_DD1D,
                by_name: HashMap::default(),
                names: Vec::new(),
                targets: (0..executors).map(|_| ShardTarget::default()).collect(),
                scratch_routes: Vec::new(),
                scratch_picks: Vec::new(),
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

    /// A new route id.
    pub fn next_route_id(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        st.next_route += 1;
        st.next_route
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

    /// Tells clients (new ones through the INFO template, protocol-1 ones by an async
    /// INFO) when the cluster's client URLs changed.
    pub fn refresh_connect_urls(&self) {
        let urls = self.cluster_client_urls();
        if self.server.set_connect_urls(urls) {
            self.server
                .tell_shards(|_| crate::shard::control::ShardCommand::ConnectUrls);
        }
    }

    /// Registers a route whose handshake is done, and sends it this server's interest.
    pub fn register(&self, route: &Rc<Route>) {
        let lines = {
            let mut st = self.state.borrow_mut();
            st.routes.insert(route.id, route.clone());
            let mut out = BytesMut::new();
            let keys: Vec<(InterestKey, u32)> =
                st.local.iter().map(|(k, n)| (k.clone(), *n)).collect();
            for ((account, subject, queue), n) in keys {
                let name = Self::account_name(&self.server, &mut st, account);
                crate::proto::route::sub(
                    &mut out,
                    &name,
                    &subject,
                    queue.as_deref().map(|q| (q, n)),
                );
            }
            out
        };
        route.send(&lines);
    }

    /// Forgets a closed route and the interest it had.
    pub fn unregister(&self, route: &Route) {
        let interest = std::mem::take(&mut *route.interest.borrow_mut());
        let mut st = self.state.borrow_mut();
        if st
            .routes
            .get(&route.id)
            .is_some_and(|r| std::ptr::eq(&**r, route))
        {
            st.routes.remove(&route.id);
        }
        for ((account, subject, queue), weight) in interest {
            self.change_route_interest(&mut st, route.id, account, &subject, &queue, weight, 0);
        }
        drop(st);
        self.refresh_connect_urls();
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

    fn on_shard_interest(
        &self,
        from: usize,
        account: AccountId,
        subject: Bytes,
        queue: Option<Bytes>,
        add: bool,
        n: u32,
    ) {
        let mut st = self.state.borrow_mut();
        let i = account.index();
        if st.shards.len() <= i {
            st.shards.resize_with(i + 1, Sublist::default);
        }
        if add {
            st.shards[i].insert_n(&subject, queue.as_deref(), from as u16, n);
        } else {
            st.shards[i].remove_n(&subject, queue.as_deref(), &(from as u16), n);
        }
        let key = (account, subject, queue);
        let before = st.local.get(&key).copied().unwrap_or(0);
        let after = if add {
            before.saturating_add(n)
        } else {
            before.saturating_sub(n)
        };
        if after == 0 {
            st.local.remove(&key);
        } else {
            st.local.insert(key.clone(), after);
        }
        let (account, subject, queue) = key;
        // Plain interest: only 0 -> 1 and 1 -> 0 are news. Queue groups: the weight.
        let news = (before == 0) != (after == 0) || (queue.is_some() && before != after);
        if !news || st.routes.is_empty() {
            return;
        }
        let name = Self::account_name(&self.server, &mut st, account);
        let mut line = BytesMut::new();
        if after > 0 {
            crate::proto::route::sub(
                &mut line,
                &name,
                &subject,
                queue.as_deref().map(|q| (q, after)),
            );
        } else {
            crate::proto::route::unsub(&mut line, &name, &subject, queue.as_deref());
        }
        let routes: Vec<Rc<Route>> = st.routes.values().cloned().collect();
        drop(st);
        for r in routes {
            r.send(&line);
        }
    }

    /// A route's interest in (account, subject, queue) is now `weight` (0: gone).
    pub fn set_route_interest(
        &self,
        route: &Route,
        account: AccountId,
        subject: &[u8],
        queue: Option<&[u8]>,
        weight: u32,
    ) {
        let key = (
            account,
            Bytes::copy_from_slice(subject),
            queue.map(Bytes::copy_from_slice),
        );
        let before = {
            let mut interest = route.interest.borrow_mut();
            let before = interest.get(&key).copied().unwrap_or(0);
            if weight == 0 {
                interest.remove(&key);
            } else {
                interest.insert(key.clone(), weight);
            }
            before
        };
        let mut st = self.state.borrow_mut();
        let (account, subject, queue) = key;
        self.change_route_interest(&mut st, route.id, account, &subject, &queue, before, weight);
    }

    #[allow(clippy::too_many_arguments)]
    fn change_route_interest(
        &self,
        st: &mut CoreState,
        route: u64,
        account: AccountId,
        subject: &Bytes,
        queue: &Option<Bytes>,
        before: u32,
        after: u32,
    ) {
        if before == after {
            return;
        }
        let i = account.index();
        if st.routes_interest.len() <= i {
            st.routes_interest.resize_with(i + 1, Sublist::default);
        }
        let (add, n) = if after > before {
            st.routes_interest[i].insert_n(subject, queue.as_deref(), route, after - before);
            (true, after - before)
        } else {
            st.routes_interest[i].remove_n(subject, queue.as_deref(), &route, before - after);
            (false, before - after)
        };
        for &shard in &self.clients {
            self.mesh.send(
                shard,
                Envelope::Interest {
                    account,
                    subject: subject.clone(),
                    queue: queue.clone(),
                    add,
                    n,
                },
            );
        }
    }

    /// A message from a client shard for the routes: one `RMSG` per route that wants
    /// it, with the queue groups that chose a member behind that route.
    fn on_shard_msg(&self, m: &RoutedMsg) {
        if m.status_token != 0 {
            // Sent on to another server: as far as this server can tell, taken.
            self.mesh.send(
                m.origin as usize,
                Envelope::Delivered {
                    token: m.status_token,
                    any: true,
                    more: 0,
                },
            );
        }
        let mut st = self.state.borrow_mut();
        let i = m.account.index();
        if st.routes_interest.len() <= i {
            return;
        }
        let res = st.routes_interest[i].match_subject(&m.subject);
        let name = Self::account_name(&self.server, &mut st, m.account);
        let mut routes = std::mem::take(&mut st.scratch_routes);
        let mut picks = std::mem::take(&mut st.scratch_picks);
        // The queue groups that chose a member behind a route: pick that route.
        for group in m.queue.iter().chain(m.more_queues.iter()) {
            let Some(q) = res.queues.iter().find(|q| q.name == group) else {
                continue;
            };
            if let Some(r) = q.pick(&mut st.rng) {
                picks.push((r, q.name.clone()));
            }
        }
        if m.plain {
            routes.extend(res.plain.iter().map(|(r, _)| *r));
        }
        routes.extend(picks.iter().map(|(r, _)| *r));
        // One line per route, however many of its patterns matched.
        routes.sort_unstable();
        routes.dedup();
        for &route_id in &routes {
            let Some(route) = st.routes.get(&route_id) else {
                continue;
            };
            let queues: Vec<&[u8]> = picks
                .iter()
                .filter(|(r, _)| *r == route_id)
                .map(|(_, q)| &q[..])
                .collect();
            let headers = route.headers.get();
            route.send_with(|out| {
                crate::proto::route::msg(
                    out,
                    &name,
                    &m.subject,
                    &m.reply,
                    &queues,
                    m.hdr_len as usize,
                    &m.payload,
                    headers,
                )
            });
            route.count_out(m.payload.len());
        }
        routes.clear();
        picks.clear();
        st.scratch_routes = routes;
        st.scratch_picks = picks;
    }

    /// A message from a route: to the client shards with plain subscribers, and to one
    /// member of each queue group the route listed.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver_from_route(
        &self,
        account: AccountId,
        subject: Bytes,
        reply: Bytes,
        queues: &[u8],
        hdr_len: usize,
        payload: Bytes,
    ) {
        let mut st = self.state.borrow_mut();
        let i = account.index();
        if st.shards.len() <= i {
            return;
        }
        let res = st.shards[i].match_subject(&subject);
        let mut any = false;
        for &(shard, _) in &res.plain {
            st.targets[shard as usize].plain = true;
            any = true;
        }
        for name in queues
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|q| !q.is_empty())
        {
            let Some(q) = res.queues.iter().find(|q| &q.name[..] == name) else {
                continue;
            };
            if let Some(shard) = q.pick(&mut st.rng) {
                st.targets[shard as usize].queues.push(q.name.clone());
                any = true;
            }
        }
        if !any {
            return;
        }
        for shard in 0..st.targets.len() {
            let t = &mut st.targets[shard];
            if !t.plain && t.queues.is_empty() {
                continue;
            }
            let plain = std::mem::take(&mut t.plain);
            let mut queues = std::mem::take(&mut t.queues);
            let queue = (!queues.is_empty()).then(|| queues.remove(0));
            self.mesh.send(
                shard,
                Envelope::Msg(RoutedMsg {
                    account,
                    subject: subject.clone(),
                    reply: reply.clone(),
                    hdr_len: hdr_len as u32,
                    payload: payload.clone(),
                    plain,
                    queue,
                    more_queues: queues,
                    status_token: 0,
                    origin: self.id as u16,
                    // A queue message a shard cannot place is not handed back here:
                    // it came from a route and must not go out to one.
                    tried: if self.id < 64 { 1 << self.id } else { 0 },
                    hops: 0,
                }),
            );
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
    let core = ClusterCore::new(mesh, server.clone(), opts, port);
    crate::log_info!("Cluster name is {}", core.name.borrow());
    if core.dynamic.get() {
        crate::log_warn!("Cluster name was dynamically generated, consider setting one");
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
        move |stream, _websocket| {
            let core = accepting.clone();
            glommio::spawn_local(async move {
                route::serve(core, stream, None).await;
            })
            .detach();
        },
    ));
    let routes = core.opts.borrow().routes.clone();
    for url in routes {
        glommio::spawn_local(route::solicit(core.clone(), url, false)).detach();
    }
    let _ = ready.send(());
    let commands = server.cluster_commands();
    while !server.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        while let Some(cmd) = commands.as_ref().and_then(|c| c.try_recv().ok()) {
            match cmd {
                snapshot::ClusterCommand::Routes { subs, reply } => {
                    let _ = reply.send(core.snapshot(subs));
                }
                snapshot::ClusterCommand::Reload(opts) => core.reload(*opts),
                snapshot::ClusterCommand::LameDuck => {
                    let line = route::ldm_line(&core);
                    for r in core.routes() {
                        r.send(&line);
                    }
                }
            }
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(acceptor);
    for r in core.routes() {
        r.close("Server Shutdown");
    }
    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
}
