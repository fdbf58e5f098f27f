//! Server-to-client frames, written straight into a connection's outbound buffer.

use bytes::{BufMut, BytesMut};

fn put_num(out: &mut BytesMut, n: usize) {
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
    fn err_frame() {
        let mut out = BytesMut::new();
        err(&mut out, "Unknown Protocol Operation");
        assert_eq!(&out[..], b"-ERR 'Unknown Protocol Operation'\r\n");
    }
}
