//! natrium: a NATS 2.x message server on a thread-per-core io_uring runtime.
