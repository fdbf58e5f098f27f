//! A lean raw NATS client: handshake, batched PUB frames, and a MSG parser that
//! works on large reads with memchr and never allocates per message.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::ws::Transport;

/// Bytes at the start of every payload: publisher id (u32 LE) + sequence (u64 LE).
pub const HEADER_LEN: usize = 12;
/// Payloads of at least this size also carry a send timestamp (u64 LE ns) at 12..20.
pub const STAMP_LEN: usize = 20;

/// A parsed `nats://[user:pass@|token@]host:port` URL (`ws://` for a websocket).
#[derive(Clone, Debug)]
pub struct Url {
    pub text: String,
    pub hostport: String,
    /// `ws://`: the connection is a websocket.
    pub websocket: bool,
    /// A user JWT and its seed (`--creds`): CONNECT carries the JWT and the
    /// server's nonce signed with the seed.
    pub creds: Option<(String, String)>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let websocket = s.starts_with("ws://");
        let rest = if let Some(r) = s
            .strip_prefix("nats://")
            .or_else(|| s.strip_prefix("ws://"))
        {
            r
        } else if s.contains("://") {
            return Err(format!(
                "unsupported URL scheme in '{s}' (nats:// or ws://)"
            ));
        } else {
            s
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        if hostport.is_empty() {
            return Err(format!("bad URL '{s}': no host"));
        }
        let hostport = if hostport.contains(':') && !hostport.ends_with(']') {
            hostport.to_string()
        } else {
            format!("{hostport}:4222")
        };
        let (mut user, mut pass, mut token) = (None, None, None);
        if let Some(a) = auth {
            match a.split_once(':') {
                Some((u, p)) => {
                    user = Some(u.to_string());
                    pass = Some(p.to_string());
                }
                None => token = Some(a.to_string()),
            }
        }
        Ok(Url {
            text: s.to_string(),
            hostport,
            websocket,
            creds: None,
            user,
            pass,
            token,
        })
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        self.hostport
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.hostport))?
            .next()
            .ok_or_else(|| format!("cannot resolve {}", self.hostport))
    }

    fn connect_json(&self, name: &str, nonce: Option<&str>) -> Result<String, String> {
        let mut obj = serde_json::json!({
            "verbose": false, "pedantic": false, "headers": false, "protocol": 1,
            "name": name, "lang": "natrium-bench", "version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(u) = &self.user {
            obj["user"] = u.clone().into();
        }
        if let Some(p) = &self.pass {
            obj["pass"] = p.clone().into();
        }
        if let Some(t) = &self.token {
            obj["auth_token"] = t.clone().into();
        }
        if let Some((jwt, seed)) = &self.creds {
            let key = nkeys::KeyPair::from_seed(seed).map_err(|e| format!("creds seed: {e}"))?;
            let nonce = nonce.ok_or("the server sent no nonce to sign")?;
            let sig = key
                .sign(nonce.as_bytes())
                .map_err(|e| format!("signing the nonce: {e}"))?;
            obj["jwt"] = jwt.clone().into();
            obj["sig"] = data_encoding::BASE64URL_NOPAD.encode(&sig).into();
        }
        Ok(obj.to_string())
    }

    /// Reads a `.creds` file (the user JWT and seed blocks) into [`Url::creds`].
    pub fn with_creds(mut self, path: &str) -> Result<Url, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut blocks = Vec::new();
        let mut cur: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("---") && line.ends_with("---") {
                match cur.take() {
                    Some(b) => blocks.push(b),
                    None => cur = Some(String::new()),
                }
            } else if let Some(b) = cur.as_mut() {
                b.push_str(line);
            }
        }
        match (blocks.first(), blocks.get(1)) {
            (Some(jwt), Some(seed)) => self.creds = Some((jwt.clone(), seed.clone())),
            _ => return Err(format!("{path}: no user JWT and seed")),
        }
        Ok(self)
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One connection after a successful handshake (INFO, CONNECT, PING -> PONG).
pub struct Conn {
    pub stream: Transport,
    pub rd: ReadBuf,
    pub timeout: Duration,
}

