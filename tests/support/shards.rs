//! Helpers for black-box tests that need connections on particular client shards,
//! plus a small raw-socket NATS client that checks exact wire bytes.
//!
//! natrium (run by `support::Server::natrium` with `--shards 2`) allocates client ids so
//! that `client_id % 2` is the index of the shard serving the connection; the kernel
//! spreads accepts over the shards (SO_REUSEPORT). The helpers here open connections
//! until they hold the wanted number on each shard. Against the reference nats-server
//! (`NATRIUM_TEST_AS_NATS_SERVER=1`) parity means nothing, so they just split the
//! connections they opened; the tests stay correct, only the cross-shard aspect is moot.
//!
//! Include with `#[path = "support/shards.rs"] mod shards;` next to `mod support;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{natrium_is_reference, Server};

/// Bound on every blocking read in the raw client (hang protection only).
pub const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// How many extra connections the helpers may open before giving up on getting both
/// parities from natrium.
pub const MAX_TRIES: usize = 64;

/// The shard index natrium serves a connection with this client id on.
pub fn shard_of(client_id: u64) -> usize {
    (client_id % 2) as usize
}

/// True when the server under test is really natrium (so client-id parity is meaningful).
pub fn parity_is_meaningful(server: &Server) -> bool {
    server.kind == crate::support::Kind::Natrium && !natrium_is_reference()
}

/// Opens connections with `open` (which returns the connection and its INFO `client_id`)
/// until `need[0]` are on shard 0 and `need[1]` on shard 1, and returns them by shard.
/// Surplus connections are dropped (closed). Panics (the test fails) when natrium does not
/// produce both parities within `MAX_TRIES` extra connections.
pub fn split_by_shard<T>(
    server: &Server,
    need: [usize; 2],
    mut open: impl FnMut() -> (T, u64),
) -> [Vec<T>; 2] {
    let mut out: [Vec<T>; 2] = [Vec::new(), Vec::new()];
    if !parity_is_meaningful(server) {
        for i in 0..need[0] + need[1] {
            let (conn, _cid) = open();
            out[if i < need[0] { 0 } else { 1 }].push(conn);
        }
        return out;
    }
    let mut seen = Vec::new();
    let limit = need[0] + need[1] + MAX_TRIES;
    for _ in 0..limit {
        if out[0].len() >= need[0] && out[1].len() >= need[1] {
            break;
        }
        let (conn, cid) = open();
        assert_ne!(cid, 0, "INFO has no client_id");
        seen.push(cid);
        let s = shard_of(cid);
        if out[s].len() < need[s] {
            out[s].push(conn);
        }
    }
    assert!(
        out[0].len() >= need[0] && out[1].len() >= need[1],
        "could not get {need:?} connections on shards [0, 1] in {limit} tries; client ids seen: {seen:?}"
    );
    out
}

/// Async-nats version of [`split_by_shard`]: opens clients with `opts()` until `need[0]`
/// are on shard 0 and `need[1]` on shard 1 (by `server_info().client_id`).
pub async fn nats_by_shard(
    server: &Server,
    need: [usize; 2],
    opts: impl Fn() -> async_nats::ConnectOptions,
) -> [Vec<async_nats::Client>; 2] {
    let mut out: [Vec<async_nats::Client>; 2] = [Vec::new(), Vec::new()];
    let meaningful = parity_is_meaningful(server);
    let limit = need[0] + need[1] + if meaningful { MAX_TRIES } else { 0 };
    let mut seen = Vec::new();
    for i in 0..limit {
        if out[0].len() >= need[0] && out[1].len() >= need[1] {
            break;
        }
        let client = tokio::time::timeout(Duration::from_secs(10), opts().connect(server.url()))
            .await
            .expect("connect timed out")
            .expect("connect");
        let cid = client.server_info().client_id;
        assert_ne!(cid, 0, "INFO has no client_id");
        seen.push(cid);
        let s = if meaningful {
            shard_of(cid)
        } else if i < need[0] {
            0
        } else {
            1
        };
        if out[s].len() < need[s] {
            out[s].push(client);
        }
    }
    assert!(
        out[0].len() >= need[0] && out[1].len() >= need[1],
        "could not get {need:?} clients on shards [0, 1] in {limit} tries; client ids seen: {seen:?}"
    );
    out
}

