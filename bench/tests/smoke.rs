//! Smoke tests: every scenario briefly against a real server started here
//! (natrium, or the binary in NATRIUM_BENCH_TEST_SERVER), asserting exact
//! counts, zero loss and order; and the bad-input cases against fake servers.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_natrium-bench");

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The server under test: $NATRIUM_BENCH_TEST_SERVER, else natrium from the
/// workspace's target dir, built with `cargo build -p natrium` when missing.
fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NATRIUM_BENCH_TEST_SERVER") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let mut dirs = Vec::new();
        if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
            dirs.push(PathBuf::from(t));
        }
        dirs.push(root.join("target"));
        let find = || {
            dirs.iter()
                .flat_map(|d| {
                    [
                        d.join("debug/natrium"),
                        d.join("release/natrium"),
                        d.join("natrium-bench-server/debug/natrium"),
                    ]
                })
                .find(|p| p.is_file())
        };
        if let Some(p) = find() {
            return p;
        }
        // Build it into a target dir of its own: the outer `cargo test` may hold
        // the lock on the usual one.
        let own = dirs[0].join("natrium-bench-server");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "natrium", "--target-dir"])
            .arg(&own)
            .current_dir(&root)
            .status()
            .expect("run cargo build -p natrium");
        assert!(st.success(), "cargo build -p natrium failed");
        let bin = own.join("debug/natrium");
        assert!(
            bin.is_file(),
            "no natrium binary after cargo build -p natrium"
        );
        bin
    })
    .clone()
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server() -> Server {
    start_server_with(&[])
}

