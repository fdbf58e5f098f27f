//! Server-to-client frames, written straight into a connection's outbound buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::net::Outbound;

/// Payloads at least this large are queued by reference, not copied, per subscriber.
pub const SHARE_MIN: usize = 512;

/// Appends `n` in decimal.
pub(crate) fn put_num(out: &mut BytesMut, n: usize) {
    let mut b = itoa::Buffer::new();
    out.put_slice(b.format(n).as_bytes());
}

/// Appends the frame delivering one message to subscription `sid`.
///
/// `payload` holds the header block (its first `hdr_len` bytes) and the body. A
/// client without header support gets `MSG` with the headers stripped.
pub fn msg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: &[u8],
    hdr_len: usize,
    payload: &[u8],
    client_headers: bool,
) {
    let with_headers = hdr_len > 0 && client_headers;
    let body = if hdr_len > 0 && !client_headers {
        &payload[hdr_len.min(payload.len())..]
    } else {
        payload
    };
    out.reserve(subject.len() + sid.len() + reply.len() + body.len() + 40);
    out.put_slice(if with_headers { b"HMSG " } else { b"MSG " });
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_u8(b' ');
    if !reply.is_empty() {
        out.put_slice(reply);
        out.put_u8(b' ');
    }
    if with_headers {
        put_num(out, hdr_len);
        out.put_u8(b' ');
    }
    put_num(out, body.len());
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

/// One message encoded once for all of its subscribers on a shard: every delivery
/// is `head`, the subscriber's sid, a space and `tail`, so fan-out costs a few
/// copies per subscriber instead of re-encoding. Reused across messages.
#[derive(Debug, Default)]
pub struct Frame {
    buf: BytesMut,
    /// `MSG <subject> ` then `<reply >len\r\nbody\r\n`.
    msg_head: usize,
    msg_tail: usize,
    /// With headers: `HMSG <subject> ` then `<reply >hdr total\r\npayload\r\n`.
    hmsg_head: usize,
    hmsg_tail: usize,
    /// Body bytes a client without headers gets, and all bytes one with headers gets.
    pub plain_size: usize,
    /// Payload bytes (headers included).
    pub full_size: usize,
    /// Large body and payload, referenced by every delivery instead of copied; the
    /// tails then end before the body and the delivery adds it and `\r\n`.
    shared_body: Option<Bytes>,
    shared_full: Option<Bytes>,
    /// Length of the reply subject (it follows the subject in `buf`).
    reply_len: usize,
}

impl Frame {
    /// Encodes a message; `payload` starts with `hdr_len` bytes of headers.
    pub fn build(&mut self, subject: &[u8], reply: &[u8], hdr_len: usize, payload: &[u8]) {
        self.build_from(subject, reply, hdr_len, payload, None);
    }

    /// Like [`Frame::build`]; when `shared` holds the payload and it is large, the
    /// deliveries reference it instead of copying it.
    pub fn build_from(
        &mut self,
        subject: &[u8],
        reply: &[u8],
        hdr_len: usize,
        payload: &[u8],
        shared: Option<&Bytes>,
    ) {
        let hdr_len = hdr_len.min(payload.len());
        let body = &payload[hdr_len..];
        let share = shared.filter(|b| b.len() == payload.len() && payload.len() >= SHARE_MIN);
        self.shared_body = share.map(|b| b.slice(hdr_len..));
        self.shared_full = share.filter(|_| hdr_len > 0).cloned();
        let (copied_body, copied_full): (&[u8], &[u8]) = if share.is_some() {
            (b"", b"")
        } else {
            (body, payload)
        };
        let b = &mut self.buf;
        b.clear();
        b.reserve(2 * (subject.len() + reply.len() + 32) + copied_body.len() + copied_full.len());
        b.put_slice(b"MSG ");
        b.put_slice(subject);
        b.put_u8(b' ');
        self.msg_head = b.len();
        self.reply_len = reply.len();
        if !reply.is_empty() {
            b.put_slice(reply);
            b.put_u8(b' ');
        }
        put_num(b, body.len());
        b.put_slice(b"\r\n");
        if share.is_none() {
            b.put_slice(copied_body);
            b.put_slice(b"\r\n");
        }
        self.msg_tail = b.len();
        if hdr_len > 0 {
            b.put_slice(b"HMSG ");
            b.put_slice(subject);
            b.put_u8(b' ');
            self.hmsg_head = b.len();
            if !reply.is_empty() {
                b.put_slice(reply);
                b.put_u8(b' ');
            }
            put_num(b, hdr_len);
            b.put_u8(b' ');
            put_num(b, payload.len());
            b.put_slice(b"\r\n");
            if share.is_none() {
                b.put_slice(copied_full);
                b.put_slice(b"\r\n");
            }
            self.hmsg_tail = b.len();
        } else {
            self.hmsg_head = 0;
            self.hmsg_tail = 0;
        }
        self.plain_size = body.len();
        self.full_size = payload.len();
    }

    /// The message's subject.
    #[inline]
    pub fn subject(&self) -> &[u8] {
        self.buf
            .get(4..self.msg_head.saturating_sub(1))
            .unwrap_or_default()
    }

    /// The message's reply subject (empty when none).
    #[inline]
    pub fn reply(&self) -> &[u8] {
        self.buf
            .get(self.msg_head..self.msg_head + self.reply_len)
            .unwrap_or_default()
    }

    /// Prepares a message for `targets` deliveries on this shard: a single one is
    /// written straight from `payload` later; several share one encoding here, and a
    /// large payload is shared by reference (`owner` is the buffer it lies in).
    pub fn encode<'a>(
        &'a mut self,
        targets: usize,
        subject: &'a [u8],
        reply: &'a [u8],
        hdr_len: usize,
        payload: &'a [u8],
        owner: &Bytes,
    ) -> Encoded<'a> {
        if targets <= 1 {
            return Encoded::Once {
                subject,
                reply,
                hdr_len,
                payload,
            };
        }
        let shared = (payload.len() >= SHARE_MIN).then(|| owner.slice_ref(payload));
        self.build_from(subject, reply, hdr_len, payload, shared.as_ref());
        Encoded::Frame(self)
    }

    /// Appends this message for subscription `sid`; `client_headers` picks `HMSG` or
    /// `MSG` with the headers stripped. Returns the payload bytes delivered.
    #[inline]
    pub fn write(&self, out: &mut Outbound, sid: &[u8], client_headers: bool) -> usize {
        let (head, tail, size, shared) = if client_headers && self.hmsg_tail > 0 {
            (
                &self.buf[self.msg_tail..self.hmsg_head],
                &self.buf[self.hmsg_head..self.hmsg_tail],
                self.full_size,
                &self.shared_full,
            )
        } else {
            (
                &self.buf[..self.msg_head],
                &self.buf[self.msg_head..self.msg_tail],
                self.plain_size,
                &self.shared_body,
            )
        };
        let b = &mut out.buf;
        b.reserve(head.len() + sid.len() + 3 + tail.len());
        b.extend_from_slice(head);
        b.extend_from_slice(sid);
        b.put_u8(b' ');
        b.extend_from_slice(tail);
        if let Some(body) = shared {
            out.push_shared(body.clone());
            out.buf.put_slice(b"\r\n");
        }
        size
    }
}

