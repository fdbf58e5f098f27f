//! Black-box tests with the standard Python client (nats-py): `tests/py/nats_py_client.py`
//! does pub/sub, wildcards, queue groups, request/reply, headers, no-responders, drain,
//! auto-unsubscribe, flush, large payloads and ordering, with connections on both of
//! natrium's shards. The same script runs against the reference nats-server, so the
//! script itself is checked in CI.
//!
//! Needs `python3` with nats-py (`python3 -m pip install nats-py`; `.ci/run` installs it).
//! A missing nats-py fails the tests rather than skipping them.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Server;

/// Bound on the whole script (it bounds itself at 110s; this is hang protection).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/nats_py_client.py")
}

/// Panics unless `python3` can import nats-py.
fn require_nats_py() {
    let out = Command::new("python3")
        .args(["-c", "import nats, nats.errors"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "nats-py is not installed for python3; run `python3 -m pip install nats-py` \
             (CI installs it in .ci/run): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run python3 ({e}); install Python 3 and `python3 -m pip install nats-py`"
        ),
    }
}

/// Runs the script against `server`, killing it after `SCRIPT_TIMEOUT`; panics with its
/// output unless it exits 0.
fn run_script(server: &Server) {
    require_nats_py();
    let mut child = Command::new("python3")
        .arg("-u")
        .arg(script())
        .arg(server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    // Drain both pipes on threads so a chatty script cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            // Shown with --nocapture: one line per check.
            print!("{out}");
        }
        Some(s) => panic!(
            "nats-py checks against {:?} failed ({s}):\n--- stdout\n{out}--- stderr\n{err}",
            server.kind
        ),
        None => panic!(
            "nats-py checks against {:?} did not finish within {SCRIPT_TIMEOUT:?} (killed):\n\
             --- stdout\n{out}--- stderr\n{err}",
            server.kind
        ),
    }
}

#[test]
fn nats_py_against_natrium() {
    let server = Server::natrium(&[]);
    run_script(&server);
}

/// The same script against the reference: a check that fails here is wrong, not natrium.
#[test]
fn nats_py_against_nats_server() {
    let server = Server::nats_server(&[]);
    run_script(&server);
}
