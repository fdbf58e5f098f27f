//! One client shard: its interest tables, its connections, and the message pump that
//! applies every envelope from the other shards. All state here belongs to one executor.

pub mod control;
pub mod snapshot;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;

use crate::account::AccountId;
use crate::bus::{Envelope, Message, Origin, RoutedMsg};
use crate::client::{Client, SubRef, Subscription};
use crate::config::Options;
use crate::proto::encode::{Encoded, Frame};
use crate::server::ServerShared;
use crate::sublist::{Sublist, SublistResult};

/// Longest a publisher (or a ring from another shard) pauses for slow consumers.
pub const STALL_MAX: std::time::Duration = std::time::Duration::from_millis(10);

/// Per-shard counters, read by monitoring.
#[derive(Debug, Default, Clone)]
pub struct ShardStats {
    /// Messages received from this shard's clients.
    pub in_msgs: u64,
    /// Payload bytes received from this shard's clients.
    pub in_bytes: u64,
    /// Messages delivered to this shard's clients.
    pub out_msgs: u64,
    /// Payload bytes delivered.
    pub out_bytes: u64,
    /// Connections closed as slow consumers.
    pub slow_consumers: u64,
}

/// Where one published message goes on one other shard.
#[derive(Default)]
struct Target {
    plain: bool,
    queue: Option<Bytes>,
    more_queues: Vec<Bytes>,
}

impl Target {
    fn is_empty(&self) -> bool {
        !self.plain && self.queue.is_none()
    }
}

/// A request routed to other shards whose publisher wants a 503 if nobody answers.
struct PendingStatus {
    cid: u64,
    account: AccountId,
    subject: Bytes,
    reply: Bytes,
    remaining: usize,
    delivered: bool,
}

struct PendingBarrier {
    remaining: usize,
    waker: Option<Waker>,
}

/// An [`Envelope::Ask`] sent to other executors, collecting their answers.
struct PendingAsk {
    remaining: usize,
    answers: Vec<Box<dyn std::any::Any + Send>>,
    waker: Option<Waker>,
}

/// What [`ShardCtx::ask_all`] brings back from the other executors.
#[derive(Default)]
pub struct Answers {
    /// The other client shards' snapshots (this shard's own is not among them).
    pub shards: Vec<snapshot::ShardSnapshot>,
    /// The cluster core's routes and leaf connections, when it was asked.
    pub cluster: crate::cluster::snapshot::ClusterSnapshot,
}

/// One account's interest as one shard sees it.
pub struct AccountTables {
    /// This shard's own subscriptions in the account.
    pub local: Sublist<SubRef>,
    /// Compact replica of the other shards' interest: the item is the shard id, the
    /// count how many subscriptions it has on that subject and queue. A compact
    /// [`Sublist`]: it is only matched, and its literal subjects cost no copy here.
    pub remote: Sublist<u16>,
    /// Stream imports of this account's messages into other accounts (shared so the
    /// publish path can hold them while it publishes into those accounts); `None`
    /// when there are none, checked without touching another cache line.
    pub taps: Option<Rc<[Tap]>>,
    /// Service imports: requests published here that go to another account.
    pub services: Option<Rc<[ServiceTap]>>,
    /// The system account's services every other account imports (nats-server's
    /// `registerSystemImports`: `$SYS.REQ.USER.INFO`, `$SYS.REQ.SERVER.PING.CONNZ`,
    /// `$SYS.REQ.ACCOUNT.PING.CONNZ` and `.STATZ`, each answered for this account
    /// alone). Kept apart from `services` so that only `$SYS.REQ.` subjects leave the
    /// hot path for them.
    pub sys_services: Option<Rc<[ServiceTap]>>,
    /// Subject mappings: a client's publish on a matching subject is delivered on
    /// the mapped one (checked on the cold path).
    pub mappings: Option<Rc<[crate::account::mapping::Mapping]>>,
    /// The system account: its publishes take the cold path, where a
    /// `$SYS.REQ.USER.INFO` request gets its requester's identity (the service
    /// that answers it sits on another shard and sees only the message).
    pub system: bool,
}

impl Default for AccountTables {
    fn default() -> Self {
        AccountTables {
            local: Sublist::new(),
            remote: Sublist::compact(),
            taps: None,
            services: None,
            sys_services: None,
            mappings: None,
            system: false,
        }
    }
}

/// One service import, seen from the importing account.
#[derive(Debug)]
pub struct ServiceTap {
    /// Subject the importer publishes requests on.
    pub pattern: Bytes,
    /// Exporting account.
    pub into: AccountId,
    /// Rewrite to the exporter's subject.
    pub rewrite: crate::account::imports::Rewrite,
    /// One response only.
    pub singleton: bool,
    /// How long the reply mapping lives.
    pub threshold: std::time::Duration,
    /// The exporter learns the requester's user too (`Nats-Request-Info` with
    /// `user`), as nats-server shares it with `$SYS.REQ.USER.INFO`.
    pub share: bool,
}

/// Where a response on one `_R_.` reply goes: the requester's account and reply.
struct ReplyRoute {
    account: AccountId,
    reply: Bytes,
    /// The request's subject and the requester, for a no-responders status.
    subject: Bytes,
    cid: u64,
    singleton: bool,
}

/// The request whose answer depends on who asks.
const USER_INFO: &[u8] = b"$SYS.REQ.USER.INFO";
/// Where the system account's requests start.
const SYS_REQ_PREFIX: &[u8] = b"$SYS.REQ.";

