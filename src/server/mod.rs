//! Wiring: binds the client port, starts the shards, and runs the control thread
//! (signals, shutdown) until the server stops.

pub mod acceptor;
pub mod control;
pub mod listen;

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::bus::Envelope;
use crate::config::Options;
use crate::proto::info::Info;
use crate::shard::control::ShardCommand;
use crate::{log_error, log_fatal, log_info, log_warn};

/// nats-server version whose behaviour natrium follows; clients read it from INFO.
pub const COMPAT_VERSION: &str = "2.15.1";
/// The commit natrium was built from (empty outside a git checkout).
pub const GIT_COMMIT: &str = env!("NATRIUM_GIT_COMMIT");
/// The feature API level nats-server 2.15.1 announces in INFO (`api_lvl`).
pub const API_LEVEL: i32 = 5;
/// natrium's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The client port a configured port of 0 stands for (nats-server's `DEFAULT_PORT`).
pub const DEFAULT_PORT: i32 = 4222;

/// Settings and counters every shard shares. Read-mostly; touched by shards only when
/// a connection opens or closes, never per message.
pub struct ServerShared {
    /// Options in force.
    pub opts: Options,
    /// Public server id (`N...`).
    pub server_id: String,
    /// Server name.
    pub server_name: String,
    /// The port clients connect to (resolved when `-p -1`).
    pub port: u16,
    /// The websocket listener's port (0 without one).
    pub ws_port: u16,
    /// The INFO template; replaced on reload (max_payload).
    info: std::sync::RwLock<Info>,
    /// The cluster's websocket URLs, told to websocket clients as `connect_urls`.
    ws_connect_urls: std::sync::RwLock<Vec<String>>,
    connections: AtomicI64,
    /// `max_connections` in force (reloadable).
    max_connections: AtomicI64,
    /// Connections per account with a connection limit (operator mode); touched at
    /// connect and close only.
    account_conns: std::sync::Mutex<std::collections::HashMap<crate::account::AccountId, usize>>,
    /// Lame duck mode: no new clients, existing ones are being closed.
    pub lame_duck: AtomicBool,
    /// Options in force now (`opts` is the start-up set): replaced on reload, for
    /// readers off the message path (monitoring). Shards use their own copy.
    opts_now: std::sync::RwLock<Arc<Options>>,
    /// Client authentication at start (issue #5); shards keep their own copy,
    /// replaced on reload.
    pub auth: Arc<crate::auth::AuthConfig>,
    /// Set when the server is shutting down.
    pub shutdown: AtomicBool,
    /// The cluster core's command channel (with a cluster): monitoring asks it for
    /// route snapshots.
    pub cluster_control:
        Option<crossbeam_channel::Sender<crate::cluster::snapshot::ClusterCommand>>,
    cluster_command_rx:
        Option<crossbeam_channel::Receiver<crate::cluster::snapshot::ClusterCommand>>,
    /// The route port (0 without a cluster).
    pub cluster_port: std::sync::atomic::AtomicU32,
    /// The bound leaf node port (0 without a leaf listener).
    pub leaf_port: std::sync::atomic::AtomicU32,
    /// The gateway port bound (0: none).
    pub gateway_port: std::sync::atomic::AtomicU32,
    /// The cluster core's route and leaf connection counts.
    pub link_counts: crate::cluster::snapshot::LinkCounts,
    /// Sequence number of the last system event this server published.
    pub event_seq: std::sync::atomic::AtomicU64,
    /// Start time, request counts and CPU figures of the monitoring documents.
    pub monitor: crate::monitor::Stats,
    /// Account names and their ids. Read when a connection authenticates, never per
    /// message; names are added (configured accounts, reloads) and never removed, so
    /// an id means one account for the life of the process.
    accounts: std::sync::RwLock<crate::account::Accounts>,
    /// One command channel per shard (index = shard id): the control plane's only way
    /// into a shard; [`ServerShared::tell_shard`] sends and wakes the shard.
    pub controls: Vec<crossbeam_channel::Sender<ShardCommand>>,
    command_rx: Vec<crossbeam_channel::Receiver<ShardCommand>>,
    /// The write ends of the shards' socket pairs, where a command's mark goes.
    command_wakes: Vec<std::os::unix::net::UnixStream>,
    /// Per shard: a mark is on its way and the shard has not looked at its channel
    /// since. One mark at a time is enough to wake it, and keeps the socket from
    /// filling up: a shard telling itself many commands (closing many clients)
    /// would otherwise block on its own socket.
    command_rung: Vec<AtomicBool>,
    /// `$SYS.REQ.SERVER.<id>.RELOAD` requests for the control thread, each with
    /// where its outcome goes ([`ServerShared::request_reload`]).
    pub reload_requests: std::sync::Mutex<Vec<crossbeam_channel::Sender<Result<(), String>>>>,
}

