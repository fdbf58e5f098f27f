//! Black-box tests of signals and logging: SIGHUP reload under live connections,
//! refused and broken reloads, lame duck mode (SIGUSR2 / `--signal ldm`),
//! `--signal` errors like nats-server's, log file rotation and SIGUSR1 reopen,
//! protocol trace lines.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{natrium_bin, nats_server_bin, Server, TempDir};

/// A raw protocol client.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    info: String,
}

impl Raw {
    /// Connects, reads the INFO line and, with `protocol`, sends CONNECT + PING and
    /// waits for the PONG (and the connect_info INFO for protocol 1).
    fn connect(port: u16, protocol: Option<u32>) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Raw {
            s,
            buf: Vec::new(),
            info: String::new(),
        };
        c.info = c.line();
        assert!(c.info.starts_with("INFO "), "{}", c.info);
        if let Some(p) = protocol {
            c.send(&format!(
                "CONNECT {{\"verbose\":false,\"protocol\":{p}}}\r\nPING\r\n"
            ));
            assert_eq!(c.line(), "PONG");
            if p >= 1 {
                assert!(c.line().contains("\"connect_info\":true"));
            }
        }
        c
    }

    fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).unwrap();
    }

    /// The next line without CRLF; "" at EOF.
    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            let mut tmp = [0u8; 4096];
            match self.s.read(&mut tmp) {
                Ok(0) => return String::new(),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until EOF (bounded by the read timeout); returns the lines seen.
    fn until_eof(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                return lines;
            }
            lines.push(l);
        }
    }

    /// The client id from the first INFO.
    fn cid(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(self.info.trim_start_matches("INFO ").trim()).unwrap();
        v["client_id"].as_u64().unwrap()
    }

    fn max_payload(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(self.info.trim_start_matches("INFO ").trim()).unwrap();
        v["max_payload"].as_u64().unwrap()
    }
}

/// Connects protocol-1 clients until both shards (cid parity with 2 shards) have one.
fn clients_on_both_shards(port: u16) -> Vec<Raw> {
    let mut clients = Vec::new();
    let mut seen = [false; 2];
    for _ in 0..40 {
        let c = Raw::connect(port, Some(1));
        seen[(c.cid() % 2) as usize] = true;
        clients.push(c);
        if seen[0] && seen[1] && clients.len() >= 3 {
            break;
        }
    }
    assert!(seen[0] && seen[1], "no client landed on one of the shards");
    clients
}

#[test]
fn reload_applies_new_values_and_keeps_connections() {
    let dir = TempDir::new("reload");
    let conf = dir.write("s.conf", "max_payload: 1MB\n");
    let server = Server::natrium(&["-c", conf.to_str().unwrap()]);
    let mut old = clients_on_both_shards(server.port);
    assert_eq!(Raw::connect(server.port, None).max_payload(), 1048576);

    dir.write("s.conf", "max_payload: 512KB\ndebug: true\n");
    server.signal(libc::SIGHUP);
    assert!(server
        .wait_log("Reloaded: max_payload = 524288", Duration::from_secs(5))
        .is_some());
    assert!(server
        .wait_log(
            "Reloaded server configuration (sha256:",
            Duration::from_secs(5)
        )
        .is_some());

    // New connections see the new limit, and debug lines now appear.
    let fresh = Raw::connect(server.port, Some(1));
    assert_eq!(fresh.max_payload(), 524288);
    assert!(server
        .wait_log("Client connection created", Duration::from_secs(5))
        .is_some());

    // The old connections are all still there and working, across shards.
    old[0].send("SUB reload.x 1\r\nPING\r\n");
    assert_eq!(old[0].line(), "PONG");
    for c in old.iter_mut().skip(1) {
        c.send("PUB reload.x 2\r\nhi\r\nPING\r\n");
        assert_eq!(c.line(), "PONG");
    }
    for _ in 1..old.len() {
        assert_eq!(old[0].line(), "MSG reload.x 1 2");
        assert_eq!(old[0].line(), "hi");
    }
}

