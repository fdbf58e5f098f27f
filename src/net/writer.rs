//! Writing a connection's queue to its socket: plain writes, TLS records, and
//! vectored `sendmsg` for queues that hold shared payloads. Used by every kind of
//! connection (clients now; routes, gateways and leaf nodes later).

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::Bytes;

use super::stream::ConnStream;

/// A connection's stream, shared by its read loop and its writer (plain or TLS).
pub type Stream = Rc<RefCell<ConnStream>>;

/// Reads what the socket has (for TLS: decrypted), at most `buf.len()` bytes.
pub async fn read_some(stream: &Stream, buf: &mut [u8]) -> std::io::Result<usize> {
    poll_fn(|cx| stream.borrow_mut().poll_read(cx, buf)).await
}

/// Writes all of `buf` (for TLS: and sends the records).
pub async fn write_all(stream: &Stream, buf: &[u8]) -> std::io::Result<()> {
    write_some_all(stream, buf).await?;
    flush(stream).await
}

/// Writes all of `buf` into the stream without flushing TLS records.
pub async fn write_some_all(stream: &Stream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| stream.borrow_mut().poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Sends what TLS or websocket framing buffered (nothing to do for plain TCP).
#[inline]
pub async fn flush(stream: &Stream) -> std::io::Result<()> {
    if stream.borrow().is_plain() {
        return Ok(());
    }
    poll_fn(|cx| stream.borrow_mut().poll_flush(cx)).await
}

/// Shuts the socket down both ways, waking a read parked on it.
pub fn shutdown(stream: &Stream) {
    // A plain syscall: the read loop may be parked in a read on this socket.
    let fd = stream.borrow().as_raw_fd();
    // SAFETY: shutting down a socket we own; it stays open until the stream drops.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Writes a queue with shared payloads piece by piece through the stream (TLS).
pub async fn write_pieces(
    stream: &Stream,
    buf: &[u8],
    shared: &[(usize, Bytes)],
) -> std::io::Result<()> {
    for i in 0..2 * shared.len() + 1 {
        write_some_all(stream, piece(buf, shared, i)).await?;
    }
    flush(stream).await
}

/// The `i`-th piece of an outbound queue: buffer runs alternate with shared payloads.
fn piece<'a>(buf: &'a [u8], shared: &'a [(usize, Bytes)], i: usize) -> &'a [u8] {
    let k = i / 2;
    if i % 2 == 1 {
        return &shared[k].1;
    }
    let start = if k == 0 { 0 } else { shared[k - 1].0 };
    let end = shared.get(k).map_or(buf.len(), |s| s.0);
    &buf[start..end]
}

/// Sends a queue with shared payloads using `sendmsg` on the raw socket (glommio's
/// stream has no vectored write); when the socket is full, the current piece goes
/// through the stream, which waits for room, and vectored sending resumes.
pub async fn write_vectored(
    stream: &Stream,
    buf: &[u8],
    shared: &[(usize, Bytes)],
) -> std::io::Result<()> {
    const MAX_IOV: usize = 1024;
    debug_assert!(
        stream.borrow().is_plain(),
        "sendmsg would bypass TLS/framing"
    );
    let fd = stream.borrow().as_raw_fd();
    let pieces = 2 * shared.len() + 1;
    let (mut i, mut off) = (0usize, 0usize);
    while i < pieces {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        let mut n_iov = 0;
        let mut j = i;
        while j < pieces && n_iov < MAX_IOV {
            let p = piece(buf, shared, j);
            let p = if j == i { &p[off..] } else { p };
            if !p.is_empty() {
                iov[n_iov] = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
                n_iov += 1;
            }
            j += 1;
        }
        if n_iov == 0 {
            return Ok(());
        }
        // SAFETY: the iovecs point into `buf` and `shared`, alive for this call.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = n_iov as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock => {
                    let p = &piece(buf, shared, i)[off..];
                    write_all(stream, p).await?;
                    i += 1;
                    off = 0;
                    continue;
                }
                std::io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        // Advance past what was sent.
        let mut left = sent as usize;
        while left > 0 && i < pieces {
            let rest = piece(buf, shared, i).len() - off;
            if left >= rest {
                left -= rest;
                i += 1;
                off = 0;
            } else {
                off += left;
                left = 0;
            }
        }
        // Skip empty pieces at the cursor.
        while i < pieces && off == 0 && piece(buf, shared, i).is_empty() {
            i += 1;
        }
    }
    Ok(())
}
