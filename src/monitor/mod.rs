//! HTTP monitoring: nats-server's endpoints (`/varz`, `/connz`, `/subsz`, `/routez`,
//! `/gatewayz`, `/leafz`, `/accountz`, `/accstatz`, `/healthz`, `/`) with its JSON
//! field names and query parameters, and Prometheus `/metrics`.
//!
//! The server runs on a plain thread of its own (see [`http`]). Shard data is never
//! read across threads: each request asks every shard for a [`ShardSnapshot`] over its
//! command channel and waits (bounded) for the answers.

pub mod connz;
pub mod format;
pub mod http;
mod metrics;
pub mod misc;
pub mod query;
pub mod subsz;
pub mod varz;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::server::{FatalError, ServerShared};
use crate::shard::control::ShardCommand;
use crate::shard::snapshot::ShardSnapshot;
use http::{Request, Response};

/// How long a request waits for the shards' snapshots.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// The monitoring listener, bound before the client port so that `/varz` answers as
/// soon as clients can connect.
pub struct Bound {
    listener: TcpListener,
    /// The address it listens on (real port when `-m -1`).
    pub addr: SocketAddr,
    /// The host as configured (`0.0.0.0`, ...), for the log line and the ports file.
    pub host: String,
    /// `https`: the rustls configuration the monitor serves with.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Bound {
    /// `http://HOST:PORT` (`https://` for `https`) for the ports file (loopback for a
    /// wildcard host).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let at = crate::server::listen::local_host_port(&self.host, self.addr.port());
        format!("{scheme}://{at}")
    }
}

/// The rustls configuration for `https`: the client port's `tls {}` (certificate,
/// cipher suites, curves) without client certificates, as nats-server's monitor
/// never asks for one.
fn https_config(tls: &crate::tls::TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    if !tls.verify {
        return Ok(tls.server.clone());
    }
    let config = rustls::ServerConfig::builder_with_provider(tls.server.crypto_provider().clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(tls.server.cert_resolver.clone());
    Ok(Arc::new(config))
}

/// Binds the monitoring port when `http`/`http_port`/`-m` (or `https`/`https_port`/
/// `-ms`) is set, and logs `Starting http monitor on HOST:PORT` (`https`). A bind
/// failure is fatal, as in nats-server, and so are both ports set, or `https`
/// without `tls {}`.
pub fn bind(opts: &crate::config::Options) -> Result<Option<Bound>, FatalError> {
    if opts.http_port != 0 && opts.https_port != 0 {
        return Err(FatalError(format!(
            "Can't start monitoring: can't specify both HTTP ({}) and HTTPs ({}) ports",
            opts.http_port, opts.https_port
        )));
    }
    let (port, tls) = if opts.https_port != 0 {
        let Some(tls) = &opts.tls else {
            return Err(FatalError(
                "Can't start monitoring: TLS cert and key required for HTTPS".into(),
            ));
        };
        let config =
            https_config(tls).map_err(|e| FatalError(format!("Can't start monitoring: {e}")))?;
        (opts.https_port, Some(config))
    } else {
        (opts.http_port, None)
    };
    if port == 0 {
        return Ok(None);
    }
    let host = opts.http_host.clone().unwrap_or_else(|| opts.host.clone());
    let fail = |e: String| {
        FatalError(format!(
            "Can't start monitoring: can't listen to the monitor port: {e}"
        ))
    };
    let listener = crate::server::listen::bind_tcp(&host, port.into()).map_err(fail)?;
    let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    crate::log_info!(
        "Starting {scheme} monitor on {}",
        crate::server::listen::host_port(&host, addr.port())
    );
    Ok(Some(Bound {
        listener,
        addr,
        host,
        tls,
    }))
}

/// Starts serving a bound monitoring port on a thread of its own.
pub fn start(bound: Bound, server: Arc<ServerShared>) -> Result<(), FatalError> {
    let _ = server.monitor.http.set(HttpPort {
        host: bound.host.clone(),
        port: bound.addr.port(),
        https: bound.tls.is_some(),
    });
    let monitor = Arc::new(Monitor::new(server));
    let handler = Arc::new(move |req: &Request| monitor.handle(req));
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || http::serve(bound.listener, bound.tls, handler))
        .map(|_| ())
        .map_err(|e| FatalError(format!("Can't start the http monitor: {e}")))
}

/// The monitoring port as bound (`/varz` `http_host`, `http_port`, `https_port`).
pub struct HttpPort {
    /// Host as configured.
    pub host: String,
    /// The port it got.
    pub port: u16,
    /// Served over TLS.
    pub https: bool,
}

