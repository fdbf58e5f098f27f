//! The control thread: waits for signals and turns them into commands for the shards.
//! Never on the message path.
//!
//! * SIGINT / SIGTERM: orderly shutdown (SIGTERM is ignored in lame duck mode).
//! * SIGQUIT: exit at once.
//! * SIGHUP: reload the config file ([`Control::reload`]).
//! * SIGUSR1: reopen the log file.
//! * SIGUSR2: lame duck mode ([`Control::enter_lame_duck`]).
//!
//! The control thread keeps the options in force ([`Control::opts`]); each shard
//! keeps its own copy (`ShardCtx::opts`), replaced by `ShardCommand::Reload`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{cleanup_files, ServerShared};
use crate::config::file::{self, go_duration_string};
use crate::config::flags::{self, Command, LoadError};
use crate::config::value::Value;
use crate::config::Options;
use crate::logging::{self, LogConfig};
use crate::shard::control::ShardCommand;
use crate::{log_error, log_info};

/// Lame duck mode in progress.
struct LameDuck {
    /// Connections to close, with the shard that owns each.
    clients: Vec<(usize, u64)>,
    /// Next to close.
    next: usize,
    /// When the next step is due (end of the grace period, then each close).
    due: Instant,
    /// Still in the grace period.
    grace: bool,
    /// Pause between closes.
    interval: Duration,
    /// Closes done back to back before a pause (many clients, short duration).
    batch: usize,
}

/// What the control thread knows beyond [`ServerShared`].
pub struct Control<'a> {
    server: &'a Arc<ServerShared>,
    /// Options in force (the shards hold the same, per shard).
    pub opts: Arc<Options>,
    ports_file: Option<PathBuf>,
    ldm: Option<LameDuck>,
    rng: u64,
}

/// Handles signals until the server stops.
pub fn run(
    server: &Arc<ServerShared>,
    runtime: shards::Runtime,
    mut acceptor: super::acceptor::Acceptor,
    sigset: libc::sigset_t,
    ports_file: Option<PathBuf>,
) {
    let mut ctl = Control {
        server,
        opts: server.current_opts(),
        ports_file,
        ldm: None,
        rng: seed(),
    };
    loop {
        let timeout = ctl
            .ldm
            .as_ref()
            .map(|l| l.due.saturating_duration_since(Instant::now()));
        let sig = wait_signal(&sigset, timeout);
        match sig {
            Some(libc::SIGINT) => {
                log_info!("Trapped \"interrupt\" signal");
                break;
            }
            Some(libc::SIGTERM) => {
                log_info!("Trapped \"terminated\" signal");
                // nats-server lets lame duck mode finish.
                if ctl.ldm.is_none() {
                    break;
                }
            }
            Some(libc::SIGQUIT) => {
                log_info!("Trapped \"quit\" signal");
                cleanup_files(&ctl.opts, &ctl.ports_file);
                std::process::exit(0);
            }
            Some(libc::SIGHUP) => {
                log_info!("Trapped \"hangup\" signal");
                if let Err(e) = ctl.reload() {
                    log_error!("Failed to reload server configuration: {e}");
                }
            }
            Some(libc::SIGUSR1) => {
                log_info!("Trapped \"user defined signal 1\" signal");
                logging::reopen();
            }
            Some(libc::SIGUSR2) => {
                log_info!("Trapped \"user defined signal 2\" signal");
                if ctl.ldm.is_none() && !ctl.enter_lame_duck(&mut acceptor) {
                    break;
                }
            }
            Some(sig) if sig == WAKE_SIGNAL() => {
                let requests = std::mem::take(
                    &mut *ctl
                        .server
                        .reload_requests
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()),
                );
                if !requests.is_empty() {
                    let outcome = ctl.reload();
                    if let Err(e) = &outcome {
                        log_error!("Failed to reload server configuration: {e}");
                    }
                    for r in requests {
                        let _ = r.send(outcome.clone());
                    }
                }
            }
            Some(_) => {}
            None => {
                if !ctl.lame_duck_step() {
                    break;
                }
            }
        }
    }
    log_info!("Initiating Shutdown...");
    acceptor.stop();
    server.shutdown.store(true, Ordering::SeqCst);
    server.tell_shards(|_| ShardCommand::Shutdown);
    let _ = runtime.join();
    cleanup_files(&ctl.opts, &ctl.ports_file);
    log_info!("Server Exiting..");
}