/// A message ready to be written for its subscribers: encoded once for many
/// ([`Frame`]), or written straight from the published bytes when it has a single
/// subscriber here (one copy instead of two).
#[derive(Clone, Copy)]
pub enum Encoded<'a> {
    /// Pre-encoded for several subscribers.
    Frame(&'a Frame),
    /// The parts of a message with one subscriber on this shard.
    Once {
        /// Subject.
        subject: &'a [u8],
        /// Reply subject, empty when none.
        reply: &'a [u8],
        /// Header bytes at the start of `payload`.
        hdr_len: usize,
        /// Headers and body.
        payload: &'a [u8],
    },
}

impl Encoded<'_> {
    /// The message's subject.
    pub fn subject(&self) -> &[u8] {
        match self {
            Encoded::Frame(f) => f.subject(),
            Encoded::Once { subject, .. } => subject,
        }
    }

    /// The message's reply subject (empty when none).
    pub fn reply(&self) -> &[u8] {
        match self {
            Encoded::Frame(f) => f.reply(),
            Encoded::Once { reply, .. } => reply,
        }
    }

    /// Appends the message for subscription `sid`; returns the payload bytes delivered.
    #[inline]
    pub fn write(&self, out: &mut Outbound, sid: &[u8], client_headers: bool) -> usize {
        match *self {
            Encoded::Frame(f) => f.write(out, sid, client_headers),
            Encoded::Once {
                subject,
                reply,
                hdr_len,
                payload,
            } => {
                msg(
                    &mut out.buf,
                    subject,
                    sid,
                    reply,
                    hdr_len,
                    payload,
                    client_headers,
                );
                if hdr_len > 0 && !client_headers {
                    payload.len() - hdr_len.min(payload.len())
                } else {
                    payload.len()
                }
            }
        }
    }
}

