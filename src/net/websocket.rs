//! WebSocket (RFC 6455) for client connections: the HTTP/1.1 upgrade and the
//! framing layer under the NATS protocol, as nats-server 2.15 does them.
//!
//! Reading unmasks and compacts frame payloads in place in the caller's buffer, so
//! the NATS parser sees plain protocol bytes and nothing is allocated per message.
//! Writing collects everything written between two flushes into one binary frame:
//! the writer flushes once per tick, so a tick's output is one frame. Server frames
//! are never masked. Control frames (pong, close) are queued between data frames and
//! sent by the connection's writer, the only task that writes to the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::stream::ConnStream;
use crate::config::websocket::WebsocketOpts;

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// Close status codes nats-server sends.
pub const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_POLICY_VIOLATION: u16 = 1008;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
const CLOSE_INTERNAL_ERROR: u16 = 1011;
const CLOSE_TLS_HANDSHAKE: u16 = 1015;

/// Control frame payloads are at most this long (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;
/// Room kept in front of the open data frame for its header (server frames: 2..10).
const HEADER_ROOM: usize = 10;
/// The largest HTTP request head read before giving up (Go's limit is 1 MB; a
/// websocket upgrade is a few hundred bytes).
const MAX_REQUEST: usize = 16 * 1024;
/// RFC 6455 1.3: appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The read side's position in the frame stream.
struct ReadState {
    hdr: [u8; 14],
    hlen: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    in_frame: bool,
    opcode: u8,
    fin: bool,
    masked: bool,
    mask: [u8; 4],
    mask_pos: usize,
    /// A fragmented data message is in progress (continuations expected).
    in_message: bool,
    /// The current data message is compressed (RSV1 on its first frame).
    compressed: bool,
    /// A compressed message just ended: decoding stops so its inflated bytes keep
    /// their place in the stream.
    inflate_now: bool,
    ctl: [u8; MAX_CONTROL_PAYLOAD],
    ctl_len: usize,
}

impl Default for ReadState {
    fn default() -> ReadState {
        ReadState {
            hdr: [0; 14],
            hlen: 0,
            left: 0,
            in_frame: false,
            opcode: 0,
            fin: false,
            masked: false,
            mask: [0; 4],
            mask_pos: 0,
            in_message: false,
            compressed: false,
            inflate_now: false,
            ctl: [0; MAX_CONTROL_PAYLOAD],
            ctl_len: 0,
        }
    }
}

/// A websocket connection over plain TCP or TLS.
pub struct WsStream {
    inner: ConnStream,
    rd: ReadState,
    /// Clients that sent `Nats-No-Masking: true` send unmasked frames.
    require_mask: bool,
    /// Whole frames ready for the socket, and how much of them went out.
    out: Vec<u8>,
    sent: usize,
    /// The open data frame: `HEADER_ROOM` bytes, then the payload written so far.
    frame: Vec<u8>,
    close_sent: bool,
    /// The read side saw a close frame or a protocol error: reads end.
    read_closed: bool,
    /// The connection's writer, parked: woken when the read side queues a control
    /// frame (a ping alone gives the read loop nothing to act on).
    writer: Option<std::task::Waker>,
    /// permessage-deflate was negotiated (no context takeover either way).
    deflate: Option<Box<Deflate>>,
    /// Log prefix (`127.0.0.1:5000 - wid:7`, nats-server's for websocket clients).
    who: String,
}

/// permessage-deflate state: buffers kept across messages so that steady traffic
/// allocates nothing once they have grown.
struct Deflate {
    inflater: flate2::Decompress,
    deflater: flate2::Compress,
    /// The compressed message being received (frames appended).
    zin: Vec<u8>,
    /// The inflated message not yet handed to the reader, and how much was.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Raw bytes read after a compressed message ended, decoded on the next read.
    rest: Vec<u8>,
    /// The compressed output frame.
    zout: Vec<u8>,
}

/// nats-server compresses only frames at least this long (smaller ones grow).
const COMPRESS_THRESHOLD: usize = 64;
/// A compressed message may not inflate past this (a deflate bomb stops here).
const MAX_INFLATED: usize = 64 << 20;

impl WsStream {
    fn new(inner: ConnStream, require_mask: bool) -> WsStream {
        WsStream {
            inner,
            rd: ReadState::default(),
            require_mask,
            out: Vec::new(),
            sent: 0,
            frame: vec![0; HEADER_ROOM],
            close_sent: false,
            read_closed: false,
            writer: None,
            deflate: None,
            who: String::new(),
        }
    }