/// One client on shard `a` and one on shard `b` (a may equal b).
pub async fn nats_pair(
    server: &Server,
    a: usize,
    b: usize,
) -> (async_nats::Client, async_nats::Client) {
    let mut need = [0, 0];
    need[a] += 1;
    need[b] += 1;
    let mut got = nats_by_shard(server, need, async_nats::ConnectOptions::new).await;
    let first = got[a].remove(0);
    let second = got[b].remove(0);
    (first, second)
}

// ---------------------------------------------------------------------------------------
// Raw protocol client
// ---------------------------------------------------------------------------------------

/// A message frame parsed by [`RawConn::read_msg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMsg {
    pub subject: String,
    pub sid: String,
    pub reply: Option<String>,
    /// Header block for HMSG (None for MSG).
    pub headers: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A plain TCP NATS connection that reads server frames exactly.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The INFO line as received (including `INFO ` and ` \r\n`).
    pub info_line: Vec<u8>,
    /// The INFO JSON.
    pub info: serde_json::Value,
    /// Unsolicited server PINGs are answered with PONG and skipped (true by default).
    pub auto_pong: bool,
}

impl RawConn {
    /// Connects and reads the INFO line (no CONNECT sent).
    pub fn open(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(RAW_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(RAW_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = RawConn {
            stream,
            buf: Vec::new(),
            info_line: Vec::new(),
            info: serde_json::Value::Null,
            auto_pong: true,
        };
        let line = c.read_line();
        assert!(
            line.starts_with(b"INFO "),
            "first line is not INFO: {:?}",
            String::from_utf8_lossy(&line)
        );
        let json = &line[5..line.len() - 2];
        c.info = serde_json::from_slice(json).unwrap_or_else(|e| {
            panic!(
                "INFO JSON does not parse ({e}): {:?}",
                String::from_utf8_lossy(json)
            )
        });
        c.info_line = line;
        c
    }

    /// Connects, reads INFO and sends `connect` (e.g. `CONNECT {"verbose":false}\r\n`)
    /// followed by PING, and waits for the PONG (and +OK first when verbose).
    pub fn connect(addr: &str, connect_json: &str) -> RawConn {
        let mut c = RawConn::open(addr);
        c.handshake(connect_json);
        c
    }

    /// Sends `CONNECT <json>\r\nPING\r\n` and consumes the replies up to PONG.
    pub fn handshake(&mut self, connect_json: &str) {
        self.send(format!("CONNECT {connect_json}\r\nPING\r\n").as_bytes());
        let verbose = serde_json::from_str::<serde_json::Value>(connect_json)
            .ok()
            .and_then(|v| v.get("verbose").and_then(|b| b.as_bool()))
            .unwrap_or(true);
        if verbose {
            self.expect(b"+OK\r\n");
        }
        self.expect(b"PONG\r\n");
    }

    /// The INFO `client_id`.
    pub fn client_id(&self) -> u64 {
        self.info["client_id"].as_u64().expect("INFO client_id")
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Round trip: PING, expect PONG (skipping nothing else: any other pending frame
    /// makes the expectation fail).
    pub fn ping(&mut self) {
        self.send(b"PING\r\n");
        self.expect(b"PONG\r\n");
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "timed out reading from server; buffered: {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(e) => panic!(
                "read error: {e}; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// One raw line including `\r\n` (no PING skipping).
    pub fn read_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return self.buf.drain(..pos + 2).collect();
            }
            if self.fill() == 0 {
                panic!(
                    "connection closed while reading a line; buffered: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    fn read_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill() == 0 {
                panic!(
                    "connection closed while reading {n} bytes; buffered: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// One complete server frame as raw bytes: a control line, or a MSG/HMSG line plus
    /// its payload and trailing CRLF. Unsolicited PINGs are answered and skipped when
    /// `auto_pong` is set.
    pub fn read_frame(&mut self) -> Vec<u8> {
        loop {
            let mut line = self.read_line();
            if self.auto_pong && line == b"PING\r\n" {
                self.send(b"PONG\r\n");
                continue;
            }
            let is_msg = line.starts_with(b"MSG ");
            let is_hmsg = line.starts_with(b"HMSG ");
            if is_msg || is_hmsg {
                let text = String::from_utf8_lossy(&line[..line.len() - 2]).to_string();
                let size: usize = text
                    .split_ascii_whitespace()
                    .last()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad size in {text:?}"));
                let body = self.read_n(size + 2);
                line.extend_from_slice(&body);
            }
            return line;
        }
    }

    /// Reads frames until exactly `expected.len()` bytes were read and compares them.
    pub fn expect(&mut self, expected: &[u8]) {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.extend(self.read_frame());
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "server bytes differ"
        );
    }

    /// Reads one MSG/HMSG frame and parses it; panics on anything else.
    pub fn read_msg(&mut self) -> RawMsg {
        let frame = self.read_frame();
        let end = frame.windows(2).position(|w| w == b"\r\n").unwrap();
        let line = String::from_utf8_lossy(&frame[..end]).to_string();
        let body = &frame[end + 2..frame.len() - 2];
        assert_eq!(
            &frame[frame.len() - 2..],
            b"\r\n",
            "payload not CRLF terminated"
        );
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[0] {
            "MSG" => {
                let (reply, size) = match parts.len() {
                    4 => (None, parts[3]),
                    5 => (Some(parts[3].to_string()), parts[4]),
                    _ => panic!("bad MSG line {line:?}"),
                };
                assert_eq!(size.parse::<usize>().unwrap(), body.len());
                RawMsg {
                    subject: parts[1].to_string(),
                    sid: parts[2].to_string(),
                    reply,
                    headers: None,
                    payload: body.to_vec(),
                }
            }
            "HMSG" => {
                let (reply, hdr, total) = match parts.len() {
                    5 => (None, parts[3], parts[4]),
                    6 => (Some(parts[3].to_string()), parts[4], parts[5]),
                    _ => panic!("bad HMSG line {line:?}"),
                };
                let hdr: usize = hdr.parse().unwrap();
                assert_eq!(total.parse::<usize>().unwrap(), body.len());
                RawMsg {
                    subject: parts[1].to_string(),
                    sid: parts[2].to_string(),
                    reply,
                    headers: Some(body[..hdr].to_vec()),
                    payload: body[hdr..].to_vec(),
                }
            }
            _ => panic!("expected MSG/HMSG, got {line:?}"),
        }
    }

    /// Asserts the server closes the connection (EOF or reset) with no further frames
    /// (unsolicited PINGs aside).
    pub fn expect_closed(&mut self) {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                if line == b"PING\r\n" {
                    continue;
                }
                panic!(
                    "expected the server to close, got {:?}",
                    String::from_utf8_lossy(&line)
                );
            }
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "closed with a partial frame buffered: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return;
                }
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("server did not close the connection within {RAW_TIMEOUT:?}")
                }
                Err(e) => panic!("unexpected read error waiting for close: {e}"),
            }
        }
    }
}

/// Opens raw connections (INFO read, no CONNECT yet) until `need[0]` are on shard 0 and
/// `need[1]` on shard 1.
pub fn open_by_shard(server: &Server, need: [usize; 2]) -> [Vec<RawConn>; 2] {
    let addr = server.addr();
    split_by_shard(server, need, || {
        let c = RawConn::open(&addr);
        let cid = c.client_id();
        (c, cid)
    })
}

/// [`open_by_shard`], then `CONNECT <connect_json>` + PING/PONG on each.
pub fn raw_by_shard(server: &Server, need: [usize; 2], connect_json: &str) -> [Vec<RawConn>; 2] {
    let mut got = open_by_shard(server, need);
    for group in got.iter_mut() {
        for c in group.iter_mut() {
            c.handshake(connect_json);
        }
    }
    got
}

/// One raw connection on shard `a` and one on shard `b`, CONNECTed with `connect_json`.
pub fn raw_pair(server: &Server, a: usize, b: usize, connect_json: &str) -> (RawConn, RawConn) {
    let mut need = [0, 0];
    need[a] += 1;
    need[b] += 1;
    let mut got = raw_by_shard(server, need, connect_json);
    let first = got[a].remove(0);
    let second = got[b].remove(0);
    (first, second)
}
