//! `proto::parser::parse` must never allocate. Lives in its own test binary because it
//! installs a counting `#[global_allocator]` (only one is allowed per binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use natrium::proto::parser::{parse, Limits, Parsed};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the thread-local may be gone during thread teardown.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
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

#[test]
fn parse_never_allocates() {
    let mut inputs: Vec<Vec<u8>> = [
        &b"CONNECT {\"verbose\":false,\"headers\":true}\r\nPING\r\n"[..],
        b"SUB foo 1\r\nSUB bar q 2\r\nUNSUB 1\r\nUNSUB 2 10\r\nUNSUB 3 x\r\n",
        b"PUB foo 2\r\nhi\r\nPUB foo reply 5\r\nhello\r\nPUB x 0\r\n\r\n",
        b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        b"CONNECT {}\nSUB foo 1\nPUB foo 2\nhi\r\nPING\nPONG\n+OK\n",
        b"sub\tfoo\t 1\r\npub foo 2\r\nhi\r\nping\r\npong\r\nINFO {}\r\n-ERR 'x'\r\n",
        b"SUB foo\rx 1\nSUB \nfoo 2\r\nCONNECT\n{}\n",
        b"PUB foo 2\r\nhi\r\nPUB foo 2\r\nhix\r\n",
        b"PING\r\nSUB a b c d\r\n",
        b"PUB foo 1048577\r\n",
        b"HPUB foo 3 2\r\nabc\r\n",
        b"PING\r\nHMSG foo 1 2 2\r\nhi\r\n",
        b"XYZ",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    let mut big = b"PUB foo 70000\r\n".to_vec();
    big.resize(big.len() + 70000, b'z');
    big.extend_from_slice(b"\r\n");
    inputs.push(big);
    let mut long = b"SUB foo ".to_vec();
    long.resize(5000, b'x');
    inputs.push(long);

    let limits = Limits::default();

    // Sanity: the counter sees allocations on this thread.
    let before = allocs();
    drop(std::hint::black_box(vec![1u8; 10]));
    assert!(allocs() > before);

    let before = allocs();
    let mut ops = 0usize;
    for _ in 0..200 {
        for s in &inputs {
            let mut rest = &s[..];
            for k in 0..rest.len().min(64) {
                let _ = std::hint::black_box(parse(&rest[..k], &limits));
            }
            while let Ok(Parsed::Op(op, n)) = parse(rest, &limits) {
                std::hint::black_box(&op);
                rest = &rest[n..];
                ops += 1;
            }
            let _ = std::hint::black_box(parse(rest, &limits));
        }
    }
    assert_eq!(allocs() - before, 0, "parse allocated");
    assert!(ops > 1000);
}
