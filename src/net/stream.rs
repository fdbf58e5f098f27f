//! A client connection's byte stream: plain TCP or TLS over it, and the TLS
//! negotiation done before the connection's tasks start.
//!
//! Plain connections keep their fast path: the enum dispatch is inlined, and only
//! plain streams may be written with `sendmsg` on the raw socket (conn.rs checks
//! [`ConnStream::is_tls`]); TLS data always goes through rustls.
//!
//! Negotiation follows nats-server 2.x (`createClient`):
//! * default: INFO in plaintext, then the client starts TLS. A first byte that is
//!   not a TLS handshake record closes the connection (`tls: first record does not
//!   look like a TLS handshake`); no TLS within `tls.timeout` closes it too.
//! * `allow_non_tls`: INFO in plaintext, then the first byte decides (0x16 = TLS);
//!   a client silent for `tls.timeout` stays plain.
//! * `handshake_first`: TLS at once, INFO inside it; with a fallback delay, a client
//!   silent for that long gets the plaintext INFO and then the default flow.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;

use crate::tls::{DialTls, PeerCert, TlsConfig};

/// A TLS record of type handshake starts with this byte.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The stream a connection reads and writes.
pub enum ConnStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// TLS this server dialed (routes, leaf node remotes).
    TlsDialed(Box<futures_rustls::client::TlsStream<TcpStream>>),
    /// WebSocket framing over a plain or TLS stream (issue #14).
    Ws(Box<super::websocket::WsStream>),
}

impl ConnStream {
    #[inline]
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            ConnStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ConnStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            ConnStream::TlsDialed(s) => Pin::new(&mut **s).poll_read(cx, buf),
            ConnStream::Ws(s) => s.poll_read(cx, buf),
        }
    }

    /// Writes some of `buf`. For TLS the bytes may stay buffered in rustls until
    /// [`ConnStream::poll_flush`].
    #[inline]
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            ConnStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ConnStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            ConnStream::TlsDialed(s) => Pin::new(&mut **s).poll_write(cx, buf),
            ConnStream::Ws(s) => s.poll_write(cx, buf),
        }
    }

    /// Sends what rustls buffered, or frames and sends what a websocket collected;
    /// nothing to do for plain TCP.
    #[inline]
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ConnStream::Plain(_) => Poll::Ready(Ok(())),
            ConnStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            ConnStream::TlsDialed(s) => Pin::new(&mut **s).poll_flush(cx),
            ConnStream::Ws(s) => s.poll_flush(cx),
        }
    }

    /// True for TLS, directly or under websocket framing.
    #[inline]
    pub fn is_tls(&self) -> bool {
        match self {
            ConnStream::Plain(_) => false,
            ConnStream::Tls(_) | ConnStream::TlsDialed(_) => true,
            ConnStream::Ws(s) => s.inner().is_tls(),
        }
    }

    /// True when bytes go to the socket unchanged: only then may the writer use
    /// `sendmsg` on the raw fd, and only then is there nothing to flush.
    #[inline]
    pub fn is_plain(&self) -> bool {
        matches!(self, ConnStream::Plain(_))
    }

    /// True for a websocket connection.
    pub fn is_websocket(&self) -> bool {
        matches!(self, ConnStream::Ws(_))
    }

    /// Lets a websocket wake the parked writer when it queues a control frame.
    pub fn park_writer(&mut self, waker: &std::task::Waker) {
        if let ConnStream::Ws(s) = self {
            s.park_writer(waker);
        }
    }

    /// True when a websocket has control frames (pong, close) for the writer.
    pub fn wants_flush(&self) -> bool {
        match self {
            ConnStream::Ws(s) => s.wants_flush(),
            _ => false,
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ConnStream::Plain(s) => s,
            ConnStream::Tls(s) => s.get_ref().0,
            ConnStream::TlsDialed(s) => s.get_ref().0,
            ConnStream::Ws(s) => s.inner().tcp(),
        }
    }

    /// Queues what an orderly close sends (by the next flush): a TLS close_notify
    /// alert, a websocket close frame with nats-server's status for `reason`
    /// (then the TLS alert under it); no-op for TCP.
    pub fn send_close_notify(&mut self, reason: &str) {
        match self {
            ConnStream::Plain(_) => {}
            ConnStream::Tls(s) => s.get_mut().1.send_close_notify(),
            ConnStream::TlsDialed(s) => s.get_mut().1.send_close_notify(),
            ConnStream::Ws(s) => {
                let status = super::websocket::close_status(reason);
                s.queue_close(status, reason.as_bytes());
            }
        }
    }
}

impl AsRawFd for ConnStream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

/// What a completed TLS handshake established.
#[derive(Debug)]
pub struct TlsState {
    /// `1.2` or `1.3`.
    pub version: &'static str,
    /// Go's name of the cipher suite (`TLS_AES_128_GCM_SHA256`).
    pub cipher: String,
    /// The verified client certificate's identity (with `verify`/`verify_and_map`).
    pub peer: Option<PeerCert>,
}

