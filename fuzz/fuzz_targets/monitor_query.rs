//! Fuzzes the monitoring query strings: `natrium::monitor::http::parse_query` (the
//! percent-decoding split the HTTP server applies to the part of the request target
//! after `?`) and then the parameter decoders of src/monitor/query.rs, with the keys
//! and in the order the endpoint handlers read them (`/connz`, `/subsz`, `/routez`,
//! `/gatewayz`, `/leafz`, `/accstatz`, `/healthz`).
//!
//! `natrium::monitor::query` is a private module (`mod query;` in
//! src/monitor/mod.rs), so the very same source file is compiled into this target
//! with `#[path]`; its `super::http::Request` resolves to natrium's own type through
//! the `use` below.
//!
//! The input is the query string. Request heads that are not UTF-8 are refused
//! before any query is decoded (`400`), so only UTF-8 input goes on.
//!
//! Checks: no panic; decoding is consistent (a decoded pair re-encoded decodes to
//! itself); every decoder answers `Ok` exactly for the syntax it documents, with
//! nats-server's error texts naming the key and the raw value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natrium::monitor::http::{self, parse_query, Request};

#[path = "../../src/monitor/query.rs"]
#[allow(dead_code)]
mod query;

use query::{bool_param, int_param, state_param, subs_param, uint_param, State};

/// Percent-encodes every byte that is not unreserved (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_bool(req: &Request, key: &str) -> Result<bool, String> {
    let r = bool_param(req, key);
    match (req.get(key), &r) {
        (None | Some(""), _) => assert_eq!(r, Ok(false)),
        (Some(v), Ok(b)) => assert!(
            matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True") == *b,
            "{v:?} -> {b}"
        ),
        (Some(v), Err(e)) => {
            assert!(
                e.contains(&format!("'{key}'")) && e.contains(&format!("{v:?}")),
                "{e}"
            )
        }
    }
    r
}

fn check_int(req: &Request, key: &str) -> Result<i64, String> {
    let r = int_param(req, key);
    match (req.get(key), &r) {
        (None | Some(""), _) => assert_eq!(r, Ok(0)),
        (Some(v), Ok(n)) => assert_eq!(v.parse::<i64>().ok(), Some(*n), "{v:?}"),
        (Some(v), Err(e)) => {
            assert!(
                v.parse::<i64>().is_err() || v.starts_with('+'),
                "{v:?}: {e}"
            );
            assert!(e.contains(&format!("'{key}'")), "{e}");
        }
    }
    r
}

fn check_uint(req: &Request, key: &str) -> Result<u64, String> {
    let r = uint_param(req, key);
    match (req.get(key), &r) {
        (None | Some(""), _) => assert_eq!(r, Ok(0)),
        (Some(v), Ok(n)) => {
            assert!(v.bytes().all(|c| c.is_ascii_digit()), "{v:?}");
            assert_eq!(v.parse::<u64>().ok(), Some(*n), "{v:?}");
        }
        (Some(v), Err(e)) => {
            assert!(
                v.parse::<u64>().is_err() || v.starts_with('+'),
                "{v:?}: {e}"
            );
            assert!(e.contains(&format!("'{key}'")), "{e}");
        }
    }
    r
}

/// The parameter reads of `/connz` (src/monitor/connz.rs), up to the first error.
fn connz(req: &Request) -> Result<(), String> {
    let _sort = req.get("sort").unwrap_or("");
    check_bool(req, "auth")?;
    let (subs, detail) = subs_param(req)?;
    assert!(!(subs && detail));
    let _offset = check_int(req, "offset")?.max(0) as usize;
    let limit = check_int(req, "limit")?;
    let _limit = if limit <= 0 { 1024 } else { limit as usize };
    let _cid = check_uint(req, "cid")?;
    let state = state_param(req)?;
    match req.get("state").unwrap_or("") {
        "" | "open" => assert_eq!(state, State::Open),
        "closed" => assert_eq!(state, State::Closed),
        _ => assert_eq!(state, State::All),
    }
    let _user = req.get("user").unwrap_or("");
    let _acc = req.get("acc").unwrap_or("");
    Ok(())
}

/// The parameter reads of `/subsz` (src/monitor/subsz.rs), up to the first error.
fn subsz(req: &Request) -> Result<(), String> {
    check_bool(req, "subs")?;
    let _offset = check_int(req, "offset")?.max(0) as usize;
    let _limit = check_int(req, "limit")?;
    let test = req.get("test").unwrap_or("");
    if !test.is_empty() && !natrium::subject::is_valid_literal_subject(test.as_bytes()) {
        return Err(format!("invalid test subject: {test}"));
    }
    for s in ["foo", "foo.bar", "foo.*", "foo.>", ">", "*.*.baz"] {
        natrium::subject::matches(s.as_bytes(), test.as_bytes());
    }
    Ok(())
}

/// `/routez`, `/gatewayz`, `/leafz`, `/accstatz` and `/healthz`.
fn misc(req: &Request) {
    let _ = subs_param(req);
    let _ = check_bool(req, "accs").and_then(|_| subs_param(req));
    let _ = check_bool(req, "unused");
    for key in [
        "js-enabled-only",
        "js-server-only",
        "js-meta-only",
        "js-enabled",
        "details",
    ] {
        if check_bool(req, key).is_err() {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = parse_query(q);
    for (k, v) in &pairs {
        let again = parse_query(&format!("{}={}", encode(k), encode(v)));
        assert_eq!(again, vec![(k.clone(), v.clone())], "re-encoded pair");
    }
    let req = http::Request {
        method: "GET".into(),
        path: "/connz".into(),
        query: pairs,
    };
    let _ = connz(&req);
    let _ = subsz(&req);
    misc(&req);
});
