//! What crosses cores: the envelopes shards (and, later, the cluster core) send each
//! other through the rings, the message being published and where it comes from.

use bytes::Bytes;

use crate::account::AccountId;

/// Envelopes allowed to wait for room in one ring before a sender (a publisher's read
/// loop, a route's) stops reading.
pub const BACKLOG_HIGH: usize = 64;
/// A stopped sender resumes when the backlog is this small again.
pub const BACKLOG_LOW: usize = 0;

/// Where a published message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client connection of the publishing shard, by cid: it gets no echo when it
    /// asked for none, and its no-responders status.
    Client(u64),
    /// The server itself: system events, service imports, mappings, routes.
    Server,
    /// A copy a stream import made: it stays on this server (other servers import
    /// for themselves, as nats-server's shadow subscriptions do).
    Import,
}

impl Origin {
    /// The publishing connection's cid, 0 when the server publishes.
    pub fn cid(self) -> u64 {
        match self {
            Origin::Client(cid) => cid,
            Origin::Server | Origin::Import => 0,
        }
    }
}

/// A message to publish: its parts, and the buffers that own them, so that copies
/// sent to other shards share those buffers instead of copying the bytes.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    /// Subject.
    pub subject: &'a [u8],
    /// Reply subject, empty when none.
    pub reply: &'a [u8],
    /// Bytes of `payload` that are the header block (0 = no headers).
    pub hdr_len: usize,
    /// Header block and body.
    pub payload: &'a [u8],
    owner: Owner<'a>,
}

#[derive(Clone, Copy)]
enum Owner<'a> {
    /// Every part is a slice of this buffer (a client's read buffer).
    Buffer(&'a Bytes),
    /// Each part is its own buffer.
    Parts {
        subject: &'a Bytes,
        reply: &'a Bytes,
        payload: &'a Bytes,
    },
}

impl<'a> Message<'a> {
    /// A message whose parts are slices of `buffer` (parts that are not are copied
    /// when they leave the shard).
    pub fn in_buffer(
        buffer: &'a Bytes,
        subject: &'a [u8],
        reply: &'a [u8],
        hdr_len: usize,
        payload: &'a [u8],
    ) -> Message<'a> {
        Message {
            subject,
            reply,
            hdr_len: hdr_len.min(payload.len()),
            payload,
            owner: Owner::Buffer(buffer),
        }
    }

    /// A message made of owned parts: what the server, an import, a mapping or a route
    /// publishes.
    pub fn owned(
        subject: &'a Bytes,
        reply: &'a Bytes,
        hdr_len: usize,
        payload: &'a Bytes,
    ) -> Message<'a> {
        Message {
            subject,
            reply,
            hdr_len: hdr_len.min(payload.len()),
            payload,
            owner: Owner::Parts {
                subject,
                reply,
                payload,
            },
        }
    }

    /// The buffer holding the payload, for frames that queue large payloads by
    /// reference.
    pub fn payload_owner(&self) -> &'a Bytes {
        match self.owner {
            Owner::Buffer(b) => b,
            Owner::Parts { payload, .. } => payload,
        }
    }

    /// The subject as a `Bytes` sharing its buffer.
    pub fn shared_subject(&self) -> Bytes {
        match self.owner {
            Owner::Buffer(b) => share(b, self.subject),
            Owner::Parts { subject, .. } => subject.clone(),
        }
    }

    /// The reply as a `Bytes` sharing its buffer.
    pub fn shared_reply(&self) -> Bytes {
        match self.owner {
            Owner::Buffer(b) => share(b, self.reply),
            Owner::Parts { reply, .. } => reply.clone(),
        }
    }

    /// The payload as a `Bytes` sharing its buffer.
    pub fn shared_payload(&self) -> Bytes {
        match self.owner {
            Owner::Buffer(b) => share(b, self.payload),
            Owner::Parts { payload, .. } => payload.clone(),
        }
    }
}

