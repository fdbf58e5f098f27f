//! The route protocol between servers of one cluster: the ops a peer sends (parsed
//! in place from the read buffer) and the lines this server sends.
//!
//! Framing is the client protocol's: text control lines ending in `\r\n` (a bare
//! `\n` is accepted), case-insensitive op names, spaces or tabs between arguments,
//! and for messages the payload plus `\r\n` after the line.

use bytes::{BufMut, BytesMut};

/// One op from a route peer. Slices point into the parsed buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteOp<'a> {
    /// `INFO {json}`.
    Info(&'a [u8]),
    /// `CONNECT {json}`.
    Connect(&'a [u8]),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR <text>`.
    Err(&'a [u8]),
    /// `RS+`/`LS+`: interest gained (queue: the weight behind the peer now).
    Sub(Interest<'a>),
    /// `RS-`/`LS-`: interest lost.
    Unsub(Interest<'a>),
    /// `RMSG`/`HMSG`/`LMSG`.
    Msg(RouteMsg<'a>),
    /// `A+ <acc>` (gateways): the peer's cluster has interest in the account again.
    AccountSub(&'a [u8]),
    /// `A- <acc>` (gateways): the peer's cluster has no interest in the account.
    AccountUnsub(&'a [u8]),
}

/// The arguments of `RS+`, `RS-`, `LS+` and `LS-`.
#[derive(Debug, PartialEq, Eq)]
pub struct Interest<'a> {
    /// Leaf origin cluster (`LS+`/`LS-` only).
    pub origin: Option<&'a [u8]>,
    /// Account name.
    pub account: &'a [u8],
    /// Subject.
    pub subject: &'a [u8],
    /// Queue group and its weight (1 when a `RS-` or an old peer gives none).
    pub queue: Option<(&'a [u8], u32)>,
}

/// A message from a route.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMsg<'a> {
    /// Leaf origin cluster (`LMSG` only).
    pub origin: Option<&'a [u8]>,
    /// Account name.
    pub account: &'a [u8],
    /// Subject.
    pub subject: &'a [u8],
    /// Reply subject, empty when none.
    pub reply: &'a [u8],
    /// The queue groups that chose a member behind this server, space separated
    /// (empty: only plain subscribers get it).
    pub queues: &'a [u8],
    /// Bytes of `payload` that are the header block.
    pub hdr_len: usize,
    /// Header block and body.
    pub payload: &'a [u8],
}

/// Which server-to-server protocol a connection speaks: they share framing and ops
/// and differ in the arguments of interest and message lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Routes: `RS+ <acc> <subject>`, `RMSG <acc> ...`, `LS+ <origin> <acc> ...`.
    Route,
    /// Leaf nodes: no account (the connection is bound to one), `LS+ <subject>`,
    /// `LMSG <subject> ...` without a header size, `HMSG <subject> ... <hdr> <total>`.
    Leaf,
    /// Gateways: the route's `RS+`/`RS-`/`RMSG`/`HMSG` and `A+`/`A-`; no `LS+`/`LMSG`.
    Gateway,
}

/// Why a peer's bytes cannot be parsed: the `-ERR` text nats-server sends.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl ParseError {
    fn new(what: &str) -> ParseError {
        ParseError(what.to_string())
    }
}

/// Parses the op at the start of `buf`: `Ok(None)` while it is incomplete, else the
/// op and the bytes it took. `max_line` bounds a control line, `max_payload` a message.
pub fn parse(
    buf: &[u8],
    max_line: usize,
    max_payload: usize,
    dialect: Dialect,
) -> Result<Option<(RouteOp<'_>, usize)>, ParseError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > max_line {
            return Err(ParseError::new("Maximum Control Line Exceeded"));
        }
        return Ok(None);
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let after = nl + 1;
    let (op, rest) = split_op(line);
    let op_is = |name: &str| op.eq_ignore_ascii_case(name.as_bytes());
    if op_is("PING") {
        return Ok(Some((RouteOp::Ping, after)));
    }
    if op_is("PONG") {
        return Ok(Some((RouteOp::Pong, after)));
    }
    if op_is("+OK") {
        return Ok(Some((RouteOp::Ok, after)));
    }
    if op_is("-ERR") {
        return Ok(Some((RouteOp::Err(trim(rest)), after)));
    }
    if op_is("INFO") {
        return Ok(Some((RouteOp::Info(trim(rest)), after)));
    }
    if op_is("CONNECT") {
        return Ok(Some((RouteOp::Connect(trim(rest)), after)));
    }
    let leaf_link = dialect == Dialect::Leaf;
    let gateway = dialect == Dialect::Gateway;
    if gateway && (op_is("A+") || op_is("A-")) {
        let account = next_arg(rest)
            .map(|(a, _)| a)
            .ok_or_else(|| ParseError::new("processGatewayAccountSub Parse Error"))?;
        let op = if op[1] == b'+' {
            RouteOp::AccountSub(account)
        } else {
            RouteOp::AccountUnsub(account)
        };
        return Ok(Some((op, after)));
    }
    let interest_op = if leaf_link {
        op_is("LS+") || op_is("LS-")
    } else if gateway {
        op_is("RS+") || op_is("RS-")
    } else {
        op_is("RS+") || op_is("LS+") || op_is("RS-") || op_is("LS-")
    };
    if interest_op {
        let add = op[2] == b'+';
        let interest = if leaf_link {
            parse_leaf_interest(rest, add)?
        } else {
            parse_interest(rest, op[0].eq_ignore_ascii_case(&b'L'), add)?
        };
        let op = if add {
            RouteOp::Sub(interest)
        } else {
            RouteOp::Unsub(interest)
        };
        return Ok(Some((op, after)));
    }
    if leaf_link && (op_is("LMSG") || op_is("HMSG")) {
        return parse_msg(buf, after, rest, Args::Leaf, op_is("HMSG"), max_payload);
    }
    if !leaf_link && (op_is("RMSG") || op_is("HMSG") || (op_is("LMSG") && !gateway)) {
        let args = if op_is("LMSG") {
            Args::RouteFromLeaf
        } else {
            Args::Route
        };
        return parse_msg(buf, after, rest, args, !op_is("RMSG"), max_payload);
    }
    Err(ParseError::new("Unknown Protocol Operation"))
}

/// How many bytes the incomplete op at the start of `buf` needs in all, when its
/// control line is complete (a message waiting for its payload); else 0.
pub fn needed(buf: &[u8]) -> usize {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return 0;
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    last_arg(line)
        .and_then(|(_, n)| number(n))
        .map_or(0, |total| nl + 1 + total + 2)
}

fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim(line);
    match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Splits off the first argument: (argument, the rest after its separator).
fn next_arg(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim(s);
    if s.is_empty() {
        return None;
    }
    Some(match s.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    })
}

/// Splits off the last argument: (the rest before its separator, argument).
fn last_arg(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim(s);
    if s.is_empty() {
        return None;
    }
    Some(match s.iter().rposition(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (&[], s),
    })
}

fn number(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + (d - b'0') as usize))
}

