//! The URL account resolver (`resolver: URL(http://host/jwt/v1/accounts/)`): an
//! account's JWT is fetched with `GET <url><account key>` the first time a user of
//! the account logs in, and kept for the life of the process (as nats-server keeps
//! the accounts it has looked up). Fetches are blocking and run on the blocking pool
//! ([`crate::auth::authenticate`]), never on a shard.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// nats-server's fetch timeout for the URL resolver.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(1900);

/// Largest JWT body accepted from the resolver.
const MAX_BODY: usize = 1 << 20;

/// Account JWTs fetched so far, by account key. Process-wide because every shard
/// rebuilds its trust from the options (on reload and on updates) and must find the
/// accounts already fetched, as the reference's account cache outlives a reload.
static FETCHED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Remembers a fetched (and checked) account JWT.
pub fn remember(key: &str, jwt: &str) {
    let mut g = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new)
        .insert(key.to_string(), jwt.to_string());
}

/// Every account JWT fetched so far.
pub fn fetched() -> Vec<String> {
    let g = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default()
}

/// Whether the account server answered the start-up check.
static CHECKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// nats-server's start-up check of a URL resolver: `GET <url>` must answer 200, or
/// the server does not start. Done once per process (rebuilds of the trust skip it).
pub fn check_once(url: &ResolverUrl) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    if CHECKED.load(Ordering::Acquire) {
        return Ok(());
    }
    url.fetch("", FETCH_TIMEOUT)?;
    CHECKED.store(true, Ordering::Release);
    Ok(())
}

/// A resolver URL as configured: `http[s]://host[:port]/path/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverUrl {
    /// The URL (the account key is appended to it).
    pub url: String,
    /// The text as configured, for messages (nats-server shows it so, quotes too).
    shown: String,
    host: String,
    port: u16,
    path: String,
    /// `https://`: the server is checked against `resolver_tls` (its `ca_file`, and
    /// a client certificate when it has one).
    https: bool,
    tls: Option<crate::tls::DialTls>,
}

impl ResolverUrl {
    /// Parses the URL inside `URL(...)`.
    pub fn parse(text: &str) -> Result<ResolverUrl, String> {
        // `URL("http://...")` as the docs write it: the quotes are not the URL's.
        let shown = text.trim().to_string();
        let url = shown.trim_matches(|c| c == '"' || c == '\'').to_string();
        let (rest, https) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else {
            return Err(format!("URL resolver: bad url {url:?}"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse()
                    .map_err(|_| format!("URL resolver: bad port in {url:?}"))?,
            ),
            _ => (authority.to_string(), if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("URL resolver: no host in {url:?}"));
        }
        Ok(ResolverUrl {
            shown,
            url: url.clone(),
            host,
            port,
            path: path.to_string(),
            https,
            tls: None,
        })
    }

    /// The TLS settings (`resolver_tls`) an `https://` URL is fetched with.
    pub fn set_tls(&mut self, tls: Option<crate::tls::DialTls>) {
        self.tls = tls;
    }

    /// `GET <url><key>`: the body of a 200 answer, trimmed. Blocking, bounded by
    /// `timeout` in all (connect, send, every read).
    pub fn fetch(&self, key: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let what = format!("{}{key}", self.shown);
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("could not fetch <{what}>: {e}"))?
            .collect();
        let mut last = String::from("no address");
        let mut stream = None;
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let tcp = stream.ok_or_else(|| format!("could not fetch <{what}>: {last}"))?;
        let io = |e: std::io::Error| format!("could not fetch <{what}>: {e}");
        tcp.set_write_timeout(Some(timeout)).map_err(io)?;
        let mut s: Box<dyn ReadWrite> = if self.https {
            let dial = match &self.tls {
                Some(t) => t.clone(),
                None => crate::tls::default_dial()
                    .map_err(|e| format!("could not fetch <{what}>: {e}"))?,
            };
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("could not fetch <{what}>: {e}"))?;
            let conn = rustls::ClientConnection::new(dial.config.clone(), name)
                .map_err(|e| format!("could not fetch <{what}>: {e}"))?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        } else {
            Box::new(tcp)
        };
        let request = format!(
            "GET {}{key} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: natrium\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path, self.host, self.port
        );
        s.write_all(request.as_bytes()).map_err(io)?;
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("could not fetch <{what}>: timed out"));
            }
            s.socket().set_read_timeout(Some(left)).map_err(io)?;
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() > MAX_BODY + 16 * 1024 {
                        return Err(format!("could not fetch <{what}>: answer too large"));
                    }
                    if let Some(body) = complete_body(&got) {
                        return answer(&what, &got, body?);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("could not fetch <{what}>: timed out"));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        match complete_body(&got) {
            Some(body) => answer(&what, &got, body?),
            None => {
                // Closed without a length: the body runs to the end.
                let head = head_end(&got)
                    .ok_or_else(|| format!("could not fetch <{what}>: bad HTTP answer"))?;
                answer(&what, &got, got[head..].to_vec())
            }
        }
    }
}