#[test]
fn reload_refuses_non_reloadable_and_broken_files() {
    let dir = TempDir::new("refuse");
    let conf = dir.write("s.conf", "max_payload: 1MB\n");
    let server = Server::natrium(&["-c", conf.to_str().unwrap()]);
    let mut live = Raw::connect(server.port, Some(1));

    dir.write("s.conf", "max_payload: 512KB\nserver_name: other\n");
    server.signal(libc::SIGHUP);
    let line = server
        .wait_log(
            "Failed to reload server configuration",
            Duration::from_secs(5),
        )
        .expect("refusal logged");
    assert!(line.contains("[ERR]"), "{line}");
    assert!(
        line.ends_with("config reload not supported for ServerName: old=, new=other"),
        "{line}"
    );

    dir.write("s.conf", "max_pending: 10MB\n");
    server.signal(libc::SIGHUP);
    let line = server
        .wait_log(
            "Failed to reload server configuration",
            Duration::from_secs(5),
        )
        .expect("refusal logged");
    assert!(
        line.ends_with("config reload not supported for MaxPending: old=67108864, new=10485760"),
        "{line}"
    );

    dir.write("s.conf", "max_payload: {\n");
    server.signal(libc::SIGHUP);
    assert!(server
        .wait_log(
            "Failed to reload server configuration",
            Duration::from_secs(5)
        )
        .is_some());

    std::fs::remove_file(&conf).unwrap();
    server.signal(libc::SIGHUP);
    let line = server
        .wait_log(
            "Failed to reload server configuration",
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(line.contains("no such file or directory"), "{line}");

    // The old configuration is still in force and the connection still up.
    assert_eq!(Raw::connect(server.port, None).max_payload(), 1048576);
    live.send("PING\r\n");
    assert_eq!(live.line(), "PONG");
}

#[test]
fn lame_duck_mode_informs_then_spreads_closes_and_exits_zero() {
    let dir = TempDir::new("ldm");
    // nats-server's minimum duration is 30s; with a short grace period the closes
    // are spread at most 1s apart, so a few clients finish in a few seconds.
    let conf = dir.write(
        "s.conf",
        "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n",
    );
    let pid_file = dir.path("s.pid");
    let mut server = Server::natrium(&[
        "-c",
        conf.to_str().unwrap(),
        "-P",
        pid_file.to_str().unwrap(),
        "-D",
    ]);
    let clients = clients_on_both_shards(server.port);
    let mut old = Raw::connect(server.port, Some(0));

    let out = Command::new(natrium_bin())
        .args(["--signal", "ldm", "-P", pid_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let start = Instant::now();
    assert!(server
        .wait_log(
            "[INF] Entering lame duck mode, stop accepting new clients",
            Duration::from_secs(5)
        )
        .is_some());
    // SIGTERM during lame duck mode is ignored.
    server.signal(libc::SIGTERM);

    // Every protocol-1 client gets the ldm INFO, then EOF (no -ERR).
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let lines = c.until_eof();
                (lines, start.elapsed())
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for h in handles {
        let (lines, at) = h.join().unwrap();
        let info = lines
            .iter()
            .find(|l| l.starts_with("INFO "))
            .expect("ldm INFO");
        assert!(info.contains("\"ldm\":true"), "{info}");
        assert!(!lines.iter().any(|l| l.starts_with("-ERR")), "{lines:?}");
        closed_at.push(at);
    }
    // The protocol-0 client gets no INFO.
    let lines = old.until_eof();
    assert!(!lines.iter().any(|l| l.starts_with("INFO")), "{lines:?}");

    closed_at.sort();
    assert!(closed_at[0] >= Duration::from_millis(900), "{closed_at:?}");
    assert!(
        *closed_at.last().unwrap() - closed_at[0] >= Duration::from_millis(400),
        "closes not spread: {closed_at:?}"
    );
    let status = server.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn lame_duck_without_clients_exits_at_once_and_stops_listening() {
    let mut server = Server::natrium(&[]);
    let port = server.port;
    server.signal(libc::SIGUSR2);
    assert!(server
        .wait_log("Entering lame duck mode", Duration::from_secs(5))
        .is_some());
    let status = server.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn signal_reload_by_pid_and_pid_file() {
    let dir = TempDir::new("sigreload");
    let conf = dir.write("s.conf", "ping_max: 2\n");
    let pid_file = dir.path("p.pid");
    let server = Server::natrium(&[
        "-c",
        conf.to_str().unwrap(),
        "-P",
        pid_file.to_str().unwrap(),
    ]);
    dir.write("s.conf", "ping_max: 5\n");
    let out = Command::new(natrium_bin())
        .arg(format!("--signal=reload={}", server.pid()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(server
        .wait_log("Reloaded: ping_max = 5", Duration::from_secs(5))
        .is_some());
    dir.write("s.conf", "ping_max: 3\n");
    let out = Command::new(natrium_bin())
        .args(["-sl", &format!("reload={}", pid_file.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(server
        .wait_log("Reloaded: ping_max = 3", Duration::from_secs(5))
        .is_some());
}

/// `--signal` errors: same text (program name aside) and exit status as nats-server.
#[test]
fn signal_errors_match_reference() {
    let dir = TempDir::new("sigerr");
    let bad = dir.write("bad.pid", "abc\n");
    let missing = dir.path("missing.pid");
    let cases: Vec<Vec<String>> = vec![
        vec!["--signal".into(), "bogus=1".into()],
        vec!["--signal".into(), format!("reload={}", missing.display())],
        vec!["--signal".into(), format!("reload={}", bad.display())],
        vec!["--signal".into(), "reopen=999999".into()],
    ];
    for args in &cases {
        let ours = Command::new(natrium_bin()).args(args).output().unwrap();
        assert_eq!(ours.status.code(), Some(1), "{args:?}");
        let ours_err = String::from_utf8_lossy(&ours.stderr).replacen("natrium:", "X:", 1);
        if let Some(bin) = nats_server_bin() {
            let theirs = Command::new(bin).args(args).output().unwrap();
            assert_eq!(theirs.status.code(), Some(1), "{args:?}");
            let theirs_err =
                String::from_utf8_lossy(&theirs.stderr).replacen("nats-server:", "X:", 1);
            assert_eq!(ours_err, theirs_err, "{args:?}");
        } else {
            assert!(ours_err.starts_with("X: "), "{ours_err}");
        }
    }
}

/// natrium started by hand with its log going to a file (no stderr readiness).
struct FileLogged {
    child: Child,
}

impl FileLogged {
    fn start(args: &[&str], log: &Path) -> FileLogged {
        let child = Command::new(natrium_bin())
            .args(["-a", "127.0.0.1", "-p", "-1", "--shards", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = FileLogged { child };
        assert!(
            wait_file_contains(log, "Server is ready", Duration::from_secs(20)).is_some(),
            "not ready"
        );
        s
    }
}

impl Drop for FileLogged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_file_contains(path: &Path, needle: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.contains(needle) {
                return Some(text);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn port_from_log(text: &str) -> u16 {
    text.lines()
        .find_map(|l| l.split("Listening for client connections on ").nth(1))
        .and_then(|r| r.trim().rsplit(':').next()?.parse().ok())
        .expect("listen line")
}

#[test]
fn log_file_rotates_at_size_limit_and_purges() {
    let dir = TempDir::new("rotate");
    let log = dir.path("s.log");
    let conf = dir.write(
        "s.conf",
        &format!(
            "logfile: \"{}\"\nlog_size_limit: 600\nlogfile_max_num: 3\ndebug: true\n",
            log.display()
        ),
    );
    let _server = FileLogged::start(&["-c", conf.to_str().unwrap()], &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // The first lines may already have rotated: find the port in any file.
    let mut all = text.clone();
    for e in std::fs::read_dir(&dir.0).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().contains("s.log.") {
            all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    let port = port_from_log(&all);
    for _ in 0..12 {
        let c = Raw::connect(port, None);
        drop(c);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(wait_file_contains(&log, "Purged log file", Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_millis(100));
    let backups: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("s.log."))
        .collect();
    assert!(
        !backups.is_empty() && backups.len() <= 2,
        "backups: {backups:?}"
    );
    for b in &backups {
        let stamp = b.trim_start_matches("s.log.");
        let parts: Vec<&str> = stamp.split('.').collect();
        assert_eq!(parts.len(), 7, "{b}");
        assert_eq!(parts[6].len(), 9, "{b}");
    }
    let current = std::fs::read_to_string(&log).unwrap();
    assert!(
        current.contains("[INF] Rotated log, backup saved as \""),
        "{current}"
    );
}

#[test]
fn sigusr1_reopens_moved_log_file() {
    let dir = TempDir::new("reopen");
    let log = dir.path("s.log");
    let pid_file = dir.path("s.pid");
    let server = FileLogged::start(
        &[
            "-l",
            log.to_str().unwrap(),
            "-P",
            pid_file.to_str().unwrap(),
        ],
        &log,
    );
    let moved = dir.path("moved.log");
    std::fs::rename(&log, &moved).unwrap();
    let out = Command::new(natrium_bin())
        .args(["--signal", "reopen", "-P", pid_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(wait_file_contains(&log, "[INF] File log re-opened", Duration::from_secs(5)).is_some());
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(
        old.contains("Trapped \"user defined signal 1\" signal"),
        "{old}"
    );
    drop(server);
}

#[test]
fn trace_lines_for_client_ops() {
    let server = Server::natrium(&["-V"]);
    let mut c = Raw::connect(server.port, Some(1));
    c.send("SUB trace.x q 7\r\nPUB trace.x 5\r\nhello\r\nUNSUB 7\r\nPING\r\n");
    let _ = c.line();
    for needle in [
        "<<- [CONNECT {\"verbose\":false,\"protocol\":1}]",
        "<<- [SUB trace.x q 7]",
        "<<- [PUB trace.x 5]",
        "<<- MSG_PAYLOAD: [\"hello\"]",
        "<<- [UNSUB 7]",
    ] {
        let line = server
            .wait_log(needle, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no trace line {needle}"));
        assert!(line.contains("[TRC] 127.0.0.1:"), "{line}");
        assert!(
            line.contains(&format!(" - cid:{} - <<- ", c.cid())),
            "{line}"
        );
    }
}

#[test]
fn reload_turns_trace_on_and_off() {
    let dir = TempDir::new("retrace");
    let conf = dir.write("s.conf", "trace: false\n");
    let server = Server::natrium(&["-c", conf.to_str().unwrap()]);
    dir.write("s.conf", "trace: true\n");
    server.signal(libc::SIGHUP);
    assert!(server
        .wait_log("Reloaded: trace = true", Duration::from_secs(5))
        .is_some());
    let mut c = Raw::connect(server.port, Some(1));
    c.send("SUB after.reload 1\r\nPING\r\n");
    assert_eq!(c.line(), "PONG");
    assert!(server
        .wait_log("<<- [SUB after.reload 1]", Duration::from_secs(5))
        .is_some());
}
