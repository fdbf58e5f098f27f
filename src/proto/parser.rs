//! Zero-copy, stateless parser for the NATS client protocol (client → server direction).
//!
//! [`parse`] looks at the front of a byte buffer and returns either one complete
//! operation together with the number of bytes it occupies, an indication that more
//! bytes are needed, or a protocol error. It keeps no state between calls: the
//! connection's read loop calls it repeatedly on its buffered bytes, discarding the
//! consumed prefix after each returned op. Every slice in the returned [`Op`] borrows
//! from the input buffer and `parse` never allocates.
//!
//! Behaviour follows nats-server 2.15.x byte-for-byte where that is observable
//! (checked live against the reference binary), including these quirks:
//!
//! * Op names are case-insensitive. The first byte of the buffer must start an op
//!   (leading whitespace or an empty line is `UnknownOp`), and an unknown op is reported
//!   as soon as the buffered bytes can no longer be the prefix of a valid op, without
//!   waiting for a newline.
//! * A control line ends at `\n`; a preceding `\r` is dropped. Quirk kept from the
//!   reference: if *any* `\r` occurs in the argument after its first byte, the last byte
//!   before the `\n` is dropped (so `SUB foo 1\rx\n` subscribes `foo` with sid `1`).
//! * PUB/HPUB/SUB/UNSUB/HMSG/-ERR need a space or tab after the op name; CONNECT and
//!   INFO take everything after the name (leading spaces/tabs skipped) as argument;
//!   PING/PONG/+OK ignore every byte up to `\n`.
//! * The argument starts at the first byte after the op name that is not a space/tab,
//!   even when that byte is `\r` or `\n` (so `SUB \nfoo 1\n` is `SUB foo 1`).
//! * SUB/UNSUB split arguments on space, tab, `\r` and `\n`; PUB/HPUB only on space
//!   and tab.
//! * The max control line limit applies to the argument (from its first byte to the
//!   end of the line, trailing whitespace included, `\r` excluded): `len > max` is an
//!   error, also while the line is still partial.
//! * Client-sent `MSG` (and `RS+`, `LS+`, `A+`, ...) is rejected at its first byte;
//!   client-sent `HMSG` is only rejected once its control line is complete.
//!
//! Deliberate deviations (the reference is stateful and can discard bytes as it reads
//! them; a stateless parser would have to buffer them without bound): a run of more
//! than `max_control_line` spaces/tabs between an op name and its argument, and more
//! than `max_control_line` bytes of junk after `PING`/`PONG`/`+OK`, are reported as
//! [`ProtoError::MaxControlLine`]. nats-server accepts both.

use std::fmt;

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum length of a control line's argument part (default 4096).
    pub max_control_line: usize,
    /// Maximum PUB/HPUB total payload size (default 1 MiB).
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_line: 4096,
            max_payload: 1_048_576,
        }
    }
}