/// Appends `-ERR '<text>'\r\n`.
pub fn err(out: &mut BytesMut, text: &str) {
    out.put_slice(b"-ERR '");
    out.put_slice(text.as_bytes());
    out.put_slice(b"'\r\n");
}

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(
        subject: &str,
        sid: &str,
        reply: &str,
        hdr: usize,
        payload: &[u8],
        h: bool,
    ) -> Vec<u8> {
        let mut out = BytesMut::new();
        msg(
            &mut out,
            subject.as_bytes(),
            sid.as_bytes(),
            reply.as_bytes(),
            hdr,
            payload,
            h,
        );
        out.to_vec()
    }

    #[test]
    fn msg_frames_match_the_wire_format() {
        assert_eq!(
            frame("foo", "1", "", 0, b"hi", false),
            b"MSG foo 1 2\r\nhi\r\n"
        );
        assert_eq!(
            frame("foo", "1", "r", 0, b"", true),
            b"MSG foo 1 r 0\r\n\r\n"
        );
        let p = b"NATS/1.0\r\nA: b\r\n\r\nhi";
        assert_eq!(
            frame("foo", "9", "", 18, p, true),
            b"HMSG foo 9 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n"
        );
        assert_eq!(
            frame("foo", "9", "in", 18, p, false),
            b"MSG foo 9 in 2\r\nhi\r\n"
        );
    }

    #[test]
    fn frame_matches_msg_for_every_form() {
        let p = b"NATS/1.0\r\nA: b\r\n\r\nhi";
        let mut f = Frame::default();
        for (subject, reply, hdr, payload) in [
            ("foo", "", 0, &b"hi"[..]),
            ("foo.bar", "_INBOX.1", 0, b""),
            ("foo", "", 18, p),
            ("foo", "r.x", 18, p),
        ] {
            f.build(subject.as_bytes(), reply.as_bytes(), hdr, payload);
            for headers in [false, true] {
                let mut got = Outbound::default();
                f.write(&mut got, b"42", headers);
                assert!(got.shared.is_empty());
                assert_eq!(
                    got.buf.to_vec(),
                    frame(subject, "42", reply, hdr, payload, headers),
                    "{subject} {reply} {hdr} {headers}"
                );
            }
        }
    }

    /// Joins an outbound queue the way the writer sends it.
    fn flatten(out: &Outbound) -> Vec<u8> {
        let mut v = Vec::new();
        let mut pos = 0;
        for (off, b) in &out.shared {
            v.extend_from_slice(&out.buf[pos..*off]);
            v.extend_from_slice(b);
            pos = *off;
        }
        v.extend_from_slice(&out.buf[pos..]);
        v
    }

    #[test]
    fn large_payloads_are_shared_not_copied() {
        let mut payload = b"NATS/1.0\r\nA: b\r\n\r\n".to_vec();
        payload.extend(std::iter::repeat_n(b'x', 2000));
        let shared = Bytes::from(payload.clone());
        let mut f = Frame::default();
        for hdr in [0, 18] {
            f.build_from(b"big", b"r", hdr, &payload, Some(&shared));
            for headers in [false, true] {
                let mut out = Outbound::default();
                f.write(&mut out, b"7", headers);
                f.write(&mut out, b"8", headers);
                assert_eq!(out.shared.len(), 2, "payload referenced per delivery");
                let mut want = frame("big", "7", "r", hdr, &payload, headers);
                want.extend(frame("big", "8", "r", hdr, &payload, headers));
                assert_eq!(flatten(&out), want, "hdr {hdr} headers {headers}");
                assert_eq!(out.pending(), want.len());
            }
        }
    }

    #[test]
    fn err_frame() {
        let mut out = BytesMut::new();
        err(&mut out, "Unknown Protocol Operation");
        assert_eq!(&out[..], b"-ERR 'Unknown Protocol Operation'\r\n");
    }
}