fn parse_interest(args: &[u8], leaf: bool, add: bool) -> Result<Interest<'_>, ParseError> {
    let bad = || {
        ParseError::new(if add {
            "processRemoteSub Parse Error"
        } else {
            "processRemoteUnsub Parse Error"
        })
    };
    let mut rest = args;
    let mut take = || -> Option<&[u8]> {
        let (a, r) = next_arg(rest)?;
        rest = r;
        Some(a)
    };
    let first = take().ok_or_else(bad)?;
    let second = take().ok_or_else(bad)?;
    let third = take();
    let fourth = take();
    let fifth = take();
    // LS+ and LS- carry the leaf's origin cluster first (we announce `lnocu`).
    let (origin, account, subject, queue, weight) = if leaf {
        (Some(first), second, third.ok_or_else(bad)?, fourth, fifth)
    } else {
        (None, first, second, third, fourth)
    };
    let queue = match queue {
        None => None,
        Some(q) => {
            let weight = match weight {
                Some(w) => number(w).ok_or_else(bad)?.min(u32::MAX as usize) as u32,
                None if add => return Err(bad()),
                None => 1,
            };
            Some((q, weight))
        }
    };
    Ok(Interest {
        origin,
        account,
        subject,
        queue,
    })
}

/// `LS+ <subject>[ <queue> <weight>]`, `LS- <subject>[ <queue>]` on a leaf link.
fn parse_leaf_interest(args: &[u8], add: bool) -> Result<Interest<'_>, ParseError> {
    let bad = || {
        ParseError::new(if add {
            "processLeafSub Parse Error"
        } else {
            "processLeafUnsub Parse Error"
        })
    };
    let (subject, rest) = next_arg(args).ok_or_else(bad)?;
    let queue = match next_arg(rest) {
        None => None,
        Some((q, rest)) => {
            let weight = match next_arg(rest) {
                Some((w, _)) => number(w).ok_or_else(bad)?.min(u32::MAX as usize) as u32,
                // A queue subscription states its weight (nats-server refuses it
                // without one); an unsubscribe does not.
                None if add => return Err(bad()),
                None => 1,
            };
            Some((q, weight))
        }
    };
    Ok(Interest {
        origin: None,
        account: &[],
        subject,
        queue,
    })
}