/// One client protocol operation. All slices borrow from the parsed buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `CONNECT <json>`: the argument, trailing whitespace trimmed (may be empty).
    /// The server decides validity (invalid JSON closes silently).
    Connect(&'a [u8]),
    /// `PUB` (`header_len == None`) or `HPUB` (`header_len == Some(n)`, `payload` holds
    /// headers followed by the body, `n` = header bytes).
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        header_len: Option<usize>,
        payload: &'a [u8],
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    /// `UNSUB <sid> [max]`; a max that is given but not a valid size (1..9 ASCII
    /// digits) is reported as `Some(0)` (nats-server unsubscribes immediately).
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// Client-sent `INFO <json>`: the argument, trailing whitespace trimmed. nats-server
    /// unmarshals it and closes the connection silently if that fails (e.g. `INFO x`,
    /// `INFO []`, bare `INFO`); `{}` / `null` are accepted and ignored.
    Info(&'a [u8]),
    /// Client-sent `+OK` (ignored by the server).
    Ok,
    /// Client-sent `-ERR <text>`: the server closes the connection silently.
    Err(&'a [u8]),
}

/// Result of a successful [`parse`] call.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// One complete op and the number of bytes it used from the front of the buffer.
    Op(Op<'a>, usize),
    /// Not enough bytes yet. `need` = total bytes this op will occupy when known
    /// (control line + payload + 2), else 0.
    Incomplete { need: usize },
}

/// Protocol violations. All of them close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// `-ERR 'Unknown Protocol Operation'` + close.
    UnknownOp,
    /// `-ERR 'maximum control line exceeded'` + close.
    MaxControlLine,
    /// `-ERR 'Maximum Payload Violation'` + close.
    MaxPayload,
    /// Close without `-ERR` (wrong arg count, bad size, hdr > total, ...).
    BadArgs,
}

impl ProtoError {
    /// The text inside `-ERR '...'`, `None` when the server closes silently.
    pub fn err_text(self) -> Option<&'static str> {
        match self {
            ProtoError::UnknownOp => Some("Unknown Protocol Operation"),
            ProtoError::MaxControlLine => Some("maximum control line exceeded"),
            ProtoError::MaxPayload => Some("Maximum Payload Violation"),
            ProtoError::BadArgs => None,
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.err_text() {
            Some(t) => f.write_str(t),
            None => f.write_str("protocol argument error"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Parses a size field as nats-server does: 1..=9 ASCII digits, nothing else.
pub fn parse_size(d: &[u8]) -> Option<usize> {
    if d.is_empty() || d.len() > 9 {
        return None;
    }
    let mut n = 0usize;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Some(n)
}

#[inline]
fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

const INCOMPLETE: Result<Parsed<'static>, ProtoError> = Ok(Parsed::Incomplete { need: 0 });

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pub,
    Hpub,
    Sub,
    Unsub,
    Hmsg,
    Connect,
    Info,
    Err,
    Ping,
    Pong,
    Ok,
}

/// Outcome of matching the op name at the front of the buffer.
enum Name {
    Known(Kind, usize),
    Incomplete,
}

/// Case-insensitive match of `name` against the front of `buf`.
/// `Ok(true)`: full match; `Ok(false)`: `buf` is a proper prefix; `Err`: mismatch.
#[inline]
fn match_name(buf: &[u8], name: &[u8]) -> Result<bool, ProtoError> {
    let n = buf.len().min(name.len());
    if buf[..n]
        .iter()
        .zip(name)
        .all(|(a, b)| a.to_ascii_uppercase() == *b)
    {
        Ok(n == name.len())
    } else {
        Err(ProtoError::UnknownOp)
    }
}

fn op_name(buf: &[u8]) -> Result<Name, ProtoError> {
    let (kind, name): (Kind, &[u8]) = match buf[0].to_ascii_uppercase() {
        b'P' => match buf.get(1).map(u8::to_ascii_uppercase) {
            None => return Ok(Name::Incomplete),
            Some(b'U') => (Kind::Pub, b"PUB"),
            Some(b'I') => (Kind::Ping, b"PING"),
            Some(b'O') => (Kind::Pong, b"PONG"),
            Some(_) => return Err(ProtoError::UnknownOp),
        },
        b'H' => match buf.get(1).map(u8::to_ascii_uppercase) {
            None => return Ok(Name::Incomplete),
            Some(b'P') => (Kind::Hpub, b"HPUB"),
            Some(b'M') => (Kind::Hmsg, b"HMSG"),
            Some(_) => return Err(ProtoError::UnknownOp),
        },
        b'S' => (Kind::Sub, b"SUB"),
        b'U' => (Kind::Unsub, b"UNSUB"),
        b'C' => (Kind::Connect, b"CONNECT"),
        b'I' => (Kind::Info, b"INFO"),
        b'+' => (Kind::Ok, b"+OK"),
        b'-' => (Kind::Err, b"-ERR"),
        _ => return Err(ProtoError::UnknownOp),
    };
    if match_name(buf, name)? {
        Ok(Name::Known(kind, name.len()))
    } else {
        Ok(Name::Incomplete)
    }
}

/// Splits `arg` into at most `N` fields; returns `None` when there are more.
#[inline]
fn split<const N: usize>(arg: &[u8], ws: fn(u8) -> bool) -> Option<([&[u8]; N], usize)> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    let mut start: Option<usize> = None;
    for (i, &b) in arg.iter().enumerate() {
        if ws(b) {
            if let Some(s) = start.take() {
                if n == N {
                    return None;
                }
                out[n] = &arg[s..i];
                n += 1;
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        if n == N {
            return None;
        }
        out[n] = &arg[s..];
        n += 1;
    }
    Some((out, n))
}

#[inline]
fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Parses one operation from the front of `buf`.
///
/// Returns `Ok(Parsed::Op(op, used))` for a complete op (`used` bytes, including the
/// line terminator and any payload with its trailing `\r\n`), `Ok(Parsed::Incomplete)`
/// when more bytes are needed, or the protocol error the server must act on.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ProtoError> {
    if buf.is_empty() {
        return INCOMPLETE;
    }
    let (kind, nlen) = match op_name(buf)? {
        Name::Known(k, n) => (k, n),
        Name::Incomplete => return INCOMPLETE,
    };
    let mcl = limits.max_control_line;

    // Ops that ignore everything up to the newline.
    if matches!(kind, Kind::Ping | Kind::Pong | Kind::Ok) {
        return match memchr::memchr(b'\n', &buf[nlen..]) {
            Some(j) if j <= mcl => {
                let op = match kind {
                    Kind::Ping => Op::Ping,
                    Kind::Pong => Op::Pong,
                    _ => Op::Ok,
                };
                Ok(Parsed::Op(op, nlen + j + 1))
            }
            Some(_) => Err(ProtoError::MaxControlLine),
            None if buf.len() - nlen > mcl => Err(ProtoError::MaxControlLine),
            None => INCOMPLETE,
        };
    }

    // Separator after the name: required for most ops, optional for CONNECT/INFO.
    let mut pos = nlen;
    if !matches!(kind, Kind::Connect | Kind::Info) {
        match buf.get(pos) {
            None => return INCOMPLETE,
            Some(&b) if is_sep(b) => pos += 1,
            Some(_) => return Err(ProtoError::UnknownOp),
        }
    }
    let as_ = match buf[pos..].iter().position(|&b| !is_sep(b)) {
        Some(k) => pos + k,
        None => {
            return if buf.len() - nlen > mcl {
                Err(ProtoError::MaxControlLine)
            } else {
                INCOMPLETE
            };
        }
    };
    if as_ - nlen > mcl {
        return Err(ProtoError::MaxControlLine);
    }

    // The argument's first byte is taken verbatim (even `\r` / `\n`); the line ends
    // at the next `\n`.
    let nl = match memchr::memchr(b'\n', &buf[as_ + 1..]) {
        Some(k) => as_ + 1 + k,
        None => {
            let drop = memchr::memchr(b'\r', &buf[as_ + 1..]).is_some() as usize;
            return if buf.len() - as_ - drop > mcl {
                Err(ProtoError::MaxControlLine)
            } else {
                INCOMPLETE
            };
        }
    };
    let drop = memchr::memchr(b'\r', &buf[as_ + 1..nl]).is_some() as usize;
    let arg = &buf[as_..nl - drop];
    if arg.len() > mcl {
        return Err(ProtoError::MaxControlLine);
    }
    let used = nl + 1;

    let op = match kind {
        Kind::Connect => Op::Connect(trim_end(arg)),
        Kind::Info => Op::Info(trim_end(arg)),
        Kind::Err => Op::Err(trim_end(arg)),
        Kind::Hmsg => return Err(ProtoError::UnknownOp),
        Kind::Sub => {
            let (a, n) = split::<3>(arg, is_ws).ok_or(ProtoError::BadArgs)?;
            match n {
                2 => Op::Sub {
                    subject: a[0],
                    queue: None,
                    sid: a[1],
                },
                3 => Op::Sub {
                    subject: a[0],
                    queue: Some(a[1]),
                    sid: a[2],
                },
                _ => return Err(ProtoError::BadArgs),
            }
        }
        Kind::Unsub => {
            let (a, n) = split::<2>(arg, is_ws).ok_or(ProtoError::BadArgs)?;
            match n {
                1 => Op::Unsub {
                    sid: a[0],
                    max: None,
                },
                2 => Op::Unsub {
                    sid: a[0],
                    max: Some(parse_size(a[1]).unwrap_or(0) as u64),
                },
                _ => return Err(ProtoError::BadArgs),
            }
        }
        Kind::Pub | Kind::Hpub => {
            let (subject, reply, header_len, size) = if kind == Kind::Pub {
                let (a, n) = split::<3>(arg, is_sep).ok_or(ProtoError::BadArgs)?;
                let (subject, reply, sz) = match n {
                    2 => (a[0], None, a[1]),
                    3 => (a[0], Some(a[1]), a[2]),
                    _ => return Err(ProtoError::BadArgs),
                };
                let size = parse_size(sz).ok_or(ProtoError::BadArgs)?;
                (subject, reply, None, size)
            } else {
                let (a, n) = split::<4>(arg, is_sep).ok_or(ProtoError::BadArgs)?;
                let (subject, reply, h, t) = match n {
                    3 => (a[0], None, a[1], a[2]),
                    4 => (a[0], Some(a[1]), a[2], a[3]),
                    _ => return Err(ProtoError::BadArgs),
                };
                let hdr = parse_size(h).ok_or(ProtoError::BadArgs)?;
                let size = parse_size(t).ok_or(ProtoError::BadArgs)?;
                if hdr > size {
                    return Err(ProtoError::BadArgs);
                }
                (subject, reply, Some(hdr), size)
            };
            if size > limits.max_payload {
                return Err(ProtoError::MaxPayload);
            }
            let end = used + size; // index of the '\r' after the payload
            let need = end + 2;
            if let Some(&b) = buf.get(end) {
                if b != b'\r' {
                    return Err(ProtoError::UnknownOp);
                }
            }
            match buf.get(end + 1) {
                None => return Ok(Parsed::Incomplete { need }),
                Some(&b'\n') => {}
                Some(_) => return Err(ProtoError::UnknownOp),
            }
            return Ok(Parsed::Op(
                Op::Pub {
                    subject,
                    reply,
                    header_len,
                    payload: &buf[used..end],
                },
                need,
            ));
        }
        // Handled before the argument scan; kept total so this can never panic.
        Kind::Ping => Op::Ping,
        Kind::Pong => Op::Pong,
        Kind::Ok => Op::Ok,
    };
    Ok(Parsed::Op(op, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_control_line: 4096,
        max_payload: 1_048_576,
    };

    fn p(b: &[u8]) -> Result<Parsed<'_>, ProtoError> {
        parse(b, &L)
    }

    #[track_caller]
    fn one(b: &[u8]) -> Op<'_> {
        match p(b) {
            Ok(Parsed::Op(op, n)) => {
                assert_eq!(n, b.len(), "op should consume whole input {:?}", b);
                op
            }
            other => panic!("expected op for {:?}, got {:?}", b, other),
        }
    }

    #[track_caller]
    fn err(b: &[u8]) -> ProtoError {
        match p(b) {
            Err(e) => e,
            other => panic!("expected error for {:?}, got {:?}", b, other),
        }
    }

    #[track_caller]
    fn inc(b: &[u8]) -> usize {
        match p(b) {
            Ok(Parsed::Incomplete { need }) => need,
            other => panic!("expected incomplete for {:?}, got {:?}", b, other),
        }
    }

    fn sub<'a>(subject: &'a [u8], queue: Option<&'a [u8]>, sid: &'a [u8]) -> Op<'a> {
        Op::Sub {
            subject,
            queue,
            sid,
        }
    }

    fn pub_<'a>(subject: &'a [u8], reply: Option<&'a [u8]>, payload: &'a [u8]) -> Op<'a> {
        Op::Pub {
            subject,
            reply,
            header_len: None,
            payload,
        }
    }

    fn hpub<'a>(subject: &'a [u8], reply: Option<&'a [u8]>, h: usize, payload: &'a [u8]) -> Op<'a> {
        Op::Pub {
            subject,
            reply,
            header_len: Some(h),
            payload,
        }
    }

    use ProtoError::*;

    // ---------------------------------------------------------------- basics

    #[test]
    fn defaults_and_err_text() {
        let d = Limits::default();
        assert_eq!(d.max_control_line, 4096);
        assert_eq!(d.max_payload, 1_048_576);
        assert_eq!(UnknownOp.err_text(), Some("Unknown Protocol Operation"));
        assert_eq!(
            MaxControlLine.err_text(),
            Some("maximum control line exceeded")
        );
        assert_eq!(MaxPayload.err_text(), Some("Maximum Payload Violation"));
        assert_eq!(BadArgs.err_text(), None);
        assert_eq!(UnknownOp.to_string(), "Unknown Protocol Operation");
    }

    #[test]
    fn empty_is_incomplete() {
        assert_eq!(inc(b""), 0);
    }

    #[test]
    fn ping_pong_ok() {
        assert_eq!(one(b"PING\r\n"), Op::Ping);
        assert_eq!(one(b"PONG\r\n"), Op::Pong);
        assert_eq!(one(b"+OK\r\n"), Op::Ok);
        assert_eq!(one(b"PING\n"), Op::Ping);
        assert_eq!(one(b"ping\r\n"), Op::Ping);
        assert_eq!(one(b"PiNg\r\n"), Op::Ping);
        assert_eq!(one(b"pong\n"), Op::Pong);
        assert_eq!(one(b"+ok\r\n"), Op::Ok);
        // Everything up to '\n' is ignored.
        assert_eq!(one(b"PINGX\r\n"), Op::Ping);
        assert_eq!(one(b"PING junk\r\n"), Op::Ping);
        assert_eq!(one(b"PING\rPING\r\n"), Op::Ping);
        assert_eq!(one(b"+OKX\r\n"), Op::Ok);
        assert_eq!(one(b"PONG \t\r\n"), Op::Pong);
        for part in [
            &b"P"[..],
            b"PI",
            b"PIN",
            b"PING",
            b"PING\r",
            b"PO",
            b"PONG x",
            b"+",
            b"+O",
            b"+OK",
        ] {
            assert_eq!(inc(part), 0, "{:?}", part);
        }
    }

    #[test]
    fn multiple_ops_consumed_in_order() {
        let s = b"PING\r\nPONG\nSUB foo 1\r\nPUB foo 2\r\nhi\r\n+OK\r\n";
        let mut rest = &s[..];
        let mut ops = Vec::new();
        while !rest.is_empty() {
            match p(rest).unwrap() {
                Parsed::Op(op, n) => {
                    ops.push(format!("{:?}", op));
                    rest = &rest[n..];
                }
                Parsed::Incomplete { .. } => panic!("incomplete"),
            }
        }
        assert_eq!(ops.len(), 5);
        assert_eq!(p(b"PING\r\nX").unwrap(), Parsed::Op(Op::Ping, 6));
        assert_eq!(err(b"X"), UnknownOp);
    }

    // ---------------------------------------------------------------- unknown ops

    #[test]
    fn unknown_first_byte_is_immediate() {
        for b in 0u8..=255 {
            let ok_start = matches!(
                b.to_ascii_uppercase(),
                b'P' | b'H' | b'S' | b'U' | b'C' | b'I' | b'+' | b'-'
            );
            let one_byte = [b];
            let r = p(&one_byte);
            if ok_start {
                assert_eq!(r, Ok(Parsed::Incomplete { need: 0 }), "byte {}", b);
            } else {
                assert_eq!(r, Err(UnknownOp), "byte {}", b);
            }
        }
    }

    #[test]
    fn leading_whitespace_and_blank_lines() {
        for s in [
            &b" PING\r\n"[..],
            b"\tPING\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
        ] {
            assert_eq!(err(s), UnknownOp, "{:?}", s);
        }
    }

    #[test]
    fn server_only_ops_rejected() {
        // Rejected at their first byte, like nats-server.
        for s in [
            &b"M"[..],
            b"m",
            b"MSG",
            b"MSG foo 1 2\r\nhi\r\n",
            b"R",
            b"RS+ foo\r\n",
            b"RS- foo\r\n",
            b"L",
            b"LS+ foo\r\n",
            b"LS- foo\r\n",
            b"A",
            b"A+ foo\r\n",
            b"A- foo\r\n",
            b"a",
            b"r",
            b"l",
        ] {
            assert_eq!(err(s), UnknownOp, "{:?}", s);
        }
        // HMSG is only rejected once its control line is complete.
        for s in [
            &b"H"[..],
            b"HM",
            b"HMS",
            b"HMSG",
            b"HMSG ",
            b"HMSG foo 1 2 2",
            b"hmsg\tx",
        ] {
            assert_eq!(inc(s), 0, "{:?}", s);
        }
        for s in [
            &b"HMSG foo 1 2 2\r\n"[..],
            b"HMSG \r\n",
            b"HMSG\tx\n",
            b"hmsg a\r\n",
        ] {
            assert_eq!(err(s), UnknownOp, "{:?}", s);
        }
        for s in [&b"HMSGX"[..], b"HMSG\r\n", b"HX", b"HMX", b"HPX"] {
            assert_eq!(err(s), UnknownOp, "{:?}", s);
        }
    }

    #[test]
    fn unknown_detected_before_newline() {
        for s in [
            &b"PX"[..],
            b"PUX",
            b"PUBX",
            b"PIX",
            b"PINX",
            b"POX",
            b"PONX",
            b"SX",
            b"SUX",
            b"SUBX",
            b"UX",
            b"UNSUX",
            b"UNSUBX",
            b"CX",
            b"CONNEX",
            b"IX",
            b"INFX",
            b"+X",
            b"+OX",
            b"-X",
            b"-EX",
            b"-ERX",
            b"-ERRX",
            b"HPUX",
            b"HPUBX",
        ] {
            assert_eq!(err(s), UnknownOp, "{:?}", s);
        }
        // Separator required after PUB/HPUB/SUB/UNSUB/-ERR.
        for s in [
            &b"PUBfoo 1\r\n"[..],
            b"PUB\r\n",
            b"PUB\n",
            b"SUB\r\n",
            b"UNSUB\r\n",
            b"HPUB\r\n",
            b"-ERR\r\n",
            b"-ERR'x'\r\n",
        ] {
            assert_eq!(err(s), UnknownOp, "{:?}", s);
        }
    }

    #[test]
    fn op_name_prefixes_incomplete() {
        for name in [
            "PUB ", "HPUB ", "SUB ", "UNSUB ", "CONNECT", "INFO", "-ERR ", "PING", "PONG", "+OK",
        ] {
            for k in 1..=name.len() {
                assert_eq!(inc(&name.as_bytes()[..k]), 0, "{:?}", &name[..k]);
                let lower = name.to_ascii_lowercase();
                assert_eq!(inc(&lower.as_bytes()[..k]), 0, "{:?}", &lower[..k]);
            }
        }
    }

    // ---------------------------------------------------------------- CONNECT / INFO / -ERR

    #[test]
    fn connect_ops() {
        assert_eq!(one(b"CONNECT {}\r\n"), Op::Connect(b"{}"));
        assert_eq!(
            one(b"connect {\"verbose\":false}\n"),
            Op::Connect(b"{\"verbose\":false}")
        );
        assert_eq!(one(b"CONNECT{}\r\n"), Op::Connect(b"{}"));
        assert_eq!(one(b"CONNECT \t {} \t \r\n"), Op::Connect(b"{}"));
        assert_eq!(one(b"CONNECT\r\n"), Op::Connect(b""));
        assert_eq!(one(b"CONNECT \r\n"), Op::Connect(b""));
        assert_eq!(one(b"CONNECT\t\t\n\n"), Op::Connect(b""));
        assert_eq!(one(b"CONNECTX\r\n"), Op::Connect(b"X"));
        assert_eq!(one(b"CONNECT a b c\r\n"), Op::Connect(b"a b c"));
        // First argument byte may be '\n' (nats-server: `CONNECT\n{}\n` works).
        assert_eq!(one(b"CONNECT\n{}\n"), Op::Connect(b"\n{}"));
        assert_eq!(one(b"CONNECT \r{}\n"), Op::Connect(b"\r{}"));
        // '\r' inside the argument: the byte before '\n' is dropped.
        assert_eq!(one(b"CONNECT {}\rjunk\n"), Op::Connect(b"{}\rjun"));
        assert_eq!(inc(b"CONNECT"), 0);
        assert_eq!(inc(b"CONNECT\n"), 0);
        assert_eq!(inc(b"CONNECT {}"), 0);
        assert_eq!(inc(b"CONNECT {}\r"), 0);
    }

    #[test]
    fn info_and_err() {
        assert_eq!(one(b"INFO {}\r\n"), Op::Info(b"{}"));
        assert_eq!(one(b"INFO{}\r\n"), Op::Info(b"{}"));
        assert_eq!(one(b"info null \r\n"), Op::Info(b"null"));
        assert_eq!(one(b"INFO\r\n"), Op::Info(b""));
        assert_eq!(one(b"INFOX\r\n"), Op::Info(b"X"));
        assert_eq!(one(b"INFO \t{} \t\r\n"), Op::Info(b"{}"));
        assert_eq!(one(b"-ERR 'x'\r\n"), Op::Err(b"'x'"));
        assert_eq!(one(b"-err\t'x y'\t\n"), Op::Err(b"'x y'"));
        assert_eq!(one(b"-ERR \r\n"), Op::Err(b""));
        assert_eq!(inc(b"-ERR"), 0);
        assert_eq!(inc(b"-ERR "), 0);
        assert_eq!(inc(b"INFO {"), 0);
    }

    // ---------------------------------------------------------------- SUB / UNSUB

    #[test]
    fn sub_ops() {
        assert_eq!(one(b"SUB foo 1\r\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"sub foo q 1\r\n"), sub(b"foo", Some(b"q"), b"1"));
        assert_eq!(one(b"Sub\tfoo\t 1\n"), sub(b"foo", None, b"1"));
        assert_eq!(
            one(b"SUB foo  \t q \t 1  \t\r\n"),
            sub(b"foo", Some(b"q"), b"1")
        );
        assert_eq!(one(b"SUB    foo 1\r\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"SUB f\x00o 1\r\n"), sub(b"f\x00o", None, b"1"));
        assert_eq!(
            one(b"SUB foo.* q.> 1\r\n"),
            sub(b"foo.*", Some(b"q.>"), b"1")
        );
        let long = [b'9'; 4000];
        let mut line = b"SUB foo ".to_vec();
        line.extend_from_slice(&long);
        line.extend_from_slice(b"\r\n");
        assert_eq!(one(&line), sub(b"foo", None, &long));
        for s in [
            &b"SUB foo\r\n"[..],
            b"SUB \r\n",
            b"SUB  \t \r\n",
            b"SUB a b c d\r\n",
            b"SUB a b c d e\r\n",
        ] {
            assert_eq!(err(s), BadArgs, "{:?}", s);
        }
        for s in [
            &b"SUB"[..],
            b"SUB ",
            b"SUB foo",
            b"SUB foo 1",
            b"SUB foo 1\r",
            b"SUB \n",
            b"SUB \r",
        ] {
            assert_eq!(inc(s), 0, "{:?}", s);
        }
    }

    #[test]
    fn sub_cr_quirks() {
        // Verified on nats-server 2.15.1 (whole-buffer reads).
        assert_eq!(one(b"SUB foo\rx 1\n"), sub(b"foo", None, b"x"));
        assert_eq!(one(b"SUB foo 1\rx\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"SUB foo 1\rxy\n"), sub(b"foo", Some(b"1"), b"x"));
        assert_eq!(one(b"SUB foo 1\r\r\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"SUB \nfoo 1\r\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"SUB \rfoo 1\n"), sub(b"foo", None, b"1"));
        assert_eq!(err(b"SUB \nPING\r\n"), BadArgs);
    }

    #[test]
    fn unsub_ops() {
        assert_eq!(
            one(b"UNSUB 1\r\n"),
            Op::Unsub {
                sid: b"1",
                max: None
            }
        );
        assert_eq!(
            one(b"unsub 1 5\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(5)
            }
        );
        assert_eq!(
            one(b"UNSUB\t1 \t\r\n"),
            Op::Unsub {
                sid: b"1",
                max: None
            }
        );
        assert_eq!(
            one(b"UNSUB 1 0\r\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(0)
            }
        );
        assert_eq!(
            one(b"UNSUB 1 x\r\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(0)
            }
        );
        assert_eq!(
            one(b"UNSUB 1 +5\r\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(0)
            }
        );
        assert_eq!(
            one(b"UNSUB 1 123456789\r\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(123_456_789)
            }
        );
        assert_eq!(
            one(b"UNSUB 1 1234567890\r\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(0)
            }
        );
        assert_eq!(
            one(b"UNSUB 1\r1\r\n"),
            Op::Unsub {
                sid: b"1",
                max: Some(1)
            }
        );
        for s in [&b"UNSUB \r\n"[..], b"UNSUB   \r\n", b"UNSUB 1 2 3\r\n"] {
            assert_eq!(err(s), BadArgs, "{:?}", s);
        }
    }

    // ---------------------------------------------------------------- PUB / HPUB

    #[test]
    fn pub_basic() {
        assert_eq!(one(b"PUB foo 2\r\nhi\r\n"), pub_(b"foo", None, b"hi"));
        assert_eq!(
            one(b"pub foo bar 2\r\nhi\r\n"),
            pub_(b"foo", Some(b"bar"), b"hi")
        );
        assert_eq!(one(b"PUB foo 2\nhi\r\n"), pub_(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB\tfoo\t2\t\r\nhi\r\n"), pub_(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB foo 2 \t \r\nhi\r\n"), pub_(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB foo 0\r\n\r\n"), pub_(b"foo", None, b""));
        assert_eq!(
            one(b"PUB foo 000000002\r\nhi\r\n"),
            pub_(b"foo", None, b"hi")
        );
        // Payload is opaque.
        assert_eq!(
            one(b"PUB foo 6\r\n\r\n\r\n\xff\x00\r\n"),
            pub_(b"foo", None, b"\r\n\r\n\xff\x00")
        );
        assert_eq!(one(b"PUB foo 4\r\nPING\r\n"), pub_(b"foo", None, b"PING"));
        // First argument byte may be '\n'; PUB splits on space/tab only.
        assert_eq!(one(b"PUB \nfoo 2\r\nhi\r\n"), pub_(b"\nfoo", None, b"hi"));
    }

    #[test]
    fn pub_bad_args() {
        for s in [
            &b"PUB a\r\n"[..],
            b"PUB \r\n",
            b"PUB a b c 1\r\n",
            b"PUB foo 0000000001\r\n",
            b"PUB foo 9999999999\r\n",
            b"PUB foo -1\r\n",
            b"PUB foo +2\r\n",
            b"PUB foo 2x\r\n",
            b"PUB foo 1e3\r\n",
            b"PUB foo x\r\n",
            b"PUB foo\r2\r\n",
            b"PUB foo\r2\n",
            b"PUB foo 2\rx\n",
        ] {
            assert_eq!(err(s), BadArgs, "{:?}", s);
        }
    }

    #[test]
    fn pub_payload_terminator() {
        assert_eq!(err(b"PUB foo 2\r\nhix"), UnknownOp);
        assert_eq!(err(b"PUB foo 2\r\nhix\r\n"), UnknownOp);
        assert_eq!(err(b"PUB foo 2\r\nhi\rx"), UnknownOp);
        assert_eq!(err(b"PUB foo 2\r\nhi\n\n"), UnknownOp);
        assert_eq!(err(b"PUB foo 2\r\nhi\r\r"), UnknownOp);
        assert_eq!(err(b"PUB foo 0\r\n\n"), UnknownOp);
        assert_eq!(inc(b"PUB foo 2\r\n"), 15);
        assert_eq!(inc(b"PUB foo 2\r\nh"), 15);
        assert_eq!(inc(b"PUB foo 2\r\nhi"), 15);
        assert_eq!(inc(b"PUB foo 2\r\nhi\r"), 15);
        assert_eq!(inc(b"PUB foo 2\nhi\r"), 14);
        assert_eq!(
            p(b"PUB foo 2\r\nhi\r\nPING\r\n").unwrap(),
            Parsed::Op(pub_(b"foo", None, b"hi"), 15)
        );
    }

    #[test]
    fn max_payload_boundary() {
        let mut s = b"PUB foo 1048576\r\n".to_vec();
        let hdr = s.len();
        assert_eq!(inc(&s), hdr + 1_048_576 + 2);
        s.resize(hdr + 1_048_576, b'x');
        s.extend_from_slice(b"\r\n");
        match p(&s).unwrap() {
            Parsed::Op(Op::Pub { payload, .. }, n) => {
                assert_eq!(payload.len(), 1_048_576);
                assert_eq!(n, s.len());
            }
            other => panic!("{:?}", other),
        }
        // Decided as soon as the control line is complete.
        assert_eq!(err(b"PUB foo 1048577\r\n"), MaxPayload);
        assert_eq!(err(b"PUB foo 1048577\n"), MaxPayload);
        assert_eq!(err(b"PUB foo bar 999999999\r\n"), MaxPayload);
        assert_eq!(inc(b"PUB foo 1048577"), 0);
        let small = Limits {
            max_control_line: 4096,
            max_payload: 2,
        };
        assert!(matches!(
            parse(b"PUB foo 2\r\nhi\r\n", &small),
            Ok(Parsed::Op(..))
        ));
        assert_eq!(parse(b"PUB foo 3\r\n", &small), Err(MaxPayload));
        assert_eq!(parse(b"HPUB foo 1 3\r\n", &small), Err(MaxPayload));
        assert!(matches!(
            parse(b"HPUB foo 1 2\r\nab\r\n", &small),
            Ok(Parsed::Op(..))
        ));
    }

    #[test]
    fn hpub_ops() {
        let s = b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        assert_eq!(one(s), hpub(b"foo", None, 12, b"NATS/1.0\r\n\r\nhi"));
        let s = b"hpub foo r 12 14\nNATS/1.0\r\n\r\nhi\r\n";
        assert_eq!(one(s), hpub(b"foo", Some(b"r"), 12, b"NATS/1.0\r\n\r\nhi"));
        let s = b"HPUB foo 12\t 14 \r\nNATS/1.0\r\n\r\nhi\r\n";
        assert_eq!(one(s), hpub(b"foo", None, 12, b"NATS/1.0\r\n\r\nhi"));
        assert_eq!(
            one(b"HPUB foo 14 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            hpub(b"foo", None, 14, b"NATS/1.0\r\n\r\nhi")
        );
        assert_eq!(one(b"HPUB foo 0 2\r\nhi\r\n"), hpub(b"foo", None, 0, b"hi"));
        assert_eq!(one(b"HPUB foo 0 0\r\n\r\n"), hpub(b"foo", None, 0, b""));
        assert_eq!(inc(b"HPUB foo 12 14\r\n"), 16 + 14 + 2);
        for s in [
            &b"HPUB foo 14\r\n"[..],
            b"HPUB foo 15 14\r\n",
            b"HPUB foo r x 12 14\r\n",
            b"HPUB foo\r12 14\r\n",
            b"HPUB foo 12\r14\r\n",
            b"HPUB foo x 14\r\n",
            b"HPUB foo 1 x\r\n",
            b"HPUB \r\n",
            b"HPUB foo 2000000 1048577\r\n",
            b"HPUB foo x 1048577\r\n",
            b"HPUB foo 0000000001 1\r\n",
        ] {
            assert_eq!(err(s), BadArgs, "{:?}", s);
        }
        assert_eq!(err(b"HPUB foo 10 1048577\r\n"), MaxPayload);
        assert_eq!(err(b"HPUB foo 1 2\r\nabc\r\n"), UnknownOp);
    }

    // ---------------------------------------------------------------- control line

    fn line(op: &str, arg_len: usize, term: &[u8]) -> Vec<u8> {
        let mut v = op.as_bytes().to_vec();
        let start = v.len();
        v.extend_from_slice(b"foo ");
        while v.len() - start < arg_len {
            v.push(b'x');
        }
        v.extend_from_slice(term);
        v
    }

    #[test]
    fn max_control_line_boundary_sub() {
        for term in [&b"\r\n"[..], b"\n"] {
            assert!(matches!(
                p(&line("SUB ", 4096, term)),
                Ok(Parsed::Op(Op::Sub { .. }, _))
            ));
            assert_eq!(p(&line("SUB ", 4097, term)), Err(MaxControlLine));
            assert!(matches!(
                p(&line("SUB      ", 4096, term)),
                Ok(Parsed::Op(..))
            ));
            assert_eq!(p(&line("SUB \t ", 4097, term)), Err(MaxControlLine));
        }
        // Trailing spaces count.
        let mut v = line("SUB ", 4095, b" \r\n");
        assert!(matches!(p(&v), Ok(Parsed::Op(..))));
        v = line("SUB ", 4096, b" \r\n");
        assert_eq!(p(&v), Err(MaxControlLine));
        // Partial lines.
        assert_eq!(
            p(&line("SUB ", 4096, b"")),
            Ok(Parsed::Incomplete { need: 0 })
        );
        assert_eq!(p(&line("SUB ", 4097, b"")), Err(MaxControlLine));
        assert_eq!(
            p(&line("SUB ", 4096, b"\r")),
            Ok(Parsed::Incomplete { need: 0 })
        );
    }

    #[test]
    fn max_control_line_all_arg_ops() {
        for op in [
            "PUB ", "HPUB ", "SUB ", "UNSUB ", "CONNECT ", "CONNECT", "INFO ", "INFO", "-ERR ",
            "HMSG ", "pub\t",
        ] {
            assert_eq!(p(&line(op, 4097, b"\r\n")), Err(MaxControlLine), "{op}");
            assert_eq!(p(&line(op, 4097, b"")), Err(MaxControlLine), "{op}");
            assert_eq!(
                p(&line(op, 4096, b"")),
                Ok(Parsed::Incomplete { need: 0 }),
                "{op}"
            );
        }
        assert!(matches!(
            p(&line("CONNECT ", 4096, b"\r\n")),
            Ok(Parsed::Op(Op::Connect(_), _))
        ));
        assert!(matches!(
            p(&line("INFO ", 4096, b"\r\n")),
            Ok(Parsed::Op(Op::Info(_), _))
        ));
        assert!(matches!(
            p(&line("-ERR ", 4096, b"\r\n")),
            Ok(Parsed::Op(Op::Err(_), _))
        ));
        assert_eq!(p(&line("HMSG ", 4096, b"\r\n")), Err(UnknownOp));
        // PUB: `foo xxx...` is one arg too few, so BadArgs at the boundary.
        assert_eq!(p(&line("PUB ", 4096, b"\r\n")), Err(BadArgs));
        let mut v = b"PUB ".to_vec();
        v.resize(4 + 4094, b'x');
        v.extend_from_slice(b" 0\r\n\r\n");
        assert!(matches!(p(&v), Ok(Parsed::Op(Op::Pub { .. }, _))));
        let mut v = b"PUB ".to_vec();
        v.resize(4 + 4095, b'x');
        v.extend_from_slice(b" 0\r\n\r\n");
        assert_eq!(p(&v), Err(MaxControlLine));
    }

    #[test]
    fn max_control_line_small_limit_and_cr_quirk() {
        let lim = Limits {
            max_control_line: 8,
            max_payload: 100,
        };
        assert!(matches!(
            parse(b"SUB abcd 123\r\n", &lim),
            Ok(Parsed::Op(..))
        ));
        assert_eq!(parse(b"SUB abcd 1234\r\n", &lim), Err(MaxControlLine));
        assert_eq!(parse(b"SUB abcd 1234", &lim), Err(MaxControlLine));
        assert_eq!(
            parse(b"SUB abcd 123", &lim),
            Ok(Parsed::Incomplete { need: 0 })
        );
        // A '\r' after the first arg byte drops one byte from the measured length.
        assert!(matches!(
            parse(b"SUB abcd\r1234\n", &lim),
            Ok(Parsed::Op(..))
        ));
        assert_eq!(
            parse(b"SUB abcd\r1234", &lim),
            Ok(Parsed::Incomplete { need: 0 })
        );
        assert_eq!(parse(b"SUB abcd\r12345", &lim), Err(MaxControlLine));
        // PUB payload is not part of the control line.
        assert!(matches!(
            parse(b"PUB a 50\r\n", &lim),
            Ok(Parsed::Incomplete { need: 62 })
        ));
    }

    #[test]
    fn unbounded_whitespace_and_junk_deviation() {
        let lim = Limits {
            max_control_line: 8,
            max_payload: 100,
        };
        // Separator run up to the limit is fine.
        assert!(matches!(
            parse(b"SUB        a 1\r\n", &lim),
            Ok(Parsed::Op(..))
        ));
        assert_eq!(parse(b"SUB         a 1\r\n", &lim), Err(MaxControlLine));
        assert_eq!(
            parse(b"SUB        ", &lim),
            Ok(Parsed::Incomplete { need: 0 })
        );
        assert_eq!(parse(b"SUB         ", &lim), Err(MaxControlLine));
        assert_eq!(parse(b"CONNECT         ", &lim), Err(MaxControlLine));
        // PING/PONG/+OK junk.
        // (counted up to the '\n', so a '\r' counts too)
        assert_eq!(
            parse(b"PING1234567\r\n", &lim),
            Ok(Parsed::Op(Op::Ping, 13))
        );
        assert_eq!(parse(b"PING12345678\n", &lim), Ok(Parsed::Op(Op::Ping, 13)));
        assert_eq!(parse(b"PING12345678\r\n", &lim), Err(MaxControlLine));
        assert_eq!(parse(b"PING123456789\n", &lim), Err(MaxControlLine));
        assert_eq!(
            parse(b"PING12345678", &lim),
            Ok(Parsed::Incomplete { need: 0 })
        );
        assert_eq!(parse(b"PING123456789", &lim), Err(MaxControlLine));
        assert_eq!(parse(b"+OK123456789", &lim), Err(MaxControlLine));
    }

    #[test]
    fn parse_size_rules() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"123456789"), Some(123_456_789));
        assert_eq!(parse_size(b"999999999"), Some(999_999_999));
        assert_eq!(parse_size(b"1234567890"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"+1"), None);
        assert_eq!(parse_size(b" 1"), None);
        assert_eq!(parse_size(b"1a"), None);
    }

    // ---------------------------------------------------------------- zero-copy
    // (The zero-allocation check needs a counting #[global_allocator]; a crate may
    // have only one, so it lives in its own integration test, tests/parser_zero_alloc.rs.)

    #[test]
    fn slices_borrow_from_input() {
        let s = b"SUB foo q 1\r\nPUB foo bar 2\r\nhi\r\nCONNECT {}\r\n".to_vec();
        let range = s.as_ptr_range();
        let within = |x: &[u8]| {
            let r = x.as_ptr_range();
            range.start <= r.start && r.end <= range.end
        };
        let mut rest = &s[..];
        while !rest.is_empty() {
            let Ok(Parsed::Op(op, n)) = p(rest) else {
                panic!()
            };
            match op {
                Op::Sub {
                    subject,
                    queue,
                    sid,
                } => {
                    assert!(within(subject) && within(queue.unwrap()) && within(sid));
                }
                Op::Pub {
                    subject,
                    reply,
                    payload,
                    ..
                } => {
                    assert!(within(subject) && within(reply.unwrap()) && within(payload));
                }
                Op::Connect(a) => assert!(within(a)),
                _ => panic!(),
            }
            rest = &rest[n..];
        }
    }

    // ---------------------------------------------------------------- split / fuzz

    fn valid_streams() -> Vec<Vec<u8>> {
        let v: Vec<&[u8]> = vec![
            b"CONNECT {\"verbose\":false,\"headers\":true}\r\nPING\r\n",
            b"SUB foo 1\r\nSUB bar q 2\r\nUNSUB 1\r\nUNSUB 2 10\r\n",
            b"PUB foo 2\r\nhi\r\nPUB foo reply 5\r\nhello\r\nPUB x 0\r\n\r\n",
            b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n",
            b"CONNECT {}\nSUB foo 1\nPUB foo 2\nhi\r\nPING\nPONG\n+OK\n",
            b"sub\tfoo\t 1\r\npub foo 2\r\nhi\r\nping\r\npong\r\n",
            b"INFO {}\r\n-ERR 'x'\r\nPINGX\r\n+OKjunk\n",
            b"PUB foo 6\r\n\r\n\r\n\r\n\r\nPING\r\n",
            b"SUB foo\rx 1\nSUB \nfoo 2\r\nCONNECT\n{}\n",
            b"PUB foo 2\r\nhi\r\nPUB foo 2\r\nhix\r\n",
            b"PING\r\nSUB a b c d\r\n",
            b"PUB foo 1048577\r\n",
            b"HPUB foo 3 2\r\nabc\r\n",
            b"PING\r\nHMSG foo 1 2 2\r\nhi\r\n",
            b"PING\r\nMSG foo 1 2\r\nhi\r\n",
            b"PING\r\n\r\nPING\r\n",
        ];
        v.into_iter().map(|s| s.to_vec()).collect()
    }

    /// Owned form of a parse result, for comparing results from different buffers.
    fn show(r: &Result<Parsed<'_>, ProtoError>) -> String {
        format!("{:?}", r)
    }

    /// Checks that every prefix of every suffix reachable by consuming ops parses to
    /// either Incomplete or exactly the whole-buffer result, and that `need` is right.
    fn check_stream(s: &[u8], lim: &Limits) {
        let mut pos = 0;
        loop {
            let rest = &s[pos..];
            let whole = parse(rest, lim);
            // Structural invariants.
            if let Ok(Parsed::Op(_, n)) = &whole {
                assert!(*n > 0 && *n <= rest.len(), "bad consumed {n} for {rest:?}");
            }
            if let Ok(Parsed::Incomplete { need }) = &whole {
                assert!(*need == 0 || *need > rest.len(), "need {need} for {rest:?}");
            }
            for k in 0..rest.len() {
                let part = parse(&rest[..k], lim);
                match &part {
                    Ok(Parsed::Incomplete { need }) => {
                        if *need > 0 {
                            match &whole {
                                Ok(Parsed::Op(_, n)) => assert_eq!(n, need, "{rest:?}[..{k}]"),
                                Ok(Parsed::Incomplete { need: w }) => {
                                    assert_eq!(w, need, "{rest:?}[..{k}]")
                                }
                                Err(e) => assert_eq!(*e, UnknownOp, "{rest:?}[..{k}]"),
                            }
                        }
                    }
                    _ => assert_eq!(
                        show(&part),
                        show(&whole),
                        "prefix {:?} of {:?}",
                        &rest[..k],
                        rest
                    ),
                }
            }
            match whole {
                Ok(Parsed::Op(_, n)) => pos += n,
                _ => break,
            }
            if pos == s.len() {
                break;
            }
        }
    }

    /// Feeding a stream one byte at a time yields the same ops as parsing it whole.
    fn bytewise_equals_whole(s: &[u8], lim: &Limits) {
        let mut whole = Vec::new();
        let mut pos = 0;
        let whole_end = loop {
            match parse(&s[pos..], lim) {
                Ok(Parsed::Op(op, n)) => {
                    whole.push(format!("{:?}", op));
                    pos += n;
                }
                other => break show(&other),
            }
        };
        let mut fed = Vec::new();
        let mut start = 0;
        let mut end = 0;
        let fed_end = loop {
            match parse(&s[start..end], lim) {
                Ok(Parsed::Op(op, n)) => {
                    fed.push(format!("{:?}", op));
                    start += n;
                }
                Ok(Parsed::Incomplete { .. }) if end < s.len() => end += 1,
                other => break show(&other),
            }
        };
        assert_eq!(whole, fed, "stream {:?}", s);
        assert_eq!(whole_end, fed_end, "stream {:?}", s);
    }

    #[test]
    fn split_at_every_byte_valid_streams() {
        let small = Limits {
            max_control_line: 16,
            max_payload: 8,
        };
        for s in valid_streams() {
            check_stream(&s, &L);
            check_stream(&s, &small);
            bytewise_equals_whole(&s, &L);
            bytewise_equals_whole(&s, &small);
        }
        let all: Vec<u8> = valid_streams().concat();
        bytewise_equals_whole(&all, &L);
    }

    #[test]
    fn split_valid_stream_yields_expected_ops() {
        let s = b"CONNECT {}\r\nSUB foo q 1\r\nPUB foo r 2\r\nhi\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1 3\r\nPING\r\n";
        let mut got = Vec::new();
        let (mut start, mut end) = (0, 0);
        while start < s.len() {
            match p(&s[start..end]).unwrap() {
                Parsed::Op(op, n) => {
                    got.push(format!("{:?}", op));
                    start += n;
                }
                Parsed::Incomplete { .. } => end += 1,
            }
        }
        let want = [
            Op::Connect(b"{}"),
            sub(b"foo", Some(b"q"), b"1"),
            pub_(b"foo", Some(b"r"), b"hi"),
            hpub(b"foo", None, 12, b"NATS/1.0\r\n\r\nhi"),
            Op::Unsub {
                sid: b"1",
                max: Some(3),
            },
            Op::Ping,
        ];
        let want: Vec<String> = want.iter().map(|o| format!("{:?}", o)).collect();
        assert_eq!(got, want);
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const ALPHABET: &[u8] = b"PUBSUNCOTIGHMERK+-pubsnciogh \t\r\n0123456789 \r\n{}x.*>";

    fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if rng.below(8) == 0 {
                    rng.next() as u8
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                }
            })
            .collect()
    }

    fn mutate(rng: &mut Rng, s: &mut Vec<u8>) {
        for _ in 0..=rng.below(4) {
            if s.is_empty() {
                s.push(ALPHABET[rng.below(ALPHABET.len())]);
                continue;
            }
            let i = rng.below(s.len());
            match rng.below(5) {
                0 => s[i] = ALPHABET[rng.below(ALPHABET.len())],
                1 => s[i] = rng.next() as u8,
                2 => {
                    s.remove(i);
                }
                3 => s.insert(i, ALPHABET[rng.below(ALPHABET.len())]),
                _ => {
                    let j = rng.below(s.len());
                    s.swap(i, j);
                }
            }
        }
    }

    #[test]
    fn fuzz_random_and_mutated_never_panic_and_consistent() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let limits = [
            L,
            Limits {
                max_control_line: 12,
                max_payload: 6,
            },
            Limits {
                max_control_line: 0,
                max_payload: 0,
            },
        ];
        let valid = valid_streams();
        for iter in 0..6000 {
            let s = if iter % 2 == 0 {
                let len = rng.below(60);
                random_bytes(&mut rng, len)
            } else {
                let mut s = valid[rng.below(valid.len())].clone();
                mutate(&mut rng, &mut s);
                s
            };
            let lim = &limits[iter % limits.len()];
            check_stream(&s, lim);
            bytewise_equals_whole(&s, lim);
        }
    }

    #[test]
    fn fuzz_pure_random_bytes_never_panic() {
        let mut rng = Rng(12345);
        let lim = Limits {
            max_control_line: 32,
            max_payload: 16,
        };
        for _ in 0..20000 {
            let len = rng.below(80);
            let s: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for start in 0..s.len() {
                let _ = parse(&s[start..], &lim);
                let _ = parse(&s[start..], &L);
            }
        }
    }
}