/// A negotiated connection.
pub struct Negotiated {
    pub stream: ConnStream,
    /// INFO was already written (plaintext); otherwise the caller queues it.
    pub info_sent: bool,
    pub tls: Option<TlsState>,
}

/// Why negotiation ended the connection: the close reason, for the log and /connz.
pub type Failure = &'static str;

/// Negotiates TLS on an accepted connection (see the module docs). `info` is the
/// INFO line; `who` prefixes log lines (`127.0.0.1:5000 - cid:7`).
pub async fn negotiate(
    tls: &TlsConfig,
    allow_non_tls: bool,
    mut tcp: TcpStream,
    info: &[u8],
    who: &str,
) -> Result<Negotiated, Failure> {
    let start = Instant::now();
    if tls.handshake_first && !allow_non_tls {
        let go_tls = match tls.first_fallback {
            None => true,
            Some(delay) => match first_byte(&tcp, delay).await {
                Peek::Byte(_) => true,
                Peek::Eof => return Err("Client Closed"),
                Peek::Timeout => false,
            },
        };
        if go_tls {
            crate::log_debug!("{who} - Starting TLS client connection handshake");
            let left = tls.timeout.saturating_sub(start.elapsed());
            let (stream, state) = handshake(tls, tcp, left, who).await?;
            return Ok(Negotiated {
                stream,
                info_sent: false,
                tls: Some(state),
            });
        }
    }
    write_plain(&mut tcp, info)
        .await
        .map_err(|_| "Write Error")?;
    let info_sent = true;
    let wait = tls.timeout;
    let first = first_byte(&tcp, wait).await;
    if allow_non_tls {
        match first {
            Peek::Byte(TLS_HANDSHAKE_RECORD) => {}
            Peek::Eof => return Err("Client Closed"),
            _ => {
                return Ok(Negotiated {
                    stream: ConnStream::Plain(tcp),
                    info_sent,
                    tls: None,
                })
            }
        }
    }
    crate::log_debug!("{who} - Starting TLS client connection handshake");
    match first {
        Peek::Byte(TLS_HANDSHAKE_RECORD) => {}
        Peek::Byte(_) => {
            crate::log_debug!(
                "{who} - TLS handshake error: tls: first record does not look like a TLS handshake"
            );
            return Err("TLS Handshake Failure");
        }
        Peek::Eof => {
            crate::log_debug!("{who} - TLS handshake error: EOF");
            return Err("TLS Handshake Failure");
        }
        Peek::Timeout => {
            // The client never started TLS: tell it, in plaintext (nats-server
            // closes without a word here; nothing is lost telling an idle client).
            crate::log_debug!("{who} - TLS handshake timeout");
            let _ = write_plain(&mut tcp, b"-ERR 'Secure Connection - TLS Required'\r\n").await;
            return Err("TLS Handshake Failure");
        }
    }
    let left = tls.timeout.saturating_sub(start.elapsed());
    let (stream, state) = handshake(tls, tcp, left, who).await?;
    Ok(Negotiated {
        stream,
        info_sent,
        tls: Some(state),
    })
}

enum Peek {
    Byte(u8),
    Eof,
    Timeout,
}

/// Waits up to `wait` for the client's first byte, without consuming it.
async fn first_byte(tcp: &TcpStream, wait: Duration) -> Peek {
    let peek = async {
        let mut b = [0u8; 1];
        match tcp.peek(&mut b).await {
            Ok(1) => Peek::Byte(b[0]),
            _ => Peek::Eof,
        }
    };
    let timer = async {
        glommio::timer::sleep(wait).await;
        Peek::Timeout
    };
    futures_lite::future::or(peek, timer).await
}

async fn write_plain(tcp: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *tcp).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// TLS at once (the websocket listener's wss://), within `tls.timeout`.
pub async fn tls_first(
    tls: &TlsConfig,
    tcp: TcpStream,
    who: &str,
) -> Result<(ConnStream, TlsState), Failure> {
    handshake(tls, tcp, tls.timeout, who).await
}

/// Serves TLS on a route or leaf node connection (`what`: "route", "leafnode"),
/// with nats-server's log lines, within `tls.timeout`.
pub async fn link_accept(
    tls: &TlsConfig,
    tcp: TcpStream,
    what: &str,
    who: &str,
) -> Result<(ConnStream, TlsState), Failure> {
    crate::log_debug!("{who} - Starting TLS {what} server handshake");
    let start = Instant::now();
    match first_byte(&tcp, tls.timeout).await {
        Peek::Byte(TLS_HANDSHAKE_RECORD) => {}
        Peek::Byte(_) => {
            crate::log_error!(
                "{who} - TLS {what} handshake error: tls: first record does not look like a \
                 TLS handshake"
            );
            return Err("TLS Handshake Failure");
        }
        Peek::Eof => {
            crate::log_error!("{who} - TLS {what} handshake error: EOF");
            return Err("TLS Handshake Failure");
        }
        Peek::Timeout => {
            crate::log_error!("{who} - TLS {what} handshake error: i/o timeout");
            return Err("TLS Handshake Failure");
        }
    }
    let left = tls.timeout.saturating_sub(start.elapsed());
    handshake_as(tls, tcp, left, who, what).await
}