impl Conn {
    pub fn connect(url: &Url, name: &str, timeout: Duration) -> Result<Conn, String> {
        let addr = url.addr()?;
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to {}: {e}", url.text))?;
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let stream = if url.websocket {
            Transport::Ws(Box::new(crate::ws::upgrade(stream, &url.hostport)?))
        } else {
            Transport::Tcp(stream)
        };
        let mut c = Conn {
            stream,
            rd: ReadBuf::new(64 << 10),
            timeout,
        };
        let deadline = Instant::now() + timeout;
        let line = c.read_line(deadline)?;
        if !line.starts_with("INFO ") {
            return Err(format!(
                "{} did not greet with INFO (got '{}')",
                url.text,
                truncate(&line, 60)
            ));
        }
        let nonce = serde_json::from_str::<serde_json::Value>(&line[5..])
            .ok()
            .and_then(|i| i.get("nonce").and_then(|n| n.as_str()).map(str::to_string));
        let hello = format!(
            "CONNECT {}\r\nPING\r\n",
            url.connect_json(name, nonce.as_deref())?
        );
        c.write_all(hello.as_bytes())?;
        c.wait_pong(deadline)?;
        Ok(c)
    }

    pub fn write_all(&mut self, b: &[u8]) -> Result<(), String> {
        self.stream.write_all(b).map_err(|e| {
            if is_timeout(&e) {
                "write to server timed out (server not reading)".to_string()
            } else {
                format!("write to server failed: {e} (server closed the connection?)")
            }
        })
    }