    /// The framing over an already upgraded `inner` stream (no handshake): what the
    /// upgrade ends with, and what a test drives frames through.
    pub fn framed(inner: ConnStream, require_mask: bool) -> WsStream {
        WsStream::new(inner, require_mask)
    }

    /// [`WsStream::framed`] with permessage-deflate negotiated.
    pub fn framed_deflate(inner: ConnStream, require_mask: bool) -> WsStream {
        WsStream::new(inner, require_mask).with_deflate()
    }

    /// Sets the log prefix for read errors.
    pub fn set_who(&mut self, who: String) {
        self.who = who;
    }

    fn with_deflate(mut self) -> WsStream {
        self.deflate = Some(Box::new(Deflate {
            inflater: flate2::Decompress::new(false),
            deflater: flate2::Compress::new(flate2::Compression::default(), false),
            zin: Vec::new(),
            plain: Vec::new(),
            plain_pos: 0,
            rest: Vec::new(),
            zout: Vec::new(),
        }));
        self
    }

    /// Registers the parked writer to wake for control frames.
    pub fn park_writer(&mut self, waker: &std::task::Waker) {
        if !self.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.writer = Some(waker.clone());
        }
    }

    /// The stream under the framing.
    pub fn inner(&self) -> &ConnStream {
        &self.inner
    }

    /// True when control frames wait for the writer.
    pub fn wants_flush(&self) -> bool {
        self.sent < self.out.len()
    }

    /// Reads and de-frames: returns NATS protocol bytes, `Ok(0)` at the end.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            // Inflated bytes first, then raw bytes read after them, then the socket.
            if let Some(z) = self.deflate.as_deref_mut() {
                if z.plain_pos < z.plain.len() {
                    let k = (z.plain.len() - z.plain_pos).min(buf.len());
                    buf[..k].copy_from_slice(&z.plain[z.plain_pos..z.plain_pos + k]);
                    z.plain_pos += k;
                    return Poll::Ready(Ok(k));
                }
            }
            if self.read_closed {
                return Poll::Ready(Ok(0));
            }
            let from_rest = match self.deflate.as_deref_mut() {
                Some(z) if !z.rest.is_empty() => {
                    let k = z.rest.len().min(buf.len());
                    buf[..k].copy_from_slice(&z.rest[..k]);
                    z.rest.drain(..k);
                    Some(k)
                }
                _ => None,
            };
            let n = match from_rest {
                Some(k) => k,
                None => match self.inner.poll_read(cx, buf) {
                    Poll::Ready(Ok(n)) => n,
                    other => return other,
                },
            };
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            match self.decode(&mut buf[..n]) {
                Ok(0) => continue,
                Ok(out) => return Poll::Ready(Ok(out)),
                Err(why) => {
                    crate::log_error!("{} - read error: {why}", self.who);
                    self.queue_close(CLOSE_PROTOCOL_ERROR, why.as_bytes());
                    self.read_closed = true;
                    return Poll::Ready(Ok(0));
                }
            }
        }
    }

    /// Decodes the raw bytes in `buf` in place; returns how many payload bytes now
    /// start the buffer.
    fn decode(&mut self, buf: &mut [u8]) -> Result<usize, &'static str> {
        let n = buf.len();
        let (mut i, mut o) = (0usize, 0usize);
        while i < n && !self.read_closed {
            let rd = &mut self.rd;
            if !rd.in_frame {
                let need = header_len(&rd.hdr[..rd.hlen]);
                let take = (need - rd.hlen).min(n - i);
                rd.hdr[rd.hlen..rd.hlen + take].copy_from_slice(&buf[i..i + take]);
                rd.hlen += take;
                i += take;
                if rd.hlen < 2 || rd.hlen < header_len(&rd.hdr[..rd.hlen]) {
                    continue;
                }
                self.start_frame()?;
                if self.rd.left == 0 {
                    self.end_frame();
                }
                continue;
            }
            let k = (rd.left.min((n - i) as u64)) as usize;
            let is_control = rd.opcode >= OP_CLOSE;
            if is_control {
                let at = rd.ctl_len;
                rd.ctl[at..at + k].copy_from_slice(&buf[i..i + k]);
                if rd.masked {
                    unmask(&mut rd.ctl[at..at + k], rd.mask, rd.mask_pos);
                }
                rd.ctl_len += k;
            } else if rd.compressed {
                let z = self
                    .deflate
                    .as_deref_mut()
                    .ok_or("compressed frame received without negotiated permessage-deflate")?;
                let at = z.zin.len();
                z.zin.extend_from_slice(&buf[i..i + k]);
                if rd.masked {
                    unmask(&mut z.zin[at..], rd.mask, rd.mask_pos);
                }
            } else {
                buf.copy_within(i..i + k, o);
                if rd.masked {
                    unmask(&mut buf[o..o + k], rd.mask, rd.mask_pos);
                }
                o += k;
            }
            let rd = &mut self.rd;
            rd.mask_pos = (rd.mask_pos + k) & 3;
            rd.left -= k as u64;
            i += k;
            if rd.left == 0 {
                self.end_frame();
            }
            if self.rd.inflate_now {
                self.rd.inflate_now = false;
                self.inflate()?;
                if let Some(z) = self.deflate.as_deref_mut() {
                    z.rest.splice(0..0, buf[i..n].iter().copied());
                }
                return Ok(o);
            }
        }
        Ok(o)
    }

    /// Inflates the compressed message just received into the pending plain bytes.
    fn inflate(&mut self) -> Result<(), &'static str> {
        let Some(z) = self.deflate.as_deref_mut() else {
            return Ok(());
        };
        // The sender's final empty block (RFC 7692 7.2.2), stripped by the sender.
        z.zin.extend_from_slice(&[0, 0, 0xff, 0xff]);
        z.plain.clear();
        z.plain_pos = 0;
        z.inflater.reset(false);
        let mut used = 0usize;
        loop {
            if z.plain.len() == z.plain.capacity() {
                z.plain.reserve((z.zin.len() * 4).max(4096));
            }
            let before_in = z.inflater.total_in();
            let status = z
                .inflater
                .decompress_vec(&z.zin[used..], &mut z.plain, flate2::FlushDecompress::Sync)
                .map_err(|_| "invalid compressed data")?;
            used += (z.inflater.total_in() - before_in) as usize;
            if z.plain.len() > MAX_INFLATED {
                return Err("compressed message too large");
            }
            let done = used >= z.zin.len() && z.plain.len() < z.plain.capacity();
            if done || matches!(status, flate2::Status::StreamEnd) {
                break;
            }
            if matches!(status, flate2::Status::BufError) && used >= z.zin.len() {
                break;
            }
        }
        z.zin.clear();
        Ok(())
    }

    /// Checks a complete frame header, nats-server's checks and words.
    fn start_frame(&mut self) -> Result<(), &'static str> {
        let rd = &mut self.rd;
        let b0 = rd.hdr[0];
        let b1 = rd.hdr[1];
        rd.fin = b0 & 0x80 != 0;
        rd.opcode = b0 & 0x0f;
        rd.masked = b1 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        if rsv1 && self.deflate.is_none() {
            return Err("compressed frame received without negotiated permessage-deflate");
        }
        if b0 & 0x30 != 0 {
            return Err("RSV2 and RSV3 must be clear");
        }
        let (len, at) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([rd.hdr[2], rd.hdr[3]]) as u64, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rd.hdr[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            l => (l as u64, 2),
        };
        if rd.masked {
            rd.mask.copy_from_slice(&rd.hdr[at..at + 4]);
        }
        rd.mask_pos = 0;
        rd.left = len;
        rd.hlen = 0;
        rd.ctl_len = 0;
        match rd.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !rd.fin {
                    return Err("control frame does not have final bit set");
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err("control frame length bigger than maximum allowed of 125 bytes");
                }
            }
            OP_TEXT | OP_BINARY => {
                if rd.in_message {
                    return Err(
                        "new message started before final frame for previous message was received",
                    );
                }
                rd.in_message = !rd.fin;
                rd.compressed = rsv1;
            }
            OP_CONT => {
                if !rd.in_message {
                    return Err("invalid continuation frame");
                }
                rd.in_message = !rd.fin;
            }
            _ => return Err(unknown_opcode(rd.opcode)),
        }
        if !rd.masked && self.require_mask {
            return Err("mask bit missing");
        }
        rd.in_frame = true;
        Ok(())
    }

    /// A frame's payload is complete: act on control frames.
    fn end_frame(&mut self) {
        self.rd.in_frame = false;
        let len = self.rd.ctl_len;
        let ctl = self.rd.ctl;
        match self.rd.opcode {
            OP_PING => self.queue_control(OP_PONG, &ctl[..len]),
            OP_CLOSE => {
                self.read_closed = true;
                if len == 1 {
                    crate::log_error!(
                        "{} - read error: close frame payload cannot be 1 byte",
                        self.who
                    );
                    self.queue_close(
                        CLOSE_PROTOCOL_ERROR,
                        b"close frame payload cannot be 1 byte",
                    );
                } else if len == 0 {
                    self.queue_close(CLOSE_NO_STATUS, b"");
                } else {
                    // nats-server answers with the client's status and text.
                    let status = u16::from_be_bytes([ctl[0], ctl[1]]);
                    self.queue_close(status, &ctl[2..len]);
                }
            }
            _ => {
                if self.rd.fin && self.rd.compressed {
                    self.rd.compressed = false;
                    self.rd.inflate_now = true;
                }
            }
        }
    }

    fn queue_control(&mut self, op: u8, payload: &[u8]) {
        if self.close_sent {
            return;
        }
        push_header(&mut self.out, op, payload.len());
        self.out.extend_from_slice(payload);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queues a close frame (once); 1005 means "no status" and goes out empty. Long
    /// texts are cut to fit a control frame, with `...` as nats-server does.
    pub fn queue_close(&mut self, status: u16, text: &[u8]) {
        if self.close_sent {
            return;
        }
        let mut body = [0u8; MAX_CONTROL_PAYLOAD];
        let len = if status == CLOSE_NO_STATUS {
            0
        } else {
            body[..2].copy_from_slice(&status.to_be_bytes());
            let room = MAX_CONTROL_PAYLOAD - 2;
            if text.len() > room {
                body[2..2 + room - 3].copy_from_slice(&text[..room - 3]);
                body[2 + room - 3..].copy_from_slice(b"...");
                MAX_CONTROL_PAYLOAD
            } else {
                body[2..2 + text.len()].copy_from_slice(text);
                2 + text.len()
            }
        };
        self.seal();
        self.queue_control(OP_CLOSE, &body[..len]);
        self.close_sent = true;
    }

    /// Accepts all of `buf` into the open data frame.
    pub fn poll_write(&mut self, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.close_sent {
            // After a close frame nothing else may follow; the bytes are dropped.
            return Poll::Ready(Ok(buf.len()));
        }
        self.frame.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Closes the open data frame into `out`: when `out` is empty the frame buffer
    /// itself becomes `out` (its header goes in the room kept in front), so the usual
    /// case copies nothing.
    fn seal(&mut self) {
        let payload = self.frame.len() - HEADER_ROOM;
        if payload == 0 {
            return;
        }
        if payload >= COMPRESS_THRESHOLD {
            if let Some(z) = self.deflate.as_deref_mut() {
                z.zout.clear();
                z.deflater.reset();
                let input = &self.frame[HEADER_ROOM..];
                let mut used = 0usize;
                loop {
                    if z.zout.capacity() - z.zout.len() < 64 {
                        z.zout.reserve(input.len() / 2 + 128);
                    }
                    let before = z.deflater.total_in();
                    let ok = z.deflater.compress_vec(
                        &input[used..],
                        &mut z.zout,
                        flate2::FlushCompress::Sync,
                    );
                    used += (z.deflater.total_in() - before) as usize;
                    // Done once all input is in and the sync marker is out.
                    if ok.is_err() || (used >= input.len() && z.zout.ends_with(&[0, 0, 0xff, 0xff]))
                    {
                        break;
                    }
                }
                if z.zout.ends_with(&[0, 0, 0xff, 0xff]) {
                    let len = z.zout.len() - 4;
                    z.zout.truncate(len);
                    let mut small = [0u8; HEADER_ROOM];
                    let hlen = header_bytes(&mut small, OP_BINARY, len);
                    small[0] |= 0x40;
                    self.out.extend_from_slice(&small[..hlen]);
                    self.out.extend_from_slice(&z.zout);
                    self.frame.truncate(HEADER_ROOM);
                    return;
                }
            }
        }
        let mut small = [0u8; HEADER_ROOM];
        let hlen = header_bytes(&mut small, OP_BINARY, payload);
        if self.sent == self.out.len() {
            let start = HEADER_ROOM - hlen;
            self.frame[start..HEADER_ROOM].copy_from_slice(&small[..hlen]);
            std::mem::swap(&mut self.out, &mut self.frame);
            self.sent = start;
            self.frame.clear();
        } else {
            self.out.extend_from_slice(&small[..hlen]);
            self.out.extend_from_slice(&self.frame[HEADER_ROOM..]);
            self.frame.clear();
        }
        self.frame.resize(HEADER_ROOM, 0);
    }

    /// Frames what was written since the last flush and sends all queued frames.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.seal();
        while self.sent < self.out.len() {
            match self.inner.poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.sent = 0;
        self.inner.poll_flush(cx)
    }
}

/// The header length the first bytes announce (2 until the second byte is known).
fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 {
        return 2;
    }
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

fn unknown_opcode(op: u8) -> &'static str {
    const TEXTS: [&str; 16] = [
        "unknown opcode 0",
        "unknown opcode 1",
        "unknown opcode 2",
        "unknown opcode 3",
        "unknown opcode 4",
        "unknown opcode 5",
        "unknown opcode 6",
        "unknown opcode 7",
        "unknown opcode 8",
        "unknown opcode 9",
        "unknown opcode 10",
        "unknown opcode 11",
        "unknown opcode 12",
        "unknown opcode 13",
        "unknown opcode 14",
        "unknown opcode 15",
    ];
    TEXTS[(op & 0x0f) as usize]
}

