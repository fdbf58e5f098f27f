//! A small HTTP/1.1 server over `std::net` for the monitoring endpoints: one plain
//! acceptor thread, one short-lived thread per connection (bounded), request heads of
//! at most 8 KB, a 5 s budget to send each head, keep-alive for bodiless requests.
//! Nothing here touches a shard; data comes from snapshots the shards send.
//!
//! With `https`, each connection is wrapped in a rustls [`StreamOwned`] on its own
//! thread; the handshake runs on the first read, under the same time budget as a
//! request head.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::format::http_date;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send one request head, and to take a response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Monitoring connections served at once; more are answered 503 and closed.
pub const MAX_CONNS: usize = 64;
/// Requests served on one keep-alive connection before it is closed.
const MAX_REQUESTS_PER_CONN: usize = 100;

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path without the query, percent-decoded.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
}

impl Request {
    /// The first value of query parameter `key` (Go's `URL.Query().Get`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Adds `Access-Control-Allow-Origin: *` (JSON endpoints).
    pub cors: bool,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with pretty JSON.
    pub fn json(body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            cors: true,
            body,
        }
    }

    /// A plain-text error (`400` for bad query values, as nats-server answers them).
    pub fn text(status: u16, msg: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            cors: false,
            body: msg.into().into_bytes(),
        }
    }

    /// Go's `404 page not found`.
    pub fn not_found() -> Response {
        Response::text(404, "404 page not found\n")
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A monitoring connection: plain TCP or TLS over it.
trait Conn: Read + Write {
    /// The socket underneath (timeouts).
    fn tcp(&self) -> &TcpStream;
    /// Ends the connection after the last response (TLS: close_notify first).
    fn finish(&mut self);
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
    fn finish(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Conn for StreamOwned<ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
    fn finish(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}

fn write_response(
    stream: &mut dyn Conn,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    out.extend_from_slice(
        format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status)).as_bytes(),
    );
    if resp.cors {
        out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
    }
    out.extend_from_slice(format!("Content-Type: {}\r\n", resp.content_type).as_bytes());
    if resp.status == 404 {
        out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    }
    out.extend_from_slice(format!("Date: {}\r\n", http_date(SystemTime::now())).as_bytes());
    out.extend_from_slice(format!("Content-Length: {}\r\n", resp.body.len()).as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

/// Percent-decoding (`+` as space in queries); `None` on a bad escape.
fn decode(s: &str, plus_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a query string into decoded pairs; pairs with bad escapes are skipped (as
/// Go's `URL.Query` does).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

/// What reading one request head produced.
enum Head {
    /// A complete head: the request, whether the connection may be kept open.
    Req(Request, bool),
    /// The peer closed before sending anything.
    Eof,
    /// Answer this and close.
    Fail(Response),
}

fn parse_head(head: &[u8]) -> Head {
    let Ok(text) = std::str::from_utf8(head) else {
        return Head::Fail(Response::text(400, "400 Bad Request"));
    };
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Fail(Response::text(400, "400 Bad Request"));
    };
    if method.is_empty() || !method.bytes().all(|c| c.is_ascii_alphabetic()) {
        return Head::Fail(Response::text(400, "400 Bad Request"));
    }
    let keep_default = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Head::Fail(Response::text(505, "505 HTTP Version Not Supported")),
    };
    let mut keep = keep_default;
    let mut has_body = false;
    for h in lines {
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Head::Fail(Response::text(400, "400 Bad Request: malformed header"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep = false;
            } else if v.contains("keep-alive") {
                keep = true;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            has_body |= value != "0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    // Targets in absolute form (`http://host/path?q`) keep only the path part.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Head::Fail(Response::text(400, "400 Bad Request"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(path) = decode(path, false) else {
        return Head::Fail(Response::text(400, "400 Bad Request"));
    };
    Head::Req(
        Request {
            method: method.to_string(),
            path,
            query: parse_query(query),
        },
        keep && !has_body,
    )
}

/// Reads one request head into `buf` (which may already hold pipelined bytes),
/// consuming it. The whole head must arrive within [`IO_TIMEOUT`].
fn read_head(stream: &mut dyn Conn, buf: &mut Vec<u8>) -> Head {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = find_head_end(buf) {
            if end > MAX_HEAD {
                return Head::Fail(Response::text(431, "431 Request Header Fields Too Large"));
            }
            let head: Vec<u8> = buf.drain(..end).collect();
            return parse_head(&head);
        }
        if buf.len() > MAX_HEAD {
            return Head::Fail(Response::text(431, "431 Request Header Fields Too Large"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.tcp().set_read_timeout(Some(left)).is_err() {
            return Head::Fail(Response::text(408, "408 Request Timeout"));
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Head::Eof,
            Ok(0) => return Head::Fail(Response::text(400, "400 Bad Request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) if buf.is_empty() => return Head::Eof,
            Err(_) => return Head::Fail(Response::text(408, "408 Request Timeout")),
        }
    }
}

/// End of the head (`\r\n\r\n` or `\n\n`), past the blank line. Blank lines before a
/// request line are skipped by the caller's parse (they count toward the limit).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let b = &buf[start..];
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(start + i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(start + i + 2)
        } else {
            None
        }
    })
}

fn serve_conn(
    stream: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
    handler: &(dyn Fn(&Request) -> Response + Sync),
) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let mut stream = stream;
            serve_requests(&mut stream, handler);
        }
        Some(config) => {
            let Ok(conn) = ServerConnection::new(config.clone()) else {
                return;
            };
            serve_requests(&mut StreamOwned::new(conn, stream), handler);
        }
    }
}

fn serve_requests(stream: &mut dyn Conn, handler: &(dyn Fn(&Request) -> Response + Sync)) {
    let mut buf = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONN {
        // Skip blank lines between requests.
        let skip = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(buf.len());
        buf.drain(..skip);
        let (req, keep) = match read_head(stream, &mut buf) {
            Head::Req(req, keep) => (req, keep),
            Head::Eof => return,
            Head::Fail(resp) => {
                let _ = write_response(stream, &resp, false, false);
                stream.finish();
                return;
            }
        };
        let resp = handler(&req);
        if write_response(stream, &resp, req.method == "HEAD", keep).is_err() || !keep {
            stream.finish();
            return;
        }
    }
}

/// Serves `listener` on the calling thread forever, handing each connection to a
/// thread of its own (at most [`MAX_CONNS`] at once), over TLS when `tls` is given.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                crate::log_debug!("Monitoring accept error: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            // Over TLS the answer would need a handshake: just close.
            if tls.is_none() {
                let resp = Response::text(503, "too many monitoring connections\n");
                let _ = write_response(&mut stream, &resp, false, false);
            }
            continue;
        }
        let handler = handler.clone();
        let tls = tls.clone();
        let active_c = active.clone();
        let spawned = std::thread::Builder::new()
            .name("monitor-conn".into())
            .stack_size(1 << 20)
            .spawn(move || {
                serve_conn(stream, tls.as_ref(), &*handler);
                active_c.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let Head::Req(r, keep) =
            parse_head(b"GET /connz?limit=2&sort=msgs_to&x=a%20b HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!("not parsed")
        };
        assert!(keep);
        assert_eq!(r.path, "/connz");
        assert_eq!(r.get("limit"), Some("2"));
        assert_eq!(r.get("x"), Some("a b"));
        let Head::Req(_, keep) = parse_head(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!keep);
        assert!(matches!(parse_head(b"GARBAGE\r\n\r\n"), Head::Fail(_)));
        assert_eq!(find_head_end(b"\r\nGET / HTTP/1.1\r\n\r\nX"), Some(20));
    }
}