/// The server under test with `extra` arguments.
fn start_server_with(extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(server_bin())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server under test");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = [0u8; 5];
            if s.read_exact(&mut b).is_ok() && &b == b"INFO " {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        url: format!("nats://127.0.0.1:{port}"),
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run natrium-bench")
}

/// Run one scenario with --json and return its single result after the common checks.
fn run_json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--url", &server.url, "--json", "-q", "--timeout", "20s"]);
    let out = bench(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["ok"], true, "{args:?}: {stderr}");
    let r = v["results"][0].clone();
    let c = &r["check"];
    assert_eq!(c["ok"], true, "{r}");
    assert_eq!(c["lost"], 0, "{r}");
    assert_eq!(c["duplicated"], 0, "{r}");
    assert_eq!(c["reordered"], 0, "{r}");
    assert_eq!(c["foreign"], 0, "{r}");
    assert_eq!(c["slow_consumers"], 0, "{r}");
    r
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn pub_only() {
    let s = start_server();
    let r = run_json(&s, &["pub", "--msgs", "5000", "--pubs", "2"]);
    assert_eq!(n(&r["published"]), 10_000);
    assert_eq!(n(&r["delivered"]), 0);
}

#[test]
fn pubsub_one_to_one() {
    let s = start_server();
    for size in ["16", "1024"] {
        let r = run_json(&s, &["pubsub", "--msgs", "5000", "--size", size]);
        assert_eq!(n(&r["published"]), 5000);
        assert_eq!(n(&r["delivered"]), 5000);
        assert_eq!(n(&r["check"]["unique"]), 5000);
    }
}

#[test]
fn fanout_one_to_many() {
    let s = start_server();
    let r = run_json(
        &s,
        &["fanout", "--msgs", "3000", "--subs", "10", "--size", "32"],
    );
    assert_eq!(n(&r["published"]), 3000);
    assert_eq!(n(&r["delivered"]), 30_000);
    assert_eq!(n(&r["check"]["expected"]), 30_000);
    assert_eq!(n(&r["check"]["unique"]), 30_000);
    assert!(
        r["latency"]["p50_us"].is_number(),
        "stamped payloads give latency"
    );
}

/// Subscribers over websocket (`--sub_url ws://`): every message arrives once, in
/// order, through the websocket framing.
#[test]
fn fanout_to_websocket_subscribers() {
    let ws = free_port();
    let conf = std::env::temp_dir().join(format!("natrium-bench-ws-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        format!("websocket {{ listen: \"127.0.0.1:{ws}\", no_tls: true }}\n"),
    )
    .unwrap();
    let s = start_server_with(&["-c", conf.to_str().unwrap()]);
    let sub_url = format!("ws://127.0.0.1:{ws}");
    let r = run_json(
        &s,
        &[
            "fanout",
            "--msgs",
            "3000",
            "--subs",
            "4",
            "--size",
            "200",
            "--sub-url",
            &sub_url,
        ],
    );
    assert_eq!(n(&r["delivered"]), 12_000);
    assert_eq!(n(&r["check"]["unique"]), 12_000);
    let _ = std::fs::remove_file(&conf);
}

/// The connection-rate scenario: every handshake completes, counted exactly.
#[test]
fn connect_rate() {
    let s = start_server();
    let r = run_json(&s, &["connect", "--msgs", "50", "--pubs", "2"]);
    assert_eq!(n(&r["published"]), 100);
    assert_eq!(n(&r["latency"]["count"]), 100);
}

#[test]
fn queue_group_exactly_once() {
    let s = start_server();
    let r = run_json(&s, &["queue", "--msgs", "5000", "--subs", "4"]);
    assert_eq!(n(&r["published"]), 5000);
    assert_eq!(n(&r["delivered"]), 5000);
    assert_eq!(n(&r["check"]["unique"]), 5000);
}

#[test]
fn many_publishers() {
    let s = start_server();
    let r = run_json(
        &s,
        &["manypubs", "--msgs", "2000", "--pubs", "3", "--subs", "2"],
    );
    assert_eq!(n(&r["published"]), 6000);
    assert_eq!(n(&r["delivered"]), 12_000);
    assert_eq!(n(&r["check"]["unique"]), 12_000);
}

#[test]
fn request_reply() {
    let s = start_server();
    let r = run_json(&s, &["reqreply", "--msgs", "500", "--pubs", "3"]);
    assert_eq!(n(&r["delivered"]), 1500);
    assert_eq!(n(&r["check"]["unique"]), 1500);
    assert_eq!(n(&r["latency"]["count"]), 1500);
    let r = run_json(&s, &["reqreply", "--msgs", "300", "--subs", "2"]);
    assert_eq!(n(&r["delivered"]), 300);
}

#[test]
fn duration_mode_checks_too() {
    let s = start_server();
    let r = run_json(&s, &["fanout", "--duration", "300ms", "--subs", "3"]);
    let p = n(&r["published"]);
    assert!(p > 0);
    assert_eq!(n(&r["delivered"]), 3 * p);
}

#[test]
fn compare_mode_with_one_binary_in_both_roles() {
    let bin = server_bin();
    let bin = bin.to_str().unwrap();
    let svg = std::env::temp_dir().join(format!("natrium-bench-{}.svg", std::process::id()));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let client = if cores > 1 { "1" } else { "0" };
    let out = bench(&[
        "pubsub",
        "--compare",
        "--natrium",
        bin,
        "--nats-server",
        bin,
        "--rounds",
        "2",
        "--msgs",
        "2000",
        "--server-cores",
        "0",
        "--client-cores",
        client,
        "--json",
        "-q",
        "--chart",
        svg.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &v["compare"][0];
    assert_eq!(c["natrium"]["runs"].as_array().unwrap().len(), 2);
    assert_eq!(c["nats_server"]["runs"].as_array().unwrap().len(), 2);
    assert!(c["ratio"].as_f64().unwrap() > 0.0);
    for who in ["natrium", "nats_server"] {
        for r in c[who]["runs"].as_array().unwrap() {
            assert_eq!(n(&r["delivered"]), 2000);
            assert_eq!(r["check"]["ok"], true);
        }
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert!(chart.starts_with("<svg") && chart.contains("nats-server"));
}

// ---- bad input: one line on stderr, non-zero exit, quickly ----

fn assert_one_line_error(out: &Output, started: Instant, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(want), "{err:?} should mention {want:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn unreachable_server_fails_fast() {
    let port = free_port(); // bound then released: nothing listens there
    let t = Instant::now();
    let out = bench(&[
        "fanout",
        "--url",
        &format!("nats://127.0.0.1:{port}"),
        "--msgs",
        "10",
    ]);
    assert_one_line_error(&out, t, "cannot connect");
}

#[test]
fn nonsense_flags_fail() {
    for args in [
        &["fanout", "--no-such-flag"][..],
        &["warp"],
        &["pub", "--size", "abc"],
        &["pub", "--size", "4"],
        &["pub", "--msgs", "1", "--duration", "1s"],
        &["pub", "--url", "http://127.0.0.1:1"],
    ] {
        let t = Instant::now();
        let out = bench(args);
        assert_one_line_error(&out, t, "natrium-bench");
    }
}

/// A fake server on a local port: `script` handles one accepted connection.
fn fake_server(script: fn(TcpStream)) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || script(s));
        }
    });
    format!("nats://127.0.0.1:{port}")
}

const INFO: &[u8] =
    b"INFO {\"server_id\":\"FAKE\",\"version\":\"2.10.0\",\"proto\":1,\"max_payload\":1048576}\r\n";

#[test]
fn refused_auth_fails_with_server_error() {
    let url = fake_server(|mut s| {
        let _ = s.write_all(INFO);
        let mut b = [0u8; 4096];
        let _ = s.read(&mut b);
        let _ = s.write_all(b"-ERR 'Authorization Violation'\r\n");
        std::thread::sleep(Duration::from_millis(200));
    });
    let t = Instant::now();
    let out = bench(&["pubsub", "--url", &url, "--msgs", "10"]);
    assert_one_line_error(&out, t, "Authorization Violation");
}

#[test]
fn silent_server_times_out() {
    let url = fake_server(|s| {
        std::thread::sleep(Duration::from_secs(30));
        drop(s);
    });
    let t = Instant::now();
    let out = bench(&["pub", "--url", &url, "--msgs", "10", "--timeout", "1s"]);
    assert_one_line_error(&out, t, "timed out");
}

#[test]
fn server_closing_mid_run_fails() {
    // Handshakes fine, then closes every connection after reading some data.
    let url = fake_server(|mut s| {
        let _ = s.write_all(INFO);
        let mut b = vec![0u8; 65536];
        let mut total = 0usize;
        loop {
            let n = match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            total += n;
            let seen = String::from_utf8_lossy(&b[..n]).to_string();
            for _ in 0..seen.matches("PING").count() {
                let _ = s.write_all(b"PONG\r\n");
            }
            if total > 200_000 {
                return; // close mid-run
            }
        }
    });
    let t = Instant::now();
    let out = bench(&[
        "pub",
        "--url",
        &url,
        "--msgs",
        "10000000",
        "--timeout",
        "3s",
    ]);
    assert_one_line_error(&out, t, "error");
}

#[test]
fn loss_duplication_and_reordering_fail_loudly() {
    // A broken "server": acks everything, and sends the subscriber sequences
    // 0, 1, 3, 3, 2 of publisher 0 while 5 were published: 4 lost, 3 twice, 2 late.
    let url = fake_server(|mut s| {
        let _ = s.write_all(INFO);
        let mut b = vec![0u8; 65536];
        loop {
            let n = match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let seen = String::from_utf8_lossy(&b[..n]).to_string();
            for _ in 0..seen.matches("PING").count() {
                let _ = s.write_all(b"PONG\r\n");
            }
            if seen.contains("SUB ") {
                let mut out = Vec::new();
                for seq in [0u64, 1, 3, 3, 2] {
                    out.extend_from_slice(b"MSG bench.pubsub 1 16\r\n");
                    out.extend_from_slice(&0u32.to_le_bytes());
                    out.extend_from_slice(&seq.to_le_bytes());
                    out.extend_from_slice(b"xxxx\r\n");
                }
                let _ = s.write_all(&out);
            }
        }
    });
    let out = bench(&[
        "pubsub",
        "--url",
        &url,
        "--msgs",
        "5",
        "--json",
        "-q",
        "--timeout",
        "2s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("FAILED"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &v["results"][0]["check"];
    assert_eq!(v["ok"], false);
    assert_eq!(
        (n(&c["lost"]), n(&c["duplicated"]), n(&c["reordered"])),
        (1, 1, 1),
        "{c}"
    );
}