/// XORs `data` with the mask, starting `pos` bytes into it.
#[inline]
fn unmask(data: &mut [u8], mask: [u8; 4], pos: usize) {
    let m = [
        mask[pos & 3],
        mask[(pos + 1) & 3],
        mask[(pos + 2) & 3],
        mask[(pos + 3) & 3],
    ];
    let word = u32::from_ne_bytes(m);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (j, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[j];
    }
}

/// Writes an unmasked server frame header into `h`; returns its length.
fn header_bytes(h: &mut [u8; HEADER_ROOM], op: u8, len: usize) -> usize {
    h[0] = 0x80 | op;
    if len < 126 {
        h[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

fn push_header(out: &mut Vec<u8>, op: u8, len: usize) {
    let mut h = [0u8; HEADER_ROOM];
    let n = header_bytes(&mut h, op, len);
    out.extend_from_slice(&h[..n]);
}

/// The close status nats-server sends for a connection closed for `reason`.
pub fn close_status(reason: &str) -> u16 {
    match reason {
        "Client Closed" => CLOSE_NORMAL,
        "Authentication Timeout"
        | "Authentication Failure"
        | "Slow Consumer (Pending Bytes)"
        | "Slow Consumer (Write Deadline)"
        | "Maximum Account Connections Exceeded"
        | "Maximum Connections Exceeded"
        | "Maximum Control Line Exceeded"
        | "Maximum Subscriptions Exceeded"
        | "Missing Account"
        | "Authentication Expired"
        | "Credentials Revoked" => CLOSE_POLICY_VIOLATION,
        "TLS Handshake Failure" => CLOSE_TLS_HANDSHAKE,
        "Parse Error" | "Protocol Violation" | "Bad Client Protocol Version" => {
            CLOSE_PROTOCOL_ERROR
        }
        "Maximum Message Payload Exceeded" => CLOSE_MESSAGE_TOO_BIG,
        "Write Error" | "Read Error" | "Stale Connection" | "Server Shutdown" => CLOSE_GOING_AWAY,
        _ => CLOSE_INTERNAL_ERROR,
    }
}

// ----- The HTTP upgrade -----------------------------------------------------

/// Why an upgrade failed: the HTTP answer has been written; the string is for the log.
pub type Refused = String;

/// What a successful upgrade learned from the request.
pub struct Upgraded {
    /// The framed stream, ready for INFO.
    pub stream: WsStream,
    /// The request's cookies (for `jwt_cookie`/`token_cookie`).
    pub cookies: Vec<(String, String)>,
}

/// Reads the client's HTTP upgrade request within the handshake timeout and answers
/// it as nats-server does: `101 Switching Protocols`, or the status of the first
/// failed check with Go's `http.Error` body.
pub async fn upgrade(
    opts: &WebsocketOpts,
    mut inner: ConnStream,
    secure: bool,
) -> Result<Upgraded, Refused> {
    let read = read_request(&mut inner);
    let head = if opts.handshake_timeout.is_zero() {
        read.await
    } else {
        let t = opts.handshake_timeout;
        let timer = async {
            glommio::timer::sleep(t).await;
            Err(format!("handshake timeout after {}", go_secs(t)))
        };
        futures_lite::future::or(read, timer).await
    }?;
    match check_request(opts, &head, secure) {
        Ok(req) => {
            let mut resp = String::with_capacity(160);
            resp.push_str(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
            );
            resp.push_str(&accept_key(&req.key));
            resp.push_str("\r\n");
            let deflate = opts.compression && req.deflate;
            if deflate {
                resp.push_str("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n");
            }
            if req.no_masking {
                resp.push_str("Nats-No-Masking: true\r\n");
            }
            resp.push_str("\r\n");
            write_raw(&mut inner, resp.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let stream = WsStream::new(inner, !req.no_masking);
            Ok(Upgraded {
                stream: if deflate {
                    stream.with_deflate()
                } else {
                    stream
                },
                cookies: req.cookies,
            })
        }
        Err(bad) => {
            let resp = match bad.status {
                // Go's server answers requests it cannot parse itself, in its own words.
                400 if bad.raw => format!(
                    "HTTP/1.1 400 Bad Request{}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request{}",
                    bad.why_suffix(),
                    bad.why_suffix()
                ),
                status => {
                    let text = status_text(status);
                    format!(
                        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nSec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\nDate: {}\r\nContent-Length: {}\r\n\r\n{text}\n",
                        crate::monitor::format::http_date(std::time::SystemTime::now()),
                        text.len() + 1
                    )
                }
            };
            let _ = write_raw(&mut inner, resp.as_bytes()).await;
            Err(bad.why)
        }
    }
}

fn go_secs(d: Duration) -> String {
    crate::config::file::go_duration_string(d)
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

/// A refused request: the status, whether Go's HTTP layer (not the websocket code)
/// refused it, and the reason for the log.
struct Bad {
    status: u16,
    raw: bool,
    why: String,
    /// For Go's own 400s: the text after `400 Bad Request` (`: missing required Host header`).
    detail: &'static str,
}

impl Bad {
    fn ws(status: u16, why: impl Into<String>) -> Bad {
        Bad {
            status,
            raw: false,
            why: why.into(),
            detail: "",
        }
    }
    fn http(detail: &'static str) -> Bad {
        Bad {
            status: 400,
            raw: true,
            why: format!("malformed HTTP request{detail}"),
            detail,
        }
    }
    fn why_suffix(&self) -> &'static str {
        self.detail
    }
}

struct Request {
    key: String,
    no_masking: bool,
    /// The client offered permessage-deflate.
    deflate: bool,
    cookies: Vec<(String, String)>,
}

/// Reads up to the blank line that ends the request head.
async fn read_request(inner: &mut ConnStream) -> Result<Vec<u8>, Refused> {
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        if let Some(end) = memchr::memmem::find(&buf[..have], b"\r\n\r\n") {
            if end + 4 < have {
                // Go reads frames only after the handshake; early data is refused.
                return Err("client sent data before handshake is complete".into());
            }
            buf.truncate(end + 4);
            return Ok(buf);
        }
        if have == buf.len() {
            if buf.len() >= MAX_REQUEST {
                return Err("request header too large".into());
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = std::future::poll_fn(|cx| inner.poll_read(cx, &mut buf[have..]))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".into());
        }
        have += n;
    }
}

async fn write_raw(inner: &mut ConnStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::future::poll_fn(|cx| inner.poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    std::future::poll_fn(|cx| inner.poll_flush(cx)).await
}

/// True when the comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// nats-server's checks, in its order.
fn check_request(opts: &WebsocketOpts, head: &[u8], secure: bool) -> Result<Request, Bad> {
    let Ok(text) = std::str::from_utf8(head) else {
        return Err(Bad::http(""));
    };
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(_path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad::http(""));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(Bad::http(""));
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(Bad::http(""));
        };
        headers.push((k.trim(), v.trim()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let all = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    let host = get("Host");
    if host.is_none() && version == "HTTP/1.1" {
        return Err(Bad::http(": missing required Host header"));
    }
    if method != "GET" {
        return Err(Bad::ws(405, "request method must be GET"));
    }
    if host.unwrap_or_default().is_empty() {
        return Err(Bad::ws(400, "'Host' missing in request"));
    }
    if !all("Upgrade").iter().any(|v| has_token(v, "websocket")) {
        return Err(Bad::ws(400, "invalid value for header 'Upgrade'"));
    }
    if !all("Connection").iter().any(|v| has_token(v, "Upgrade")) {
        return Err(Bad::ws(400, "invalid value for header 'Connection'"));
    }
    let key = get("Sec-WebSocket-Key").unwrap_or_default();
    if key.is_empty() {
        return Err(Bad::ws(400, "key missing"));
    }
    if get("Sec-WebSocket-Version") != Some("13") {
        return Err(Bad::ws(400, "invalid version"));
    }
    if let Some(origin) = get("Origin") {
        check_origin(opts, origin, host.unwrap_or_default(), secure)
            .map_err(|why| Bad::ws(403, format!("origin not allowed: {why}")))?;
    }
    let no_masking = get("Nats-No-Masking").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut cookies = Vec::new();
    for v in all("Cookie") {
        for c in v.split(';') {
            if let Some((k, val)) = c.trim().split_once('=') {
                cookies.push((k.to_string(), val.trim_matches('"').to_string()));
            }
        }
    }
    let deflate = all("Sec-WebSocket-Extensions").iter().any(|v| {
        v.split(',').any(|ext| {
            ext.split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
        })
    });
    Ok(Request {
        key: key.to_string(),
        no_masking,
        deflate,
        cookies,
    })
}

/// `scheme://host[:port]` split into (scheme, host, port), the port defaulted.
fn parse_origin(s: &str) -> Result<(String, String, String), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("parse \"{s}\": invalid URI for request"));
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = split_host_port(hostport);
    let port = port.unwrap_or_else(|| if scheme == "https" { "443" } else { "80" }.into());
    Ok((scheme, host.to_ascii_lowercase(), port))
}

fn split_host_port(s: &str) -> (String, Option<String>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h.to_string(), after.strip_prefix(':').map(str::to_string));
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p.to_string())),
        _ => (s.to_string(), None),
    }
}

