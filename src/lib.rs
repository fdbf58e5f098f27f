//! natrium: a NATS 2.x message server on a thread-per-core io_uring runtime.

pub mod logging;

pub mod account;
pub mod auth;
pub mod bus;
pub mod client;
pub mod cluster;
pub mod config;
pub mod events;
pub mod monitor;
pub mod net;
pub mod proto;
pub mod server;
pub mod shard;
pub mod subject;
pub mod sublist;
pub mod tls;