/// `msg`'s header block and body with a `Nats-Request-Info: <info>` header added.
fn with_header(msg: &Message<'_>, info: &str) -> (usize, Bytes) {
    let (hdr, body) = msg.payload.split_at(msg.hdr_len);
    let mut out = Vec::with_capacity(msg.payload.len() + info.len() + 34);
    match hdr.strip_suffix(b"\r\n\r\n") {
        Some(head) => {
            out.extend_from_slice(head);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"NATS/1.0\r\n"),
    }
    out.extend_from_slice(b"Nats-Request-Info: ");
    out.extend_from_slice(info.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let hdr_len = out.len();
    out.extend_from_slice(body);
    (hdr_len, Bytes::from(out))
}

/// Reply mappings one shard keeps at most; the oldest go first beyond this.
const MAX_REPLY_ROUTES: usize = 100_000;
/// The prefix of anonymous service replies.
const SERVICE_REPLY_PREFIX: &[u8] = b"_R_.";

/// One stream import, seen from the exporting account: what it publishes on
/// `pattern` is published again in `into`, its subject rewritten.
#[derive(Debug)]
pub struct Tap {
    /// Imported subject (may have wildcards).
    pub pattern: Bytes,
    /// Importing account.
    pub into: AccountId,
    /// Subject rewrite for the importer.
    pub rewrite: crate::account::imports::Rewrite,
}

/// Mutable state of a shard.
pub struct ShardState {
    /// Per-account interest, indexed by [`AccountId`]; grown as accounts appear.
    accounts: Vec<AccountTables>,
    /// Connections owned by this shard.
    pub clients: HashMap<u64, Rc<Client>>,
    /// Counters.
    pub stats: ShardStats,
    /// Consumers past 75% of max_pending since the publisher last looked.
    pub stalled: Vec<Rc<Client>>,
    /// Recently closed connections for monitoring, oldest first (bounded).
    pub closed: std::collections::VecDeque<snapshot::ConnSnapshot>,
    next_cid: u64,
    rng: u64,
    targets: Vec<Target>,
    barriers: HashMap<u64, PendingBarrier>,
    next_barrier: u64,
    asks: HashMap<u64, PendingAsk>,
    next_ask: u64,
    statuses: HashMap<u64, PendingStatus>,
    next_status: u64,
    /// `_R_.` reply mappings made for requests published on this shard.
    replies: HashMap<Bytes, ReplyRoute>,
    /// The same, oldest first, with when each expires.
    reply_order: std::collections::VecDeque<(Bytes, std::time::Instant)>,
    /// Exporting accounts in which this shard's `_R_.` prefix was announced as
    /// interest (so responders on other servers send their responses here).
    reply_interest: std::collections::HashSet<AccountId>,
    next_reply: u64,
    /// Subscriptions removed (here and in the replicas) since the allocator was last
    /// asked to give free memory back (see [`ShardCtx::release_memory`]).
    pub released: u64,
}

impl ShardState {
    /// The tables of `account`, created empty the first time it is seen here.
    #[inline]
    pub fn tables(&mut self, account: AccountId) -> &mut AccountTables {
        let i = account.index();
        if i >= self.accounts.len() {
            self.add_tables(i);
        }
        &mut self.accounts[i]
    }

    #[cold]
    #[inline(never)]
    fn add_tables(&mut self, i: usize) {
        self.accounts.resize_with(i + 1, AccountTables::default);
    }

    /// Every account's tables, by id.
    pub fn all_tables(&self) -> &[AccountTables] {
        &self.accounts
    }
}

/// A shard: its id, its links to the others, the server-wide settings and its state.
pub struct ShardCtx {
    /// This executor's place in the mesh (the ring index other executors send to).
    pub id: usize,
    /// This shard's place among the client shards (`0..count`): it owns the cids
    /// with `cid % count == index`, and the acceptor hand-off and command channel of
    /// that number.
    pub index: usize,
    /// Number of client shards.
    pub count: usize,
    /// Mesh ids of the other client shards: where interest and barriers go.
    pub peers: Vec<usize>,
    /// Mesh ids of all client shards, by index.
    pub clients: Vec<usize>,
    /// Mesh id of the cluster core, when routes are configured: it takes part in
    /// interest like another shard (what routes want looks like its subscriptions).
    pub cluster_core: Option<usize>,
    /// No other shard and no cluster core: everything is delivered here.
    alone: bool,
    /// Links to the other shards.
    pub mesh: shards::Shard<Envelope>,
    /// Server-wide settings and counters.
    pub server: Arc<ServerShared>,
    /// Options in force on this shard (replaced on reload).
    pub opts: RefCell<Arc<Options>>,
    /// `opts.max_pending`, read on every delivery.
    pub max_pending: std::cell::Cell<usize>,
    /// Mutable state; never borrowed across an await.
    pub state: RefCell<ShardState>,
    /// Scratch encoding of the message being delivered (reused, no allocation; outside
    /// `state` so it is borrowed alongside it rather than moved out and back).
    frame: RefCell<Frame>,
    /// Client authentication in force on this shard (issue #5; replaced on reload).
    pub auth: RefCell<Arc<crate::auth::AuthConfig>>,
    /// `_R_.<server tag>.<shard>.`: the prefix of this shard's service replies; the
    /// server tag lets a response published on another server find its way back.
    reply_prefix: Bytes,
}

impl ShardCtx {
    /// A shard with empty tables.
    pub fn new(mesh: shards::Shard<Envelope>, server: Arc<ServerShared>) -> Rc<ShardCtx> {
        let id = mesh.id();
        let layout = Layout::of(id, mesh.roles());
        let executors = mesh.count();
        let cluster_core = mesh
            .roles()
            .iter()
            .position(|r| *r == shards::Role::Dedicated);
        let alone = layout.peers.is_empty() && cluster_core.is_none();
        let opts = Arc::new(server.opts.clone());
        let reply_prefix = Bytes::from(format!(
            "_R_.{}.{}.",
            server.server_id.get(2..8).unwrap_or("natrium"),
            layout.index
        ));
        Rc::new(ShardCtx {
            reply_prefix,
            id,
            index: layout.index,
            count: layout.clients.len(),
            peers: layout.peers,
            clients: layout.clients,
            alone,
            cluster_core,
            mesh,
            max_pending: std::cell::Cell::new(opts.max_pending),
            opts: RefCell::new(opts),
            auth: RefCell::new(server.auth.clone()),
            server,
            frame: RefCell::new(Frame::default()),
            state: RefCell::new(ShardState {
                accounts: vec![AccountTables::default()],
                clients: HashMap::new(),
                stats: ShardStats::default(),
                closed: std::collections::VecDeque::new(),
                stalled: Vec::new(),
                next_cid: 0,
                rng: 0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
                targets: (0..executors).map(|_| Target::default()).collect(),
                barriers: HashMap::new(),
                next_barrier: 0,
                asks: HashMap::new(),
                next_ask: 0,
                statuses: HashMap::new(),
                next_status: 0,
                replies: HashMap::new(),
                reply_order: std::collections::VecDeque::new(),
                reply_interest: std::collections::HashSet::new(),
                next_reply: 0,
                released: 0,
            }),
        })
    }

    /// Next connection id: ids of shard `i` are `i+1, i+1+n, ...` so `(cid-1) % n == i`
    /// would be awkward for users; instead `cid % n == i` with cid never 0.
    pub fn alloc_cid(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        st.next_cid += 1;
        st.next_cid * self.count as u64 + self.index as u64
    }

    /// Applies one envelope from shard `from`. This is the shard's message pump for
    /// everything that comes from other shards.
    pub fn on_envelope(self: &Rc<Self>, from: usize, env: Envelope) -> Option<shards::Pause> {
        self.apply_envelope(from, env);
        // Deliveries from another shard pushed a consumer past 75% of max_pending:
        // stop reading that ring for a moment, which in turn stops its publisher.
        if self.state.borrow().stalled.is_empty() {
            return None;
        }
        let ctx = self.clone();
        Some(Box::pin(
            async move { ctx.stall_for_slow_consumers().await },
        ))
    }

    fn apply_envelope(self: &Rc<Self>, from: usize, env: Envelope) {
        match env {
            Envelope::Msg(m) => {
                let mut st = self.state.borrow_mut();
                let (any, more) = self.deliver_routed(&mut st, &m);
                if m.status_token != 0 {
                    let token = m.status_token;
                    let origin = m.origin as usize;
                    if origin == self.id {
                        self.on_delivered(&mut st, token, any, more);
                    } else {
                        self.mesh
                            .send(origin, Envelope::Delivered { token, any, more });
                    }
                }
            }
            Envelope::Response {
                subject,
                reply,
                hdr_len,
                payload,
            } => {
                let msg = Message::owned(&subject, &reply, hdr_len as usize, &payload);
                self.deliver_response(&mut self.state.borrow_mut(), &msg);
            }
            Envelope::Delivered { token, any, more } => {
                self.on_delivered(&mut self.state.borrow_mut(), token, any, more);
            }
            Envelope::Interest {
                account,
                subject,
                queue,
                add,
                n,
            } => {
                let mut st = self.state.borrow_mut();
                let remote = &mut st.tables(account).remote;
                if add {
                    remote.insert_n(&subject, queue.as_deref(), from as u16, n);
                } else {
                    remote.remove_n(&subject, queue.as_deref(), &(from as u16), n);
                    st.released += 1;
                }
            }
            Envelope::Barrier(token) => self.mesh.send(from, Envelope::BarrierAck(token)),
            Envelope::Ask { token, subs } => {
                let report = Box::new(self.snapshot(subs));
                self.mesh.send(from, Envelope::Answer { token, report });
            }
            Envelope::Answer { token, report } => {
                let mut st = self.state.borrow_mut();
                if let Some(a) = st.asks.get_mut(&token) {
                    a.answers.push(report);
                    a.remaining = a.remaining.saturating_sub(1);
                    if a.remaining == 0 {
                        if let Some(w) = a.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
            Envelope::BarrierAck(token) => {
                let mut st = self.state.borrow_mut();
                if let Some(b) = st.barriers.get_mut(&token) {
                    b.remaining -= 1;
                    if b.remaining == 0 {
                        if let Some(w) = b.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
        }
    }

    /// One answer about a routed request: once every shard it went to (and every shard
    /// those handed it on to) has answered and nobody took it, the publisher gets a 503.
    fn on_delivered(&self, st: &mut ShardState, token: u64, any: bool, more: u32) {
        let Some(p) = st.statuses.get_mut(&token) else {
            return;
        };
        p.remaining = p.remaining - 1 + more as usize;
        p.delivered |= any;
        if p.remaining == 0 {
            let p = st.statuses.remove(&token).expect("present");
            if p.delivered {
                return;
            }
            self.send_no_responders(st, p.account, p.cid, &p.subject, &p.reply);
        }
    }

    /// Pauses (at most [`STALL_MAX`]) while a consumer fed since the last call is past
    /// 75% of max_pending, as nats-server stalls fast producers; then forgets them.
    pub async fn stall_for_slow_consumers(&self) {
        let stalled = std::mem::take(&mut self.state.borrow_mut().stalled);
        if stalled.is_empty() {
            return;
        }
        let limit = self.max_pending.get() / 4 * 3;
        let deadline = std::time::Instant::now() + STALL_MAX;
        while std::time::Instant::now() < deadline
            && stalled
                .iter()
                .any(|c| !c.is_closed() && c.out.borrow().pending() > limit)
        {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        for c in &stalled {
            c.stall_marked.set(false);
        }
    }

    /// Waits until every other shard has applied everything this shard sent it so far.
    pub async fn barrier(&self) {
        if self.peers.is_empty() {
            return;
        }
        let token = {
            let mut st = self.state.borrow_mut();
            st.next_barrier += 1;
            let token = st.next_barrier;
            st.barriers.insert(
                token,
                PendingBarrier {
                    remaining: self.peers.len(),
                    waker: None,
                },
            );
            token
        };
        for &peer in &self.peers {
            self.mesh.send(peer, Envelope::Barrier(token));
        }
        std::future::poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            match st.barriers.get_mut(&token) {
                Some(b) if b.remaining > 0 => {
                    b.waker = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
                _ => {
                    st.barriers.remove(&token);
                    std::task::Poll::Ready(())
                }
            }
        })
        .await
    }

    /// Asks the other client shards (and the cluster core when `cluster`) for their
    /// snapshots through the rings, so the answer comes as fast as the executors
    /// wake, not at the next command poll. Executors that do not answer within
    /// `wait` are left out.
    pub async fn ask_all(&self, subs: bool, cluster: bool, wait: std::time::Duration) -> Answers {
        let targets: Vec<usize> = self
            .peers
            .iter()
            .copied()
            .chain(self.cluster_core.filter(|_| cluster))
            .collect();
        if targets.is_empty() {
            return Answers::default();
        }
        let token = {
            let mut st = self.state.borrow_mut();
            st.next_ask += 1;
            let token = st.next_ask;
            st.asks.insert(
                token,
                PendingAsk {
                    remaining: targets.len(),
                    answers: Vec::new(),
                    waker: None,
                },
            );
            token
        };
        for &to in &targets {
            self.mesh.send(to, Envelope::Ask { token, subs });
        }
        let answered = std::future::poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            match st.asks.get_mut(&token) {
                Some(a) if a.remaining > 0 => {
                    a.waker = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
                _ => std::task::Poll::Ready(()),
            }
        });
        futures_lite::future::or(answered, glommio::timer::sleep(wait)).await;
        let pending = self.state.borrow_mut().asks.remove(&token);
        let mut out = Answers::default();
        for report in pending.map(|p| p.answers).unwrap_or_default() {
            match report.downcast::<snapshot::ShardSnapshot>() {
                Ok(s) => out.shards.push(*s),
                Err(other) => {
                    if let Ok(c) = other.downcast::<crate::cluster::snapshot::ClusterSnapshot>() {
                        out.cluster = *c;
                    }
                }
            }
        }
        out
    }

    /// Tells every other shard (and the cluster core) about one subscription gained or
    /// lost.
    pub fn broadcast_interest(
        &self,
        account: AccountId,
        subject: &[u8],
        queue: Option<&[u8]>,
        add: bool,
    ) {
        if self.peers.is_empty() && self.cluster_core.is_none() {
            return;
        }
        let subject = Bytes::copy_from_slice(subject);
        let queue = queue.map(Bytes::copy_from_slice);
        for &peer in self.peers.iter().chain(self.cluster_core.iter()) {
            self.mesh.send(
                peer,
                Envelope::Interest {
                    account,
                    subject: subject.clone(),
                    queue: queue.clone(),
                    add,
                    n: 1,
                },
            );
        }
    }

    /// Adds a subscription of a local client.
    pub fn add_sub(&self, st: &mut ShardState, sub: Rc<Subscription>) {
        st.tables(sub.account()).local.insert(
            &sub.subject,
            sub.queue.as_deref(),
            SubRef(sub.clone()),
        );
        self.broadcast_interest(sub.account(), &sub.subject, sub.queue.as_deref(), true);
    }

    /// Removes a subscription of a local client (idempotent).
    pub fn remove_sub(&self, st: &mut ShardState, sub: &Rc<Subscription>) {
        if sub.removed.replace(true) {
            return;
        }
        st.tables(sub.account()).local.remove(
            &sub.subject,
            sub.queue.as_deref(),
            &SubRef(sub.clone()),
        );
        st.released += 1;
        if !sub.leaving.get() {
            self.broadcast_interest(sub.account(), &sub.subject, sub.queue.as_deref(), false);
        }
    }

    /// UNSUB of a local subscription. A queue member with members on other shards
    /// stops being chosen there at once, but stays in this shard's table (taking only
    /// what they already chose for it) until [`ShardCtx::finish_leaving`], after a
    /// barrier: so nothing chosen for it in the meantime is lost.
    pub fn begin_leave(&self, st: &mut ShardState, sub: &Rc<Subscription>) {
        if self.peers.is_empty() || sub.queue.is_none() || sub.removed.get() || sub.leaving.get() {
            self.remove_sub(st, sub);
            return;
        }
        sub.leaving.set(true);
        self.broadcast_interest(sub.account(), &sub.subject, sub.queue.as_deref(), false);
        sub.client.leaving.borrow_mut().push(sub.clone());
        sub.client.interest_dirty.set(true);
    }

    /// Removes a client's leaving queue members; call after a barrier that followed
    /// their UNSUB (every other shard then knows they are gone).
    pub fn finish_leaving(&self, client: &Client) {
        if client.leaving.borrow().is_empty() {
            return;
        }
        let leaving = std::mem::take(&mut *client.leaving.borrow_mut());
        let mut st = self.state.borrow_mut();
        for sub in &leaving {
            self.remove_sub(&mut st, sub);
        }
    }

    fn rand_below(st: &mut ShardState, n: u32) -> u32 {
        crate::sublist::rand_below(&mut st.rng, n)
    }

    /// Publishes `msg` in `account` (the hot path): delivers to this shard's
    /// subscribers and sends one envelope to each other shard with interest. When
    /// `want_status` (a request from a no_responders client) and nobody takes the
    /// message, here or on the shards it went to, the publisher gets a 503. Returns
    /// whether envelopes went to other shards (a later PONG to the publisher must wait
    /// for them).
    pub fn publish(
        &self,
        st: &mut ShardState,
        account: AccountId,
        msg: &Message<'_>,
        origin: Origin,
        want_status: bool,
    ) -> bool {
        let tables = st.tables(account);
        if tables.taps.is_some()
            || tables.services.is_some()
            || tables.mappings.is_some()
            || tables.system
            || msg.subject.starts_with(SERVICE_REPLY_PREFIX)
            || (tables.sys_services.is_some() && msg.subject.starts_with(SYS_REQ_PREFIX))
        {
            return self.publish_across_accounts(st, account, msg, origin, want_status);
        }
        let (any, routed) = self.publish_in(st, account, msg, origin, want_status);
        if !any && want_status {
            if let Origin::Client(cid) = origin {
                self.send_no_responders(st, account, cid, msg.subject, msg.reply);
            }
        }
        routed
    }

    /// [`ShardCtx::publish`] of a response on a `_R_.` reply, or in an account with
    /// stream or service imports (kept off the common path).
    #[cold]
    #[inline(never)]
    fn publish_across_accounts(
        &self,
        st: &mut ShardState,
        account: AccountId,
        msg: &Message<'_>,
        origin: Origin,
        want_status: bool,
    ) -> bool {
        if msg.subject.starts_with(SERVICE_REPLY_PREFIX) {
            return self.publish_response(st, account, msg);
        }
        // Mappings first (what a client publishes; routed messages were mapped where
        // they entered the cluster), then imports and services see the new subject.
        let (subject, reply, payload);
        let mapped;
        let mut msg = msg;
        if let (Origin::Client(_), Some(maps)) = (origin, st.tables(account).mappings.clone()) {
            let mut out = Vec::new();
            let mut dice = || crate::sublist::rand_below(&mut st.rng, 100);
            if crate::account::mapping::map_subject(&maps, msg.subject, &mut dice, &mut out) {
                (subject, reply, payload) =
                    (Bytes::from(out), msg.shared_reply(), msg.shared_payload());
                mapped = Message::owned(&subject, &reply, msg.hdr_len, &payload);
                msg = &mapped;
            }
        }
        let msg = msg;
        if msg.subject == USER_INFO && st.tables(account).system {
            if let Some(info) = self.requester_info(st, account, origin) {
                let (hdr_len, payload) = with_header(msg, &info);
                let (subject, reply) = (msg.shared_subject(), msg.shared_reply());
                let request = Message::owned(&subject, &reply, hdr_len, &payload);
                let (any, routed) = self.publish_in(st, account, &request, origin, want_status);
                if !any && want_status {
                    self.send_no_responders(st, account, origin.cid(), msg.subject, msg.reply);
                }
                return routed;
            }
        }
        let (mut any, mut routed) = (false, false);
        let tables = st.tables(account);
        let (taps, services) = (tables.taps.clone(), tables.services.clone());
        let sys_services = tables
            .sys_services
            .clone()
            .filter(|_| msg.subject.starts_with(SYS_REQ_PREFIX));
        if let Some(taps) = taps {
            (any, routed) = self.publish_imports(st, &taps, msg);
        }
        for services in [services, sys_services].into_iter().flatten() {
            let (a, r) = self.publish_services(st, account, &services, msg, origin, want_status);
            any |= a;
            routed |= r;
        }
        let (here, routed_here) = self.publish_in(st, account, msg, origin, want_status && !any);
        any |= here;
        if !any && want_status {
            if let Origin::Client(cid) = origin {
                self.send_no_responders(st, account, cid, msg.subject, msg.reply);
            }
        }
        routed | routed_here
    }

    /// Delivers `msg` in `account` only: returns whether anyone took it (or it was
    /// routed) and whether it was routed.
    #[inline(always)]
    fn publish_in(
        &self,
        st: &mut ShardState,
        account: AccountId,
        msg: &Message<'_>,
        origin: Origin,
        want_status: bool,
    ) -> (bool, bool) {
        let tables = st.tables(account);
        let local = tables.local.match_subject(msg.subject);
        let mut frame = self.frame.borrow_mut();
        let targets = local.plain.len() + local.queues.len();
        let encoded = frame.encode(
            targets,
            msg.subject,
            msg.reply,
            msg.hdr_len,
            msg.payload,
            msg.payload_owner(),
        );
        self.route_framed(st, account, &encoded, &local, msg, origin, want_status)
    }

    /// Publishes `msg` again in every account that imports it from `account` (one
    /// hop: what arrives through an import is not imported further).
    fn publish_imports(
        &self,
        st: &mut ShardState,
        taps: &[Tap],
        msg: &Message<'_>,
    ) -> (bool, bool) {
        let (mut any, mut routed) = (false, false);
        for tap in taps.iter() {
            if !crate::subject::matches_valid(&tap.pattern, msg.subject) {
                continue;
            }
            let subject = tap.rewrite.apply(&tap.pattern, msg.subject);
            let (reply, payload) = (msg.shared_reply(), msg.shared_payload());
            let imported = Message::owned(&subject, &reply, msg.hdr_len, &payload);
            let (a, r) = self.publish_in(st, tap.into, &imported, Origin::Import, false);
            any |= a;
            routed |= r;
        }
        (any, routed)
    }

    /// Sends requests that match service imports to their exporting accounts, each
    /// with a fresh `_R_.` reply that maps back to the requester's reply.
    fn publish_services(
        &self,
        st: &mut ShardState,
        account: AccountId,
        services: &[ServiceTap],
        msg: &Message<'_>,
        origin: Origin,
        want_status: bool,
    ) -> (bool, bool) {
        let (mut any, mut routed) = (false, false);
        for svc in services {
            if !crate::subject::matches_valid(&svc.pattern, msg.subject) {
                continue;
            }
            let subject = svc.rewrite.apply(&svc.pattern, msg.subject);
            let reply = if msg.reply.is_empty() {
                Bytes::new()
            } else {
                self.add_reply_route(st, account, msg, origin, svc)
            };
            let shared = svc
                .share
                .then(|| self.requester_info(st, account, origin))
                .flatten();
            let (hdr_len, payload) = match shared {
                Some(info) => with_header(msg, &info),
                None => self.with_request_info(st, account, msg, origin),
            };
            let request = Message::owned(&subject, &reply, hdr_len, &payload);
            let (a, r) = self.publish_in(st, svc.into, &request, origin, want_status);
            if !a && want_status {
                // Nobody in the exporting account: the 503 on the `_R_.` reply goes
                // back to the requester (see send_no_responders); counted as answered
                // so the importing account does not send a second one.
                self.send_no_responders(st, svc.into, origin.cid(), &subject, &reply);
                any = true;
            }
            any |= a;
            routed |= r;
        }
        (any, routed)
    }

    /// The request's header block and body with the `Nats-Request-Info` header the
    /// exporter sees, as nats-server adds it: the requester's account and its last
    /// measured round trip in nanoseconds.
    fn with_request_info(
        &self,
        st: &ShardState,
        account: AccountId,
        msg: &Message<'_>,
        origin: Origin,
    ) -> (usize, Bytes) {
        let rtt = st
            .clients
            .get(&origin.cid())
            .and_then(|c| c.rtt.get())
            .map_or(0, |d| d.as_nanos());
        let info = format!(
            "{{\"acc\":{},\"rtt\":{rtt}}}",
            serde_json::Value::from(self.server.account_name(account))
        );
        with_header(msg, &info)
    }

    /// The `Nats-Request-Info` JSON of a client publishing here: its account and
    /// user, as nats-server's internal handlers see their requester.
    fn requester_info(
        &self,
        st: &ShardState,
        account: AccountId,
        origin: Origin,
    ) -> Option<String> {
        let Origin::Client(cid) = origin else {
            return None;
        };
        let client = st.clients.get(&cid)?;
        let user = client.auth.user.borrow().clone().unwrap_or_default();
        let mut info = serde_json::json!({"acc": self.server.account_name(account), "user": user});
        // A JWT login: the account's and the user's names from their JWTs.
        if let Some(f) = client.auth.jwt.borrow().as_ref() {
            info["name_tag"] = f.name_tag.clone().into();
            info["user_name"] = f.user_name.clone().into();
        }
        Some(info.to_string())
    }

    /// A fresh `_R_.<shard>.<id>` reply mapped back to `msg`'s reply in `account`.
    /// The table is bounded: expired mappings go first, then the oldest.
    fn add_reply_route(
        &self,
        st: &mut ShardState,
        account: AccountId,
        msg: &Message<'_>,
        origin: Origin,
        svc: &ServiceTap,
    ) -> Bytes {
        let now = std::time::Instant::now();
        while let Some((token, expires)) = st.reply_order.front() {
            if *expires > now && st.reply_order.len() < MAX_REPLY_ROUTES {
                break;
            }
            let token = token.clone();
            st.reply_order.pop_front();
            st.replies.remove(&token);
        }
        st.next_reply += 1;
        if st.reply_interest.insert(svc.into) {
            let mut wildcard = self.reply_prefix.to_vec();
            wildcard.push(b'>');
            self.broadcast_interest(svc.into, &wildcard, None, true);
        }
        // Unguessable: anyone in the exporting account may publish on `_R_.` subjects.
        let salt: u64 = rand::random();
        let mut token = self.reply_prefix.to_vec();
        token.extend_from_slice(format!("{:x}{salt:016x}", st.next_reply).as_bytes());
        let token = Bytes::from(token);
        st.replies.insert(
            token.clone(),
            ReplyRoute {
                account,
                reply: msg.shared_reply(),
                subject: msg.shared_subject(),
                cid: origin.cid(),
                singleton: svc.singleton,
            },
        );
        st.reply_order
            .push_back((token.clone(), now + svc.threshold));
        token
    }

    /// A response on a `_R_.` reply: to the shard that holds its mapping, or, for a
    /// reply another server made, to whoever announced interest in it (that server).
    fn publish_response(&self, st: &mut ShardState, account: AccountId, msg: &Message<'_>) -> bool {
        let server_tag = &self.reply_prefix[..self.reply_prefix.len() - 1]
            .rsplit(|&b| b == b'.')
            .nth(1)
            .unwrap_or_default();
        let mut tokens = msg.subject[SERVICE_REPLY_PREFIX.len()..].split(|&b| b == b'.');
        if tokens.next() != Some(server_tag) {
            return self.publish_in(st, account, msg, Origin::Server, false).1;
        }
        let owner = tokens
            .next()
            .and_then(|t| std::str::from_utf8(t).ok()?.parse::<usize>().ok());
        match owner {
            Some(i) if i == self.index => {
                self.deliver_response(st, msg);
                false
            }
            Some(i) if i < self.clients.len() => {
                self.mesh.send(
                    self.clients[i],
                    Envelope::Response {
                        subject: msg.shared_subject(),
                        reply: msg.shared_reply(),
                        hdr_len: msg.hdr_len as u32,
                        payload: msg.shared_payload(),
                    },
                );
                true
            }
            // Not a reply this server made: nobody can be waiting for it.
            _ => false,
        }
    }

    /// Delivers a response on one of this shard's `_R_.` replies to the requester.
    fn deliver_response(&self, st: &mut ShardState, msg: &Message<'_>) {
        let Some(route) = st.replies.get(msg.subject) else {
            return;
        };
        let (account, reply) = (route.account, route.reply.clone());
        if route.singleton {
            st.replies.remove(msg.subject);
        }
        let (resp_reply, payload) = (msg.shared_reply(), msg.shared_payload());
        let response = Message::owned(&reply, &resp_reply, msg.hdr_len, &payload);
        self.publish_in(st, account, &response, Origin::Server, false);
    }

    /// Puts the configured stream imports in force on this shard (at start and when
    /// a reload changed them).
    pub fn install_imports(&self, auth: &crate::auth::AuthConfig) {
        let mut taps: HashMap<AccountId, Vec<Tap>> = HashMap::new();
        for imp in &auth.stream_imports {
            let from = self.server.account_id(&imp.from);
            taps.entry(from).or_default().push(Tap {
                pattern: Bytes::copy_from_slice(imp.subject.as_bytes()),
                into: self.server.account_id(&imp.into),
                rewrite: imp.rewrite.clone(),
            });
        }
        let mut services: HashMap<AccountId, Vec<ServiceTap>> = HashMap::new();
        for imp in &auth.service_imports {
            let into = self.server.account_id(&imp.into);
            services.entry(into).or_default().push(ServiceTap {
                pattern: Bytes::copy_from_slice(imp.local.as_bytes()),
                into: self.server.account_id(&imp.from),
                rewrite: crate::account::imports::Rewrite::To(imp.subject.clone()),
                singleton: imp.response == crate::account::imports::ResponseType::Singleton,
                threshold: imp.threshold,
                share: false,
            });
        }
        // Accounts the auth config names exist before their first client (a pushed
        // account JWT, say), so that each gets its system imports now.
        for name in &auth.accounts {
            self.server.account_id(name);
        }
        let system = self.system_imports();
        let mappings: Vec<_> = auth
            .mappings
            .iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(name, list)| (self.server.account_id(name), list.clone()))
            .collect();
        let mut st = self.state.borrow_mut();
        for i in 0..st.accounts.len() {
            st.accounts[i].taps = None;
            st.accounts[i].services = None;
            st.accounts[i].sys_services = None;
            st.accounts[i].mappings = None;
        }
        for (account, list) in mappings {
            st.tables(account).mappings = Some(list.into());
        }
        for (into, list) in system {
            st.tables(into).sys_services = Some(list.into());
        }
        for (from, list) in taps {
            st.tables(from).taps = Some(list.into());
        }
        for (into, list) in services {
            st.tables(into).services = Some(list.into());
        }
    }

    /// Every account's imports of the system account's services (see
    /// [`AccountTables::sys_services`]); none without a system account.
    fn system_imports(&self) -> Vec<(AccountId, Vec<ServiceTap>)> {
        let Some(sys_name) = self.opts().system_account() else {
            return Vec::new();
        };
        let sys = self.server.account_id(&sys_name);
        let mut out = Vec::new();
        for name in self.server.account_names() {
            if name == sys_name {
                continue;
            }
            let tap = |local: &str, to: String, share: bool| ServiceTap {
                pattern: Bytes::copy_from_slice(local.as_bytes()),
                into: sys,
                rewrite: crate::account::imports::Rewrite::To(to),
                singleton: true,
                threshold: std::time::Duration::from_secs(2),
                share,
            };
            let connz = format!("$SYS.REQ.ACCOUNT.{name}.CONNZ");
            out.push((
                self.server.account_id(&name),
                vec![
                    tap(
                        "$SYS.REQ.USER.INFO",
                        format!("$SYS.REQ.USER.{name}.INFO"),
                        true,
                    ),
                    tap("$SYS.REQ.SERVER.PING.CONNZ", connz.clone(), false),
                    tap("$SYS.REQ.ACCOUNT.PING.CONNZ", connz, false),
                    tap(
                        "$SYS.REQ.ACCOUNT.PING.STATZ",
                        format!("$SYS.REQ.ACCOUNT.{name}.STATZ"),
                        false,
                    ),
                ],
            ));
        }
        out
    }

    /// Whether anyone, on this shard or another, has interest in `subject`.
    pub fn has_interest(&self, account: AccountId, subject: &[u8]) -> bool {
        let mut st = self.state.borrow_mut();
        let tables = st.tables(account);
        !tables.local.match_subject(subject).is_empty()
            || !tables.remote.match_subject(subject).is_empty()
            || tables.taps.as_deref().is_some_and(|taps| {
                taps.iter()
                    .any(|t| crate::subject::matches_valid(&t.pattern, subject))
            })
            || tables.services.as_deref().is_some_and(|services| {
                services
                    .iter()
                    .any(|t| crate::subject::matches_valid(&t.pattern, subject))
            })
    }

    /// Sends the 503 no-responders status to the publisher's own plain subscription on
    /// the reply subject, as nats-server does.
    pub fn send_no_responders(
        &self,
        st: &mut ShardState,
        account: AccountId,
        cid: u64,
        subject: &[u8],
        reply: &[u8],
    ) {
        if reply.starts_with(SERVICE_REPLY_PREFIX) {
            // A request that went through a service import: the 503 goes to the
            // requester's own reply, in its account.
            if let Some(route) = st.replies.remove(reply) {
                self.send_no_responders(st, route.account, route.cid, &route.subject, &route.reply);
            }
            return;
        }
        let matched = st.tables(account).local.match_subject(reply);
        let Some((sub, _)) = matched.plain.iter().find(|(s, _)| s.0.client.cid == cid) else {
            return;
        };
        let mut hdr = Vec::with_capacity(32 + subject.len());
        hdr.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        hdr.extend_from_slice(subject);
        hdr.extend_from_slice(b"\r\n\r\n");
        let sub = sub.0.clone();
        let once = Encoded::Once {
            subject: reply,
            reply: b"",
            hdr_len: hdr.len(),
            payload: &hdr,
        };
        self.deliver(st, &sub, &once, 0);
    }

    /// Delivers locally and picks the shards to send one envelope each. Returns
    /// whether anyone took the message here or it was routed, and whether it was
    /// routed (if `want_status`, a status is then awaited from the shards it went to).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn route_framed(
        &self,
        st: &mut ShardState,
        account: AccountId,
        frame: &Encoded<'_>,
        local: &SublistResult<SubRef>,
        msg: &Message<'_>,
        origin: Origin,
        want_status: bool,
    ) -> (bool, bool) {
        let publisher = origin.cid();
        let mut any = false;
        for (i, (sub, _)) in local.plain.iter().enumerate() {
            prefetch_ahead(&local.plain, i);
            any |= self.deliver(st, &sub.0, frame, publisher);
        }
        if self.alone {
            for q in &local.queues {
                any |= self.deliver_queue_local(st, &q.members, frame, publisher, false);
            }
            return (any, false);
        }
        let remote = st.tables(account).remote.match_subject(msg.subject);
        let mut routed = false;
        for (shard, _) in &remote.plain {
            st.targets[*shard as usize].plain = true;
            routed = true;
        }
        for q in &local.queues {
            let rq = remote.queues.iter().find(|r| r.name == q.name);
            let remote_total = rq.map_or(0, |r| r.total);
            let pick = Self::rand_below(st, q.total + remote_total);
            if pick < q.total {
                if self.deliver_queue_local(st, &q.members, frame, publisher, false) {
                    any = true;
                    continue;
                }
                // No local member could take it: fall through to another shard's.
                if remote_total == 0 {
                    continue;
                }
            }
            if let Some(rq) = rq {
                if let Some(shard) = Self::pick_weighted(st, rq.members.iter().copied(), rq.total) {
                    st.targets[shard as usize].add_queue(&q.name);
                    routed = true;
                }
            }
        }
        for rq in &remote.queues {
            if local.queues.iter().any(|q| q.name == rq.name) {
                continue;
            }
            if let Some(shard) = Self::pick_weighted(st, rq.members.iter().copied(), rq.total) {
                st.targets[shard as usize].add_queue(&rq.name);
                routed = true;
            }
        }
        if !routed {
            return (any, false);
        }
        let mut status_token = 0;
        if want_status && !any {
            st.next_status += 1;
            status_token = st.next_status;
            let shards = st.targets.iter().filter(|t| !t.is_empty()).count();
            st.statuses.insert(
                status_token,
                PendingStatus {
                    cid: publisher,
                    account,
                    subject: Bytes::copy_from_slice(msg.subject),
                    reply: Bytes::copy_from_slice(msg.reply),
                    remaining: shards,
                    delivered: false,
                },
            );
        }
        let subject = msg.shared_subject();
        let reply = msg.shared_reply();
        let payload = msg.shared_payload();
        for shard in 0..st.targets.len() {
            if st.targets[shard].is_empty() {
                continue;
            }
            let t = std::mem::take(&mut st.targets[shard]);
            if origin == Origin::Import && Some(shard) == self.cluster_core {
                continue;
            }
            self.mesh.send(
                shard,
                Envelope::Msg(RoutedMsg {
                    account,
                    subject: subject.clone(),
                    reply: reply.clone(),
                    hdr_len: msg.hdr_len as u32,
                    payload: payload.clone(),
                    plain: t.plain,
                    queue: t.queue,
                    more_queues: t.more_queues,
                    status_token,
                    origin: self.id as u16,
                    tried: 0,
                    hops: 0,
                }),
            );
        }
        (true, true)
    }

    /// One of `members` (shard, weight), chosen by weight; `total` is their sum.
    fn pick_weighted(
        st: &mut ShardState,
        members: impl Iterator<Item = (u16, u32)> + Clone,
        total: u32,
    ) -> Option<u16> {
        let mut pick = Self::rand_below(st, total.max(1));
        for (shard, weight) in members.clone() {
            if pick < weight {
                return Some(shard);
            }
            pick -= weight;
        }
        members.map(|(shard, _)| shard).next()
    }

    /// Delivers to one member of a local queue group, starting at a random member and
    /// trying the next when one cannot take it. Members that are leaving (UNSUB seen)
    /// are skipped unless `take_leaving` (a message another shard chose before it knew)
    /// and no other member took it.
    fn deliver_queue_local(
        &self,
        st: &mut ShardState,
        members: &[(SubRef, u32)],
        frame: &Encoded<'_>,
        publisher: u64,
        take_leaving: bool,
    ) -> bool {
        if members.is_empty() {
            return false;
        }
        let start = Self::rand_below(st, members.len() as u32) as usize;
        let mut saw_leaving = false;
        for i in 0..members.len() {
            let sub = &members[(start + i) % members.len()].0 .0;
            if sub.leaving.get() {
                saw_leaving = true;
                continue;
            }
            if self.deliver(st, sub, frame, publisher) {
                return true;
            }
        }
        if !(take_leaving && saw_leaving) {
            return false;
        }
        for i in 0..members.len() {
            let sub = &members[(start + i) % members.len()].0 .0;
            if sub.leaving.get() && self.deliver(st, sub, frame, publisher) {
                return true;
            }
        }
        false
    }

    /// Delivers an envelope from another shard to this shard's subscribers. Returns
    /// whether anyone here got it, and how many queue messages were handed on to other
    /// shards because no member here could take them.
    fn deliver_routed(&self, st: &mut ShardState, m: &RoutedMsg) -> (bool, u32) {
        if m.subject.starts_with(&self.reply_prefix) {
            // A response from another server on one of this shard's service replies.
            let msg = Message::owned(&m.subject, &m.reply, m.hdr_len as usize, &m.payload);
            self.deliver_response(st, &msg);
            return (true, 0);
        }
        let local = st.tables(m.account).local.match_subject(&m.subject);
        let mut frame = self.frame.borrow_mut();
        let encoded = (!local.is_empty()).then(|| {
            let targets = local.plain.len() + local.queues.len();
            frame.encode(
                targets,
                &m.subject,
                &m.reply,
                m.hdr_len as usize,
                &m.payload,
                &m.payload,
            )
        });
        let mut any = false;
        if let Some(encoded) = encoded.as_ref().filter(|_| m.plain) {
            for (i, (sub, _)) in local.plain.iter().enumerate() {
                prefetch_ahead(&local.plain, i);
                any |= self.deliver(st, &sub.0, encoded, 0);
            }
        }
        let mut handed_on = 0;
        for name in m.queue.iter().chain(m.more_queues.iter()) {
            let group = local.queues.iter().find(|q| q.name == name);
            let taken = encoded.as_ref().zip(group).is_some_and(|(encoded, q)| {
                self.deliver_queue_local(st, &q.members, encoded, 0, true)
            });
            if taken {
                any = true;
            } else if self.hand_on(st, m, name) {
                handed_on += 1;
            }
        }
        (any, handed_on)
    }

    /// A queue message arrived for a group with no member left here that can take it
    /// (it left, hit its auto-unsubscribe limit, disconnected or may not receive it):
    /// send it to another shard that has members, as far as this shard knows, and has
    /// not tried yet. False when there is none: the group is gone everywhere.
    fn hand_on(&self, st: &mut ShardState, m: &RoutedMsg, name: &Bytes) -> bool {
        if m.hops as usize >= self.count {
            return false;
        }
        let tried = m.tried | shard_bit(self.id);
        let remote = st.tables(m.account).remote.match_subject(&m.subject);
        let Some(rq) = remote.queues.iter().find(|q| q.name == name) else {
            return false;
        };
        let open = |&(shard, _): &(u16, u32)| {
            shard as usize != self.id && tried & shard_bit(shard as usize) == 0
        };
        let members = rq.members.iter().copied().filter(open);
        let total: u32 = members.clone().map(|(_, w)| w).sum();
        if total == 0 {
            return false;
        }
        let Some(target) = Self::pick_weighted(st, members, total) else {
            return false;
        };
        self.mesh.send(
            target as usize,
            Envelope::Msg(RoutedMsg {
                account: m.account,
                subject: m.subject.clone(),
                reply: m.reply.clone(),
                hdr_len: m.hdr_len,
                payload: m.payload.clone(),
                plain: false,
                queue: Some(name.clone()),
                more_queues: Vec::new(),
                status_token: m.status_token,
                origin: m.origin,
                tried,
                hops: m.hops.saturating_add(1),
            }),
        );
        true
    }

    /// Appends one message for one subscription to its client's outbound buffer.
    /// Returns false when the subscription cannot take it (closed, own message with
    /// echo off, already removed).
    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        &self,
        st: &mut ShardState,
        sub: &Rc<Subscription>,
        frame: &Encoded<'_>,
        publisher: u64,
    ) -> bool {
        let c = &sub.client;
        if sub.removed.get() || c.is_closed() || (publisher == c.cid && !c.echo.get()) {
            return false;
        }
        // Auth (issue #5): subscribe deny filter and reply permissions, only for
        // clients whose permissions need it.
        if c.auth.hook.get() && !c.auth.on_deliver(frame.subject(), frame.reply()) {
            return false;
        }
        let (pending, size) = {
            let mut out = c.out.borrow_mut();
            let size = frame.write(&mut out, &sub.sid, c.headers.get());
            (out.pending(), size)
        };
        c.stats.out_msgs.set(c.stats.out_msgs.get() + 1);
        c.stats.out_bytes.set(c.stats.out_bytes.get() + size as u64);
        st.stats.out_msgs += 1;
        st.stats.out_bytes += size as u64;
        let max_pending = self.max_pending.get();
        if pending > max_pending / 4 * 3 && pending <= max_pending && !c.stall_marked.replace(true)
        {
            // Past 75% of max_pending: the publisher pauses briefly (see the read loop)
            // so a consumer that is only a little slower is not cut off.
            st.stalled.push(sub.client.clone());
        }
        if pending > max_pending {
            st.stats.slow_consumers += 1;
            crate::log_warn!(
                "{} - cid:{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                c.peer.map(|p| p.to_string()).unwrap_or_default(),
                c.cid,
                max_pending
            );
            c.kill("Slow Consumer (Pending Bytes)");
        } else {
            c.wake_writer();
        }
        let delivered = sub.delivered.get() + 1;
        sub.delivered.set(delivered);
        let max = sub.max.get();
        if max > 0 && delivered >= max {
            c.forget_sub(&sub.sid);
            self.remove_sub(st, sub);
        }
        true
    }

    /// Drops every subscription of a client.
    pub fn remove_all_subs(&self, client: &Client) {
        let mut st = self.state.borrow_mut();
        let mut subs: Vec<_> = client.subs.borrow_mut().drain().map(|s| s.0).collect();
        subs.append(&mut client.leaving.borrow_mut());
        for sub in &subs {
            self.remove_sub(&mut st, sub);
        }
    }

    /// Drops every subscription of a closing client and forgets it (keeping a record
    /// for monitoring's closed connections).
    pub fn remove_client(&self, client: &Client) {
        let mut record = snapshot::ConnSnapshot::of(client, self.index, true);
        record.reason = client.close_reason.get().to_string();
        record.stop = Some(std::time::SystemTime::now());
        self.remove_all_subs(client);
        let keep = self.opts.borrow().max_closed_clients.max(0) as usize;
        let mut st = self.state.borrow_mut();
        if st.clients.remove(&client.cid).is_some() && keep > 0 {
            while st.closed.len() >= keep {
                st.closed.pop_front();
            }
            st.closed.push_back(record);
        }
    }

    /// Options in force on this shard.
    pub fn opts(&self) -> Arc<Options> {
        self.opts.borrow().clone()
    }

    /// Puts reloaded options in force on this shard.
    pub fn apply_options(&self, opts: Arc<Options>) {
        self.max_pending.set(opts.max_pending);
        // Auth (issue #5): re-check open connections against the new users and
        // permissions.
        match crate::auth::AuthConfig::from_options(&opts) {
            Ok(auth) => {
                let auth = Arc::new(auth);
                let changed = **self.auth.borrow() != *auth;
                *self.auth.borrow_mut() = auth.clone();
                if changed {
                    self.install_imports(&auth);
                    if self.index == 0 {
                        self.server
                            .tell_cluster_imports(auth.stream_imports.clone());
                    }
                    crate::client::auth::recheck_clients(self, &auth);
                }
            }
            Err(e) => crate::log_error!("Reload: authorization not changed: {e}"),
        }
        *self.opts.borrow_mut() = opts;
    }

    /// Client authentication in force on this shard.
    pub fn auth(&self) -> Arc<crate::auth::AuthConfig> {
        self.auth.borrow().clone()
    }

    /// The authentication that applies to `client`: a websocket client with the
    /// `websocket { authorization {} }` override is checked against that user or
    /// token alone (and `websocket.no_auth_user`), as nats-server does; everyone else
    /// against the server's. Built per connection, off the message path.
    pub fn auth_for(&self, client: &crate::client::Client) -> Arc<crate::auth::AuthConfig> {
        let base = self.auth();
        if !client.websocket.get() {
            return base;
        }
        let opts = self.opts();
        let Some(ws) = opts.websocket.as_ref() else {
            return base;
        };
        if !ws.auth.any() && ws.no_auth_user.is_none() {
            return base;
        }
        let mut a = (*base).clone();
        if ws.auth.any() {
            a.token = ws.auth.token.clone();
            a.single = ws
                .auth
                .user
                .clone()
                .map(|u| (u, ws.auth.password.clone().unwrap_or_default()));
            // Only the websocket no_auth_user stays reachable among the users.
            let keep = ws
                .no_auth_user
                .as_ref()
                .and_then(|n| base.users.get(n).cloned());
            a.users.clear();
            a.nkeys.clear();
            if let (Some(n), Some(u)) = (ws.no_auth_user.as_ref(), keep) {
                a.users.insert(n.clone(), u);
            }
        }
        a.no_auth_user = ws.no_auth_user.clone();
        Arc::new(a)
    }
}

/// Where one client shard sits among the executors, from the mesh's roles (dedicated
/// executors such as the cluster core may have any mesh id, before or between the
/// client shards).
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// Place among the client shards.
    pub index: usize,
    /// Mesh ids of the other client shards.
    pub peers: Vec<usize>,
    /// Mesh ids of all client shards, by index.
    pub clients: Vec<usize>,
}

impl Layout {
    /// The layout of the client shard with mesh id `id`.
    pub fn of(id: usize, roles: &[shards::Role]) -> Layout {
        let clients: Vec<usize> = (0..roles.len().max(1))
            .filter(|&i| roles.get(i).is_none_or(|r| *r == shards::Role::Client))
            .collect();
        Layout {
            index: clients.iter().position(|&i| i == id).unwrap_or(0),
            peers: clients.iter().copied().filter(|&i| i != id).collect(),
            clients,
        }
    }
}

/// The bit of `shard` in [`RoutedMsg::tried`] (none for shards past 63: `hops` bounds
/// those).
fn shard_bit(shard: usize) -> u64 {
    if shard < 64 {
        1 << shard
    } else {
        0
    }
}

/// Fan-out visits one subscription and one client per subscriber, each a cache miss
/// on first touch: start loading the ones a few places ahead.
#[inline(always)]
fn prefetch_ahead(subs: &[(SubRef, u32)], i: usize) {
    const AHEAD: usize = 8;
    if let Some((next, _)) = subs.get(i + AHEAD) {
        let sub: &Subscription = &next.0;
        prefetch(sub as *const Subscription as *const u8);
        prefetch(std::rc::Rc::as_ptr(&sub.client) as *const u8);
    }
    // Closer in, the client is loaded: also fetch where its next frame will be written.
    if let Some((near, _)) = subs.get(i + AHEAD / 2) {
        if let Ok(out) = near.0.client.out.try_borrow() {
            prefetch(out.buf.as_ptr().wrapping_add(out.buf.len()));
        }
    }
}

#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Target {
    fn add_queue(&mut self, name: &Bytes) {
        if self.queue.is_none() {
            self.queue = Some(name.clone());
        } else {
            self.more_queues.push(name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;
    use shards::Role::{Client as C, Dedicated as D};

    #[test]
    fn client_shards_are_numbered_around_dedicated_executors() {
        let layout = |index, count: usize, peers: &[usize], clients: &[usize]| {
            assert_eq!(clients.len(), count);
            Layout {
                index,
                peers: peers.to_vec(),
                clients: clients.to_vec(),
            }
        };
        // A lone shard (no mesh): index 0 of 1, nobody to talk to.
        assert_eq!(Layout::of(0, &[]), layout(0, 1, &[], &[0]));
        assert_eq!(Layout::of(1, &[C, C]), layout(1, 2, &[0], &[0, 1]));
        // The cluster core took mesh id 0: clients are 1 and 2, numbered 0 and 1.
        let roles = [D, C, C];
        assert_eq!(Layout::of(1, &roles), layout(0, 2, &[2], &[1, 2]));
        assert_eq!(Layout::of(2, &roles), layout(1, 2, &[1], &[1, 2]));
        // Between them.
        let roles = [C, D, C];
        assert_eq!(Layout::of(2, &roles), layout(1, 2, &[0], &[0, 2]));
        // One client shard beside the cluster core: no barriers, no interest to send.
        assert_eq!(Layout::of(1, &[D, C]), layout(0, 1, &[], &[1]));
    }
}
