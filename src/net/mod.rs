//! What connections of every kind share: the outbound queue, the writer, and the
//! plain/TLS stream (websocket streams will sit beside it).

pub mod outbound;
pub mod stream;
pub mod writer;

pub use outbound::Outbound;