    /// Read one control line (used during handshakes only).
    fn read_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            let data = self.rd.data();
            if let Some(nl) = memchr::memchr(b'\n', data) {
                let line = String::from_utf8_lossy(&data[..nl])
                    .trim_end_matches('\r')
                    .to_string();
                self.rd.consume(nl + 1);
                return Ok(line);
            }
            if data.len() > 1 << 20 {
                return Err("control line too long from server".into());
            }
            self.fill(deadline)?;
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            match self.rd.read_from(&mut self.stream) {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(_) => return Ok(()),
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                    if Instant::now() >= deadline {
                        return Err("timed out waiting for the server".into());
                    }
                }
                Err(e) => return Err(format!("read from server failed: {e}")),
            }
        }
    }

    /// Wait for PONG, answering PINGs and skipping +OK/INFO; -ERR is an error.
    pub fn wait_pong(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            let line = self.read_line(deadline)?;
            if line == "PONG" {
                return Ok(());
            } else if line == "PING" {
                self.write_all(b"PONG\r\n")?;
            } else if line.starts_with("-ERR") {
                return Err(format!("server refused: {line}"));
            } else if line.starts_with("+OK") || line.starts_with("INFO ") || line.is_empty() {
                continue;
            } else {
                return Err(format!(
                    "unexpected from server while waiting for PONG: '{}'",
                    truncate(&line, 60)
                ));
            }
        }
    }

    /// Send PING and wait for PONG: after it the server has processed everything before.
    pub fn flush(&mut self) -> Result<(), String> {
        self.write_all(b"PING\r\n")?;
        let deadline = Instant::now() + self.timeout;
        self.wait_pong(deadline)
    }

    /// Send SUB and a PING without waiting: the reader sees the PONG (and any
    /// MSG that arrives before it).
    pub fn subscribe_nowait(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        sid: u32,
    ) -> Result<(), String> {
        let line = match queue {
            Some(q) => format!("SUB {subject} {q} {sid}\r\nPING\r\n"),
            None => format!("SUB {subject} {sid}\r\nPING\r\n"),
        };
        self.write_all(line.as_bytes())
    }

    /// Subscribes on `subject` and waits until a message published through `probe`
    /// (a connection to another server of the cluster) arrives: interest has crossed
    /// the route. A probe subscription after the real one proves it, because a server
    /// sends one connection's interest to a route in order. Ends with a PING whose
    /// PONG the reader sees, as after [`Conn::subscribe_nowait`].
    pub fn subscribe_across(
        &mut self,
        probe: &mut Conn,
        subject: &str,
        queue: Option<&str>,
        sid: u32,
        probe_subject: &str,
    ) -> Result<(), String> {
        const PROBE_SID: u32 = 999_999;
        let sub = match queue {
            Some(q) => format!("SUB {subject} {q} {sid}\r\n"),
            None => format!("SUB {subject} {sid}\r\n"),
        };
        self.write_all(format!("{sub}SUB {probe_subject} {PROBE_SID}\r\n").as_bytes())?;
        self.flush()?;
        let deadline = Instant::now() + self.timeout;
        let wanted = format!("MSG {probe_subject} {PROBE_SID} 0");
        // Short reads, so that a probe that did not make it is sent again soon.
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(20)));
        'probe: loop {
            probe.write_all(format!("PUB {probe_subject} 0\r\n\r\n").as_bytes())?;
            probe.flush()?;
            let wait = (Instant::now() + Duration::from_millis(100)).min(deadline);
            loop {
                match self.read_line(wait) {
                    Ok(line) if line == wanted => break 'probe,
                    Ok(line) if line == "PING" => self.write_all(b"PONG\r\n")?,
                    Ok(_) => {}
                    Err(_) if Instant::now() < deadline => continue 'probe,
                    Err(_) => return Err(format!("interest in {subject} never crossed the route")),
                }
            }
        }
        let _ = self.stream.set_read_timeout(Some(self.timeout));
        // Later probes may still be in flight: they arrive before this PONG.
        self.write_all(format!("UNSUB {PROBE_SID}\r\nPING\r\n").as_bytes())?;
        loop {
            let line = self.read_line(deadline)?;
            if line == "PONG" {
                break;
            }
        }
        self.write_all(b"PING\r\n")
    }

    pub fn subscribe(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        sid: u32,
    ) -> Result<(), String> {
        let line = match queue {
            Some(q) => format!("SUB {subject} {q} {sid}\r\n"),
            None => format!("SUB {subject} {sid}\r\n"),
        };
        self.write_all(line.as_bytes())?;
        self.flush()
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A large read buffer with a consumed prefix.
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn new(cap: usize) -> ReadBuf {
        ReadBuf {
            buf: vec![0; cap],
            start: 0,
            end: 0,
        }
    }
    /// Grow the buffer to at least `cap` bytes, keeping its contents.
    pub fn grow(&mut self, cap: usize) {
        if self.buf.len() < cap {
            self.buf.resize(cap, 0);
        }
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    /// Make room for at least `need` more bytes past the unconsumed data.
    fn reserve(&mut self, need: usize) {
        if self.buf.len() - self.end >= need.max(1) {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < need.max(1) {
            let newlen = (self.end + need.max(1)).max(self.buf.len() * 2).max(4096);
            self.buf.resize(newlen, 0);
        }
    }
    pub fn read_from(&mut self, s: &mut impl Read) -> std::io::Result<usize> {
        // Keep at least a quarter of the buffer free for each read.
        let q = self.buf.len() / 4;
        self.reserve(q);
        let n = s.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// One event from the server's stream.
pub enum Event<'a> {
    Msg {
        reply: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Err(&'a [u8]),
}

/// Parse every complete operation in `rd`, calling `f` for each. Returns Err on a
/// protocol violation. Incomplete trailing data stays in the buffer.
pub fn parse<F: FnMut(Event<'_>)>(rd: &mut ReadBuf, mut f: F) -> Result<(), String> {
    let mut pos = 0usize;
    let data = rd.data();
    let res = loop {
        let d = &data[pos..];
        let Some(nl) = memchr::memchr(b'\n', d) else {
            if d.len() > 64 << 10 {
                break Err("control line too long from server".to_string());
            }
            break Ok(());
        };
        let line = if nl > 0 && d[nl - 1] == b'\r' {
            &d[..nl - 1]
        } else {
            &d[..nl]
        };
        if line.starts_with(b"MSG ") {
            // MSG <subject> <sid> [reply] <len>
            let Some(sp) = memchr::memrchr(b' ', line) else {
                break Err("bad MSG line".into());
            };
            let Some(len) = parse_usize(&line[sp + 1..]) else {
                break Err("bad MSG length".into());
            };
            let total = nl + 1 + len + 2;
            if d.len() < total {
                // Incomplete: make sure the buffer can hold it.
                let have = d.len();
                let need = total - have;
                rd_need(rd, pos, need);
                return Ok(());
            }
            let head = &line[4..sp];
            // head = subject sid [reply]: reply is present when there are 3 tokens.
            let reply = {
                let mut it = head.split(|&b| b == b' ').filter(|t| !t.is_empty());
                let _subj = it.next();
                let _sid = it.next();
                it.next()
            };
            let payload = &d[nl + 1..nl + 1 + len];
            f(Event::Msg { reply, payload });
            pos += total;
        } else {
            match line {
                b"PING" => f(Event::Ping),
                b"PONG" => f(Event::Pong),
                _ if line.starts_with(b"-ERR") => f(Event::Err(line)),
                _ if line.starts_with(b"+OK") || line.starts_with(b"INFO ") || line.is_empty() => {}
                _ if line.starts_with(b"HMSG ") => {
                    break Err("unexpected HMSG (headers were not requested)".into());
                }
                _ => {
                    let s = String::from_utf8_lossy(&line[..line.len().min(60)]).to_string();
                    break Err(format!("unexpected from server: '{s}'"));
                }
            }
            pos += nl + 1;
        }
    };
    rd.consume(pos);
    res
}

fn rd_need(rd: &mut ReadBuf, pos: usize, need: usize) {
    rd.consume(pos);
    rd.reserve(need);
}

fn parse_usize(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 12 {
        return None;
    }
    let mut n = 0usize;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Some(n)
}

/// Builds batches of PUB frames from a template, patching id/seq/stamp in place.
pub struct PubBatcher {
    frame: Vec<u8>,
    payload_off: usize,
    size: usize,
    pub buf: Vec<u8>,
    pub per_batch: usize,
}

impl PubBatcher {
    pub fn new(subject: &str, reply: Option<&str>, size: usize, batch_bytes: usize) -> Self {
        let mut frame = match reply {
            Some(r) => format!("PUB {subject} {r} {size}\r\n").into_bytes(),
            None => format!("PUB {subject} {size}\r\n").into_bytes(),
        };
        let payload_off = frame.len();
        frame.extend(std::iter::repeat_n(b'x', size));
        frame.extend_from_slice(b"\r\n");
        let per_batch = (batch_bytes / frame.len()).max(1);
        PubBatcher {
            buf: Vec::with_capacity(per_batch * frame.len()),
            frame,
            payload_off,
            size,
            per_batch,
        }
    }
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }
    /// Append one frame. `stamp` is written when the payload has room for it.
    #[inline]
    pub fn push(&mut self, pub_id: u32, seq: u64, stamp: u64) {
        let at = self.buf.len() + self.payload_off;
        self.buf.extend_from_slice(&self.frame);
        let p = &mut self.buf[at..at + self.size];
        p[0..4].copy_from_slice(&pub_id.to_le_bytes());
        p[4..12].copy_from_slice(&seq.to_le_bytes());
        if self.size >= STAMP_LEN {
            p[12..20].copy_from_slice(&stamp.to_le_bytes());
        }
    }
}

/// Decode (publisher id, sequence, stamp) from a payload.
#[inline]
pub fn decode(p: &[u8]) -> Option<(u32, u64, Option<u64>)> {
    if p.len() < HEADER_LEN {
        return None;
    }
    let id = u32::from_le_bytes(p[0..4].try_into().unwrap());
    let seq = u64::from_le_bytes(p[4..12].try_into().unwrap());
    let stamp = if p.len() >= STAMP_LEN {
        Some(u64::from_le_bytes(p[12..20].try_into().unwrap()))
    } else {
        None
    };
    Some((id, seq, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let u = Url::parse("nats://127.0.0.1:4222").unwrap();
        assert_eq!(u.hostport, "127.0.0.1:4222");
        let u = Url::parse("nats://a:b@localhost").unwrap();
        assert_eq!(u.hostport, "localhost:4222");
        assert_eq!(u.user.as_deref(), Some("a"));
        assert!(Url::parse("http://x").is_err());
    }

    #[test]
    fn batch_roundtrip() {
        let mut b = PubBatcher::new("s", None, 24, 1000);
        b.push(3, 77, 5);
        let frame = &b.buf;
        let start = frame.iter().position(|&c| c == b'\n').unwrap() + 1;
        let (id, seq, st) = decode(&frame[start..start + 24]).unwrap();
        assert_eq!((id, seq, st), (3, 77, Some(5)));
    }

    #[test]
    fn parse_split_msgs() {
        let mut rd = ReadBuf::new(16);
        let wire = b"MSG a 1 5\r\nhello\r\nPING\r\nMSG b 2 r.x 3\r\nabc\r\n";
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            rd.reserve(chunk.len());
            rd.buf[rd.end..rd.end + chunk.len()].copy_from_slice(chunk);
            rd.end += chunk.len();
            parse(&mut rd, |e| match e {
                Event::Msg { reply, payload } => got.push(format!(
                    "{}:{}",
                    String::from_utf8_lossy(reply.unwrap_or(b"-")),
                    String::from_utf8_lossy(payload)
                )),
                Event::Ping => got.push("PING".into()),
                _ => {}
            })
            .unwrap();
        }
        assert_eq!(got, vec!["-:hello", "PING", "r.x:abc"]);
    }
}
