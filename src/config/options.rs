//! Server options with nats-server's names and defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::value::Item;

/// Default busy-poll of a shard with a core of its own: long enough to catch the
/// next request of a request/reply exchange without a park and wake-up (about 30 us
/// off the loopback round trip, measured), short enough that an idle server uses no
/// CPU (a shard spins once after its last event, then sleeps).
pub const DEFAULT_SPIN_US: u64 = 40;

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
    /// Busy-poll before parking an idle shard, in microseconds (0 = off); default:
    /// [`DEFAULT_SPIN_US`] when every shard has a core of its own, else off.
    pub spin_us: Option<u64>,
    /// Disable header support (HPUB/HMSG).
    pub no_header_support: bool,
    /// JetStream was asked for (accepted for compatibility, not available).
    pub jetstream: bool,
    /// Cluster flags given on the command line (`--cluster`, `--routes`,
    /// `--cluster_name`, `--no_advertise`, `--connect_retries`), kept for the
    /// clustering issue; until then they only produce a warning.
    pub cluster_flags: Vec<String>,
    /// The cluster (routes) settings: the `cluster {}` block with the flags over it.
    pub cluster: Option<super::cluster::ClusterOptions>,
    /// The `gateway {}` block: this cluster's gateway listener and the other clusters.
    pub gateway: Option<super::gateway::GatewayOptions>,
    /// The `leafnodes {}` block: the leaf listener and the remotes.
    pub leafnodes: Option<super::leafnode::LeafnodeOptions>,
    /// Config file given with `-c`.
    pub config_file: Option<PathBuf>,
    /// `-t`: check the config file and exit.
    pub check_config: bool,
    /// `sha256:<hex>` digest of the loaded config file (as nats-server computes it).
    pub config_digest: Option<String>,
    /// URL advertised to clients (`client_advertise`).
    pub client_advertise: Option<String>,
    /// Monitoring host (`http: host:port`, `https: host:port`); default: `host`.
    pub http_host: Option<String>,
    /// Monitoring HTTP port (`http`, `http_port`, `monitor_port`, `-m`); 0 = off, -1 = random.
    pub http_port: i32,
    /// Monitoring HTTPS port (`https`, `https_port`, `-ms`); 0 = off.
    pub https_port: i32,
    /// Prefix of the monitoring endpoints (`http_base_path`).
    pub http_base_path: Option<String>,
    /// Time lame duck mode spreads client closes over.
    pub lame_duck_duration: Duration,
    /// Time before lame duck mode starts closing clients.
    pub lame_duck_grace_period: Duration,
    /// User for clients that connect without credentials.
    pub no_auth_user: Option<String>,
    /// Disable the sublist result cache.
    pub disable_sublist_cache: bool,
    /// Trace verbose (`trace_verbose`).
    pub trace_verbose: bool,
    /// Trace message headers (`trace_headers`).
    pub trace_headers: bool,
    /// Log timestamps in UTC.
    pub logtime_utc: bool,
    /// Log to syslog (`-s`, `syslog`).
    pub syslog: bool,
    /// Remote syslog address (`-r`, `remote_syslog`).
    pub remote_syslog: Option<String>,
    /// Rotate the log file at this size in bytes; 0 = never.
    pub log_size_limit: i64,
    /// Rotated log files to keep; 0 = all.
    pub log_max_num: i64,
    /// Longest traced message body; 0 = unlimited.
    pub max_traced_msg_len: i64,
    /// Most tokens a subscription subject may have; 0 = unlimited.
    pub max_sub_tokens: u8,
    /// Closed connections remembered for `/connz`.
    pub max_closed_clients: i64,
    /// Seconds between repeated connect error reports.
    pub connect_error_reports: i64,
    /// Reconnect attempts between error reports.
    pub reconnect_error_reports: i64,
    /// `write_timeout` policy: `default`, `close` or `retry`.
    pub write_timeout: Option<String>,
    /// `no_fast_producer_stall`.
    pub no_fast_producer_stall: bool,
    /// Client-port TLS (`tls {}` or the `--tls*` flags); None = plain TCP.
    pub tls: Option<std::sync::Arc<crate::tls::TlsConfig>>,
    /// Accept plain TCP clients too when TLS is configured (`allow_non_tls`).
    pub allow_non_tls: bool,
    /// `websocket {}`: the websocket listener (issue #14); None = no listener.
    pub websocket: Option<crate::config::websocket::WebsocketOpts>,
    /// `--tls*` flags; they replace the file's `tls {}` (see `tls::TlsFlags`).
    pub tls_flags: crate::tls::TlsFlags,
    /// `--tls=false`: no TLS at all, whatever the file or the other `--tls*` flags say.
    pub tls_off: bool,
    /// `--user`, `--pass`, `--auth` (issue #5): override the file's single user/token.
    pub auth_flags: crate::auth::config::AuthFlags,
    /// Server tags (`server_tags`): lower-cased, trimmed, without duplicates.
    pub tags: Vec<String>,
    /// Server metadata (`server_metadata`).
    pub metadata: BTreeMap<String, String>,
    /// Sections and options for features implemented in later issues, kept raw
    /// from the config file, keyed by their canonical name (`cluster`, `gateway`,
    /// `leafnodes`, `authorization`, `accounts`, `tls`, `jetstream`, `websocket`,
    /// `mqtt`, `system_account`, `server_tags`, ...). See `config::file::SECTIONS`.
    pub config_sections: BTreeMap<String, Item>,
    /// Operator mode: the system account the operator JWT names.
    pub operator_system_account: Option<String>,
}

impl Options {
    /// The raw config-file item for a section kept for a later feature, by its
    /// canonical name (aliases such as `leaf` are stored under `leafnodes`).
    pub fn section(&self, name: &str) -> Option<&Item> {
        self.config_sections.get(name)
    }

    /// The system account: `system_account` (else the operator's, else `$SYS`);
    /// none with `no_system_account`.
    pub fn system_account(&self) -> Option<String> {
        if self
            .section("no_system_account")
            .and_then(|i| i.value.as_bool())
            == Some(true)
        {
            return None;
        }
        let named = self
            .section("system_account")
            .and_then(|i| i.value.as_str())
            .or(self.operator_system_account.as_deref());
        Some(named.unwrap_or("$SYS").to_string())
    }
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
            spin_us: None,
            no_header_support: false,
            jetstream: false,
            cluster_flags: Vec::new(),
            cluster: None,
            leafnodes: None,
            gateway: None,
            config_file: None,
            check_config: false,
            config_digest: None,
            client_advertise: None,
            http_host: None,
            http_port: 0,
            https_port: 0,
            http_base_path: None,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            no_auth_user: None,
            disable_sublist_cache: false,
            trace_verbose: false,
            trace_headers: false,
            logtime_utc: false,
            syslog: false,
            remote_syslog: None,
            log_size_limit: 0,
            log_max_num: 0,
            max_traced_msg_len: 0,
            max_sub_tokens: 0,
            max_closed_clients: 10_000,
            connect_error_reports: 3600,
            reconnect_error_reports: 1,
            write_timeout: None,
            no_fast_producer_stall: false,
            tls: None,
            allow_non_tls: false,
            websocket: None,
            tls_flags: Default::default(),
            tls_off: false,
            auth_flags: Default::default(),
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            config_sections: BTreeMap::new(),
            operator_system_account: None,
        }
    }
}
