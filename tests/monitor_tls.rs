//! Monitoring, issue #6 follow-ups: `https` (served with the `tls {}` certificate,
//! read here by a rustls client), the connect-time RTT estimate, `/subsz` fanout,
//! reloaded values in `/varz`, and the TLS and auth fields of `/connz` and `/varz`
//! compared with the reference nats-server under the same config.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use support::{natrium_bin, nats_server_bin, Kind, Server};

/// A fresh directory with a CA and a server certificate for 127.0.0.1.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "natrium-montls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn p(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.0.join(name), text).unwrap();
        self.p(name)
    }

    /// Writes `ca.pem`, `server.pem`, `server-key.pem`; returns the CA in DER.
    fn pki(&self) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "montls CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = p.self_signed(&ca_key).unwrap();
        self.write("ca.pem", &ca.pem());
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        self.write("server.pem", &cert.pem());
        self.write("server-key.pem", &key.serialize_pem());
        ca.der().clone()
    }

    fn tls_block(&self, extra: &str) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}\n}}\n",
            self.p("server.pem"),
            self.p("server-key.pem")
        )
    }

    /// The monitoring URL from the ports file a server wrote here.
    fn monitoring_url(&self) -> String {
        support::monitoring_url(&self.0)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn body_json(resp: &[u8], what: &str) -> Value {
    let text = String::from_utf8_lossy(resp);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{what}: {head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"))
}

/// GET over plain HTTP.
fn get_json(port: u16, path: &str) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    body_json(&buf, path)
}

fn tls_client(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// GET over HTTPS, the server certificate verified against `ca`.
fn get_https(port: u16, ca: &CertificateDer<'static>, path: &str) -> Value {
    let conn =
        rustls::ClientConnection::new(tls_client(ca), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    body_json(&buf, path)
}

#[test]
fn https_serves_monitoring_with_the_tls_certificate() {
    let dir = Dir::new("https");
    let ca = dir.pki();
    // verify: the client port wants certificates, the monitor (as nats-server's) not.
    let conf = dir.write(
        "https.conf",
        &format!(
            "https_port: -1\n{}",
            dir.tls_block(&format!(
                "  ca_file: \"{}\"\n  verify: true",
                dir.p("ca.pem")
            ))
        ),
    );
    let d = dir.0.display().to_string();
    let server = Server::natrium(&["-c", &conf, "--ports_file_dir", &d]);
    let url = dir.monitoring_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let port = port_of(&url);
    let varz = get_https(port, &ca, "/varz");
    assert_eq!(varz["https_port"], port as u64);
    assert_eq!(varz["http_port"], 0);
    assert_eq!(varz["tls_required"], true);
    assert_eq!(varz["tls_verify"], true);
    assert!(varz["tls_cert_not_after"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(get_https(port, &ca, "/healthz")["status"], "ok");
    assert!(get_https(port, &ca, "/connz")["connections"].is_array());
    // Plain HTTP on the https port gets no answer.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /varz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("server_id"));
    drop(server);
}

/// The fatal line a server prints for `args` (it must exit).
fn fatal(bin: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", "-1"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = err.lines().find(|l| l.contains("[FTL]")).unwrap_or("");
    line.split("[FTL] ").nth(1).unwrap_or("").to_string()
}

#[test]
fn https_needs_tls_and_excludes_http_like_reference() {
    let mut bins = vec![natrium_bin()];
    bins.extend(nats_server_bin());
    let mut seen = Vec::new();
    for bin in &bins {
        let a = fatal(bin, &["-ms", "-1"]);
        assert_eq!(
            a,
            "Can't start monitoring: TLS cert and key required for HTTPS"
        );
        let b = fatal(bin, &["-m", "18222", "-ms", "18443"]);
        seen.push((a, b));
    }
    assert_eq!(
        seen[0].1,
        "Can't start monitoring: can't specify both HTTP (18222) and HTTPs (18443) ports"
    );
    if seen.len() == 2 {
        assert_eq!(seen[0], seen[1]);
    }
}

#[test]
fn varz_shows_reloaded_values() {
    let dir = Dir::new("reload");
    let conf = dir.write("r.conf", "http_port: -1\nmax_payload: 1000\n");
    let d = dir.0.display().to_string();
    let server = Server::natrium(&["-c", &conf, "--ports_file_dir", &d]);
    let port = port_of(&dir.monitoring_url());
    assert_eq!(get_json(port, "/varz")["max_payload"], 1000);
    dir.write("r.conf", "http_port: -1\nmax_payload: 2000\nping_max: 5\n");
    server.signal(libc::SIGHUP);
    assert!(server
        .wait_log("Reloaded server configuration", Duration::from_secs(5))
        .is_some());
    let varz = get_json(port, "/varz");
    assert_eq!(varz["max_payload"], 2000);
    assert_eq!(varz["ping_max"], 5);
}

/// Reads until `want` arrives (or 5 s pass); returns everything read.
fn read_until(s: &mut impl Read, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) && Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn rtt_is_estimated_at_connect_without_a_ping() {
    for kind in [Kind::Natrium, Kind::NatsServer] {
        if kind == Kind::NatsServer && nats_server_bin().is_none() {
            continue;
        }
        let dir = Dir::new("rtt");
        let d = dir.0.display().to_string();
        let server = Server::start(kind, &["-m", "-1", "--ports_file_dir", &d]);
        let port = port_of(&dir.monitoring_url());
        let mut c = TcpStream::connect(server.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        read_until(&mut c, "\r\n");
        std::thread::sleep(Duration::from_millis(30));
        c.write_all(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
            .unwrap();
        let got = read_until(&mut c, "PONG\r\n");
        assert!(got.starts_with("PONG\r\n"), "{kind:?}: {got:?}");
        let connz = get_json(port, "/connz");
        let rtt = connz["connections"][0]["rtt"].as_str().unwrap().to_string();
        // About the 30 ms between INFO and CONNECT, in milliseconds.
        assert!(rtt.ends_with("ms") && rtt != "0s", "{kind:?}: rtt {rtt}");
        // ... and no PING was needed for it (the first ping timer fires after ~2 s).
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 64];
        let more = match c.read(&mut b) {
            Ok(n) => String::from_utf8_lossy(&b[..n]).into_owned(),
            Err(_) => String::new(),
        };
        assert!(!more.contains("PING"), "{kind:?}: {more:?}");
    }
}

#[test]
fn subsz_fanout_over_cached_results() {
    let dir = Dir::new("fanout");
    let d = dir.0.display().to_string();
    let server = Server::natrium(&["-m", "-1", "--ports_file_dir", &d]);
    let port = port_of(&dir.monitoring_url());
    // The global account only: the system account's own publications (STATSZ) add
    // cache entries of their own, at times of their own.
    let before = get_json(port, "/subsz?acc=$G");
    assert_eq!(before["max_fanout"], 0);
    assert_eq!(before["avg_fanout"], 0);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    read_until(&mut c, "\r\n");
    // "a": two plain subscriptions and one queue group of two: fanout 3 (a group
    // counts once, as in nats-server). "b": 1. "c": 0.
    c.write_all(
        b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB a 2\r\nSUB a q 3\r\nSUB a q 4\r\n\
          SUB b 5\r\nPUB a 0\r\n\r\nPUB b 0\r\n\r\nPUB c 0\r\n\r\nPING\r\n",
    )
    .unwrap();
    read_until(&mut c, "PONG\r\n");
    let subsz = get_json(port, "/subsz?acc=$G");
    assert_eq!(subsz["num_cache"], 3, "{subsz}");
    assert_eq!(subsz["max_fanout"], 3, "{subsz}");
    let avg = subsz["avg_fanout"].as_f64().unwrap();
    assert!((avg - 4.0 / 3.0).abs() < 1e-9, "{subsz}");
}

/// `/connz?auth=1` and `/varz` of a TLS client authenticated as a user, on `kind`.
fn tls_auth_view(kind: Kind) -> (Value, Value) {
    let dir = Dir::new("connz");
    let ca = dir.pki();
    let conf = dir.write(
        "a.conf",
        &format!(
            "http_port: -1\nauthorization {{ users = [ {{user: alice, password: pw}} ] }}\n{}",
            dir.tls_block("")
        ),
    );
    let d = dir.0.display().to_string();
    let server = Server::start(kind, &["-c", &conf, "--ports_file_dir", &d]);
    let port = port_of(&dir.monitoring_url());
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    read_until(&mut tcp, "\r\n");
    let conn =
        rustls::ClientConnection::new(tls_client(&ca), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"pw\",\"name\":\"t\"}\r\nPING\r\n")
        .unwrap();
    let got = read_until(&mut s, "PONG\r\n");
    assert!(got.contains("PONG"), "{kind:?}: {got:?}");
    let connz = get_json(port, "/connz?auth=1");
    let varz = get_json(port, "/varz");
    (connz["connections"][0].clone(), varz)
}

#[test]
fn connz_and_varz_tls_and_auth_fields_match_reference() {
    let (conn, varz) = tls_auth_view(Kind::Natrium);
    assert_eq!(conn["authorized_user"], "alice");
    assert_eq!(conn["tls_version"], "1.3");
    assert!(conn["tls_cipher_suite"]
        .as_str()
        .is_some_and(|s| s.starts_with("TLS_")));
    assert_eq!(varz["auth_required"], true);
    assert_eq!(varz["tls_required"], true);
    if nats_server_bin().is_none() {
        return;
    }
    let (rconn, rvarz) = tls_auth_view(Kind::NatsServer);
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&conn), keys(&rconn));
    for k in [
        "authorized_user",
        "tls_version",
        "name",
        "name_tag",
        "kind",
        "type",
    ] {
        assert_eq!(conn[k], rconn[k], "{k}");
    }
    for k in [
        "auth_required",
        "tls_required",
        "tls_verify",
        "tls_timeout",
        "tls_cert_not_after",
    ] {
        assert_eq!(varz[k], rvarz[k], "{k}");
    }
    // Same fields, in the same order.
    assert_eq!(keys(&varz), keys(&rvarz));
}
