//! Configuration: options, command-line flags (and, later, the nats-server conf format).

pub mod flags;
pub mod options;

pub use options::Options;
