//! A shard's life outside the message path: accepting connections and the commands
//! the control plane sends (shutdown, snapshots for monitoring, ...). A command comes
//! over a channel and rings the shard's doorbell (a mark on its hand-off socket), so
//! an idle shard sleeps instead of polling, and no lock or channel sits on the
//! message path.

use std::cell::Cell;
use std::future::poll_fn;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::snapshot::ShardSnapshot;
use super::ShardCtx;
use crate::bus::Envelope;
use crate::config::Options;
use crate::server::ServerShared;

/// Removed subscriptions after which free heap memory is handed back to the OS...
const RELEASE_AFTER: u64 = 1 << 16;
/// ...looked at this often (the command loop's longest sleep too); the trim waits
/// for a look that finds no new removals, so a burst of UNSUBs pays for one trim
/// after it, not several in its midst.
const RELEASE_EVERY: Duration = Duration::from_millis(500);

/// Rung when a command's mark arrives; the command loop sleeps until then.
#[derive(Default)]
struct Doorbell {
    rung: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Doorbell {
    fn ring(&self) {
        self.rung.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Until rung (at once if it rang meanwhile) or `at_most` has passed.
    async fn wait(&self, at_most: Duration) {
        let rung = poll_fn(|cx| {
            if self.rung.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        });
        futures_lite::future::or(rung, glommio::timer::sleep(at_most)).await;
        self.waker.take();
    }
}

/// What the control plane can ask of a shard.
pub enum ShardCommand {
    /// Close every connection and stop.
    Shutdown,
    /// Report counters and connections (with each connection's subjects when `subs`).
    Snapshot {
        /// Include subscription subjects per connection.
        subs: bool,
        /// Where the snapshot goes.
        reply: crossbeam_channel::Sender<ShardSnapshot>,
    },
    /// Put reloaded options in force (new connections see them; existing ones keep
    /// the parse limits, ping interval and write deadline they started with), then
    /// say so on the channel: a reload is complete when every shard has applied it
    /// (a connection accepted after `Reloaded server configuration` gets the new TLS
    /// and auth settings, as with nats-server).
    Reload(Arc<Options>, crossbeam_channel::Sender<()>),
    /// Lame duck mode (the control thread has stopped accepting): send every
    /// protocol-1 client that got its connect_info INFO an INFO with `"ldm":true`,
    /// and reply with the ids of the connections open now.
    LameDuck {
        /// Where the connection ids go.
        reply: crossbeam_channel::Sender<Vec<u64>>,
    },
    /// Close one connection (no -ERR), as lame duck mode does: `Server Shutdown`.
    CloseClient(u64),
    /// Close one connection with `-ERR '<err>'` and `reason` (an account's tightened
    /// connection limit).
    CloseWith {
        /// The connection.
        cid: u64,
        /// The `-ERR` text.
        err: &'static str,
        /// The close reason (monitoring).
        reason: &'static str,
    },
    /// `$SYS.REQ.SERVER.<id>.KICK` / `.LDM`: close the client with this cid
    /// ("Kicked"), or send it the lame duck INFO (`ldm`); answers whether it is here.
    ClientOp {
        /// The connection.
        cid: u64,
        /// Lame duck INFO instead of a close.
        ldm: bool,
        /// Done, or nats-server's reason why not.
        reply: crossbeam_channel::Sender<Result<(), &'static str>>,
    },
    /// The cluster's client URLs changed: send protocol-1 clients that got their
    /// connect_info INFO an INFO with the new `connect_urls`.
    ConnectUrls,
    /// Account JWTs changed (the full resolver stored or deleted some): rebuild
    /// authentication from the options in force and check the connections again.
    RefreshAuth,
}

/// One shard's life: serve the connections the acceptor hands it over its socket pair
/// (`handoff[id]`), apply envelopes from the other shards, and close everything on
/// shutdown.
pub async fn shard_main(
    mesh: shards::Shard<Envelope>,
    server: Arc<ServerShared>,
    handoff: Arc<Vec<RawFd>>,
    ready: crossbeam_channel::Sender<()>,
) {
    if mesh.roles()[mesh.id()] == shards::Role::Dedicated {
        let fd = handoff[handoff.len() - 1];
        return crate::cluster::core_main(mesh, server, fd, ready).await;
    }
    let ctx = ShardCtx::new(mesh, server.clone());
    ctx.install_imports(&ctx.auth());
    crate::events::service::start(&ctx);
    let id = ctx.index;
    let pump = ctx.clone();
    ctx.mesh
        .on_receive(move |from, env| pump.on_envelope(from, env));
    // SAFETY: each shard takes ownership of exactly one socket pair end.
    let wake = unsafe { glommio::net::UnixStream::from_raw_fd(handoff[id]) };
    let serve = ctx.clone();
    let bell = Rc::new(Doorbell::default());
    let ringer = bell.clone();
    let acceptor = glommio::spawn_local(crate::server::acceptor::read_accepted(
        wake,
        move |stream, port| {
            let websocket = port == crate::server::acceptor::Port::Second;
            glommio::spawn_local(crate::client::serve(serve.clone(), stream, websocket)).detach();
        },
        move || ringer.ring(),
    ));
    let _ = ready.send(());
    let commands = server.commands_for(id);
    let (mut released_at, mut released_seen) = (std::time::Instant::now(), 0);
    'run: loop {
        server.commands_seen(id);
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                ShardCommand::Shutdown => break 'run,
                ShardCommand::Snapshot { subs, reply } => {
                    let _ = reply.send(ctx.snapshot(subs));
                }
                ShardCommand::Reload(opts, done) => {
                    ctx.apply_options(opts);
                    let _ = done.send(());
                }
                ShardCommand::LameDuck { reply } => {
                    let _ = reply.send(lame_duck(&ctx));
                }
                ShardCommand::ConnectUrls => {
                    let clients: Vec<_> = ctx.state.borrow().clients.values().cloned().collect();
                    for c in clients.iter().filter(|c| !c.is_closed()) {
                        if c.opts.borrow().protocol >= 1 && c.sent_connect_info.get() {
                            c.queue(&ctx.server.client_info(c.cid, c.peer, c.websocket.get()));
                        }
                    }
                }
                ShardCommand::RefreshAuth => ctx.apply_options(ctx.opts()),
                ShardCommand::CloseWith { cid, err, reason } => {
                    let client = ctx.state.borrow().clients.get(&cid).cloned();
                    if let Some(c) = client {
                        c.close(Some(err), reason);
                    }
                }
                ShardCommand::ClientOp { cid, ldm, reply } => {
                    let _ = reply.send(client_op(&ctx, cid, ldm));
                }
                ShardCommand::CloseClient(cid) => {
                    let client = ctx.state.borrow().clients.get(&cid).cloned();
                    if let Some(c) = client {
                        c.close(None, "Server Shutdown");
                    }
                }
            }
        }
        if server.shutdown.load(Ordering::Relaxed) {
            break;
        }
        if released_at.elapsed() >= RELEASE_EVERY {
            released_at = std::time::Instant::now();
            let due = {
                let mut st = ctx.state.borrow_mut();
                let due = st.released >= RELEASE_AFTER && st.released == released_seen;
                if due {
                    st.released = 0;
                }
                released_seen = st.released;
                due
            };
            if due {
                release_free_heap();
            }
        }
        bell.wait(RELEASE_EVERY).await;
    }
    drop(acceptor);
    crate::events::service::shutdown(&ctx);
    let clients: Vec<_> = ctx.state.borrow().clients.values().cloned().collect();
    for c in &clients {
        c.close(None, "Server Shutdown");
    }
    // Give writers a moment to flush what was queued before the threads exit.
    for _ in 0..20 {
        if ctx.state.borrow().clients.is_empty() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(25)).await;
    }
}

