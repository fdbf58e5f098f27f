//! The client protocol: parser, encoders, and the CONNECT and INFO documents.

pub mod connect;
pub mod encode;
pub mod info;
pub mod parser;
