//! Accepting client connections on a plain thread and handing them to the shards.
//!
//! Why not an io_uring accept on each shard: a pending io_uring request holds its own
//! reference to the listening socket, and when the process is killed the kernel drops
//! it only once the ring's teardown has run, 5-15 ms after the process is gone. In that
//! window the dead server's socket still owns the port: a successor fails to bind and
//! clients that connect get a reset. A blocking `accept` on a plain thread holds no such
//! reference, so the socket closes with the process, as nats-server's does.
//!
//! The thread deals connections round-robin: it writes each accepted descriptor (a
//! native-endian `i32`) into a socket pair whose other end the shard reads with
//! io_uring ([`read_accepted`]), so a shard wakes for a connection as for any input.
//! The websocket listener's thread shares the shards' socket pairs: it writes its
//! descriptors bit-inverted (negative), so the shard knows to start with the upgrade.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The accept thread of one listening socket.
pub struct Acceptor {
    listen_fd: RawFd,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Other listeners' threads that stop with this one (the websocket port).
    siblings: Vec<Acceptor>,
}

/// Bytes per descriptor on a shard's socket pair.
const FD_BYTES: usize = std::mem::size_of::<i32>();

/// Written into a shard's socket pair instead of a descriptor: "a command is waiting
/// on your channel" (no descriptor is `!i32::MIN`, i.e. `i32::MAX`).
pub const COMMAND_MARK: i32 = i32::MIN;

/// Which listener a dealt connection came from (its descriptor is tagged with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The client port (to a shard) or the route port (to the cluster core).
    Main,
    /// The websocket port (to a shard) or the leaf node port (to the cluster core).
    Second,
    /// The gateway port (to the cluster core).
    Gateway,
}

/// Set on a gateway connection's descriptor (descriptors stay far below it).
const GATEWAY_BIT: i32 = 1 << 30;

impl Port {
    fn tag(self, fd: i32) -> i32 {
        match self {
            Port::Main => fd,
            Port::Second => !fd,
            Port::Gateway => fd | GATEWAY_BIT,
        }
    }

    fn untag(tagged: i32) -> (i32, Port) {
        if tagged < 0 {
            (!tagged, Port::Second)
        } else if tagged & GATEWAY_BIT != 0 {
            (tagged & !GATEWAY_BIT, Port::Gateway)
        } else {
            (tagged, Port::Main)
        }
    }
}

impl Acceptor {
    /// Starts accepting on `listener`, dealing connections over `shards` in turn,
    /// each tagged with `port`.
    pub fn start(
        listener: TcpListener,
        shards: Vec<UnixStream>,
        port: Port,
    ) -> std::io::Result<Acceptor> {
        let listen_fd = listener.as_raw_fd();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("natrium-accept".into())
            .spawn(move || accept_loop(listener, shards, port, &stop))?;
        Ok(Acceptor {
            listen_fd,
            stopping,
            thread: Some(thread),
            siblings: Vec::new(),
        })
    }

    /// Makes `other` stop whenever this acceptor stops.
    pub fn with(mut self, other: Acceptor) -> Acceptor {
        self.siblings.push(other);
        self
    }

    /// Stops accepting and closes the listening socket (lame duck mode, shutdown);
    /// connections already handed over stay with their shards.
    pub fn stop(&mut self) {
        for s in &mut self.siblings {
            s.stop();
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // SAFETY: the fd stays open until the thread, which owns it, returns; shutting
        // a listening socket down wakes a blocked accept with EINVAL.
        unsafe { libc::shutdown(self.listen_fd, libc::SHUT_RDWR) };
        let _ = thread.join();
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: TcpListener,
    mut shards: Vec<UnixStream>,
    port: Port,
    stopping: &AtomicBool,
) {
    let fd = listener.as_raw_fd();
    let mut next = 0usize;
    while !stopping.load(Ordering::SeqCst) {
        // SAFETY: accept4 on the listening socket this thread owns; the new fd is
        // blocking, as glommio's own accept makes it (writers use MSG_DONTWAIT).
        let conn = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => {}
                _ if stopping.load(Ordering::SeqCst) => break,
                _ => {
                    crate::log_error!("Error accepting client connection: {err}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            continue;
        }
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        if stopping.load(Ordering::SeqCst) || shards.is_empty() {
            break;
        }
        // A shard that has stopped reading (its socket pair is gone) gets no more.
        loop {
            let i = next % shards.len();
            next = next.wrapping_add(1);
            let raw = conn.as_raw_fd();
            let tagged = port.tag(raw);
            // One 4-byte write on a stream socket is never split or interleaved with
            // the other acceptor's.
            if shards[i].write_all(&tagged.to_ne_bytes()).is_ok() {
                // The shard owns it now.
                let _ = conn.into_raw_fd();
                break;
            }
            shards.remove(i);
            if shards.is_empty() {
                return;
            }
        }
    }
}

/// Reads the descriptors the acceptors dealt to this shard and calls `serve` with each
/// (and the port it came from) until the acceptors' ends close; a
/// [`COMMAND_MARK`] calls `command` instead.
pub async fn read_accepted(
    wake: glommio::net::UnixStream,
    mut serve: impl FnMut(glommio::net::TcpStream, Port),
    mut command: impl FnMut(),
) {
    use futures_lite::AsyncReadExt;
    let mut wake = wake;
    let mut buf = [0u8; 64 * FD_BYTES];
    let mut have = 0;
    loop {
        let n = match wake.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let whole = have - have % FD_BYTES;
        for chunk in buf[..whole].chunks_exact(FD_BYTES) {
            let mut raw = [0u8; FD_BYTES];
            raw.copy_from_slice(chunk);
            let tagged = i32::from_ne_bytes(raw);
            if tagged == COMMAND_MARK {
                command();
                continue;
            }
            let (fd, port) = Port::untag(tagged);
            // SAFETY: the acceptor gave up this descriptor to this shard alone.
            serve(unsafe { glommio::net::TcpStream::from_raw_fd(fd) }, port);
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}