/// Hands free heap pages back to the OS. glibc's malloc returns only the top of each
/// arena on its own; the freed entries of many removed subscriptions sit in the
/// middle of it, so without this a server that once held 10^6 subscriptions keeps
/// their memory resident for good.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and madvises the allocator's own free chunks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// No client has the cid (nats-server's words).
pub const NO_SUCH_CLIENT: &str = "no such client or leafnode id";

/// Kicks (closes with reason `Kicked`, nothing sent first, as nats-server does) or
/// lame-ducks one client of this shard; nats-server's reason when it cannot.
pub fn client_op(ctx: &ShardCtx, cid: u64, ldm: bool) -> Result<(), &'static str> {
    let client = ctx.state.borrow().clients.get(&cid).cloned();
    let Some(c) = client.filter(|c| !c.is_closed() && c.cid != 0) else {
        return Err(NO_SUCH_CLIENT);
    };
    if ldm {
        // Only a client that takes async INFOs gets it, as in lame duck mode.
        if c.opts.borrow().protocol < 1 || !c.sent_connect_info.get() {
            return Err(
                "client does not support Lame Duck Mode or is not ready to receive the notification",
            );
        }
        c.queue(&ctx.server.ldm_info(c.cid, c.peer));
    } else {
        c.close(None, "Kicked");
    }
    Ok(())
}

/// Sends the lame duck INFO to the clients that can take an async INFO; returns the
/// ids of all connections of this shard.
fn lame_duck(ctx: &ShardCtx) -> Vec<u64> {
    let clients: Vec<_> = ctx.state.borrow().clients.values().cloned().collect();
    for c in &clients {
        if c.is_closed() {
            continue;
        }
        if c.opts.borrow().protocol >= 1 && c.sent_connect_info.get() {
            c.queue(&ctx.server.ldm_info(c.cid, c.peer));
        }
    }
    clients.iter().map(|c| c.cid).collect()
}
