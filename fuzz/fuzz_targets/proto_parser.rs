//! Fuzzes the client protocol parser (`natrium::proto::parser::parse`) the way a
//! client connection's read loop drives it (src/client/conn.rs `read_loop`): bytes
//! arrive in chunks, every chunk is appended to the unconsumed rest of the previous
//! one, and `parse` is called on the front of the buffer until it answers
//! `Incomplete` or an error.
//!
//! Input layout: byte 0 chooses how the stream is cut into chunks, byte 1 chooses
//! the limits (the defaults, or tiny ones so the limit checks are reached with short
//! inputs), the rest is the byte stream a client sends.
//!
//! Besides "no panic", it checks what the read loop relies on:
//! * the parser is stateless: cutting the stream anywhere gives the same ops, at the
//!   same offsets, and the same final outcome as parsing the whole stream at once
//!   (a partial op is `Incomplete`, never a different op or a spurious error);
//! * `used` is in `1..=buf.len()`; `Incomplete { need }` is 0 or more than what is
//!   buffered, and bounded by the limits (the read loop allocates `need` bytes);
//! * ops respect the limits and their documented shape.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natrium::proto::parser::{parse, Limits, Op, Parsed, ProtoError};

/// How the stream ended: an error at an offset, or an incomplete op (maybe empty)
/// starting at an offset.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Err(usize, ProtoError),
    Incomplete(usize),
}

fn limits(b: u8) -> Limits {
    let mut l = Limits::default();
    if b & 1 == 1 {
        l.max_control_line = ((b >> 1) & 0x1f) as usize; // 0..=31
    }
    if b & 0x40 != 0 {
        l.max_payload = (b as usize & 0x0f) * 3; // 0..=45
    }
    l
}

/// Chunk lengths for a stream of `len` bytes, chosen by `ctl`.
fn chunks(ctl: u8, len: usize) -> Vec<usize> {
    let mut out = Vec::new();
    if len == 0 {
        return out;
    }
    match ctl & 3 {
        // One cut at a position proportional to ctl.
        0 => {
            let at = (len * (ctl >> 2) as usize) / 63;
            out.extend([at, len - at].into_iter().filter(|&n| n > 0));
        }
        // Fixed-size chunks of 1..=64 bytes (byte by byte only for short streams,
        // as each call rescans the buffered partial op).
        1 => {
            let mut size = (ctl >> 2) as usize + 1;
            if len > 1024 {
                size = size.max(16);
            }
            let mut left = len;
            while left > 0 {
                let n = size.min(left);
                out.push(n);
                left -= n;
            }
        }
        // Pseudo-random sizes (xorshift seeded by ctl), 1..=32 bytes.
        _ => {
            let mut x = u32::from(ctl) | 0x9e37_7900;
            let mut left = len;
            while left > 0 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let n = ((x % 32) as usize + 1).min(left);
                out.push(n);
                left -= n;
            }
        }
    }
    out
}

/// Checks one parse answer for `buf`; returns the op (and `used`) or the end.
fn check<'a>(
    buf: &'a [u8],
    r: Result<Parsed<'a>, ProtoError>,
    l: &Limits,
) -> Result<(Op<'a>, usize), Option<ProtoError>> {
    match r {
        Ok(Parsed::Op(op, used)) => {
            assert!(
                used >= 1 && used <= buf.len(),
                "used {used} of {}",
                buf.len()
            );
            check_op(&op, l);
            Ok((op, used))
        }
        Ok(Parsed::Incomplete { need }) => {
            assert!(
                need == 0 || need > buf.len(),
                "need {need} with {} buffered",
                buf.len()
            );
            // op name (<= 7) + separators (<= mcl) + argument (<= mcl) + CRLF, then
            // payload + CRLF: the read loop allocates this much.
            let bound = 2 * l.max_control_line + l.max_payload + 11;
            assert!(need <= bound, "need {need} > bound {bound}");
            Err(None)
        }
        Err(e) => Err(Some(e)),
    }
}

fn check_op(op: &Op<'_>, l: &Limits) {
    let fields_ok = |f: &[u8], ws: &[u8]| !f.is_empty() && !f.iter().any(|b| ws.contains(b));
    match op {
        Op::Pub {
            subject,
            reply,
            header_len,
            payload,
        } => {
            assert!(payload.len() <= l.max_payload);
            assert!(fields_ok(subject, b" \t"));
            assert!(reply.is_none_or(|r| fields_ok(r, b" \t")));
            assert!(header_len.is_none_or(|h| h <= payload.len()));
            assert!(subject.len() <= l.max_control_line);
        }
        Op::Sub {
            subject,
            queue,
            sid,
        } => {
            assert!(fields_ok(subject, b" \t\r\n"));
            assert!(queue.is_none_or(|q| fields_ok(q, b" \t\r\n")));
            assert!(fields_ok(sid, b" \t\r\n"));
            assert!(subject.len() <= l.max_control_line);
        }
        Op::Unsub { sid, max } => {
            assert!(fields_ok(sid, b" \t\r\n"));
            assert!(max.is_none_or(|m| m <= 999_999_999));
        }
        Op::Connect(a) | Op::Info(a) | Op::Err(a) => {
            assert!(a.len() <= l.max_control_line);
        }
        Op::Ping | Op::Pong | Op::Ok => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let ctl = data[0];
    let l = limits(data[1]);
    let stream = &data[2..];

    // Reference: the whole stream at once.
    let mut whole: Vec<(usize, Op<'_>, usize)> = Vec::new();
    let mut at = 0;
    let whole_end = loop {
        let buf = &stream[at..];
        match check(buf, parse(buf, &l), &l) {
            Ok((op, used)) => {
                whole.push((at, op, used));
                at += used;
            }
            Err(None) => break End::Incomplete(at),
            Err(Some(e)) => break End::Err(at, e),
        }
    };

    // The read loop: chunks appended to the carried-over partial op.
    let mut rbuf: Vec<u8> = Vec::new();
    let mut base = 0; // stream offset of rbuf[0]
    let mut k = 0; // ops seen so far
    let mut end = None;
    'read: for n in chunks(ctl, stream.len()) {
        rbuf.extend_from_slice(&stream[base + rbuf.len()..base + rbuf.len() + n]);
        let mut pos = 0;
        while pos < rbuf.len() {
            let buf = &rbuf[pos..];
            match check(buf, parse(buf, &l), &l) {
                Ok((op, used)) => {
                    let (wat, wop, wused) = whole.get(k).unwrap_or_else(|| {
                        panic!(
                            "extra op {op:?} at {} (whole ended {whole_end:?})",
                            base + pos
                        )
                    });
                    assert_eq!(
                        (base + pos, &op, used),
                        (*wat, wop, *wused),
                        "chunked op differs from whole-stream op"
                    );
                    k += 1;
                    pos += used;
                }
                Err(None) => break,
                Err(Some(e)) => {
                    end = Some(End::Err(base + pos, e));
                    break 'read;
                }
            }
        }
        rbuf.drain(..pos);
        base += pos;
    }
    let end = end.unwrap_or(End::Incomplete(base));
    assert_eq!(k, whole.len(), "chunked saw fewer ops");
    assert_eq!(end, whole_end, "chunked stream ended differently");
});