impl ServerShared {
    /// The id of account `name`, registered on first use.
    pub fn account_id(&self, name: &str) -> crate::account::AccountId {
        if let Some(id) = self.accounts.read().expect("accounts").lookup(name) {
            return id;
        }
        self.accounts.write().expect("accounts").intern(name)
    }

    /// The id of account `name`, if the server knows it.
    pub fn account_lookup(&self, name: &str) -> Option<crate::account::AccountId> {
        self.accounts.read().expect("accounts").lookup(name)
    }

    /// Every account's name, by id.
    pub fn account_names(&self) -> Vec<String> {
        let accounts = self.accounts.read().expect("accounts");
        accounts.names().map(str::to_string).collect()
    }

    /// The name of account `id`.
    pub fn account_name(&self, id: crate::account::AccountId) -> String {
        self.accounts.read().expect("accounts").name(id).to_string()
    }

    /// The command channel the cluster core reads.
    pub fn cluster_commands(
        &self,
    ) -> Option<crossbeam_channel::Receiver<crate::cluster::snapshot::ClusterCommand>> {
        self.cluster_command_rx.clone()
    }

    /// Tells the cluster core the stream imports now in force (no-op without one).
    pub fn tell_cluster_imports(&self, imports: Vec<crate::account::imports::StreamImport>) {
        if let Some(tx) = &self.cluster_control {
            let _ = tx.send(crate::cluster::snapshot::ClusterCommand::Imports(imports));
        }
    }

    /// The routes and leaf connections as the cluster core sees them now (empty
    /// without a cluster core).
    pub fn cluster_snapshot(&self, subs: bool) -> crate::cluster::snapshot::ClusterSnapshot {
        let Some(tx) = &self.cluster_control else {
            return Default::default();
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        if tx
            .send(crate::cluster::snapshot::ClusterCommand::Snapshot { subs, reply })
            .is_err()
        {
            return Default::default();
        }
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    }

    /// The command channel shard `id` reads.
    pub fn commands_for(&self, id: usize) -> crossbeam_channel::Receiver<ShardCommand> {
        self.command_rx[id].clone()
    }

    /// Sends `cmd(shard_id)` to every shard.
    pub fn tell_shards(&self, cmd: impl Fn(usize) -> ShardCommand) {
        for id in 0..self.controls.len() {
            self.tell_shard(id, cmd(id));
        }
    }

    /// Asks the control thread to reload the configuration, as SIGHUP does (woken by
    /// [`control::WAKE_SIGNAL`]); the outcome comes back on the returned channel.
    pub fn request_reload(&self) -> crossbeam_channel::Receiver<Result<(), String>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.reload_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        // SAFETY: a signal to this process; the control thread waits for it.
        unsafe {
            libc::kill(libc::getpid(), control::WAKE_SIGNAL());
        }
        rx
    }

    /// Sends `cmd` to shard `id` and wakes it (an idle shard sleeps instead of
    /// polling its channel).
    pub fn tell_shard(&self, id: usize, cmd: ShardCommand) {
        if self.controls[id].send(cmd).is_ok()
            && !self.command_rung[id].swap(true, Ordering::AcqRel)
        {
            use std::io::Write;
            let mark = acceptor::COMMAND_MARK.to_ne_bytes();
            let _ = (&self.command_wakes[id]).write_all(&mark);
        }
    }

    /// The client shard that owns connection `cid`.
    pub fn shard_of(&self, cid: u64) -> usize {
        (cid % self.controls.len() as u64) as usize
    }

    /// Shard `id` is about to drain its command channel: the next command needs a
    /// new mark.
    pub fn commands_seen(&self, id: usize) {
        self.command_rung[id].store(false, Ordering::SeqCst);
    }

