//! One client connection: its state, its outbound buffer and its tasks (read loop,
//! writer, pinger). Everything here runs on the shard that accepted the connection.

pub mod auth;
mod conn;
pub(crate) mod trace;

pub use conn::serve;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Waker;

use bytes::BytesMut;

use crate::account::AccountId;
use crate::net::Outbound;
use crate::proto::connect::ConnectOpts;

/// A subscription, owned by its client and listed in its shard's interest table.
pub struct Subscription {
    /// The subscribing connection.
    pub client: Rc<Client>,
    /// Subject pattern. (Boxed slices, not `Bytes`: 16 bytes instead of 32 each, and
    /// no shared header once cloned; at 10^6 subscriptions that is what counts.)
    pub subject: Box<[u8]>,
    /// Queue group.
    pub queue: Option<Box<[u8]>>,
    /// Subscription id chosen by the client.
    pub sid: Box<[u8]>,
    /// Auto-unsubscribe after this many deliveries (0 = never).
    pub max: Cell<u64>,
    /// Messages delivered so far.
    pub delivered: Cell<u64>,
    /// Removed from the table; late deliveries are skipped.
    pub removed: Cell<bool>,
    /// A queue member after UNSUB, until the other shards confirm they stopped choosing
    /// it: messages they chose for it before that still reach it, as they would have
    /// on one server where they were queued before the UNSUB was read.
    pub leaving: Cell<bool>,
}

/// A client's subscriptions, looked up by sid. The key is the subscription's own sid
/// (no copy of it per entry).
pub type SidSet = std::collections::HashSet<BySid, foldhash::fast::RandomState>;

/// A subscription as an entry of its client's [`SidSet`]: hashed and compared by sid.
#[derive(Clone)]
pub struct BySid(pub Rc<Subscription>);

impl std::borrow::Borrow<[u8]> for BySid {
    fn borrow(&self) -> &[u8] {
        &self.0.sid
    }
}

impl std::hash::Hash for BySid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes: lookups by `&[u8]` must find it.
        <[u8] as std::hash::Hash>::hash(&self.0.sid, state)
    }
}

impl PartialEq for BySid {
    fn eq(&self, other: &Self) -> bool {
        self.0.sid[..] == other.0.sid[..]
    }
}

impl Eq for BySid {}

/// A subscription as an entry of the interest table: compared by identity.
#[derive(Clone)]
pub struct SubRef(pub Rc<Subscription>);

impl Subscription {
    /// The account whose table lists it: its client's, which never changes once the
    /// client has subscribed (kept off this struct: one more field here cost 5% of
    /// fan-out throughput, measured).
    pub fn account(&self) -> AccountId {
        self.client.account.get()
    }
}

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SubRef {}

impl std::hash::Hash for SubRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Rc::as_ptr(&self.0), state)
    }
}

/// Per-connection message counters.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Messages received from the client.
    pub in_msgs: Cell<u64>,
    /// Payload bytes received.
    pub in_bytes: Cell<u64>,
    /// Messages sent to the client.
    pub out_msgs: Cell<u64>,
    /// Payload bytes sent.
    pub out_bytes: Cell<u64>,
}

/// One client connection's shared state. `repr(C)` keeps the fields every delivery
/// touches (the first ones) together in a few cache lines: fan-out visits one client
/// per subscriber, and its first touch of each client is a cache miss in profiles.
#[repr(C)]
pub struct Client {
    /// Connection id, unique in the server; `cid % shards` is the owning shard.
    pub cid: u64,
    /// Closing: the writer flushes what is queued, then the connection ends.
    pub closing: Cell<bool>,
    /// Dead: nothing more is written (slow consumer, I/O error).
    pub dead: Cell<bool>,
    /// Cached `opts.echo`, read on every delivery.
    pub echo: Cell<bool>,
    /// Cached `opts.headers`, read on every delivery.
    pub headers: Cell<bool>,
    /// The writer task, parked waiting for output.
    pub writer: Cell<Option<Waker>>,
    /// Outbound frames.
    pub out: RefCell<Outbound>,
    /// Message counters.
    pub stats: ClientStats,
    /// Authentication state, user and permissions (issue #5).
    pub auth: auth::ClientAuth,
    /// The account it publishes and subscribes in (set by authentication). Read once
    /// per op, not per delivery: it stays out of the hot fields above.
    pub account: Cell<AccountId>,
    /// Remote address.
    pub peer: Option<SocketAddr>,
    /// Options from CONNECT.
    pub opts: RefCell<ConnectOpts>,
    /// CONNECT has been received.
    pub connected: Cell<bool>,
    /// Subscriptions by sid.
    pub subs: RefCell<SidSet>,
    /// Queue subscriptions unsubscribed but still in the shard's table (see
    /// [`Subscription::leaving`]); removed after the next barrier.
    pub leaving: RefCell<Vec<Rc<Subscription>>>,
    /// Why the connection ended, for the log.
    pub close_reason: Cell<&'static str>,
    /// Unanswered server PINGs.
    pub pings_out: Cell<u32>,
    /// The async INFO after the first PONG was sent.
    pub sent_connect_info: Cell<bool>,
    /// SUB/UNSUB since the last PONG: the next PONG waits until other shards applied them.
    pub interest_dirty: Cell<bool>,
    /// Messages went to other shards since the last PONG: the next PONG waits until
    /// they are delivered there, so a PONG means "published everywhere" as on one server.
    pub routed_dirty: Cell<bool>,
    /// Listed in the shard's stalled consumers (past 75% of max_pending).
    pub stall_marked: Cell<bool>,
    /// Data arrived from the client since the last ping tick.
    pub active: Cell<bool>,
    /// When the connection was accepted.
    pub start: std::time::SystemTime,
    /// Last time data arrived from the client.
    pub last_activity: Cell<std::time::SystemTime>,
    /// Last measured round trip of a server PING.
    pub rtt: Cell<Option<std::time::Duration>>,
    /// When the outstanding server PING was sent (for the round trip).
    pub ping_sent: Cell<Option<std::time::Instant>>,
    /// TLS state once the handshake completed (None: plain TCP). For
    /// `verify_and_map`, auth reads the client certificate's identity here:
    /// `tls.peer.map_user(user names)` runs nats-server's whole mapping, and
    /// `tls.peer.identities` lists the plain-string candidates in order.
    pub tls: RefCell<Option<Rc<crate::net::stream::TlsState>>>,
    /// Came in on the websocket listener (INFO, /connz `type`).
    pub websocket: Cell<bool>,
    /// The `token_cookie` value of the upgrade request: the token when CONNECT
    /// has none (nats-server's cookie login for browsers).
    pub ws_cookie_token: RefCell<Option<String>>,
    /// The `jwt_cookie` value of the upgrade request: the user JWT when CONNECT has
    /// none (operator mode).
    pub ws_cookie_jwt: RefCell<Option<String>>,
}

