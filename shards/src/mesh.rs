//! A shard's view of the mesh: ordered, never-dropping sends to each peer and a receive
//! loop per peer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::GlommioError;

/// What a receive handler returns to stop reading its ring for a while.
pub type Pause = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Envelopes handled from one ring before the receive loop lets other tasks run.
const RECV_BATCH: u32 = 256;

/// Envelopes waiting for room in the ring to one peer, in send order.
struct Outbox<M> {
    queue: VecDeque<M>,
    /// The drain task holds an envelope it could not place yet: it goes before `queue`.
    draining: Cell<bool>,
    /// Wakes the drain task when the queue gains an envelope.
    drain_waker: Option<Waker>,
    /// Tasks waiting for the backlog to shrink.
    space_waiters: Vec<Waker>,
}

struct Links<M: Send> {
    senders: Senders<M>,
    outboxes: Vec<RefCell<Outbox<M>>>,
}

/// What an executor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves client connections.
    Client,
    /// A dedicated core (e.g. routes and gateways); serves no clients.
    Dedicated,
}

/// One shard's handle on the runtime: its id, its core and its links to the other shards.
pub struct Shard<M: Send> {
    id: usize,
    count: usize,
    core: usize,
    roles: Vec<Role>,
    links: Option<Rc<Links<M>>>,
    receivers: RefCell<Option<Receivers<M>>>,
}

impl<M: Send + 'static> Shard<M> {
    pub(crate) fn new(
        id: usize,
        core: usize,
        roles: Vec<Role>,
        mesh: Option<(Senders<M>, Receivers<M>)>,
    ) -> Self {
        let count = roles.len();
        let (links, receivers) = match mesh {
            Some((senders, receivers)) => {
                let outboxes = (0..count)
                    .map(|_| {
                        RefCell::new(Outbox {
                            queue: VecDeque::new(),
                            draining: Cell::new(false),
                            drain_waker: None,
                            space_waiters: Vec::new(),
                        })
                    })
                    .collect();
                let links = Rc::new(Links { senders, outboxes });
                for peer in (0..count).filter(|&p| p != id) {
                    glommio::spawn_local(drain(links.clone(), peer)).detach();
                }
                (Some(links), Some(receivers))
            }
            None => (None, None),
        };
        Shard {
            id,
            count,
            core,
            roles,
            links,
            receivers: RefCell::new(receivers),
        }
    }

    /// This shard's index, `0..count`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// How many shards the runtime has.
    pub fn count(&self) -> usize {
        self.count
    }

    /// This executor's role.
    pub fn role(&self) -> Role {
        self.roles[self.id]
    }

    /// The role of every peer, indexed by shard id.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The core this shard is pinned to.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Sends `msg` to shard `to`. Envelopes to one peer arrive in the order they were
    /// sent. Never blocks and never drops: when the ring is full the envelope waits in
    /// this shard's outbox (see [`Shard::backlog`] to apply backpressure).
    pub fn send(&self, to: usize, msg: M) {
        let Some(links) = &self.links else { return };
        if to == self.id || to >= self.count {
            return;
        }
        let mut outbox = links.outboxes[to].borrow_mut();
        if outbox.queue.is_empty() && !outbox.draining.get() {
            match links.senders.try_send_to(to, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => {
                    outbox.queue.push_back(msg)
                }
                // The peer is gone (shutting down): nothing will read it.
                Err(_) => return,
            }
        } else {
            outbox.queue.push_back(msg);
        }
        if let Some(w) = outbox.drain_waker.take() {
            w.wake();
        }
    }

    /// Envelopes to shard `to` waiting for room in its ring.
    pub fn backlog(&self, to: usize) -> usize {
        match &self.links {
            Some(links) if to < self.count => {
                let ob = links.outboxes[to].borrow();
                ob.queue.len() + ob.draining.get() as usize
            }
            _ => 0,
        }
    }

    /// Waits until the backlog to shard `to` is at most `limit`.
    pub async fn wait_backlog(&self, to: usize, limit: usize) {
        let Some(links) = &self.links else { return };
        poll_fn(|cx| {
            let mut ob = links.outboxes[to].borrow_mut();
            if ob.queue.len() + ob.draining.get() as usize <= limit {
                Poll::Ready(())
            } else {
                ob.space_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Spawns one task per peer that calls `handler(from, envelope)` for every envelope
    /// received, in ring order. When the handler returns a future, the ring from that
    /// peer is not read again until it completes: this is how a receiver pushes back
    /// (the ring fills, then the sender's backlog). Call once; later calls do nothing.
    pub fn on_receive(&self, handler: impl Fn(usize, M) -> Option<Pause> + 'static) {
        let Some(mut receivers) = self.receivers.borrow_mut().take() else {
            return;
        };
        let handler = Rc::new(handler);
        for (from, rx) in receivers.streams() {
            let handler = handler.clone();
            glommio::spawn_local(async move {
                let mut since_yield = 0u32;
                while let Some(msg) = rx.recv().await {
                    if let Some(pause) = handler(from, msg) {
                        pause.await;
                    }
                    // A ring that never runs dry must not starve this shard's writers.
                    since_yield += 1;
                    if since_yield == RECV_BATCH {
                        since_yield = 0;
                        futures_lite::future::yield_now().await;
                    }
                }
            })
            .detach();
        }
    }
}

/// Moves envelopes from the outbox to the ring of `to` whenever the fast path in
/// [`Shard::send`] found the ring full.
async fn drain<M: Send + 'static>(links: Rc<Links<M>>, to: usize) {
    loop {
        let next = poll_fn(|cx| {
            let mut ob = links.outboxes[to].borrow_mut();
            match ob.queue.pop_front() {
                Some(m) => {
                    ob.draining.set(true);
                    Poll::Ready(m)
                }
                None => {
                    ob.drain_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        let closed = links.senders.send_to(to, next).await.is_err();
        let mut ob = links.outboxes[to].borrow_mut();
        ob.draining.set(false);
        if closed {
            ob.queue.clear();
        }
        for w in ob.space_waiters.drain(..) {
            w.wake();
        }
    }
}