/// Dials TLS on a route or leaf node connection to `server_name` (the URL's host,
/// checked against the server's certificate unless `insecure`).
pub async fn link_dial(
    tls: &DialTls,
    server_name: &str,
    tcp: TcpStream,
    what: &str,
    who: &str,
) -> Result<(ConnStream, TlsState), Failure> {
    crate::log_debug!("{who} - Starting TLS {what} client handshake");
    let host = server_name.trim_start_matches('[').trim_end_matches(']');
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
        crate::log_error!("{who} - TLS {what} handshake error: invalid server name {host:?}");
        return Err("TLS Handshake Failure");
    };
    let connector = TlsConnector::from(Arc::clone(&tls.config));
    let connect = async { Some(connector.connect(name, tcp).await) };
    let timer = async {
        glommio::timer::sleep(tls.timeout).await;
        None
    };
    let stream = match futures_lite::future::or(connect, timer).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            crate::log_error!(
                "{who} - TLS {what} handshake error: {}",
                handshake_error(&e)
            );
            return Err("TLS Handshake Failure");
        }
        None => {
            crate::log_error!("{who} - TLS {what} handshake error: i/o timeout");
            return Err("TLS Handshake Failure");
        }
    };
    let state = finished(stream.get_ref().1, who);
    Ok((ConnStream::TlsDialed(Box::new(stream)), state))
}

/// What a finished handshake agreed, and the peer's certificate identity, logged
/// as nats-server logs a completed handshake.
fn finished(conn: &rustls::CommonState, who: &str) -> TlsState {
    let state = state_of(conn);
    crate::log_debug!("{who} - TLS handshake complete");
    crate::log_debug!(
        "{who} - TLS version {}, cipher suite {}",
        state.version,
        state.cipher
    );
    state
}

/// What a finished handshake agreed, and the peer's certificate identity.
fn state_of(conn: &rustls::CommonState) -> TlsState {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        _ => "1.2",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| crate::tls::go_suite_name(s.suite()))
        .unwrap_or_default();
    let peer = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| PeerCert::from_der(c));
    TlsState {
        version,
        cipher,
        peer,
    }
}

/// Runs the server side of the handshake within `left`.
async fn handshake(
    tls: &TlsConfig,
    tcp: TcpStream,
    left: Duration,
    who: &str,
) -> Result<(ConnStream, TlsState), Failure> {
    handshake_as(tls, tcp, left, who, "").await
}

/// [`handshake`] for a kind of connection (`what`: "" for clients, "route",
/// "leafnode"): nats-server names the kind in its error lines.
async fn handshake_as(
    tls: &TlsConfig,
    tcp: TcpStream,
    left: Duration,
    who: &str,
    what: &str,
) -> Result<(ConnStream, TlsState), Failure> {
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what} ")
    };
    let acceptor = TlsAcceptor::from(Arc::clone(&tls.server));
    let accept = async { Some(acceptor.accept(tcp).await) };
    let timer = async {
        glommio::timer::sleep(left).await;
        None
    };
    let stream = match futures_lite::future::or(accept, timer).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            let why = handshake_error(&e);
            // nats-server logs a client's EOF at debug, a route's or leaf's as an error.
            if e.kind() == io::ErrorKind::UnexpectedEof && what.is_empty() {
                crate::log_debug!("{who} - TLS handshake error: {why}");
            } else {
                crate::log_error!("{who} - TLS {what}handshake error: {why}");
            }
            return Err("TLS Handshake Failure");
        }
        None => {
            if what.is_empty() {
                crate::log_debug!("{who} - TLS handshake error: i/o timeout");
                crate::log_debug!("{who} - TLS handshake timeout");
            } else {
                crate::log_error!("{who} - TLS {what}handshake error: i/o timeout");
            }
            return Err("TLS Handshake Failure");
        }
    };
    let state = finished(stream.get_ref().1, who);
    Ok((ConnStream::Tls(Box::new(stream)), state))
}

/// nats-server's (Go's) words for the common handshake failures.
fn handshake_error(e: &io::Error) -> String {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    match inner {
        Some(rustls::Error::NoCertificatesPresented) => {
            "tls: client didn't provide a certificate".into()
        }
        Some(rustls::Error::InvalidCertificate(c)) => {
            let why = match c {
                rustls::CertificateError::UnknownIssuer => {
                    "x509: certificate signed by unknown authority".to_string()
                }
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. } => {
                    "x509: certificate has expired or is not yet valid".to_string()
                }
                rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. } => {
                    "x509: certificate has expired or is not yet valid".to_string()
                }
                other => format!("{other:?}"),
            };
            format!("tls: failed to verify certificate: {why}")
        }
        Some(other) => format!("tls: {other}"),
        None if e.kind() == io::ErrorKind::UnexpectedEof => "EOF".into(),
        None => e.to_string(),
    }
}