    /// A copy of the INFO template in force.
    fn info_template(&self) -> Info {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Options in force now (after reloads).
    pub fn current_opts(&self) -> Arc<Options> {
        self.opts_now
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts reloaded options into what new connections see (INFO, limits).
    pub fn apply_reload(&self, opts: &Arc<Options>) {
        *self.opts_now.write().unwrap_or_else(|e| e.into_inner()) = opts.clone();
        self.max_connections
            .store(opts.max_connections, Ordering::Relaxed);
        let mut info = self.info.write().unwrap_or_else(|e| e.into_inner());
        info.max_payload = opts.max_payload;
        // TLS and auth (issue #5): what new connections and async INFOs show.
        info.tls_required = opts.tls.is_some() && !opts.allow_non_tls;
        info.tls_verify = opts.tls.as_ref().is_some_and(|t| t.verify);
        info.tls_available = opts.tls.is_some() && opts.allow_non_tls;
        if let Ok(auth) = crate::auth::AuthConfig::from_options(opts) {
            info.auth_required = auth.required();
        }
    }

    /// The async INFO telling a protocol-1 client that the server entered lame duck
    /// mode (`"ldm":true`; `connect_urls` would list only the other servers).
    pub fn ldm_info(&self, cid: u64, peer: Option<SocketAddr>) -> Vec<u8> {
        let mut info = self.info_template();
        info.client_id = cid;
        info.client_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        info.connect_urls.clear();
        info.ldm = true;
        info.to_line()
    }

    /// The INFO line sent to a new connection (a websocket one gets the websocket
    /// listener's fields).
    pub fn client_info(&self, cid: u64, peer: Option<SocketAddr>, websocket: bool) -> Vec<u8> {
        let mut info = self.info_template();
        info.client_id = cid;
        info.client_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        if websocket {
            self.websocket_info(&mut info);
        }
        info.to_line()
    }

    /// The INFO line for a new connection with the auth fields (issue #5) of the
    /// auth config in force on the accepting shard: `auth_required`, `nonce`.
    pub fn client_info_auth(
        &self,
        cid: u64,
        peer: Option<SocketAddr>,
        auth_required: bool,
        nonce: Option<&str>,
        websocket: bool,
    ) -> Vec<u8> {
        let mut info = self.info_template();
        info.client_id = cid;
        info.client_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        info.auth_required = auth_required;
        info.nonce = nonce.unwrap_or_default().to_string();
        if websocket {
            self.websocket_info(&mut info);
        }
        info.to_line()
    }

    /// The INFO sent after the first PONG to protocol-1 clients, naming the
    /// account the client is bound to.
    pub fn connect_info(
        &self,
        cid: u64,
        peer: Option<SocketAddr>,
        websocket: bool,
        account: &str,
    ) -> Vec<u8> {
        let mut info = self.info_template();
        info.client_id = cid;
        info.client_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        info.connect_info = true;
        info.remote_account = account.into();
        if websocket {
            self.websocket_info(&mut info);
        }
        info.to_line()
    }

    /// The URLs clients reach this server at: the advertised address, else the
    /// listen address (every interface address for a wildcard host, as nats-server).
    pub fn own_client_urls(&self) -> Vec<String> {
        if let Some(a) = &self.opts.client_advertise {
            return vec![a.clone()];
        }
        listen::client_urls(&self.opts.host, self.port)
    }

    /// The URLs websocket clients reach this server at: the websocket `advertise`,
    /// else its listen address; none without a websocket listener.
    pub fn own_ws_urls(&self) -> Vec<String> {
        match &self.opts.websocket {
            Some(ws) => match &ws.advertise {
                Some(a) => vec![a.clone()],
                None => listen::client_urls(&ws.host, self.ws_port),
            },
            None => Vec::new(),
        }
    }

    /// Sets the cluster's websocket URLs; true when they changed.
    pub fn set_ws_connect_urls(&self, urls: Vec<String>) -> bool {
        let mut now = self
            .ws_connect_urls
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if *now == urls {
            return false;
        }
        *now = urls;
        true
    }

    /// Puts the cluster's client URLs into the INFO template; true when they changed.
    pub fn set_connect_urls(&self, urls: Vec<String>) -> bool {
        let mut info = self.info.write().unwrap_or_else(|e| e.into_inner());
        if info.connect_urls == urls {
            return false;
        }
        info.connect_urls = urls;
        true
    }

    /// What nats-server's INFO says differently to websocket clients: the websocket
    /// listener's host and port, and its TLS.
    fn websocket_info(&self, info: &mut Info) {
        if let Some(ws) = &self.opts.websocket {
            info.connect_urls = self
                .ws_connect_urls
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            info.host = ws.host.clone();
            info.port = self.ws_port;
            info.tls_required = ws.tls.is_some();
            info.tls_verify = ws.tls.as_ref().is_some_and(|t| t.verify);
            info.tls_available = false;
        }
    }

    /// Counts a new connection; false when max_connections is reached.
    pub fn admit_connection(&self) -> bool {
        let n = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_connections.load(Ordering::Relaxed) {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Forgets a connection counted by [`ServerShared::admit_connection`].
    pub fn release_connection(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a connection of `account` against its `limit`; false (nothing
    /// counted) when the account has that many already.
    pub fn claim_account_conn(&self, account: crate::account::AccountId, limit: usize) -> bool {
        let mut counts = self.account_conns.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(account).or_insert(0);
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection [`ServerShared::claim_account_conn`] counted has closed.
    pub fn release_account_conn(&self, account: crate::account::AccountId) {
        let mut counts = self.account_conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&account) {
            *n = n.saturating_sub(1);
        }
    }

    /// Connections open now.
    pub fn connection_count(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A start-up failure: printed as one `[FTL]` line, exit status 1.
#[derive(Debug)]
pub struct FatalError(pub String);

/// Which cores the client shards run on, and the cluster core's (when routes are
/// configured): a core of its own unless there is only one, or `--shards` takes them all.
fn shard_cores(opts: &Options) -> (Vec<usize>, Option<usize>) {
    let cores = opts.cores.clone().unwrap_or_else(shards::allowed_cores);
    // Routes, gateways and leaf nodes live on the cluster core.
    let clustered = opts.cluster.is_some() || opts.leafnodes.is_some() || opts.gateway.is_some();
    let spare = usize::from(clustered && cores.len() > 1);
    let n = opts.shards.unwrap_or(cores.len() - spare).max(1);
    let client: Vec<usize> = (0..n).map(|i| cores[i % cores.len()]).collect();
    let core = clustered.then(|| {
        cores
            .iter()
            .rev()
            .copied()
            .find(|c| !client.contains(c))
            .unwrap_or(cores[cores.len() - 1])
    });
    (client, core)
}

/// How long an idle shard busy-polls before it parks: `--spin_us`, or by default
/// [`crate::config::options::DEFAULT_SPIN_US`] when no two executors share a core
/// (a spinning shard would take the time of the one beside it).
fn spin_us(opts: &Options, client: &[usize], cluster_core: Option<usize>) -> u64 {
    if let Some(us) = opts.spin_us {
        return us;
    }
    let mut used: Vec<usize> = client.iter().copied().chain(cluster_core).collect();
    let n = used.len();
    used.sort_unstable();
    used.dedup();
    if used.len() == n {
        crate::config::options::DEFAULT_SPIN_US
    } else {
        0
    }
}

/// Opens the leaf node port.
fn bind_leaf_port(
    l: &crate::config::leafnode::LeafnodeOptions,
) -> Result<(std::net::TcpListener, u16), FatalError> {
    let port = if l.port < 0 { 0 } else { l.port as u16 };
    let listener = listen::bind_tcp(&l.host, port.into()).map_err(|e| {
        FatalError(format!(
            "Error listening on leafnode port: {}, \"{e}\"",
            listen::host_port(&l.host, port)
        ))
    })?;
    let port = listen::bound_port(&listener);
    Ok((listener, port))
}

/// Opens the gateway port.
fn bind_gateway_port(
    g: &crate::config::gateway::GatewayOptions,
) -> Result<(std::net::TcpListener, u16), FatalError> {
    let port = if g.port < 0 { 0 } else { g.port as u16 };
    let listener = listen::bind_tcp(&g.host, port.into()).map_err(|e| {
        FatalError(format!(
            "Error listening on gateway port: {}, \"{e}\"",
            listen::host_port(&g.host, port)
        ))
    })?;
    let port = listen::bound_port(&listener);
    Ok((listener, port))
}

/// Opens the route port.
fn bind_cluster_port(
    c: &crate::config::cluster::ClusterOptions,
) -> Result<(std::net::TcpListener, u16), FatalError> {
    let port = match c.port {
        0 => crate::config::cluster::DEFAULT_ROUTE_PORT,
        -1 => 0,
        p => p,
    };
    let listener = listen::bind_tcp(&c.host, port.into()).map_err(|e| {
        FatalError(format!(
            "Error listening on router port: {}, \"{e}\"",
            listen::host_port(&c.host, port)
        ))
    })?;
    let bound = listen::bound_port(&listener);
    Ok((listener, bound))
}

/// Opens the client port; the error is nats-server's `[FTL]` text.
fn bind_client_port(host: &str, port: i32) -> Result<std::net::TcpListener, FatalError> {
    // As nats-server: port 0 means the default port, -1 a free one.
    let port = match port {
        0 => DEFAULT_PORT,
        -1 => 0,
        p => p,
    };
    listen::bind_tcp(host, port.into()).map_err(|e| {
        FatalError(format!(
            "Error listening on port: {}, \"{e}\"",
            listen::host_port(host, port)
        ))
    })
}

fn ports_file_path(dir: &std::path::Path) -> PathBuf {
    let exe = std::env::args()
        .next()
        .map(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(a)
        })
        .unwrap_or_else(|| "natrium".into());
    dir.join(format!("{exe}_{}.ports", std::process::id()))
}

/// Blocks the signals the control thread handles, so shard threads never see them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: building and installing a signal mask for this thread (inherited by the
    // threads spawned after it).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            control::WAKE_SIGNAL(),
        ] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Runs the server until SIGINT/SIGTERM (orderly) or SIGQUIT (immediate).
pub fn run(mut opts: Options) -> Result<(), FatalError> {
    // Before any thread exists (glommio's helpers, the monitor): threads inherit the
    // mask, so a signal can only reach the control thread's sigwait and never runs
    // its default action (SIGHUP, SIGUSR1/2 would terminate the process).
    let sigset = block_signals();
    // `--tls*` flags replace the config file's `tls {}`.
    if let Some(tls) = opts.tls_flags.build() {
        opts.tls = Some(Arc::new(tls.map_err(FatalError)?));
    }
    // Auth timeout default (issue #5): TLS timeout + 1s with TLS.
    crate::auth::config::apply_default_timeout(&mut opts);
    if opts.jetstream {
        log_warn!("JetStream is not available in natrium; serving core NATS only");
    }
    // With a gateway, the cluster is named after it (nats-server's rule).
    let gateway_name = opts.gateway.as_ref().map(|g| g.name.clone());
    if let (Some(c), Some(name)) = (opts.cluster.as_mut(), gateway_name.clone()) {
        c.name.get_or_insert(name);
    }
    if let Some(c) = opts.cluster.as_mut().filter(|c| c.name.is_none()) {
        c.name = Some(crate::cluster::random_name());
        c.dynamic_name = true;
    }
    let io_memory = 64 << 10;
    let (cores, cluster_core) = shard_cores(&opts);
    shards::raise_memlock_limit(8 << 20);
    shards::preflight(io_memory).map_err(|e| FatalError(e.0))?;

    let kp = nkeys::KeyPair::new_server();
    let server_id = kp.public_key();
    let server_name = opts
        .server_name
        .clone()
        .unwrap_or_else(|| server_id.clone());
    log_info!("Starting natrium (compatible with nats-server {COMPAT_VERSION})");
    log_info!("  Version:  {VERSION}");
    let cluster_name = opts.cluster.as_ref().and_then(|c| c.name.clone());
    if let Some(name) = cluster_name.or(gateway_name) {
        log_info!("  Cluster:  {name}");
    }
    log_info!("  Name:     {server_name}");
    log_info!("  ID:       {server_id}");
    log_info!("  Shards:   {} on cores {:?}", cores.len(), cores);
    if let Some(core) = cluster_core {
        log_info!("  Cluster core: core {core}");
    }

    let monitor = crate::monitor::bind(&opts)?;
    let monitor_url = monitor.as_ref().map(|m| m.url());
    let listener = bind_client_port(&opts.host, opts.port)?;
    let port = listen::bound_port(&listener);
    // Websocket (issue #14): its own listening socket, dealt to the same shards.
    let ws_listener = match &opts.websocket {
        None => None,
        Some(ws) => Some(
            listen::bind_tcp(&ws.host, ws.port.into())
                .map_err(|e| FatalError(format!("Error listening on websocket port: {e}")))?,
        ),
    };
    let ws_port = ws_listener.as_ref().map_or(0, listen::bound_port);
    let auth = Arc::new(crate::auth::AuthConfig::from_options(&opts).map_err(FatalError)?);
    if auth.has_plaintext_passwords() {
        log_warn!("Plaintext passwords detected, use nkeys or bcrypt");
    }
    for w in &auth.import_warnings {
        log_warn!("{w}");
    }
    let info = Info {
        server_id: server_id.clone(),
        server_name: server_name.clone(),
        version: COMPAT_VERSION.into(),
        proto: 1,
        git_commit: GIT_COMMIT.into(),
        go: format!("natrium {VERSION}"),
        host: opts.host.clone(),
        port,
        headers: !opts.no_header_support,
        // Auth (issue #5): the template (async INFOs such as connect_info) says
        // whether auth is required at all; a new connection's INFO hides it when
        // no_auth_user lets it in without credentials (`client_info_auth`).
        auth_required: auth.required(),
        // TLS (issue #5): required unless allow_non_tls, which makes it available.
        tls_required: opts.tls.is_some() && !opts.allow_non_tls,
        tls_verify: opts.tls.as_ref().is_some_and(|t| t.verify),
        tls_available: opts.tls.is_some() && opts.allow_non_tls,
        max_payload: opts.max_payload,
        client_id: 0,
        client_ip: String::new(),
        nonce: String::new(),
        cluster: opts
            .cluster
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_default(),
        connect_urls: Vec::new(),
        ldm: false,
        connect_info: false,
        remote_account: String::new(),
        api_lvl: API_LEVEL,
    };
    let (controls, command_rx): (Vec<_>, Vec<_>) = (0..cores.len())
        .map(|_| crossbeam_channel::unbounded())
        .unzip();
    let cluster_channel = cluster_core.map(|_| crossbeam_channel::unbounded());
    // One socket pair per shard: the acceptor writes accepted descriptors into one
    // end, the shard reads the other; commands leave a mark there too.
    let mut handoff = Vec::with_capacity(cores.len());
    let mut shard_ends = Vec::with_capacity(cores.len());
    for _ in 0..cores.len() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| FatalError(format!("Error creating socket pair: {e}")))?;
        handoff.push(ours);
        shard_ends.push(theirs.into_raw_fd());
    }
    let command_wakes = handoff
        .iter()
        .map(|h| h.try_clone())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FatalError(format!("Error creating socket pair: {e}")))?;
    let server = Arc::new(ServerShared {
        controls,
        command_rx,
        command_rung: (0..cores.len()).map(|_| AtomicBool::new(false)).collect(),
        command_wakes,
        reload_requests: Default::default(),
        opts: opts.clone(),
        server_id,
        server_name,
        port,
        ws_port,
        info: std::sync::RwLock::new(info),
        ws_connect_urls: Default::default(),
        auth,
        connections: AtomicI64::new(0),
        max_connections: AtomicI64::new(opts.max_connections),
        account_conns: Default::default(),
        lame_duck: AtomicBool::new(false),
        opts_now: std::sync::RwLock::new(Arc::new(opts.clone())),
        shutdown: AtomicBool::new(false),
        event_seq: std::sync::atomic::AtomicU64::new(0),
        monitor: crate::monitor::Stats::default(),
        cluster_port: std::sync::atomic::AtomicU32::new(0),
        leaf_port: std::sync::atomic::AtomicU32::new(0),
        gateway_port: std::sync::atomic::AtomicU32::new(0),
        link_counts: Default::default(),
        cluster_control: cluster_channel.as_ref().map(|(tx, _)| tx.clone()),
        cluster_command_rx: cluster_channel.map(|(_, rx)| rx),
        accounts: std::sync::RwLock::new(crate::account::Accounts::new()),
    });
    for name in &server.auth.accounts {
        server.account_id(name);
    }
    // The system account exists before any route or leaf can speak of it.
    if let Some(sys) = opts.system_account() {
        server.account_id(&sys);
    }

    if let Some(bound) = monitor {
        crate::monitor::start(bound, server.clone())?;
    }

    let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<()>();
    let cluster = match (&opts.cluster, cluster_core) {
        (Some(c), Some(_)) => Some(bind_cluster_port(c)?),
        _ => None,
    };
    let leaf = match (&opts.leafnodes, cluster_core) {
        (Some(l), Some(_)) if l.port != 0 => Some(bind_leaf_port(l)?),
        _ => None,
    };
    let gateway = match (&opts.gateway, cluster_core) {
        (Some(g), Some(_)) => Some(bind_gateway_port(g)?),
        _ => None,
    };
    let mut cluster_handoff = None;
    if cluster_core.is_some() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| FatalError(format!("Error creating socket pair: {e}")))?;
        cluster_handoff = Some(ours);
        shard_ends.push(theirs.into_raw_fd());
    }
    if let Some((_, port)) = &cluster {
        server.cluster_port.store(*port as u32, Ordering::Relaxed);
    }
    if let Some((_, port)) = &leaf {
        server.leaf_port.store(*port as u32, Ordering::Relaxed);
    }
    if let Some((_, port)) = &gateway {
        server.gateway_port.store(*port as u32, Ordering::Relaxed);
    }
    let fds = Arc::new(shard_ends);
    let cfg = shards::RuntimeConfig {
        cores: cores.clone(),
        dedicated_cores: cluster_core.into_iter().collect(),
        spin_before_park: Some(spin_us(&opts, &cores, cluster_core))
            .filter(|&us| us > 0)
            .map(Duration::from_micros),
        io_memory,
        ..Default::default()
    };
    let shard_server = server.clone();
    let runtime = shards::start::<Envelope, _, _>(cfg, move |mesh| {
        let server = shard_server.clone();
        let fds = fds.clone();
        let ready = ready_tx.clone();
        async move { crate::shard::control::shard_main(mesh, server, fds, ready).await }
    })
    .map_err(|e| FatalError(e.0))?;
    for _ in 0..cores.len() + usize::from(cluster_core.is_some()) {
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            return Err(FatalError("shards did not start within 10s".into()));
        }
    }

