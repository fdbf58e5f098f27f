//! Thread-per-core runtime: one pinned glommio executor per shard, joined by a full
//! mesh of bounded single-producer single-consumer rings.
//!
//! This crate knows nothing about NATS. A shard gets a [`Shard`] handle through which
//! it sends typed envelopes to its peers ([`Shard::send`], FIFO per destination, never
//! dropping) and receives theirs ([`Shard::on_receive`]).

mod memlock;
mod mesh;

pub use memlock::raise_memlock_limit;
pub use mesh::{Pause, Role, Shard};

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// How the runtime lays out its executors.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The core each client shard is pinned to; one shard per entry (entries may repeat).
    pub cores: Vec<usize>,
    /// Cores of dedicated (non-client) executors, e.g. the cluster core; they join the
    /// same mesh with [`Role::Dedicated`].
    pub dedicated_cores: Vec<usize>,
    /// Capacity of each ring between two shards, in envelopes.
    pub ring_capacity: usize,
    /// Bytes of io_uring registered buffers per executor. Sockets do not use them, so
    /// this is kept small to fit the default RLIMIT_MEMLOCK.
    pub io_memory: usize,
    /// Busy-poll this long before parking an idle executor (cuts cross-core wake-up latency).
    pub spin_before_park: Option<Duration>,
    /// Thread name prefix.
    pub name: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: vec![0],
            dedicated_cores: Vec::new(),
            ring_capacity: 4096,
            io_memory: 64 << 10,
            spin_before_park: None,
            name: "shard".into(),
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Cores this process may run on (its affinity mask), in ascending order.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect();
            if !cores.is_empty() {
                return cores;
            }
        }
    }
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_else(|| vec![0])
}

/// Checks that an io_uring executor can be built here, so that a host without io_uring
/// (old kernel, seccomp, locked-memory limit) gets one clear line instead of a panic.
pub fn preflight(io_memory: usize) -> Result<(), StartError> {
    match LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(io_memory)
        .make()
    {
        Ok(ex) => {
            drop(ex);
            Ok(())
        }
        Err(e) => {
            let (soft, hard) = memlock::memlock_limits();
            Err(StartError(format!(
                "cannot start an io_uring executor ({e}). natrium needs Linux 5.8+ with io_uring \
                 enabled (sysctl kernel.io_uring_disabled=0, not blocked by seccomp: under \
                 Docker use --security-opt seccomp=unconfined) and at least {io_memory} bytes of \
                 locked memory per shard (RLIMIT_MEMLOCK now soft={soft} hard={hard}; raise it \
                 with `ulimit -l unlimited` or LimitMEMLOCK=infinity in systemd)"
            )))
        }
    }
}

/// Running shards; [`Runtime::join`] waits for all of them to finish.
pub struct Runtime {
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl Runtime {
    /// Waits for every shard's main future to complete.
    pub fn join(self) -> Result<(), StartError> {
        let mut err = None;
        for h in self.handles {
            if let Err(e) = h.join() {
                err.get_or_insert(StartError(format!("shard failed: {e}")));
            }
        }
        err.map_or(Ok(()), Err)
    }
}

/// Spawns one pinned executor per entry of `cfg.cores`, joins them into a full mesh of
/// rings, and runs `init(shard)` on each. Returns once every executor is spawned.
pub fn start<M, F, Fut>(cfg: RuntimeConfig, init: F) -> Result<Runtime, StartError>
where
    M: Send + 'static,
    F: Fn(Shard<M>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if cfg.cores.is_empty() {
        return Err(StartError("no cores to run shards on".into()));
    }
    let placements: Vec<(usize, Role)> = cfg
        .cores
        .iter()
        .map(|&c| (c, Role::Client))
        .chain(cfg.dedicated_cores.iter().map(|&c| (c, Role::Dedicated)))
        .collect();
    let count = placements.len();
    // Peers learn each other's roles after joining (mesh ids follow executor ids).
    let roles = Arc::new(Mutex::new(vec![Role::Client; count]));
    let known = Arc::new(AtomicUsize::new(0));
    // glommio's full mesh needs at least two peers; a single shard has no rings.
    let mesh = (count > 1).then(|| {
        glommio::channels::channel_mesh::MeshBuilder::<M, _>::full(count, cfg.ring_capacity)
    });
    // MeshBuilder shares an Rc between threads; keeping one clone here for the life of
    // the process means no shard thread ever drops the last reference.
    std::mem::forget(mesh.clone());
    let mut handles = Vec::with_capacity(count);
    for (id, &(core, role)) in placements.iter().enumerate() {
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(core))
            .name(&format!("{}-{id}", cfg.name))
            .io_memory(cfg.io_memory);
        if let Some(spin) = cfg.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        let mesh = mesh.clone();
        let init = init.clone();
        let (roles, known) = (roles.clone(), known.clone());
        let handle = builder
            .spawn(move || async move {
                // The mesh numbers peers by executor id, not by spawn order: the shard's
                // id is its place in the mesh so that ids and ring indexes agree.
                let (peer_id, links) = match mesh {
                    Some(mesh) => match mesh.join().await {
                        Ok((tx, rx)) => (tx.peer_id(), Some((tx, rx))),
                        Err(e) => panic!("shard on core {core} could not join the mesh: {e}"),
                    },
                    None => (0, None),
                };
                roles.lock().expect("roles")[peer_id] = role;
                known.fetch_add(1, Ordering::AcqRel);
                while known.load(Ordering::Acquire) < count {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                let roles = roles.lock().expect("roles").clone();
                let shard = Shard::new(peer_id, core, roles, links);
                init(shard).await;
            })
            .map_err(|e| StartError(format!("cannot start shard {id} on core {core}: {e}")))?;
        handles.push(handle);
    }
    Ok(Runtime { handles })
}
