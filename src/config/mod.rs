//! Configuration: options, command-line flags and the nats-server conf format.

pub mod cluster;
pub mod file;
pub mod flags;
pub mod gateway;
pub mod leafnode;
pub mod options;
pub mod parser;
pub mod value;
pub mod websocket;

pub use options::Options;
