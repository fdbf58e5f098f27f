//! The client protocol (parser, encoders, the CONNECT and INFO documents) and the
//! route protocol beside it.

pub mod connect;
pub mod encode;
pub mod info;
pub mod parser;
pub mod route;