impl Client {
    /// Removes the subscription with `sid` from this client's map, giving the map's
    /// memory back once most of it is unused (a client that unsubscribes 10^5 sids
    /// keeps its connection but not their table).
    pub fn forget_sub(&self, sid: &[u8]) -> Option<Rc<Subscription>> {
        let mut subs = self.subs.borrow_mut();
        let gone = subs.take(sid).map(|s| s.0);
        if subs.capacity() > 64 && subs.len() * 4 < subs.capacity() {
            let keep = subs.len() * 2;
            subs.shrink_to(keep);
        }
        gone
    }

    /// A new connection with nats-server's pre-CONNECT defaults.
    pub fn new(cid: u64, peer: Option<SocketAddr>) -> Client {
        let opts = ConnectOpts::default();
        Client {
            cid,
            account: Cell::new(AccountId::GLOBAL),
            peer,
            echo: Cell::new(opts.echo),
            headers: Cell::new(opts.headers),
            opts: RefCell::new(opts),
            connected: Cell::new(false),
            out: RefCell::new(Outbound::default()),
            subs: RefCell::new(SidSet::default()),
            leaving: RefCell::new(Vec::new()),
            closing: Cell::new(false),
            dead: Cell::new(false),
            close_reason: Cell::new("Client Closed"),
            pings_out: Cell::new(0),
            sent_connect_info: Cell::new(false),
            interest_dirty: Cell::new(false),
            routed_dirty: Cell::new(false),
            stall_marked: Cell::new(false),
            active: Cell::new(false),
            writer: Cell::new(None),
            stats: ClientStats::default(),
            start: std::time::SystemTime::now(),
            last_activity: Cell::new(std::time::SystemTime::now()),
            rtt: Cell::new(None),
            ping_sent: Cell::new(None),
            auth: Default::default(),
            tls: RefCell::new(None),
            websocket: Cell::new(false),
            ws_cookie_token: RefCell::new(None),
            ws_cookie_jwt: RefCell::new(None),
        }
    }

    /// Wakes the writer so queued output goes out at the end of this tick.
    pub fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queues raw protocol bytes.
    pub fn queue(&self, bytes: &[u8]) {
        if self.dead.get() {
            return;
        }
        self.out.borrow_mut().buf.extend_from_slice(bytes);
        self.wake_writer();
    }

    /// Queues `-ERR '<text>'` without closing.
    pub fn send_err(&self, text: &str) {
        if self.dead.get() {
            return;
        }
        crate::proto::encode::err(&mut self.out.borrow_mut().buf, text);
        self.wake_writer();
    }

    /// Closes after flushing what is queued (plus `-ERR '<text>'` when given).
    pub fn close(&self, err: Option<&str>, reason: &'static str) {
        if self.closing.get() || self.dead.get() {
            return;
        }
        if let Some(text) = err {
            self.send_err(text);
        }
        self.close_reason.set(reason);
        self.closing.set(true);
        self.wake_writer();
    }

    /// Ends the connection now, dropping queued output.
    pub fn kill(&self, reason: &'static str) {
        if self.dead.get() {
            return;
        }
        if !self.closing.get() {
            self.close_reason.set(reason);
        }
        self.dead.set(true);
        self.closing.set(true);
        let mut out = self.out.borrow_mut();
        out.buf = BytesMut::new();
        out.shared = Vec::new();
        out.shared_len = 0;
        drop(out);
        self.wake_writer();
    }

    /// Closing or dead: no more deliveries.
    pub fn is_closed(&self) -> bool {
        self.closing.get()
    }
}
