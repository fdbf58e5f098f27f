//! What a connection has queued for its socket: copied frames plus large payloads
//! held by reference, in order.

use bytes::{Bytes, BytesMut};

/// Bytes waiting to be written to the socket.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Frames appended since the writer last took them.
    pub buf: BytesMut,
    /// Large payloads referenced instead of copied: each goes at its offset in `buf`
    /// (the writer sends them with one vectored write).
    pub shared: Vec<(usize, Bytes)>,
    /// Bytes held in `shared`.
    pub shared_len: usize,
    /// The writer's buffers, kept to avoid reallocating.
    pub spare: BytesMut,
    /// The writer's segment list, kept to avoid reallocating.
    pub spare_shared: Vec<(usize, Bytes)>,
}

impl Outbound {
    /// Bytes queued, copied and referenced.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.shared_len
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.shared.is_empty()
    }

    /// Queues `bytes` by reference at the current end of the buffer.
    pub fn push_shared(&mut self, bytes: Bytes) {
        self.shared_len += bytes.len();
        self.shared.push((self.buf.len(), bytes));
    }
}