/// The signal that wakes the control thread for work other threads queued (a
/// `$SYS.REQ.SERVER.<id>.RELOAD`): a real-time signal, never sent by tools.
#[allow(non_snake_case)]
pub fn WAKE_SIGNAL() -> i32 {
    libc::SIGRTMIN() + 1
}

/// Waits for one of `set`, up to `timeout` (forever when `None`); `None` on timeout.
fn wait_signal(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    loop {
        let sig = match timeout {
            None => {
                let mut sig: libc::c_int = 0;
                // SAFETY: sigwait on the set the caller blocked before starting shards.
                if unsafe { libc::sigwait(set, &mut sig) } != 0 {
                    continue;
                }
                sig
            }
            Some(t) => {
                let ts = libc::timespec {
                    tv_sec: t.as_secs() as libc::time_t,
                    tv_nsec: t.subsec_nanos() as libc::c_long,
                };
                // SAFETY: as above, with a timeout.
                let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
                if sig < 0 {
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EINTR) => continue,
                        _ => return None,
                    }
                }
                sig
            }
        };
        return Some(sig);
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64 ^ (std::process::id() as u64) << 32) | 1
}

impl Control<'_> {
    fn rand_below(&mut self, n: u64) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// Enters lame duck mode: stop accepting, tell protocol-1 clients (`"ldm":true`),
    /// then (after the grace period) close clients spread over the lame duck
    /// duration. Returns false when there is nobody to wait for (shut down now).
    pub fn enter_lame_duck(&mut self, acceptor: &mut super::acceptor::Acceptor) -> bool {
        log_info!("Entering lame duck mode, stop accepting new clients");
        acceptor.stop();
        self.server.lame_duck.store(true, Ordering::SeqCst);
        if let Some(cluster) = &self.server.cluster_control {
            let _ = cluster.send(crate::cluster::snapshot::ClusterCommand::LameDuck);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        self.server
            .tell_shards(|_| ShardCommand::LameDuck { reply: tx.clone() });
        drop(tx);
        let mut clients = Vec::new();
        for _ in 0..self.server.controls.len() {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(cids) => clients.extend(cids),
                Err(_) => break,
            }
        }
        if clients.is_empty() {
            return false;
        }
        let clients: Vec<(usize, u64)> = clients
            .into_iter()
            .map(|c| (self.server.shard_of(c), c))
            .collect();
        let grace = self.opts.lame_duck_grace_period;
        let dur = self
            .opts
            .lame_duck_duration
            .checked_sub(grace)
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(1));
        let count = clients.len() as u128;
        let mut si = dur.as_nanos() / count;
        let mut batch = 1usize;
        if si < 1 {
            si = 1;
            batch = (count / dur.as_nanos().max(1)).max(1) as usize;
        }
        let interval = Duration::from_nanos(si.min(1_000_000_000) as u64);
        self.ldm = Some(LameDuck {
            clients,
            next: 0,
            due: Instant::now() + grace,
            grace: true,
            interval,
            batch,
        });
        true
    }

    /// One step of lame duck mode when its timer fires; false when done (shut down).
    fn lame_duck_step(&mut self) -> bool {
        let Some(mut ldm) = self.ldm.take() else {
            return true;
        };
        if ldm.grace {
            ldm.grace = false;
            log_info!("Closing existing clients");
        }
        loop {
            let i = ldm.next;
            let Some(&(shard, cid)) = ldm.clients.get(i) else {
                return false;
            };
            self.server
                .tell_shard(shard, ShardCommand::CloseClient(cid));
            ldm.next += 1;
            if ldm.next == ldm.clients.len() {
                // Let the last close go out before the shards shut down.
                std::thread::sleep(Duration::from_millis(20));
                return false;
            }
            if ldm.batch == 1 || i % ldm.batch == 0 {
                // A random pause of at least half the interval, like nats-server.
                let si = ldm.interval.as_nanos() as u64;
                let v = self.rand_below(si).max(si / 2);
                ldm.due = Instant::now() + Duration::from_nanos(v);
                self.ldm = Some(ldm);
                return true;
            }
        }
    }

    /// Reloads the config file (SIGHUP): parse it again, apply the command-line
    /// flags on top as at start, refuse the whole reload if a non-reloadable option
    /// changed, else put the new options in force on every shard (connections stay).
    pub fn reload(&mut self) -> Result<(), String> {
        if self.opts.config_file.is_none() {
            return Err(
                "can only reload config when a file is provided using -c or --config".into(),
            );
        }
        let args: Vec<String> = std::env::args().skip(1).collect();
        let (cmd, report) = flags::load(&args).map_err(|e| match e {
            LoadError::File(s) | LoadError::Invalid(s) => s,
            LoadError::Flags(f) => f.0,
        })?;
        let Command::Run(mut new) = cmd else {
            return Err("unexpected command line".into());
        };
        if let Some(e) = report.errors.first().or(report.refused.first()) {
            return Err(e.clone());
        }
        file::validate(&new)?;
        new.check_config = false;
        // `--tls*` flags replace the file's `tls {}`, as at start.
        if let Some(tls) = new.tls_flags.build() {
            new.tls = Some(Arc::new(tls?));
        }
        crate::auth::config::apply_default_timeout(&mut new);
        let lines = diff(&self.opts, &new)?;
        for line in &lines {
            log_info!("{line}");
        }
        let new = Arc::new(*new);
        self.apply_files(&new);
        if let Err(e) = logging::configure(&LogConfig::from_options(&new)) {
            log_error!("{e}");
        }
        self.server.apply_reload(&new);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        self.server
            .tell_shards(|_| ShardCommand::Reload(new.clone(), done_tx.clone()));
        drop(done_tx);
        // Wait until every shard applied it (bounded: a stuck shard must not stop
        // the control thread).
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..self.server.controls.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        if let (Some(tx), Some(c)) = (&self.server.cluster_control, &new.cluster) {
            let _ = tx.send(crate::cluster::snapshot::ClusterCommand::Reload(Box::new(
                c.clone(),
            )));
        }
        if let (Some(tx), Some(l)) = (&self.server.cluster_control, &new.leafnodes) {
            if self.opts.leafnodes.as_ref().map(|o| &o.remotes) != Some(&l.remotes) {
                let _ = tx.send(crate::cluster::snapshot::ClusterCommand::LeafRemotes(
                    l.remotes.clone(),
                ));
            }
        }
        self.opts = new;
        log_info!(
            "Reloaded server configuration ({})",
            self.opts.config_digest.as_deref().unwrap_or_default()
        );
        Ok(())
    }

    /// A changed pid file or ports file directory: write the new ones.
    fn apply_files(&mut self, new: &Options) {
        if new.pid_file != self.opts.pid_file {
            if let Some(p) = &new.pid_file {
                if let Err(e) = std::fs::write(p, std::process::id().to_string()) {
                    log_error!("Could not write pidfile: {e}");
                }
            }
        }
        if new.ports_file_dir != self.opts.ports_file_dir {
            let doc = self
                .ports_file
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_else(|| {
                    let host = match self.opts.host.as_str() {
                        "0.0.0.0" | "::" => "127.0.0.1",
                        h => h,
                    };
                    serde_json::json!({ "nats": [format!("nats://{host}:{}", self.server.port)] })
                        .to_string()
                });
            if let Some(old) = self.ports_file.take() {
                if let Err(e) = std::fs::remove_file(&old) {
                    log_error!("Error cleaning up ports file {}: {e}", old.display());
                }
            }
            if let Some(dir) = &new.ports_file_dir {
                let path = super::ports_file_path(dir);
                if let Err(e) = std::fs::write(&path, doc) {
                    log_error!("Error writing ports file {}: {e}", path.display());
                }
                self.ports_file = Some(path);
            }
        }
    }
}

