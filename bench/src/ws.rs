//! A websocket transport for the load generator's subscribers: the HTTP upgrade,
//! then NATS bytes in masked binary frames out and the server's frames unwrapped in.
//! The same code drives both servers, so its cost (one copy of each payload) is the
//! same on both sides of a comparison.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A plain TCP stream or a websocket over one.
pub enum Transport {
    Tcp(TcpStream),
    Ws(Box<WsStream>),
}

impl Transport {
    pub fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Tcp(s) => s,
            Transport::Ws(w) => &w.tcp,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Ws(w) => w.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Ws(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp_mut().flush()
    }
}

impl Transport {
    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Tcp(s) => s,
            Transport::Ws(w) => &mut w.tcp,
        }
    }
}

/// A websocket client connection after the upgrade.
pub struct WsStream {
    tcp: TcpStream,
    /// Raw bytes read from the socket, `start..end` not yet unwrapped.
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// Payload bytes of the current data frame still to hand out.
    left: usize,
    /// Payload bytes of a control frame still to skip.
    skip: usize,
    /// A ping's payload being collected for the pong.
    ping: Option<Vec<u8>>,
    /// For the masking keys (xorshift).
    seed: u32,
}

/// Upgrades `tcp` to a websocket at `host` (`GET /`, no compression).
pub fn upgrade(mut tcp: TcpStream, host: &str) -> Result<WsStream, String> {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes())
        .map_err(|e| format!("websocket upgrade: {e}"))?;
    let mut raw = vec![0u8; 256 << 10];
    let mut end = 0;
    let head = loop {
        let n = tcp
            .read(&mut raw[end..])
            .map_err(|e| format!("websocket upgrade: {e}"))?;
        if n == 0 {
            return Err("websocket upgrade: server closed the connection".into());
        }
        end += n;
        if let Some(i) = raw[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if end == raw.len() {
            return Err("websocket upgrade: response too long".into());
        }
    };
    let status = String::from_utf8_lossy(&raw[..head.min(64)]).into_owned();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "websocket upgrade refused: {}",
            status.lines().next().unwrap_or("")
        ));
    }
    Ok(WsStream {
        tcp,
        raw,
        start: head,
        end,
        left: 0,
        skip: 0,
        ping: None,
        seed: 0x9e37_79b9,
    })
}

impl WsStream {
    /// Parses the next frame header in `raw`; false when it is not complete yet.
    fn header(&mut self) -> std::io::Result<bool> {
        let b = &self.raw[self.start..self.end];
        if b.len() < 2 {
            return Ok(false);
        }
        let op = b[0] & 0x0f;
        let (len, hdr) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                10,
            ),
            126 | 127 => return Ok(false),
            n => (n as usize, 2),
        };
        if b[1] & 0x80 != 0 {
            return Err(std::io::Error::other("masked frame from the server"));
        }
        self.start += hdr;
        match op {
            0x0..=0x2 => self.left = len,
            0x8 => return Err(ErrorKind::ConnectionAborted.into()),
            0x9 => {
                self.ping = Some(Vec::with_capacity(len));
                self.skip = len;
            }
            _ => self.skip = len,
        }
        Ok(true)
    }

    /// Reads more raw bytes; 0 at end of stream.
    fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.raw.len() {
            self.raw.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.tcp.read(&mut self.raw[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn send_frame(&mut self, op: u8, payload: &[u8]) -> std::io::Result<()> {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        let mask = self.seed.to_be_bytes();
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | op);
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&f)
    }
}

impl Read for WsStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.left > 0 && self.start < self.end {
                let n = self.left.min(self.end - self.start).min(out.len());
                out[..n].copy_from_slice(&self.raw[self.start..self.start + n]);
                self.start += n;
                self.left -= n;
                return Ok(n);
            }
            if self.skip > 0 && self.start < self.end {
                let n = self.skip.min(self.end - self.start);
                if let Some(p) = &mut self.ping {
                    p.extend_from_slice(&self.raw[self.start..self.start + n]);
                }
                self.start += n;
                self.skip -= n;
                continue;
            }
            if self.skip == 0 {
                if let Some(p) = self.ping.take() {
                    self.send_frame(0xA, &p)?;
                }
            }
            if self.left == 0 && self.skip == 0 && self.header()? {
                continue;
            }
            if self.fill()? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.send_frame(0x2, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}
