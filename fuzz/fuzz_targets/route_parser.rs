//! Fuzzes the route protocol parser (`natrium::proto::route::parse`) the way a route
//! connection's read loop drives it (src/cluster/route.rs `read_loop`): ops are parsed
//! from the front of the buffer until one is incomplete or an error.
//!
//! Input layout: byte 0 picks the limits (the defaults, or tiny ones so the limit
//! checks are reached with short inputs) and, by its top two bits, the dialect
//! (route, leaf node or gateway); the rest is what a peer sends.
//!
//! Besides "no panic", it checks what the read loop relies on:
//! * `used` is in `1..=buf.len()`, and the op's slices lie inside what it used;
//! * a message's payload respects `max_payload` and its header length the payload;
//! * the parser is stateless: the stream cut after any complete op parses the same;
//! * `needed` for an incomplete op is 0 or more than what is buffered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natrium::proto::route::{needed, parse, Dialect, RouteOp};

fn inside(outer: &[u8], part: &[u8]) -> bool {
    part.is_empty() || {
        let (o, p) = (outer.as_ptr() as usize, part.as_ptr() as usize);
        p >= o && p + part.len() <= o + outer.len()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let (max_line, max_payload) = if ctl & 1 == 1 {
        ((ctl as usize >> 1) & 0x3f, (ctl as usize >> 4) * 5)
    } else {
        (65536, 1 << 20)
    };
    let dialect = match ctl >> 6 {
        0 | 1 => Dialect::Route,
        2 => Dialect::Leaf,
        _ => Dialect::Gateway,
    };
    let mut at = 0;
    while at < stream.len() {
        let buf = &stream[at..];
        match parse(buf, max_line, max_payload, dialect) {
            Ok(Some((op, used))) => {
                assert!(
                    used >= 1 && used <= buf.len(),
                    "used {used} of {}",
                    buf.len()
                );
                let taken = &buf[..used];
                match &op {
                    RouteOp::Msg(m) => {
                        assert!(m.payload.len() <= max_payload);
                        assert!(m.hdr_len <= m.payload.len());
                        for part in [m.account, m.subject, m.reply, m.queues, m.payload] {
                            assert!(inside(taken, part));
                        }
                    }
                    RouteOp::Sub(i) | RouteOp::Unsub(i) => {
                        assert!(inside(taken, i.account) && inside(taken, i.subject));
                    }
                    RouteOp::Info(j) | RouteOp::Connect(j) | RouteOp::Err(j) => {
                        assert!(inside(taken, j));
                    }
                    RouteOp::AccountSub(a) | RouteOp::AccountUnsub(a) => {
                        assert_eq!(dialect, Dialect::Gateway);
                        assert!(inside(taken, a) && !a.is_empty());
                    }
                    RouteOp::Ping | RouteOp::Pong | RouteOp::Ok => {}
                }
                // Statelessness: the op parses the same from a copy of just its bytes.
                let alone = taken.to_vec();
                let again = parse(&alone, max_line, max_payload, dialect).expect("same op alone");
                assert_eq!(again.map(|(_, n)| n), Some(used));
                at += used;
            }
            Ok(None) => {
                let need = needed(buf);
                assert!(
                    need == 0 || need > buf.len(),
                    "needed {need} with {} buffered",
                    buf.len()
                );
                break;
            }
            Err(_) => break,
        }
    }
});