/// The leading arguments of a message line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Args {
    /// `RMSG`/`HMSG <acc> <subject> ...` on a route.
    Route,
    /// `LMSG <origin> <acc> <subject> ...` on a route (always with a header size).
    RouteFromLeaf,
    /// `LMSG`/`HMSG <subject> ...` on a leaf link.
    Leaf,
}

fn parse_msg<'a>(
    buf: &'a [u8],
    after: usize,
    args: &'a [u8],
    kind: Args,
    headers: bool,
    max_payload: usize,
) -> Result<Option<(RouteOp<'a>, usize)>, ParseError> {
    let bad = || {
        ParseError::new(if kind == Args::Leaf {
            "processLeafMsgArgs Parse Error"
        } else {
            "processRoutedMsgArgs Parse Error"
        })
    };
    let mut rest = args;
    let origin = if kind == Args::RouteFromLeaf {
        let (o, r) = next_arg(rest).ok_or_else(bad)?;
        rest = r;
        Some(o)
    } else {
        None
    };
    let (account, r) = if kind == Args::Leaf {
        (&[][..], rest)
    } else {
        next_arg(rest).ok_or_else(bad)?
    };
    let (subject, r) = next_arg(r).ok_or_else(bad)?;
    let (r, total) = last_arg(r).ok_or_else(bad)?;
    let total = number(total).ok_or_else(bad)?;
    // A route's LMSG always carries a header size; HMSG does too.
    let (middle, hdr_len) = if headers || kind == Args::RouteFromLeaf {
        let (r, hdr) = last_arg(r).ok_or_else(bad)?;
        (r, number(hdr).ok_or_else(bad)?)
    } else {
        (r, 0)
    };
    if hdr_len > total {
        return Err(bad());
    }
    if total > max_payload {
        return Err(ParseError::new("Maximum Payload Violation"));
    }
    let middle = trim(middle);
    let (reply, queues): (&[u8], &[u8]) = match next_arg(middle) {
        None => (&[], &[]),
        Some((b"+", r)) => {
            let (reply, queues) = next_arg(r).ok_or_else(bad)?;
            (reply, trim(queues))
        }
        Some((b"|", queues)) => (&[], trim(queues)),
        Some((reply, extra)) => {
            if !trim(extra).is_empty() {
                return Err(bad());
            }
            (reply, &[])
        }
    };
    let end = after + total;
    // The payload ends with `\r\n` (a bare `\n` is tolerated).
    let used = match buf.get(end..(end + 2).min(buf.len())) {
        None | Some([]) | Some([b'\r']) => return Ok(None),
        Some([b'\n', ..]) => end + 1,
        Some(b"\r\n") => end + 2,
        Some(_) => return Err(ParseError::new("Unknown Protocol Operation")),
    };
    let payload = &buf[after..end];
    Ok(Some((
        RouteOp::Msg(RouteMsg {
            origin,
            account,
            subject,
            reply,
            queues,
            hdr_len,
            payload,
        }),
        used,
    )))
}

use super::encode::put_num;

/// `RS+ <acc> <subject>[ <queue> <weight>]`; to a leaf (`account` `None`):
/// `LS+ <subject>[ <queue> <weight>]`.
pub fn sub(
    out: &mut BytesMut,
    account: Option<&[u8]>,
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    match account {
        Some(a) => {
            out.put_slice(b"RS+ ");
            out.put_slice(a);
            out.put_u8(b' ');
        }
        None => out.put_slice(b"LS+ "),
    }
    out.put_slice(subject);
    if let Some((q, w)) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
        out.put_u8(b' ');
        put_num(out, w as usize);
    }
    out.put_slice(b"\r\n");
}

