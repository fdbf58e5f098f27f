//! Websocket framing (issue #14) allocates nothing per message once its buffers
//! have grown: masked client frames are de-framed in place into the caller's buffer,
//! and written bytes are framed in the buffer kept for them. Lives in its own test
//! binary because it installs a counting `#[global_allocator]`.
//!
//! The framing runs over a real loopback TCP connection on a glommio executor; the
//! peer is a plain thread writing masked frames and reading the server's frames.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use natrium::net::stream::ConnStream;
use natrium::net::websocket::WsStream;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

thread_local! {
    /// The sizes of the allocations made while `REC` is set.
    static SIZES: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    static REC: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        if REC.try_with(|r| r.replace(false)).unwrap_or(false) {
            let _ = SIZES.try_with(|s| s.borrow_mut().push(layout.size()));
            let _ = REC.try_with(|r| r.set(true));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// A masked binary client frame carrying `payload` (compressed with RSV1 set when
/// `deflate`, as permessage-deflate sends it: raw deflate, sync flush, the trailing
/// `00 00 ff ff` left out).
fn client_frame(payload: &[u8], mask: [u8; 4], deflate: bool) -> Vec<u8> {
    let compressed;
    let payload = if deflate {
        let mut z = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(payload.len() + 64);
        z.compress_vec(payload, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        compressed = out;
        &compressed[..]
    } else {
        payload
    };
    let mut f = vec![if deflate { 0xC2 } else { 0x82 }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

const ROUNDS: usize = 2000;

#[test]
fn websocket_framing_allocates_nothing_per_message() {
    steady_state(false);
}

#[test]
fn compressed_websocket_framing_allocates_nothing_per_message() {
    steady_state(true);
}

fn steady_state(deflate: bool) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let msg = b"PUB foo.bar 16\r\n0123456789abcdef\r\n";
    let frame = client_frame(msg, [0x11, 0x22, 0x33, 0x44], deflate);
    // The peer: sends ROUNDS frames (a few per write, split across frame borders
    // too), and drains what the server frames back.
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut all = Vec::new();
        for _ in 0..ROUNDS {
            all.extend_from_slice(&frame);
        }
        let mut reader = s.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut total = 0usize;
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        for chunk in all.chunks(1000) {
            s.write_all(chunk).unwrap();
        }
        let total = drain.join().unwrap();
        assert!(total > 0);
    });
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 << 10)
        .make()
        .expect("an io_uring executor");
    let (warm, steady) = ex.run(async move {
        let std_conn = listener.accept().unwrap().0;
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor was just accepted and is owned by nothing else.
        let conn = unsafe { glommio::net::TcpStream::from_raw_fd(std_conn.into_raw_fd()) };
        let ws = if deflate {
            WsStream::framed_deflate
        } else {
            WsStream::framed
        };
        let mut ws = ws(ConnStream::Plain(conn), true);
        // Long enough to be compressed on the way out (nats-server's threshold: 64).
        let out = b"MSG foo.bar 1 64\r\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n";
        // One message's worth per read, so that every message is read, answered
        // and flushed on its own.
        let mut buf = vec![0u8; msg.len()];
        let mut rounds = 0usize;
        let mut got = 0usize;
        let want = msg.len() * ROUNDS;
        let mut at_half = None;
        while got < want {
            let n = ws.read(&mut buf).await.unwrap();
            assert!(n > 0, "the peer closed early");
            assert!(
                buf[..n].iter().all(|b| msg.contains(b)),
                "unmasked bytes wrong"
            );
            got += n;
            rounds += 1;
            ws.write_all(out).await.unwrap();
            ws.flush().await.unwrap();
            if at_half.is_none() && got >= want / 2 {
                at_half = Some(allocs());
                REC.with(|r| r.set(true));
            }
        }
        let end = allocs();
        REC.with(|r| r.set(false));
        drop(ws);
        assert!(rounds >= ROUNDS, "only {rounds} reads");
        (at_half.expect("half way"), end)
    });
    peer.join().unwrap();
    // The second half of the traffic (about a thousand reads, writes and flushes
    // after the buffers grew): a per-message allocation in the framing would show
    // as a thousand. What remains are the executor's own I/O wait sources (a few
    // hundred bytes each, when a read finds the socket empty), not the framing's.
    let sizes = SIZES.with(|s| s.borrow().clone());
    assert!(
        steady - warm < (ROUNDS / 2 / 50) as u64,
        "{} allocations in the steady second half, sizes {:?}...",
        steady - warm,
        &sizes[..sizes.len().min(20)]
    );
    assert!(
        sizes.iter().all(|&n| n < 4096),
        "a buffer grew in the steady state: {sizes:?}"
    );
}