fn show_opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

fn show_path(v: &Option<PathBuf>) -> String {
    v.as_ref()
        .map(|v| v.display().to_string())
        .unwrap_or_default()
}

/// Config values equal apart from where they were written.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.entries()
                    .iter()
                    .zip(y.entries())
                    .all(|(p, q)| p.key == q.key && same_value(&p.item.value, &q.item.value))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(&p.value, &q.value))
        }
        _ => a == b,
    }
}

/// A config value in the file's own notation, for reload errors
/// (`{listen: 127.0.0.1:8080, no_tls: true}`).
fn conf_text(v: &crate::config::value::Value) -> String {
    use crate::config::value::Value;
    match v {
        Value::Map(m) => {
            let inner: Vec<String> = m
                .entries()
                .iter()
                .map(|e| format!("{}: {}", e.key, conf_text(&e.item.value)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(|i| conf_text(&i.value)).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::String(s) => s.clone(),
        other => format!("{other:?}")
            .split_once('(')
            .map_or_else(String::new, |(_, v)| v.trim_end_matches(')').to_string()),
    }
}

/// Config-file sections kept raw: (canonical name, nats-server's option name,
/// reloadable). Changing one that is not reloadable refuses the reload.
const SECTION_RELOAD: &[(&str, &str, bool)] = &[
    ("system_account", "SystemAccount", false),
    ("no_system_account", "NoSystemAccount", false),
    ("authorization", "authorization", true),
    ("accounts", "accounts", true),
    ("default_sentinel", "default_sentinel", true),
    ("cluster", "Cluster", false),
    ("gateway", "Gateway", false),
    // Checked field by field (leafnode_diff): the remotes reload.
    ("leafnodes", "LeafNode", true),
    ("jetstream", "JetStream", false),
    ("store_dir", "StoreDir", false),
    ("default_js_domain", "JsAccDefaultDomain", false),
    ("websocket", "Websocket", false),
    ("mqtt", "MQTT", false),
    ("prof_port", "ProfPort", false),
    ("prof_block_rate", "prof_block_rate", true),
    ("operator", "TrustedOperators", false),
    ("trusted", "TrustedKeys", false),
    ("resolver", "AccountResolver", false),
    ("resolver_tls", "resolver_tls", true),
    ("resolver_preload", "resolver_preload", true),
    ("resolver_pinned_accounts", "resolver_pinned_accounts", true),
    ("tls", "tls", true),
    ("allow_non_tls", "AllowNonTLS", false),
    ("ocsp", "ocsp", true),
    ("ocsp_cache", "ocsp_cache", true),
    ("mappings", "mappings", true),
    ("server_tags", "tags", true),
    ("server_metadata", "metadata", true),
    ("feature_flags", "FeatureFlags", false),
    ("proxies", "proxies", true),
    ("proxy_protocol", "ProxyProtocol", false),
];

/// The cluster part of a reload, as nats-server reports it: routes added and removed,
/// the name and the route credentials reload; the listener does not.
fn cluster_diff(old: &Options, new: &Options) -> Result<Vec<String>, String> {
    let (a, b) = match (&old.cluster, &new.cluster) {
        (None, None) => return Ok(Vec::new()),
        (Some(a), Some(b)) => (a, b),
        (a, b) => {
            return Err(format!(
                "config reload not supported for Cluster: old={}, new={}",
                a.is_some(),
                b.is_some()
            ))
        }
    };
    if a.host != b.host {
        return Err(format!(
            "config reload not supported for cluster host: old={}, new={}",
            a.host, b.host
        ));
    }
    if a.port != b.port {
        return Err(format!(
            "config reload not supported for cluster port: old={}, new={}",
            a.port, b.port
        ));
    }
    let mut lines = Vec::new();
    // A generated name stays unless the file now names the cluster.
    let new_name = b
        .name
        .clone()
        .or_else(|| a.name.clone().filter(|_| a.dynamic_name));
    if new_name != a.name {
        lines.push(format!(
            "Cluster name updated to {}",
            new_name.as_deref().unwrap_or_default()
        ));
        lines.push("Reloaded: cluster".into());
    }
    if a.routes != b.routes {
        lines.push("Reloaded: cluster routes".into());
    }
    let rest = |c: &crate::config::cluster::ClusterOptions| {
        (
            c.auth.clone(),
            c.no_advertise,
            c.advertise.clone(),
            c.connect_retries,
            c.pool_size,
            c.permissions.clone(),
            c.tls.clone(),
        )
    };
    if rest(a) != rest(b) && !lines.iter().any(|l| l == "Reloaded: cluster") {
        lines.push("Reloaded: cluster".into());
    }
    Ok(lines)
}

/// The leaf node part of a reload: remotes may be added and removed; any other
/// change is refused with the field nats-server names.
fn leafnode_diff(old: &Options, new: &Options) -> Result<(), String> {
    let (a, b) = match (&old.leafnodes, &new.leafnodes) {
        (None, None) => return Ok(()),
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        (a, b) => {
            return Err(format!(
                "config reload not supported for LeafNode: old={}, new={}",
                a.is_some(),
                b.is_some()
            ))
        }
    };
    let show = |v: &dyn std::fmt::Debug| format!("{v:?}").trim_matches('"').to_string();
    let fields: [(&str, String, String); 8] = [
        ("Host", show(&a.host), show(&b.host)),
        ("Port", a.port.to_string(), b.port.to_string()),
        (
            "Advertise",
            show(&a.advertise.clone().unwrap_or_default()),
            show(&b.advertise.clone().unwrap_or_default()),
        ),
        (
            "NoAdvertise",
            a.no_advertise.to_string(),
            b.no_advertise.to_string(),
        ),
        (
            "Username",
            a.auth.user.clone().unwrap_or_default(),
            b.auth.user.clone().unwrap_or_default(),
        ),
        ("Users", show(&a.auth.users), show(&b.auth.users)),
        (
            "ReconnectInterval",
            go_duration_string(a.reconnect),
            go_duration_string(b.reconnect),
        ),
        (
            "MinVersion",
            a.min_version.clone().unwrap_or_default(),
            b.min_version.clone().unwrap_or_default(),
        ),
    ];
    for (name, x, y) in fields {
        if x != y {
            return Err(format!(
                "config reload not supported for LeafNode: field {name:?}: old={x}, new={y}"
            ));
        }
    }
    let (mut a_rest, mut b_rest) = (a, b);
    a_rest.remotes.clear();
    b_rest.remotes.clear();
    if a_rest != b_rest {
        return Err("config reload not supported for LeafNode: field \"TLSConfig\"".into());
    }
    Ok(())
}

/// The client TLS part of a reload (issue #5), as nats-server reports it: the
/// handshake timeout, the TLS configuration itself (`tls = enabled` when the
/// certificate, key, CA, verification or cipher settings changed, `disabled` when
/// TLS was removed) and `handshake_first`; `verify_and_map` and `allow_non_tls`
/// cannot change. New connections use the new settings; open ones keep theirs.
fn tls_diff(old: &Options, new: &Options) -> Result<Vec<String>, String> {
    let refuse = |name: &str, a: bool, b: bool| {
        if a == b {
            Ok(())
        } else {
            Err(format!(
                "config reload not supported for {name}: old={a}, new={b}"
            ))
        }
    };
    let map = |o: &Options| o.tls.as_ref().is_some_and(|t| t.map);
    refuse("TLSMap", map(old), map(new))?;
    refuse("AllowNonTLS", old.allow_non_tls, new.allow_non_tls)?;
    let mut lines = Vec::new();
    let timeout = |o: &Options| {
        o.tls
            .as_ref()
            .map_or(crate::tls::DEFAULT_TIMEOUT, |t| t.timeout)
    };
    if timeout(old) != timeout(new) {
        lines.push(format!(
            "Reloaded: tls timeout = {}",
            timeout(new).as_secs_f64()
        ));
    }
    let print = |o: &Options| o.tls.as_ref().map(|t| t.fingerprint);
    if print(old) != print(new) {
        let state = if new.tls.is_some() {
            "enabled"
        } else {
            "disabled"
        };
        lines.push(format!("Reloaded: tls = {state}"));
    }
    let first = |o: &Options| o.tls.as_ref().is_some_and(|t| t.handshake_first);
    if first(old) != first(new) {
        lines.push(format!(
            "Reloaded: Client TLS handshake first: {}",
            first(new)
        ));
    }
    let fallback = |o: &Options| {
        o.tls
            .as_ref()
            .and_then(|t| t.first_fallback)
            .unwrap_or_default()
    };
    if fallback(old) != fallback(new) {
        lines.push(format!(
            "Reloaded: Client TLS handshake first fallback delay: {}",
            go_duration_string(fallback(new))
        ));
    }
    Ok(lines)
}

/// What a reload from `old` to `new` changes, as nats-server's `Reloaded: ...` lines
/// in its order; an error naming the first option that cannot change at run time.
pub fn diff(old: &Options, new: &Options) -> Result<Vec<String>, String> {
    fn refuse(name: &str, a: String, b: String) -> Result<(), String> {
        if a == b {
            return Ok(());
        }
        Err(format!(
            "config reload not supported for {name}: old={a}, new={b}"
        ))
    }
    let mut lines = Vec::new();
    let mut changed = |cond: bool, line: String| {
        if cond {
            lines.push(line);
        }
    };
    refuse(
        "ServerName",
        show_opt(&old.server_name),
        show_opt(&new.server_name),
    )?;
    refuse("Host", old.host.clone(), new.host.clone())?;
    refuse("Port", old.port.to_string(), new.port.to_string())?;
    changed(
        old.client_advertise != new.client_advertise,
        format!(
            "Reload: client_advertise = {}",
            show_opt(&new.client_advertise)
        ),
    );
    changed(
        old.trace != new.trace,
        format!("Reloaded: trace = {}", new.trace),
    );
    changed(
        old.debug != new.debug,
        format!("Reloaded: debug = {}", new.debug),
    );
    changed(
        old.trace_verbose != new.trace_verbose,
        format!("Reloaded: trace_verbose = {}", new.trace_verbose),
    );
    changed(
        old.trace_headers != new.trace_headers,
        format!("Reloaded: trace_headers = {}", new.trace_headers),
    );
    refuse(
        "NoSublistCache",
        old.disable_sublist_cache.to_string(),
        new.disable_sublist_cache.to_string(),
    )?;
    refuse(
        "NoHeaderSupport",
        old.no_header_support.to_string(),
        new.no_header_support.to_string(),
    )?;
    changed(
        old.logtime != new.logtime,
        format!("Reloaded: logtime = {}", new.logtime),
    );
    changed(
        old.logtime_utc != new.logtime_utc,
        format!("Reloaded: logtime_utc = {}", new.logtime_utc),
    );
    changed(
        old.max_connections != new.max_connections,
        format!("Reloaded: max_connections = {}", new.max_connections),
    );
    refuse(
        "MaxSubs",
        old.max_subscriptions.to_string(),
        new.max_subscriptions.to_string(),
    )?;
    refuse(
        "MaxSubTokens",
        old.max_sub_tokens.to_string(),
        new.max_sub_tokens.to_string(),
    )?;
    // nats-server reports these on every reload.
    changed(true, "Reloaded: authorization users".into());
    changed(true, "Reloaded: accounts".into());
    // The single user and the token (issue #5), field by field like nats-server.
    let auth = |o: &Options| crate::auth::AuthConfig::from_options(o).unwrap_or_default();
    let (old_auth, new_auth) = (auth(old), auth(new));
    let (old_single, new_single) = (
        old_auth.single.unwrap_or_default(),
        new_auth.single.unwrap_or_default(),
    );
    changed(
        old_single.0 != new_single.0,
        "Reloaded: authorization username".into(),
    );
    changed(
        old_single.1 != new_single.1,
        "Reloaded: authorization password".into(),
    );
    changed(
        old_auth.token != new_auth.token,
        "Reloaded: authorization token".into(),
    );
    changed(
        old.no_auth_user != new.no_auth_user,
        format!("Reloaded: no_auth_user = {}", show_opt(&new.no_auth_user)),
    );
    changed(
        old.ping_interval != new.ping_interval,
        format!(
            "Reloaded: ping_interval = {}",
            go_duration_string(new.ping_interval)
        ),
    );
    changed(
        old.ping_max != new.ping_max,
        format!("Reloaded: ping_max = {}", new.ping_max),
    );
    refuse(
        "HTTPHost",
        show_opt(&old.http_host),
        show_opt(&new.http_host),
    )?;
    refuse(
        "HTTPPort",
        old.http_port.to_string(),
        new.http_port.to_string(),
    )?;
    refuse(
        "HTTPBasePath",
        show_opt(&old.http_base_path),
        show_opt(&new.http_base_path),
    )?;
    refuse(
        "HTTPSPort",
        old.https_port.to_string(),
        new.https_port.to_string(),
    )?;
    changed(
        old.auth_timeout != new.auth_timeout,
        format!(
            "Reloaded: authorization timeout = {}",
            new.auth_timeout.as_secs_f64()
        ),
    );
    changed(
        old.max_control_line != new.max_control_line,
        format!("Reloaded: max_control_line = {}", new.max_control_line),
    );
    changed(
        old.max_payload != new.max_payload,
        format!("Reloaded: max_payload = {}", new.max_payload),
    );
    refuse(
        "MaxPending",
        old.max_pending.to_string(),
        new.max_pending.to_string(),
    )?;
    changed(
        old.no_fast_producer_stall != new.no_fast_producer_stall,
        if new.no_fast_producer_stall {
            "Reloaded: fast producers will not be stalled".into()
        } else {
            "Reloaded: fast producers will be stalled".into()
        },
    );
    refuse(
        "JetStream",
        old.jetstream.to_string(),
        new.jetstream.to_string(),
    )?;
    for (key, name, reloadable) in SECTION_RELOAD {
        if matches!(*key, "tls" | "allow_non_tls" | "authorization" | "cluster") {
            // Compared on the options built from them.
            continue;
        }
        let same = match (old.section(key), new.section(key)) {
            (None, None) => true,
            (Some(a), Some(b)) => same_value(&a.value, &b.value),
            _ => false,
        };
        if same {
            continue;
        }
        if !reloadable {
            let show = |o: &Options| {
                o.section(key)
                    .map(|i| conf_text(&i.value))
                    .unwrap_or_default()
            };
            refuse(name, show(old), show(new))?;
        }
        changed(true, format!("Reloaded: {name}"));
    }
    changed(
        old.pid_file != new.pid_file,
        format!("Reloaded: pid_file = {}", show_path(&new.pid_file)),
    );
    changed(
        old.ports_file_dir != new.ports_file_dir,
        format!(
            "Reloaded: ports_file_dir = {}",
            show_path(&new.ports_file_dir)
        ),
    );
    changed(
        old.log_file != new.log_file,
        format!("Reloaded: log_file = {}", show_path(&new.log_file)),
    );
    refuse(
        "LogSizeLimit",
        old.log_size_limit.to_string(),
        new.log_size_limit.to_string(),
    )?;
    refuse(
        "LogMaxFiles",
        old.log_max_num.to_string(),
        new.log_max_num.to_string(),
    )?;
    changed(
        old.syslog != new.syslog,
        format!("Reloaded: syslog = {}", new.syslog),
    );
    changed(
        old.remote_syslog != new.remote_syslog,
        format!("Reloaded: remote_syslog = {}", show_opt(&new.remote_syslog)),
    );
    for line in tls_diff(old, new)? {
        changed(true, line);
    }
    for line in cluster_diff(old, new)? {
        changed(true, line);
    }
    leafnode_diff(old, new)?;
    if old.gateway != new.gateway {
        // nats-server reloads no part of the gateway block (it prints Go structs).
        let show = |g: &Option<crate::config::gateway::GatewayOptions>| match g {
            Some(g) => {
                let names: Vec<&str> = g.gateways.iter().map(|r| r.name.as_str()).collect();
                format!("{{{} {} {} [{}]}}", g.name, g.host, g.port, names.join(" "))
            }
            None => "{}".into(),
        };
        return Err(format!(
            "config reload not supported for Gateway: old={}, new={}",
            show(&old.gateway),
            show(&new.gateway)
        ));
    }
    changed(
        old.write_deadline != new.write_deadline,
        format!(
            "Reloaded: write_deadline = {}",
            go_duration_string(new.write_deadline)
        ),
    );
    refuse(
        "WriteTimeout",
        show_opt(&old.write_timeout),
        show_opt(&new.write_timeout),
    )?;
    refuse(
        "MaxClosedClients",
        old.max_closed_clients.to_string(),
        new.max_closed_clients.to_string(),
    )?;
    refuse(
        "LameDuckDuration",
        go_duration_string(old.lame_duck_duration),
        go_duration_string(new.lame_duck_duration),
    )?;
    refuse(
        "LameDuckGracePeriod",
        go_duration_string(old.lame_duck_grace_period),
        go_duration_string(new.lame_duck_grace_period),
    )?;
    changed(
        old.max_traced_msg_len != new.max_traced_msg_len,
        format!("Reloaded: max_traced_msg_len = {}", new.max_traced_msg_len),
    );
    changed(
        old.connect_error_reports != new.connect_error_reports,
        format!(
            "Reloaded: connect_error_reports = {}",
            new.connect_error_reports
        ),
    );
    changed(
        old.reconnect_error_reports != new.reconnect_error_reports,
        format!(
            "Reloaded: reconnect_error_reports = {}",
            new.reconnect_error_reports
        ),
    );
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lines_and_refusals() {
        let old = Options::default();
        let mut new = old.clone();
        new.max_payload = 524288;
        new.debug = true;
        assert_eq!(
            diff(&old, &new).unwrap(),
            [
                "Reloaded: debug = true",
                "Reloaded: authorization users",
                "Reloaded: accounts",
                "Reloaded: max_payload = 524288"
            ]
        );
        let mut new = old.clone();
        new.max_pending = 10485760;
        assert_eq!(
            diff(&old, &new).unwrap_err(),
            "config reload not supported for MaxPending: old=67108864, new=10485760"
        );
        let mut new = old.clone();
        new.lame_duck_duration = Duration::from_secs(40);
        assert_eq!(
            diff(&old, &new).unwrap_err(),
            "config reload not supported for LameDuckDuration: old=2m0s, new=40s"
        );
        let mut new = old.clone();
        new.server_name = Some("foo".into());
        new.port = 1;
        assert_eq!(
            diff(&old, &new).unwrap_err(),
            "config reload not supported for ServerName: old=, new=foo"
        );
        let mut new = old.clone();
        new.gateway = Some(crate::config::gateway::GatewayOptions {
            name: "GA".into(),
            host: "127.0.0.1".into(),
            port: 7222,
            ..Default::default()
        });
        let err = diff(&old, &new).unwrap_err();
        assert!(
            err.starts_with("config reload not supported for Gateway: old={}, new={GA "),
            "{err}"
        );
    }
}
