//! Server options with nats-server's names and defaults.

use std::path::PathBuf;
use std::time::Duration;

/// Every option the server runs with. Defaults match nats-server 2.x.
#[derive(Clone, Debug)]
pub struct Options {
    /// Client listen host (`-a`, `listen`, `host`).
    pub host: String,
    /// Client port; `-1` picks a free one.
    pub port: i32,
    /// Server name; the server id when unset.
    pub server_name: Option<String>,
    /// Where to write the pid (`-P`).
    pub pid_file: Option<PathBuf>,
    /// Directory for the `<exe>_<pid>.ports` file.
    pub ports_file_dir: Option<PathBuf>,
    /// Log to this file instead of stderr (`-l`).
    pub log_file: Option<PathBuf>,
    /// Prefix log lines with the time.
    pub logtime: bool,
    /// Debug log level (`-D`).
    pub debug: bool,
    /// Trace protocol lines (`-V`).
    pub trace: bool,
    /// Largest PUB payload accepted.
    pub max_payload: usize,
    /// Longest control line accepted.
    pub max_control_line: usize,
    /// Outbound bytes a client may have pending before it is a slow consumer.
    pub max_pending: usize,
    /// Client connections accepted at once; `<= 0` refuses every client.
    pub max_connections: i64,
    /// Subscriptions per connection; 0 = unlimited.
    pub max_subscriptions: usize,
    /// Interval between server PINGs.
    pub ping_interval: Duration,
    /// Unanswered PINGs before the connection is stale.
    pub ping_max: u32,
    /// A write that cannot complete in this time marks a slow consumer.
    pub write_deadline: Duration,
    /// Time a client has to send CONNECT when auth is required.
    pub auth_timeout: Duration,
    /// Client shards (executors); default: one per allowed core.
    pub shards: Option<usize>,
    /// Cores the shards are pinned to; default: the cores this process may run on.
    pub cores: Option<Vec<usize>>,
    /// Busy-poll before parking an idle shard, in microseconds (0 = off).
    pub spin_us: u64,
    /// Disable header support (HPUB/HMSG).
    pub no_header_support: bool,
    /// JetStream was asked for (accepted for compatibility, not available).
    pub jetstream: bool,
    /// Config file given with `-c` (parsed once the config issue lands).
    pub config_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "0.0.0.0".into(),
            port: 4222,
            server_name: None,
            pid_file: None,
            ports_file_dir: None,
            log_file: None,
            logtime: true,
            debug: false,
            trace: false,
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(2),
            shards: None,
            cores: None,
            spin_us: 0,
            no_header_support: false,
            jetstream: false,
            config_file: None,
        }
    }
}