    if opts.tls.is_some() {
        let how = if opts.allow_non_tls {
            "available"
        } else {
            "required"
        };
        log_info!("TLS {how} for client connections");
    }
    // The leaf listener shares the cluster core's socket pair, its descriptors tagged.
    let leaf_acceptor = match (leaf, &cluster_handoff) {
        (Some((listener, port)), Some(handoff)) => {
            let host = &opts.leafnodes.as_ref().expect("leafnodes").host;
            let end = handoff
                .try_clone()
                .map_err(|e| FatalError(format!("Error creating socket pair: {e}")))?;
            let acceptor =
                acceptor::Acceptor::start(listener, vec![end], acceptor::Port::Second)
                    .map_err(|e| FatalError(format!("Error starting the accept thread: {e}")))?;
            log_info!(
                "Listening for leafnode connections on {}",
                listen::host_port(host, port)
            );
            Some(acceptor)
        }
        _ => None,
    };
    let gateway_acceptor = match (gateway, &cluster_handoff) {
        (Some((listener, port)), Some(handoff)) => {
            let g = opts.gateway.as_ref().expect("gateway");
            let end = handoff
                .try_clone()
                .map_err(|e| FatalError(format!("Error creating socket pair: {e}")))?;
            let acceptor = acceptor::Acceptor::start(listener, vec![end], acceptor::Port::Gateway)
                .map_err(|e| FatalError(format!("Error starting the accept thread: {e}")))?;
            log_info!("Gateway name is {}", g.name);
            log_info!(
                "Listening for gateways connections on {}",
                listen::host_port(&g.host, port)
            );
            log_info!(
                "Address for gateway {:?} is {}",
                g.name,
                crate::cluster::gateway::own_url(&server, g)
            );
            Some(acceptor)
        }
        _ => None,
    };
    let route_acceptor = match (cluster, cluster_handoff) {
        (Some((listener, port)), Some(handoff)) => {
            let host = &opts.cluster.as_ref().expect("cluster").host;
            log_info!(
                "Listening for route connections on {}",
                listen::host_port(host, port)
            );
            Some(
                acceptor::Acceptor::start(listener, vec![handoff], acceptor::Port::Main)
                    .map_err(|e| FatalError(format!("Error starting the accept thread: {e}")))?,
            )
        }
        _ => None,
    };
    let mut ws_acceptor = None;
    if let (Some(ws), Some(l)) = (&opts.websocket, ws_listener) {
        let ends = handoff
            .iter()
            .map(|h| h.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FatalError(format!("Error creating socket pair: {e}")))?;
        ws_acceptor = Some(
            acceptor::Acceptor::start(l, ends, acceptor::Port::Second)
                .map_err(|e| FatalError(format!("Error starting the accept thread: {e}")))?,
        );
        let scheme = if ws.tls.is_some() { "wss" } else { "ws" };
        log_info!(
            "Listening for websocket clients on {scheme}://{}",
            listen::host_port(&ws.host, ws_port)
        );
        if ws.tls.is_none() {
            log_warn!("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!");
        }
    }
    let mut acceptor = acceptor::Acceptor::start(listener, handoff, acceptor::Port::Main)
        .map_err(|e| FatalError(format!("Error starting the accept thread: {e}")))?;
    if let Some(ws) = ws_acceptor {
        acceptor = acceptor.with(ws);
    }
    log_info!(
        "Listening for client connections on {}",
        listen::host_port(&opts.host, port)
    );
    if let Some(pid_file) = &opts.pid_file {
        if let Err(e) = std::fs::write(pid_file, std::process::id().to_string()) {
            return Err(FatalError(format!(
                "Could not write pidfile: open {}: {}",
                pid_file.display(),
                crate::logging::go_error_text(&e)
            )));
        }
    }
    let ports_file = opts.ports_file_dir.as_ref().map(|dir| {
        // nats-server advertises tls:// when clients must use TLS.
        let scheme = if opts.tls.is_some() && !opts.allow_non_tls {
            "tls"
        } else {
            "nats"
        };
        let mut doc = serde_json::json!({
            "nats": [format!("{scheme}://{}", listen::local_host_port(&opts.host, port))]
        });
        if let Some(url) = &monitor_url {
            doc["monitoring"] = serde_json::json!([url]);
        }
        if let Some(c) = &opts.cluster {
            let port = server.cluster_port.load(Ordering::Relaxed) as u16;
            doc["cluster"] =
                serde_json::json!([format!("nats://{}", listen::local_host_port(&c.host, port))]);
        }
        if let Some(ws) = &opts.websocket {
            let scheme = if ws.tls.is_some() { "wss" } else { "ws" };
            doc["websocket"] = serde_json::json!([format!(
                "{scheme}://{}",
                listen::local_host_port(&ws.host, ws_port)
            )]);
        }
        let path = ports_file_path(dir);
        if let Err(e) = std::fs::write(&path, doc.to_string()) {
            // nats-server's words; it carries on without the file.
            log_error!(
                "Error writing ports file ({}): open {}: {}",
                path.display(),
                path.display(),
                crate::logging::go_error_text(&e)
            );
        }
        path
    });
    log_info!("Server is ready");

    control::run(&server, runtime, acceptor, sigset, ports_file);
    drop(route_acceptor);
    drop(gateway_acceptor);
    drop(leaf_acceptor);
    Ok(())
}

/// Removes the pid and ports files on exit.
pub fn cleanup_files(opts: &Options, ports_file: &Option<PathBuf>) {
    if let Some(p) = &opts.pid_file {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = ports_file {
        if let Err(e) = std::fs::remove_file(p) {
            log_error!(
                "Error cleaning up ports file {}: remove {}: {}",
                p.display(),
                p.display(),
                crate::logging::go_error_text(&e)
            );
        }
    }
}

/// Logs a fatal start-up error the nats-server way.
pub fn report_fatal(e: &FatalError) {
    log_fatal!("{}", e.0);
}