/// A plain or TLS stream to the resolver, and the socket under it (for timeouts).
trait ReadWrite: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl ReadWrite for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl ReadWrite for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// Where the head ends (past its blank line).
fn head_end(got: &[u8]) -> Option<usize> {
    memchr::memmem::find(got, b"\r\n\r\n").map(|i| i + 4)
}

/// The body once all of it is in `got` (by Content-Length or chunked coding);
/// `None` while more is needed or the length is not known.
fn complete_body(got: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let head = head_end(got)?;
    let text = String::from_utf8_lossy(&got[..head]).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        return dechunk(&got[head..]);
    }
    let len: usize = header("content-length:")?.parse().ok()?;
    if len > MAX_BODY {
        return Some(Err("answer too large".into()));
    }
    (got.len() >= head + len).then(|| Ok(got[head..head + len].to_vec()))
}

/// Decodes a chunked body; `None` until its last chunk has arrived.
fn dechunk(mut b: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let mut out = Vec::new();
    loop {
        let nl = memchr::memmem::find(b, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            return Some(Err("bad chunked encoding".into()));
        };
        b = &b[nl + 2..];
        if size == 0 {
            return Some(Ok(out));
        }
        if out.len() + size > MAX_BODY {
            return Some(Err("answer too large".into()));
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// The JWT of a 200 answer, or why there is none.
fn answer(what: &str, got: &[u8], body: Vec<u8>) -> Result<String, String> {
    let line_end = memchr::memchr(b'\n', got).unwrap_or(got.len());
    let status_line = String::from_utf8_lossy(&got[..line_end]).trim().to_string();
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if !status_line.starts_with("HTTP/") {
        return Err(format!("could not fetch <{what}>: bad HTTP answer"));
    }
    if code != "200" {
        let status = status_line.split_once(' ').map_or("", |(_, s)| s);
        return Err(format!("could not fetch <{what}>: {status}"));
    }
    String::from_utf8(body)
        .map(|s| s.trim().to_string())
        .map_err(|_| format!("could not fetch <{what}>: the answer is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ResolverUrl::parse("http://127.0.0.1:9090/jwt/v1/accounts/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 9090));
        assert_eq!(u.path, "/jwt/v1/accounts/");
        let u = ResolverUrl::parse("\"http://example.com\"").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("example.com", 80, "/")
        );
        assert!(ResolverUrl::parse("ftp://x/").is_err());
        let u = ResolverUrl::parse("https://x/jwt/").unwrap();
        assert!(u.https && u.port == 443 && u.path == "/jwt/");
        assert!(ResolverUrl::parse("http://:80/").is_err());
        assert!(ResolverUrl::parse("http://h:notaport/").is_err());
    }

    #[test]
    fn bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert!(complete_body(plain).is_none());
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde";
        assert_eq!(complete_body(plain).unwrap().unwrap(), b"abcde");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(complete_body(chunked).unwrap().unwrap(), b"abcde");
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab";
        assert!(complete_body(partial).is_none());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(complete_body(bad).unwrap().is_err());
        assert_eq!(
            answer("u", b"HTTP/1.1 200 OK\r\n", b" jwt\n".to_vec()).unwrap(),
            "jwt"
        );
        assert!(answer("u", b"HTTP/1.1 404 Not Found\r\n", Vec::new())
            .unwrap_err()
            .ends_with("404 Not Found"));
        assert!(answer("u", b"garbage\r\n", Vec::new()).is_err());
    }
}