/// What the monitoring documents need besides the shards' snapshots. It lives on the
/// server, not the HTTP listener, so that a system account request builds the same
/// documents when no monitoring port is configured.
pub struct Stats {
    /// When the server started (`start`, `config_load_time`).
    pub start: SystemTime,
    started: Instant,
    /// Set once the monitoring port is bound.
    pub http: OnceLock<HttpPort>,
    req_stats: Mutex<BTreeMap<String, u64>>,
    cpu: Mutex<Option<(Instant, f64)>>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            start: SystemTime::now(),
            started: Instant::now(),
            http: OnceLock::new(),
            req_stats: Mutex::new(BTreeMap::new()),
            cpu: Mutex::new(None),
        }
    }
}

impl Stats {
    fn count(&self, path: &str) {
        if let Ok(mut m) = self.req_stats.lock() {
            *m.entry(path.to_string()).or_insert(0) += 1;
        }
    }

    /// Requests served per endpoint (`/varz` `http_req_stats`).
    pub fn req_stats(&self) -> BTreeMap<String, u64> {
        self.req_stats.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Process CPU use in percent since the previous call (since start on the first).
    pub fn cpu_percent(&self) -> f64 {
        let total = misc::process_cpu_seconds();
        let now = Instant::now();
        let Ok(mut last) = self.cpu.lock() else {
            return 0.0;
        };
        let (since, base) = last.unwrap_or((self.started, 0.0));
        *last = Some((now, total));
        let wall = now.duration_since(since).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        (((total - base) / wall) * 1000.0).round() / 10.0
    }
}

/// Asks every shard for a snapshot over the command channels and collects the
/// answers (shards that do not answer within [`SNAPSHOT_WAIT`] are left out),
/// ordered by shard id. Blocks: for threads off the shards (the HTTP monitor).
pub fn snapshots(server: &ServerShared, subs: bool) -> Vec<ShardSnapshot> {
    let n = server.controls.len();
    let (tx, rx) = crossbeam_channel::bounded(n);
    server.tell_shards(|_| ShardCommand::Snapshot {
        subs,
        reply: tx.clone(),
    });
    drop(tx);
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match rx.recv_deadline(deadline) {
            Ok(s) => out.push(s),
            Err(_) => break,
        }
    }
    out.sort_by_key(|s| s.id);
    out
}

/// State of the monitoring endpoints.
pub struct Monitor {
    server: Arc<ServerShared>,
    base_path: String,
}

impl Monitor {
    fn new(server: Arc<ServerShared>) -> Monitor {
        let base_path = server
            .opts
            .http_base_path
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let base_path = if base_path.is_empty() || base_path.starts_with('/') {
            base_path
        } else {
            format!("/{base_path}")
        };
        Monitor { server, base_path }
    }

    /// Every shard's snapshot (see [`snapshots`]).
    pub fn snapshots(&self, subs: bool) -> Vec<ShardSnapshot> {
        snapshots(&self.server, subs)
    }

    /// Routes one request.
    pub fn handle(&self, req: &Request) -> Response {
        let path = if self.base_path.is_empty() {
            req.path.as_str()
        } else {
            match req.path.strip_prefix(self.base_path.as_str()) {
                Some("") => "/",
                Some(p) if p.starts_with('/') => p,
                _ => return Response::not_found(),
            }
        };
        let endpoint = match path {
            "/" => "/",
            "/varz" => "/varz",
            "/connz" => "/connz",
            "/subsz" | "/subscriptionsz" => "/subsz",
            "/routez" => "/routez",
            "/gatewayz" => "/gatewayz",
            "/leafz" => "/leafz",
            "/accountz" => "/accountz",
            "/accstatz" => "/accstatz",
            "/healthz" => "/healthz",
            "/metrics" => "/metrics",
            _ => return Response::not_found(),
        };
        self.server.monitor.count(endpoint);
        let result = match endpoint {
            "/" => Ok(misc::index(self)),
            "/varz" => Ok(varz::varz(self)),
            "/connz" => connz::connz(self, req),
            "/subsz" => subsz::subsz(self, req),
            "/routez" => misc::routez(self, req),
            "/gatewayz" => misc::gatewayz(self, req),
            "/leafz" => misc::leafz(self, req),
            "/accountz" => misc::accountz(self, req),
            "/accstatz" => misc::accstatz(self, req),
            "/healthz" => misc::healthz(req),
            _ => Ok(metrics::metrics(self)),
        };
        result.unwrap_or_else(|msg| Response::text(400, msg))
    }
}