fn check_origin(
    opts: &WebsocketOpts,
    origin: &str,
    host: &str,
    secure: bool,
) -> Result<(), String> {
    if !opts.same_origin && opts.allowed_origins.is_empty() {
        return Ok(());
    }
    let (scheme, ohost, oport) = parse_origin(origin)?;
    if opts.same_origin {
        let (h, p) = split_host_port(host);
        let p = p.unwrap_or_else(|| if secure { "443" } else { "80" }.into());
        if !ohost.eq_ignore_ascii_case(&h) || oport != p {
            return Err("not same origin".into());
        }
    }
    if !opts.allowed_origins.is_empty() {
        let ok = opts.allowed_origins.iter().any(|a| {
            parse_origin(a).is_ok_and(|(s, h, p)| s == scheme && h == ohost && p == oport)
        });
        if !ok {
            return Err("not in the allowed list".into());
        }
    }
    Ok(())
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 4.2.2).
pub fn accept_key(key: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    data_encoding::BASE64.encode(&h.finalize())
}

/// The TCP stream for a websocket listener's accepted connection: TLS first with
/// `tls {}` (wss://), else plain.
pub async fn secure(
    opts: &WebsocketOpts,
    tcp: TcpStream,
    who: &str,
) -> Result<(ConnStream, Option<super::stream::TlsState>), &'static str> {
    match &opts.tls {
        None => Ok((ConnStream::Plain(tcp), None)),
        Some(tls) => {
            let (s, state) = super::stream::tls_first(tls, tcp, who).await?;
            Ok((s, Some(state)))
        }
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        WsStream::poll_read(self.get_mut(), cx, buf)
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        WsStream::poll_write(self.get_mut(), cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        WsStream::poll_flush(self.get_mut(), cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        WsStream::poll_flush(self.get_mut(), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn unmask_any_offset() {
        let mask = [1, 2, 3, 4];
        let plain: Vec<u8> = (0..23).collect();
        let mut masked: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        unmask(&mut masked[..5], mask, 0);
        unmask(&mut masked[5..], mask, 5);
        assert_eq!(masked, plain);
    }

    #[test]
    fn origins() {
        let o = WebsocketOpts {
            same_origin: true,
            ..Default::default()
        };
        assert!(check_origin(&o, "http://a.com", "a.com", false).is_ok());
        assert!(check_origin(&o, "http://a.com:81", "a.com", false).is_err());
        assert!(check_origin(&o, "bad", "a.com", false).is_err());
    }
}