/// `RS- <acc> <subject>[ <queue>]`; to a leaf: `LS- <subject>[ <queue>]`.
pub fn unsub(out: &mut BytesMut, account: Option<&[u8]>, subject: &[u8], queue: Option<&[u8]>) {
    match account {
        Some(a) => {
            out.put_slice(b"RS- ");
            out.put_slice(a);
            out.put_u8(b' ');
        }
        None => out.put_slice(b"LS- "),
    }
    out.put_slice(subject);
    if let Some(q) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
    }
    out.put_slice(b"\r\n");
}

/// The control line of a message to a peer: `RMSG` (or `HMSG` with headers) with the
/// reply and the queue groups that chose a member behind it, then the payload.
/// `headers` says whether the peer takes them; without, the header block is dropped.
/// To a leaf (`account` `None`): `LMSG`/`HMSG` without the account.
#[allow(clippy::too_many_arguments)]
pub fn msg(
    out: &mut BytesMut,
    account: Option<&[u8]>,
    subject: &[u8],
    reply: &[u8],
    queues: &[&[u8]],
    hdr_len: usize,
    payload: &[u8],
    headers: bool,
) {
    let (hdr_len, payload) = if headers {
        (hdr_len, payload)
    } else {
        (0, &payload[hdr_len.min(payload.len())..])
    };
    out.reserve(32 + account.map_or(0, <[u8]>::len) + subject.len() + reply.len() + payload.len());
    match (hdr_len > 0, account) {
        (true, _) => out.put_slice(b"HMSG "),
        (false, Some(_)) => out.put_slice(b"RMSG "),
        (false, None) => out.put_slice(b"LMSG "),
    }
    if let Some(a) = account {
        out.put_slice(a);
        out.put_u8(b' ');
    }
    out.put_slice(subject);
    match (reply.is_empty(), queues.is_empty()) {
        (true, true) => {}
        (false, true) => {
            out.put_u8(b' ');
            out.put_slice(reply);
        }
        (true, false) => out.put_slice(b" |"),
        (false, false) => {
            out.put_slice(b" + ");
            out.put_slice(reply);
        }
    }
    for q in queues {
        out.put_u8(b' ');
        out.put_slice(q);
    }
    out.put_u8(b' ');
    if hdr_len > 0 {
        put_num(out, hdr_len);
        out.put_u8(b' ');
    }
    put_num(out, payload.len());
    out.put_slice(b"\r\n");
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> (RouteOp<'_>, usize) {
        parse(input, 65536, 1 << 20, Dialect::Route)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn interest_lines_as_nats_server_sends_them() {
        let (op, n) = one(b"RS+ $G foo\r\nPING\r\n");
        assert_eq!(n, 12);
        assert_eq!(
            op,
            RouteOp::Sub(Interest {
                origin: None,
                account: b"$G",
                subject: b"foo",
                queue: None
            })
        );
        let (op, _) = one(b"RS+ $G bar q1 2\r\n");
        assert!(matches!(
            op,
            RouteOp::Sub(Interest {
                queue: Some((b"q1", 2)),
                ..
            })
        ));
        let (op, _) = one(b"RS- $G bar q1\r\n");
        assert!(matches!(
            op,
            RouteOp::Unsub(Interest {
                queue: Some((b"q1", 1)),
                ..
            })
        ));
        let (op, _) = one(b"LS+ C2 $G foo\r\n");
        assert!(matches!(
            op,
            RouteOp::Sub(Interest {
                origin: Some(b"C2"),
                subject: b"foo",
                ..
            })
        ));
        let (op, _) = one(b"LS- C2 $G foo\r\n");
        assert!(matches!(
            op,
            RouteOp::Unsub(Interest {
                origin: Some(b"C2"),
                ..
            })
        ));
        assert!(parse(b"RS+ $G\r\n", 100, 100, Dialect::Route).is_err());
        assert!(
            parse(b"RS+ $G foo q\r\n", 100, 100, Dialect::Route).is_err(),
            "a queue needs its weight"
        );
    }

    #[test]
    fn messages_in_every_form() {
        // (input, reply, queues, header length, payload)
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], usize, &'a [u8]);
        let cases: &[Case] = &[
            (b"RMSG $G foo 2\r\nhi\r\n", b"", b"", 0, b"hi"),
            (b"RMSG $G foo r 2\r\nhi\r\n", b"r", b"", 0, b"hi"),
            (b"RMSG $G foo | q1 q2 2\r\nhi\r\n", b"", b"q1 q2", 0, b"hi"),
            (b"RMSG $G foo + r q1 2\r\nhi\r\n", b"r", b"q1", 0, b"hi"),
            (
                b"HMSG $G foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                b"",
                b"",
                12,
                b"NATS/1.0\r\n\r\nhi",
            ),
            (
                b"HMSG $G foo + r q 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                b"r",
                b"q",
                12,
                b"NATS/1.0\r\n\r\nhi",
            ),
        ];
        for (input, reply, queues, hdr, payload) in cases {
            let (op, n) = one(input);
            assert_eq!(n, input.len());
            let RouteOp::Msg(m) = op else { panic!() };
            assert_eq!((m.account, m.subject), (&b"$G"[..], &b"foo"[..]));
            assert_eq!(
                (m.reply, m.queues, m.hdr_len, m.payload),
                (*reply, *queues, *hdr, *payload)
            );
        }
        let (op, _) = one(b"LMSG C2 $G foo 0 2\r\nhi\r\n");
        assert!(matches!(
            op,
            RouteOp::Msg(RouteMsg {
                origin: Some(b"C2"),
                hdr_len: 0,
                ..
            })
        ));
        assert_eq!(
            parse(b"RMSG $G foo 5\r\nhi", 100, 100, Dialect::Route).unwrap(),
            None,
            "incomplete"
        );
        assert_eq!(
            parse(b"RMSG $G foo 2\r\nhi\r", 100, 100, Dialect::Route).unwrap(),
            None,
            "the CR of the CRLF"
        );
        let (_, n) = one(b"RMSG $G foo 2\nhi\n");
        assert_eq!(
            n, 17,
            "a bare LF at the very end of the buffer ends the message"
        );
        assert!(
            parse(b"RMSG $G foo 5\r\nhello!!", 100, 100, Dialect::Route).is_err(),
            "no CRLF after payload"
        );
        assert!(
            parse(b"RMSG $G foo 500\r\n", 100, 100, Dialect::Route).is_err(),
            "over max_payload"
        );
        assert!(
            parse(b"HMSG $G foo 5 2\r\nhi\r\n", 100, 100, Dialect::Route).is_err(),
            "header past the end"
        );
        assert!(parse(b"RMSG $G foo x\r\n", 100, 100, Dialect::Route).is_err());
        assert!(parse(b"BOGUS\r\n", 100, 100, Dialect::Route).is_err());
        assert!(
            parse(&[b'x'; 200], 100, 100, Dialect::Route).is_err(),
            "control line too long"
        );
    }

    #[test]
    fn encoded_lines_parse_back() {
        let mut out = BytesMut::new();
        sub(&mut out, Some(b"$G"), b"foo", Some((b"q", 3)));
        unsub(&mut out, Some(b"$G"), b"foo", None);
        msg(
            &mut out,
            Some(b"A"),
            b"s",
            b"r",
            &[b"q1", b"q2"],
            0,
            b"hi",
            true,
        );
        msg(
            &mut out,
            Some(b"A"),
            b"s",
            b"",
            &[b"q1"],
            12,
            b"NATS/1.0\r\n\r\nhi",
            true,
        );
        msg(
            &mut out,
            Some(b"A"),
            b"s",
            b"",
            &[],
            12,
            b"NATS/1.0\r\n\r\nhi",
            false,
        );
        assert_eq!(
            &out[..],
            &b"RS+ $G foo q 3\r\nRS- $G foo\r\nRMSG A s + r q1 q2 2\r\nhi\r\n\
               HMSG A s | q1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nRMSG A s 2\r\nhi\r\n"[..]
        );
    }

    fn leaf(input: &[u8]) -> (RouteOp<'_>, usize) {
        parse(input, 65536, 1 << 20, Dialect::Leaf)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn leaf_lines_as_nats_server_sends_them() {
        let (op, _) = leaf(b"LS+ foo\r\n");
        assert!(matches!(
            op,
            RouteOp::Sub(Interest {
                subject: b"foo",
                queue: None,
                ..
            })
        ));
        let (op, _) = leaf(b"LS+ bar q 2\r\n");
        assert!(matches!(
            op,
            RouteOp::Sub(Interest {
                queue: Some((b"q", 2)),
                ..
            })
        ));
        let (op, _) = leaf(b"LS- bar q\r\n");
        assert!(matches!(
            op,
            RouteOp::Unsub(Interest {
                queue: Some((b"q", 1)),
                ..
            })
        ));
        // (input, reply, queues, header length, payload)
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], usize, &'a [u8]);
        let cases: &[Case] = &[
            (b"LMSG baz 2\r\nhi\r\n", b"", b"", 0, b"hi"),
            (b"LMSG baz r 2\r\nhi\r\n", b"r", b"", 0, b"hi"),
            (b"LMSG baz | grp 2\r\nhi\r\n", b"", b"grp", 0, b"hi"),
            (b"LMSG baz + r grp 2\r\nhi\r\n", b"r", b"grp", 0, b"hi"),
            (
                b"HMSG baz 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                b"",
                b"",
                12,
                b"NATS/1.0\r\n\r\nhi",
            ),
        ];
        for (input, reply, queues, hdr, payload) in cases {
            let (op, n) = leaf(input);
            assert_eq!(n, input.len());
            let RouteOp::Msg(m) = op else { panic!() };
            assert_eq!((m.account, m.subject), (&b""[..], &b"baz"[..]));
            assert_eq!(
                (m.reply, m.queues, m.hdr_len, m.payload),
                (*reply, *queues, *hdr, *payload)
            );
        }
        for bad in [
            &b"RS+ $G foo\r\n"[..],
            b"RMSG $G foo 2\r\nhi\r\n",
            b"LS+\r\n",
            b"LMSG foo x\r\n",
        ] {
            assert!(parse(bad, 100, 100, Dialect::Leaf).is_err(), "{bad:?}");
        }
        let mut out = BytesMut::new();
        sub(&mut out, None, b"foo", Some((b"q", 3)));
        unsub(&mut out, None, b"foo", Some(b"q"));
        msg(&mut out, None, b"s", b"r", &[b"q1"], 0, b"hi", true);
        msg(
            &mut out,
            None,
            b"s",
            b"",
            &[],
            12,
            b"NATS/1.0\r\n\r\nhi",
            true,
        );
        assert_eq!(
            &out[..],
            &b"LS+ foo q 3\r\nLS- foo q\r\nLMSG s + r q1 2\r\nhi\r\nHMSG s 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"[..]
        );
    }

    #[test]
    fn gateways_speak_of_accounts_and_never_of_leafs() {
        let gw = |input: &'static [u8]| parse(input, 1024, 1024, Dialect::Gateway);
        assert_eq!(
            gw(b"A+ $G\r\n").unwrap().unwrap().0,
            RouteOp::AccountSub(b"$G")
        );
        assert_eq!(
            gw(b"a- ACC\r\n").unwrap().unwrap().0,
            RouteOp::AccountUnsub(b"ACC")
        );
        assert!(gw(b"A+\r\n").is_err());
        assert!(matches!(
            gw(b"RS+ $G foo q 1\r\n").unwrap().unwrap().0,
            RouteOp::Sub(Interest {
                queue: Some((b"q", 1)),
                ..
            })
        ));
        assert!(matches!(
            gw(b"RMSG $G foo _GR_.a.b.c 2\r\nhi\r\n")
                .unwrap()
                .unwrap()
                .0,
            RouteOp::Msg(_)
        ));
        for bad in [&b"LS+ $G foo\r\n"[..], b"LMSG foo 2\r\nhi\r\n"] {
            assert!(parse(bad, 1024, 1024, Dialect::Gateway).is_err(), "{bad:?}");
        }
        // Routes and leafs have no account ops.
        assert!(parse(b"A+ $G\r\n", 1024, 1024, Dialect::Route).is_err());
        assert!(parse(b"A- $G\r\n", 1024, 1024, Dialect::Leaf).is_err());
    }
}