/// `part` as a slice of `buffer` when it lies inside it, else a copy (never the panic
/// of `Bytes::slice_ref` on a foreign slice).
fn share(buffer: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        return Bytes::new();
    }
    let start = buffer.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p >= start && p + part.len() <= start + buffer.len() {
        buffer.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// A message published on one shard for subscribers on another. One envelope goes to
/// each destination shard, however many subscribers it has there.
#[derive(Debug)]
pub struct RoutedMsg {
    /// Account the message was published in.
    pub account: AccountId,
    /// Published subject.
    pub subject: Bytes,
    /// Reply subject, empty when none.
    pub reply: Bytes,
    /// Bytes of `payload` that are the header block (0 = no headers).
    pub hdr_len: u32,
    /// Header block and body.
    pub payload: Bytes,
    /// Deliver to the destination's plain (non-queue) subscribers.
    pub plain: bool,
    /// Queue group whose member on the destination was chosen to get this message.
    pub queue: Option<Bytes>,
    /// Further chosen queue groups (rare: several groups chose the same shard).
    pub more_queues: Vec<Bytes>,
    /// Non-zero when the publisher wants a no-responders status and nobody on its own
    /// shard took the message: the destination answers with [`Envelope::Delivered`].
    pub status_token: u64,
    /// The publisher's shard, which awaits the [`Envelope::Delivered`] answer (the
    /// sender differs when a queue message was handed on).
    pub origin: u16,
    /// Shards (bit `i` for shard `i < 64`) that had no member left to take this queue
    /// message, so a hand-over does not send it back there.
    pub tried: u64,
    /// Times this message was handed on to another shard (bounds hand-overs where
    /// `tried` has no bit for a shard).
    pub hops: u8,
}

/// Every kind of envelope between shards.
#[derive(Debug)]
pub enum Envelope {
    /// A message to deliver.
    Msg(RoutedMsg),
    /// A response on a `_R_.` reply whose mapping the receiving shard holds.
    Response {
        /// The `_R_.` subject.
        subject: Bytes,
        /// The response's own reply, empty when none.
        reply: Bytes,
        /// Bytes of `payload` that are the header block.
        hdr_len: u32,
        /// Header block and body.
        payload: Bytes,
    },
    /// The sender gained (`add`) or lost `n` subscriptions on `subject` (and `queue`);
    /// the cluster core counts a queue group's weight behind its routes this way.
    Interest {
        /// Account of the subscription.
        account: AccountId,
        /// Subscribed subject.
        subject: Bytes,
        /// Queue group, if any.
        queue: Option<Bytes>,
        /// Gained or lost.
        add: bool,
        /// How many.
        n: u32,
    },
    /// Answer with [`Envelope::BarrierAck`] once every earlier envelope is applied.
    Barrier(u64),
    /// Reply to [`Envelope::Barrier`].
    BarrierAck(u64),
    /// Answer with [`Envelope::Answer`]: a client shard with its monitoring snapshot
    /// (with subscriptions when `subs`), the cluster core with its routes'. How a
    /// system account request gathers server-wide figures without waiting for the
    /// control plane's command poll.
    Ask {
        /// Names the answer.
        token: u64,
        /// Include subscriptions.
        subs: bool,
    },
    /// Reply to [`Envelope::Ask`]; its type is the answering executor's business
    /// (bus knows neither shards nor the cluster core), the asker downcasts it.
    Answer {
        /// The ask's token.
        token: u64,
        /// The snapshot.
        report: Box<dyn std::any::Any + Send>,
    },
    /// Whether a message sent with a `status_token` reached anyone on this shard.
    Delivered {
        /// The message's `status_token`.
        token: u64,
        /// Someone got it.
        any: bool,
        /// Queue messages this shard handed on to other shards instead, each of which
        /// answers in turn (carrying the same token).
        more: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_inside_the_buffer_are_shared_and_foreign_ones_copied() {
        let buffer = Bytes::from_static(b"PUB a.b r 2\r\nhi\r\n");
        let foreign = b"x.y".to_vec();
        let m = Message::in_buffer(&buffer, &foreign, &buffer[8..9], 0, &buffer[13..15]);
        assert_eq!(m.shared_subject(), &b"x.y"[..]);
        assert_eq!(m.shared_reply(), &b"r"[..]);
        let payload = m.shared_payload();
        assert_eq!(payload, &b"hi"[..]);
        assert_eq!(
            payload.as_ptr(),
            buffer[13..].as_ptr(),
            "shared, not copied"
        );
    }

    #[test]
    fn owned_parts_are_cloned_and_header_length_is_clamped() {
        let (s, r, p) = (Bytes::from("s"), Bytes::new(), Bytes::from("NATS/1.0"));
        let m = Message::owned(&s, &r, 99, &p);
        assert_eq!(m.hdr_len, 8);
        assert_eq!(m.shared_subject().as_ptr(), s.as_ptr());
        assert!(m.shared_reply().is_empty());
        assert_eq!(m.payload_owner().as_ptr(), p.as_ptr());
    }
}
