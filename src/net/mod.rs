//! What connections of every kind share: the outbound queue, the writer, and the
//! plain/TLS stream and the websocket framing over either.

pub mod outbound;
pub mod stream;
pub mod websocket;
pub mod writer;

pub use outbound::Outbound;
