//! Restarts and listen addresses as supervisors and client test harnesses use them:
//! SIGKILL then an immediate start on the same port, dual-stack default listen, and a
//! second server on a taken port failing with nats-server's line.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{Kind, Server};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first thing a new connection to `addr` reads: the INFO line.
fn read_info(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// 50 times: a client connected, SIGKILL, a new server on the same port at once, while
/// another thread keeps connecting. Every start must bind and serve (nats-server: 50 of
/// 50); the old server's socket must not outlive the process.
#[test]
fn kill_and_restart_on_the_same_port() {
    let port = free_port().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let addr = format!("127.0.0.1:{port}");
    let churn = {
        let stop = stop.clone();
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut infos = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect(&addr) {
                    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                    let mut buf = [0u8; 5];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"INFO " {
                        infos += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            infos
        })
    };
    let mut server = Server::natrium(&["-p", &port]);
    for round in 0..50 {
        let held = read_info(&addr);
        assert!(held.starts_with("INFO {"), "round {round}");
        let _keep = TcpStream::connect(&addr).unwrap();
        server.signal(libc::SIGKILL);
        server
            .wait_exit(Duration::from_secs(5))
            .expect("killed server exits");
        // Server::start panics unless the new one logs `Server is ready`.
        server = Server::natrium(&["-p", &port]);
        assert!(read_info(&addr).starts_with("INFO {"), "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        churn.join().unwrap() > 0,
        "the churning client never got an INFO"
    );
}

/// A second server on a taken port exits 1 with nats-server's `[FTL]` line.
#[test]
fn taken_port_fails_like_nats_server() {
    let first = Server::natrium(&[]);
    let port = first.port.to_string();
    let kinds: &[Kind] = if support::nats_server_bin().is_some() {
        &[Kind::Natrium, Kind::NatsServer]
    } else {
        &[Kind::Natrium]
    };
    for &kind in kinds {
        let bin = match kind {
            Kind::Natrium => support::natrium_bin(),
            Kind::NatsServer => support::nats_server_bin().unwrap(),
        };
        let out = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{kind:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "[FTL] Error listening on port: 127.0.0.1:{port}, \"listen tcp 127.0.0.1:{port}: bind: address already in use\""
        );
        assert!(err.contains(&want), "{kind:?}: {err}");
    }
}

/// With the wildcard address (nats-server's default) IPv4 and IPv6 clients both get in.
#[test]
fn default_listen_is_dual_stack() {
    let has_v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !has_v6 {
        eprintln!("no IPv6 loopback on this host: IPv4 checked only");
    }
    let server = Server::natrium(&["-a", "0.0.0.0"]);
    let line = read_info(&server.addr());
    assert!(line.starts_with("INFO {"), "{line}");
    // IPv4 clients of the dual-stack socket are shown as IPv4, as nats-server does.
    assert!(line.contains("\"client_ip\":\"127.0.0.1\""), "{line}");
    assert!(line.contains("\"api_lvl\":5"), "{line}");
    if has_v6 {
        assert!(read_info(&format!("[::1]:{}", server.port)).starts_with("INFO {"));
    }
    let v6 = Server::natrium(&["-a", "::"]);
    assert!(read_info(&v6.addr()).starts_with("INFO {"));
}
