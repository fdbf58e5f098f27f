//! What shards send each other through the rings.

use bytes::Bytes;

/// A message published on one shard for subscribers on another. One envelope goes to
/// each destination shard, however many subscribers it has there.
#[derive(Debug)]
pub struct RoutedMsg {
    /// Account the message was published in.
    pub account: u32,
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
    /// The sender gained (`add`) or lost one subscription on `subject` (and `queue`).
    Interest {
        /// Account of the subscription.
        account: u32,
        /// Subscribed subject.
        subject: Bytes,
        /// Queue group, if any.
        queue: Option<Bytes>,
        /// Gained or lost.
        add: bool,
    },
    /// Answer with [`Envelope::BarrierAck`] once every earlier envelope is applied.
    Barrier(u64),
    /// Reply to [`Envelope::Barrier`].
    BarrierAck(u64),
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
