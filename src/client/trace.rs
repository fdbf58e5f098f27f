//! Protocol trace (`-V`, `trace: true`): one `[TRC]` line per client op, in
//! nats-server's form `127.0.0.1:52294 - cid:5 - <<- [SUB foo q 1]` (with
//! `"name" - ` after the cid once the client sent a name), plus a
//! `<<- MSG_PAYLOAD: ["..."]` line for PUB/HPUB payloads.
//!
//! The read loop calls [`op`] only behind `logging::trace_enabled()`, a single
//! relaxed atomic load: tracing costs nothing else when it is off.

use std::fmt::Write as _;

use super::Client;
use crate::logging::{self, Level};
use crate::proto::parser::Op;

/// Go's `%q` of a byte string: printable ASCII kept, the usual escapes, `\xNN`
/// for other bytes (nats-server traces payloads this way).
fn go_quote(bytes: &[u8], out: &mut String) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
}

fn prefix(client: &Client) -> String {
    let mut p = String::with_capacity(48);
    if let Some(peer) = client.peer {
        let _ = write!(p, "{peer} - ");
    }
    let _ = write!(p, "cid:{}", client.cid);
    let o = client.opts.borrow();
    if !o.name.is_empty() {
        let _ = write!(p, " - {:?}", o.name);
    }
    p
}

fn s(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Traces one op received from `client`. `max_traced` (`max_traced_msg_len`)
/// truncates traced payloads when positive.
pub fn op(client: &Client, op: &Op<'_>, max_traced: i64) {
    let mut line = String::with_capacity(64);
    let mut payload: Option<&[u8]> = None;
    match op {
        Op::Connect(json) => {
            // Traced before CONNECT is applied: no name in the prefix yet.
            // Auth (issue #5): never trace a password, token or signature.
            let _ = write!(line, "CONNECT {}", crate::auth::redact_connect(&s(json)));
        }
        Op::Pub {
            subject,
            reply,
            header_len,
            payload: p,
        } => {
            line.push_str(if header_len.is_some() {
                "HPUB "
            } else {
                "PUB "
            });
            line.push_str(&s(subject));
            if let Some(r) = reply {
                line.push(' ');
                line.push_str(&s(r));
            }
            if let Some(h) = header_len {
                let _ = write!(line, " {h}");
            }
            let _ = write!(line, " {}", p.len());
            payload = Some(p);
        }
        Op::Sub {
            subject,
            queue,
            sid,
        } => {
            let _ = write!(line, "SUB {}", s(subject));
            if let Some(q) = queue {
                let _ = write!(line, " {}", s(q));
            }
            let _ = write!(line, " {}", s(sid));
        }
        Op::Unsub { sid, max } => {
            let _ = write!(line, "UNSUB {}", s(sid));
            if let Some(m) = max {
                let _ = write!(line, " {m}");
            }
        }
        Op::Ping => line.push_str("PING"),
        Op::Pong => line.push_str("PONG"),
        Op::Info(json) => {
            let _ = write!(line, "INFO {}", s(json));
        }
        // nats-server does not trace a client's +OK / -ERR.
        Op::Ok | Op::Err(_) => return,
    }
    let prefix = prefix(client);
    logging::log(Level::Trace, format_args!("{prefix} - <<- [{line}]"));
    if let Some(p) = payload {
        let mut q = String::with_capacity(p.len() + 8);
        let limit = if max_traced > 0 {
            (max_traced as usize).min(p.len())
        } else {
            p.len()
        };
        go_quote(&p[..limit], &mut q);
        if limit < p.len() {
            // nats-server: `["<quoted, truncated>..."]`.
            q.pop();
            q.push_str("...\"");
        }
        logging::log(
            Level::Trace,
            format_args!("{prefix} - <<- MSG_PAYLOAD: [{q}]"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        let mut out = String::new();
        go_quote(b"NATS/1.0\r\n\r\nab\"\\\x01\xff", &mut out);
        assert_eq!(out, r#""NATS/1.0\r\n\r\nab\"\\\x01\xff""#);
    }
}
