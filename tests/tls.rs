//! TLS on the client port (issue #5): certificates are made here with rcgen, the
//! server gets real config files, clients are async-nats (rustls) and raw sockets.
//! Differential tests run the same config against the reference nats-server.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use support::pki::Ca;
use support::{nats_server_bin, Kind, Server};

/// A CA, a server certificate for 127.0.0.1/localhost and client certificates,
/// written as PEM files into a fresh directory.
struct Pki {
    dir: PathBuf,
}

fn make_ca(name: &str) -> Ca {
    Ca::new(name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

impl Pki {
    fn new() -> Pki {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "natrium-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = make_ca("natrium test CA");
        write(&dir, "ca.pem", &ca.cert.pem());
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        write(&dir, "server.pem", &cert.pem());
        write(&dir, "server-key.pem", &key.serialize_pem());

        // client certificate with a subject and SANs, for verify and verify_and_map
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name.push(DnType::OrganizationName, "acme");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "eng");
        p.distinguished_name.push(DnType::CommonName, "bob");
        p.subject_alt_names = vec![
            SanType::Rfc822Name("alice@acme.io".try_into().unwrap()),
            SanType::DnsName("bob.acme.io".try_into().unwrap()),
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        write(&dir, "client.pem", &cert.pem());
        write(&dir, "client-key.pem", &key.serialize_pem());
        std::fs::write(dir.join("client.der"), cert.der()).unwrap();

        // expired client certificate from the same CA
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "old");
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        write(&dir, "expired.pem", &cert.pem());
        write(&dir, "expired-key.pem", &key.serialize_pem());

        // client certificate from a CA the server does not trust
        let other = make_ca("someone else");
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "mallory");
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &other.cert, &other.key).unwrap();
        write(&dir, "untrusted.pem", &cert.pem());
        write(&dir, "untrusted-key.pem", &key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Writes a config file with a `tls {}` block holding `extra` lines.
    fn conf(&self, name: &str, tls_extra: &str, top: &str) -> String {
        let text = format!(
            "{top}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{tls_extra}\n}}\n",
            self.p("server.pem"),
            self.p("server-key.pem")
        );
        write(&self.dir, name, &text).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads the INFO line a server sends first (plaintext).
fn read_info(s: &mut TcpStream) -> serde_json::Value {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        let n = s.read(&mut b).unwrap();
        assert!(
            n > 0,
            "EOF before INFO: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(b[0]);
    }
    let line = String::from_utf8(buf).unwrap();
    let json = line.strip_prefix("INFO ").expect("INFO line").trim();
    serde_json::from_str(json).unwrap()
}

/// Everything the server sends until it closes (or `wait` passes: then None).
fn read_to_close(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(_) => return None,
        }
    }
}

fn tls_fields(info: &serde_json::Value) -> (bool, bool, bool) {
    let f = |k: &str| info.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    (f("tls_required"), f("tls_verify"), f("tls_available"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Connects with async-nats over TLS and does a request through the server.
async fn roundtrip(opts: async_nats::ConnectOptions, url: &str) -> Result<(), String> {
    let nc = tokio::time::timeout(
        Duration::from_secs(5),
        opts.retry_on_initial_connect().connect(url),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let mut sub = nc.subscribe("tls.test").await.map_err(|e| e.to_string())?;
    nc.flush().await.map_err(|e| e.to_string())?;
    nc.publish("tls.test", "hello".into())
        .await
        .map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .map_err(|_| "no message".to_string())?
        .ok_or("subscription ended")?;
    assert_eq!(&msg.payload[..], b"hello");
    // A large payload takes the shared-buffer write path, through TLS.
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    nc.publish("tls.test", big.clone().into())
        .await
        .map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .map_err(|_| "no large message".to_string())?
        .ok_or("subscription ended")?;
    assert_eq!(&msg.payload[..], &big[..]);
    Ok(())
}

/// async-nats connection attempt that must fail (one try, no retry).
async fn connect_fails(opts: async_nats::ConnectOptions, url: &str) -> bool {
    match tokio::time::timeout(Duration::from_secs(5), opts.connect(url)).await {
        Ok(Ok(nc)) => {
            // Some failures only show on the first round trip.
            tokio::time::timeout(Duration::from_secs(2), nc.flush())
                .await
                .map_or(true, |r| r.is_err())
        }
        _ => true,
    }
}

fn tls_opts(pki: &Pki) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.path("ca.pem"))
}

#[test]
fn async_nats_over_tls_and_info_fields() {
    let pki = Pki::new();
    let conf = pki.conf("a.conf", "", "");
    let s = Server::natrium(&["-c", &conf]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (true, false, false));
    rt().block_on(roundtrip(tls_opts(&pki), &s.url())).unwrap();
}

#[test]
fn tls_from_command_line_flags() {
    let pki = Pki::new();
    let s = Server::natrium(&[
        "--tls",
        "--tlscert",
        &pki.p("server.pem"),
        "--tlskey",
        &pki.p("server-key.pem"),
    ]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (true, false, false));
    rt().block_on(roundtrip(tls_opts(&pki), &s.url())).unwrap();
}

#[test]
fn plaintext_client_on_tls_port_is_closed() {
    let pki = Pki::new();
    let conf = pki.conf("a.conf", "", "");
    let s = Server::natrium(&["-c", &conf]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    read_info(&mut raw);
    raw.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();
    let rest = read_to_close(&mut raw, Duration::from_secs(3)).expect("closed");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // Garbage that looks like a TLS record: closed too, the server survives.
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    read_info(&mut raw);
    raw.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    read_to_close(&mut raw, Duration::from_secs(3)).expect("closed");
    rt().block_on(roundtrip(tls_opts(&pki), &s.url())).unwrap();
}

#[test]
fn handshake_timeout_sends_tls_required() {
    let pki = Pki::new();
    let conf = pki.conf("a.conf", "  timeout: 0.5", "");
    let s = Server::natrium(&["-c", &conf]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    read_info(&mut raw);
    let t = Instant::now();
    let rest = read_to_close(&mut raw, Duration::from_secs(3)).expect("closed");
    assert_eq!(rest, b"-ERR 'Secure Connection - TLS Required'\r\n");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn verify_requires_a_trusted_client_certificate() {
    let pki = Pki::new();
    let extra = format!("  ca_file: \"{}\"\n  verify: true", pki.p("ca.pem"));
    let conf = pki.conf("a.conf", &extra, "");
    let s = Server::natrium(&["-D", "-c", &conf]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (true, true, false));
    let rt = rt();
    let good =
        tls_opts(&pki).add_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"));
    rt.block_on(roundtrip(good, &s.url())).unwrap();
    assert!(rt.block_on(connect_fails(tls_opts(&pki), &s.url())));
    assert!(s
        .wait_log(
            "TLS handshake error: tls: client didn't provide a certificate",
            Duration::from_secs(3)
        )
        .is_some());
    let untrusted = tls_opts(&pki)
        .add_client_certificate(pki.path("untrusted.pem"), pki.path("untrusted-key.pem"));
    assert!(rt.block_on(connect_fails(untrusted, &s.url())));
    assert!(s
        .wait_log(
            "certificate signed by unknown authority",
            Duration::from_secs(3)
        )
        .is_some());
    let expired =
        tls_opts(&pki).add_client_certificate(pki.path("expired.pem"), pki.path("expired-key.pem"));
    assert!(rt.block_on(connect_fails(expired, &s.url())));
    assert!(s
        .wait_log("certificate has expired", Duration::from_secs(3))
        .is_some());
    // still serving
    let good =
        tls_opts(&pki).add_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"));
    rt.block_on(roundtrip(good, &s.url())).unwrap();
}

#[test]
fn allow_non_tls_serves_both() {
    let pki = Pki::new();
    let conf = pki.conf("a.conf", "", "allow_non_tls: true");
    let s = Server::natrium(&["-c", &conf]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (false, false, true));
    raw.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = raw.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PONG\r\n");
    let rt = rt();
    rt.block_on(roundtrip(tls_opts(&pki), &s.url())).unwrap();
    rt.block_on(roundtrip(async_nats::ConnectOptions::new(), &s.url()))
        .unwrap();
}

#[test]
fn handshake_first() {
    let pki = Pki::new();
    let conf = pki.conf("a.conf", "  handshake_first: true", "");
    let s = Server::natrium(&["-c", &conf]);
    // No plaintext INFO: the server waits for the client hello.
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(raw.read(&mut b).is_err(), "server spoke first");
    rt().block_on(roundtrip(tls_opts(&pki).tls_first(), &s.url()))
        .unwrap();

    // With a fallback delay a client that waits gets the plaintext INFO.
    let conf = pki.conf("b.conf", "  handshake_first: \"200ms\"", "");
    let s = Server::natrium(&["-c", &conf]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    let t = Instant::now();
    let info = read_info(&mut raw);
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(tls_fields(&info), (true, false, false));
    let rt = rt();
    rt.block_on(roundtrip(tls_opts(&pki).tls_first(), &s.url()))
        .unwrap();
    rt.block_on(roundtrip(tls_opts(&pki), &s.url())).unwrap();
}

#[test]
fn bad_certificate_files_fail_check_and_start() {
    let pki = Pki::new();
    let conf_text = format!(
        "port: 4222\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        pki.p("nope.pem"),
        pki.p("server-key.pem")
    );
    let conf = write(&pki.dir, "bad.conf", &conf_text);
    let want = format!(
        "{}:2:1: error parsing X509 certificate/key pair: open {}: no such file or directory",
        conf.display(),
        pki.p("nope.pem")
    );
    for args in [
        &["-c", conf.to_str().unwrap(), "-t"][..],
        &["-c", conf.to_str().unwrap()],
    ] {
        let out = std::process::Command::new(support::natrium_bin())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    // a key that does not belong to the certificate
    let conf_text = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        pki.p("server.pem"),
        pki.p("client-key.pem")
    );
    let conf = write(&pki.dir, "mismatch.conf", &conf_text);
    let out = std::process::Command::new(support::natrium_bin())
        .args(["-c", conf.to_str().unwrap(), "-t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1:0: error parsing X509 certificate/key pair: tls: private key does not match public key"),
        "{err}"
    );
}

/// Same errors as nats-server -t for a set of bad tls blocks.
#[test]
fn config_errors_match_reference() {
    if nats_server_bin().is_none() {
        eprintln!("nats-server not installed; skipping");
        return;
    }
    let pki = Pki::new();
    std::fs::write(pki.path("garbage.pem"), "garbage\n").unwrap();
    let cases = [
        format!("cert_file: \"{}\"", pki.p("server.pem")),
        format!(
            "cert_file: \"{}\"\nkey_file: \"{}\"",
            pki.p("garbage.pem"),
            pki.p("server-key.pem")
        ),
        "foo: 1".to_string(),
        "verify: \"yes\"".to_string(),
        "timeout: \"x\"".to_string(),
        "timeout: true".to_string(),
        "handshake_first: \"abc\"".to_string(),
        "handshake_first: 5".to_string(),
        "min_version: \"1.1\"".to_string(),
        "min_version: \"1.4\"".to_string(),
        "cipher_suites: [\"TLS_AES_128_GCM_SHA256\", \"BOGUS\"]".to_string(),
        "cipher_suites: [\"TLS_RSA_WITH_RC4_128_SHA\"]".to_string(),
        "curve_preferences: [\"X25519\", \"P256\"]".to_string(),
        format!("ca_file: \"{}\"", pki.p("garbage.pem")),
        format!("ca_file: \"{}\"", pki.p("missing.pem")),
        "cert_file: 5".to_string(),
    ];
    for (i, body) in cases.iter().enumerate() {
        let needs_pair = !body.contains("cert_file");
        let pair = if needs_pair {
            format!(
                "cert_file: \"{}\"\nkey_file: \"{}\"\n",
                pki.p("server.pem"),
                pki.p("server-key.pem")
            )
        } else {
            String::new()
        };
        let name = format!("c{i}.conf");
        write(
            &pki.dir,
            &name,
            &format!("port: 4222\ntls {{\n{pair}{body}\n}}\n"),
        );
        let run = |bin: PathBuf| {
            let out = std::process::Command::new(bin)
                .current_dir(&pki.dir)
                .args(["-c", &name, "-t"])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            let err = err
                .split_once(": ")
                .map(|(_, e)| e.to_string())
                .unwrap_or(err);
            (out.status.success(), err.trim().to_string())
        };
        let ours = run(support::natrium_bin());
        let theirs = run(nats_server_bin().unwrap());
        assert_eq!(ours, theirs, "{body}");
    }
}

/// INFO flags and the plaintext rejection, natrium vs nats-server, same config.
#[test]
fn differential_info_and_plaintext_rejection() {
    if nats_server_bin().is_none() {
        eprintln!("nats-server not installed; skipping");
        return;
    }
    let pki = Pki::new();
    let verify = format!("  ca_file: \"{}\"\n  verify: true", pki.p("ca.pem"));
    let configs = [
        pki.conf("d1.conf", "", ""),
        pki.conf("d2.conf", &verify, ""),
        pki.conf("d3.conf", "", "allow_non_tls: true"),
    ];
    for conf in &configs {
        let mut seen = Vec::new();
        for kind in [Kind::Natrium, Kind::NatsServer] {
            let s = Server::start(kind, &["-c", conf]);
            let mut raw = TcpStream::connect(s.addr()).unwrap();
            let fields = tls_fields(&read_info(&mut raw));
            raw.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
                .unwrap();
            let got = read_to_close(&mut raw, Duration::from_millis(1500));
            // closed without a byte, or (allow_non_tls) answered
            let outcome = match got {
                Some(b) if b.is_empty() => "closed".to_string(),
                Some(b) => format!("closed after {:?}", String::from_utf8_lossy(&b)),
                None => "open".to_string(),
            };
            let tls_ok = rt()
                .block_on(roundtrip(
                    tls_opts(&pki)
                        .add_client_certificate(pki.path("client.pem"), pki.path("client-key.pem")),
                    &s.url(),
                ))
                .is_ok();
            seen.push((fields, outcome, tls_ok));
        }
        assert_eq!(seen[0], seen[1], "{conf}");
    }
}

/// The identity strings verify_and_map matches users against.
#[test]
fn client_certificate_identities() {
    let pki = Pki::new();
    let der = std::fs::read(pki.path("client.der")).unwrap();
    let peer = natrium::tls::PeerCert::from_der(&der).expect("parsed");
    assert_eq!(peer.emails, ["alice@acme.io"]);
    assert_eq!(peer.dns_names, ["bob.acme.io"]);
    assert_eq!(peer.rdn_string, "CN=bob,OU=eng,O=acme,C=US");
    assert_eq!(
        peer.identities,
        ["alice@acme.io", "bob.acme.io", "CN=bob,OU=eng,O=acme,C=US"]
    );
    assert_eq!(
        peer.map_user(["nobody", "alice@acme.io"]),
        Some("alice@acme.io")
    );
    assert_eq!(
        peer.map_user(["O=acme, OU=eng, CN=bob, C=US"]),
        Some("O=acme, OU=eng, CN=bob, C=US")
    );
    assert_eq!(
        peer.map_user(["CN=bob,OU=eng,O=acme,C=US"]),
        Some("CN=bob,OU=eng,O=acme,C=US")
    );
    assert_eq!(peer.map_user(["CN=bob"]), None);
}

/// verify_and_map: the certificate's email SAN names the user; a certificate that
/// names no configured user is refused. Same outcome as nats-server.
#[test]
fn verify_and_map_selects_the_user() {
    let pki = Pki::new();
    let map = format!("  ca_file: \"{}\"\n  verify_and_map: true", pki.p("ca.pem"));
    let good = pki.conf(
        "m1.conf",
        &map,
        "authorization { users: [ {user: \"alice@acme.io\"} ] }",
    );
    let dn = pki.conf(
        "m2.conf",
        &map,
        "authorization { users: [ {user: \"O=acme,OU=eng,CN=bob,C=US\"} ] }",
    );
    let bad = pki.conf(
        "m3.conf",
        &map,
        "authorization { users: [ {user: \"carol@acme.io\"} ] }",
    );
    let kinds: &[Kind] = if nats_server_bin().is_some() {
        &[Kind::Natrium, Kind::NatsServer]
    } else {
        &[Kind::Natrium]
    };
    let rt = rt();
    for kind in kinds {
        for (conf, ok) in [(&good, true), (&dn, true), (&bad, false)] {
            let s = Server::start(*kind, &["-c", conf]);
            let with_cert = tls_opts(&pki)
                .add_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"));
            if ok {
                rt.block_on(roundtrip(with_cert, &s.url()))
                    .unwrap_or_else(|e| panic!("{kind:?} {conf}: {e}"));
            } else {
                assert!(
                    rt.block_on(connect_fails(with_cert, &s.url())),
                    "{kind:?} {conf}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reload (SIGHUP) of the TLS settings, and the auth timeout that follows TLS
// ---------------------------------------------------------------------------------------

impl Pki {
    /// A second CA and a server certificate for 127.0.0.1/localhost signed by it:
    /// `ca2.pem`, `server2.pem`, `server2-key.pem`.
    fn second_server(&self) {
        let ca = make_ca("natrium test CA 2");
        write(&self.dir, "ca2.pem", &ca.cert.pem());
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        write(&self.dir, "server2.pem", &cert.pem());
        write(&self.dir, "server2-key.pem", &key.serialize_pem());
    }

    /// Writes `name` with a `tls {}` block using `cert`/`key` (names in the PKI
    /// directory) and `extra` lines, after `top`.
    fn conf_with(&self, name: &str, cert: &str, key: &str, extra: &str, top: &str) -> String {
        let text = format!(
            "{top}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}\n}}\n",
            self.p(cert),
            self.p(key)
        );
        write(&self.dir, name, &text).display().to_string()
    }
}

/// Sends SIGHUP and returns the reload's log lines (`Reloaded: ...`, or the
/// failure), without the closing `Reloaded server configuration` line and the two
/// lines printed on every reload.
fn reload_lines(s: &Server) -> Vec<String> {
    s.signal(libc::SIGHUP);
    let mut out = Vec::new();
    loop {
        let line = s
            .wait_log("eload", Duration::from_secs(5))
            .expect("reload result in the log");
        if line.contains("Reloaded server configuration") {
            return out;
        }
        let text = line.rsplit("] ").next().unwrap_or(&line).to_string();
        // Both servers print these two on every reload.
        if text == "Reloaded: authorization users" || text == "Reloaded: accounts" {
            continue;
        }
        let failed = text.starts_with("Failed to reload");
        out.push(text);
        if failed {
            return out;
        }
    }
}

fn raw_tls_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Reads INFO, completes the TLS handshake, sends nothing and returns what the
/// server sends until it closes, with the time from the handshake to the close.
fn silent_after_handshake(addr: &str, ca: &Path) -> (Vec<u8>, Duration) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    read_info(&mut tcp);
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(raw_tls_config(ca), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let t = Instant::now();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    // natrium's first server PING (2s) may come before the CONNECT it never got;
    // nats-server sends none: not what these tests are about.
    if out.starts_with(b"PING\r\n") {
        out.drain(..6);
    }
    (out, t.elapsed())
}

/// A reload that points `tls {}` at a certificate from another CA: new connections
/// get the new certificate (a client trusting only the new CA connects, one trusting
/// only the old CA does not); a connection made before keeps working.
#[test]
fn reload_swaps_the_server_certificate() {
    let pki = Pki::new();
    pki.second_server();
    let conf = pki.conf_with("r.conf", "server.pem", "server-key.pem", "", "");
    let s = Server::natrium(&["-c", &conf]);
    let new_ca = || {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(pki.path("ca2.pem"))
    };
    rt().block_on(async {
        let old = tls_opts(&pki).connect(s.url()).await.unwrap();
        let mut sub = old.subscribe("keep").await.unwrap();
        old.flush().await.unwrap();
        assert!(connect_fails(new_ca(), &s.url()).await);

        pki.conf_with("r.conf", "server2.pem", "server2-key.pem", "", "");
        assert_eq!(reload_lines(&s), ["Reloaded: tls = enabled"]);

        roundtrip(new_ca(), &s.url()).await.unwrap();
        assert!(connect_fails(tls_opts(&pki), &s.url()).await);
        // The connection from before the reload is untouched.
        old.publish("keep", "still here".into()).await.unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("message on the old connection")
            .unwrap();
        assert_eq!(&msg.payload[..], b"still here");
    });
}

/// Reloads turning client verification on, TLS off and TLS on again: INFO follows
/// (tls_verify, tls_required), new connections get the new rules, old ones stay.
#[test]
fn reload_turns_verify_and_tls_on_and_off() {
    let pki = Pki::new();
    let conf = pki.conf_with("v.conf", "server.pem", "server-key.pem", "", "");
    let s = Server::natrium(&["-c", &conf]);
    let rt = rt();
    let old = rt.block_on(tls_opts(&pki).connect(s.url())).unwrap();

    let verify = format!("  ca_file: \"{}\"\n  verify: true", pki.p("ca.pem"));
    pki.conf_with("v.conf", "server.pem", "server-key.pem", &verify, "");
    assert_eq!(reload_lines(&s), ["Reloaded: tls = enabled"]);
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (true, true, false));
    assert!(rt.block_on(connect_fails(tls_opts(&pki), &s.url())));
    let with_cert =
        tls_opts(&pki).add_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"));
    rt.block_on(roundtrip(with_cert, &s.url())).unwrap();
    rt.block_on(old.flush())
        .expect("old connection still served");

    // TLS removed: plain clients now, INFO says so; the TLS connection stays.
    write(&pki.dir, "v.conf", "");
    assert_eq!(
        reload_lines(&s),
        [
            "Reloaded: authorization timeout = 2",
            "Reloaded: tls = disabled"
        ]
    );
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (false, false, false));
    rt.block_on(roundtrip(async_nats::ConnectOptions::new(), &s.url()))
        .unwrap();
    rt.block_on(old.flush())
        .expect("old connection still served");

    // And back on, with a handshake timeout that moves the auth timeout too.
    pki.conf_with("v.conf", "server.pem", "server-key.pem", "  timeout: 4", "");
    assert_eq!(
        reload_lines(&s),
        [
            "Reloaded: authorization timeout = 5",
            "Reloaded: tls timeout = 4",
            "Reloaded: tls = enabled"
        ]
    );
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    assert_eq!(tls_fields(&read_info(&mut raw)), (true, false, false));
    rt.block_on(roundtrip(tls_opts(&pki), &s.url())).unwrap();
}

/// The reload log lines for TLS changes, and the refusals, against nats-server.
#[test]
fn reload_lines_match_reference() {
    let Some(_) = nats_server_bin() else {
        eprintln!("nats-server not on PATH: skipping");
        return;
    };
    let pki = Pki::new();
    pki.second_server();
    let ca = format!("  ca_file: \"{}\"\n", pki.p("ca.pem"));
    let steps: Vec<(&str, &str, String)> = vec![
        ("server2.pem", "server2-key.pem", String::new()),
        ("server2.pem", "server2-key.pem", "  timeout: 3".into()),
        (
            "server2.pem",
            "server2-key.pem",
            "  handshake_first: \"300ms\"".into(),
        ),
        (
            "server2.pem",
            "server2-key.pem",
            "  handshake_first: true".into(),
        ),
        (
            "server.pem",
            "server-key.pem",
            format!("{ca}  verify: true"),
        ),
        (
            "server.pem",
            "server-key.pem",
            format!("{ca}  verify_and_map: true"),
        ),
        ("server.pem", "server-key.pem", "  timeout: 0".into()),
    ];
    let mut seen = Vec::new();
    for kind in [Kind::Natrium, Kind::NatsServer] {
        let name = format!("{kind:?}.conf");
        let conf = pki.conf_with(&name, "server.pem", "server-key.pem", "", "");
        let s = Server::start(kind, &["-c", &conf]);
        let mut lines = Vec::new();
        for (cert, key, extra) in &steps {
            pki.conf_with(&name, cert, key, extra, "");
            lines.push(reload_lines(&s));
        }
        // allow_non_tls cannot change.
        pki.conf_with(
            &name,
            "server.pem",
            "server-key.pem",
            "",
            "allow_non_tls: true",
        );
        lines.push(reload_lines(&s));
        seen.push(lines);
    }
    assert_eq!(seen[0], seen[1], "natrium (left) vs nats-server (right)");
}

/// With TLS and no `authorization { timeout }`, the auth timeout is the TLS
/// handshake timeout plus one second (nats-server); an explicit one wins.
#[test]
fn auth_timeout_follows_the_tls_timeout() {
    let pki = Pki::new();
    let kinds: &[Kind] = if nats_server_bin().is_some() {
        &[Kind::Natrium, Kind::NatsServer]
    } else {
        &[Kind::Natrium]
    };
    let derived = pki.conf("t1.conf", "  timeout: 2", "authorization { token: t }");
    let explicit = pki.conf(
        "t2.conf",
        "  timeout: 5",
        "authorization { token: t, timeout: 1 }",
    );
    for kind in kinds {
        let s = Server::start(*kind, &["-c", &derived]);
        let (out, took) = silent_after_handshake(&s.addr(), &pki.path("ca.pem"));
        assert_eq!(out, b"-ERR 'Authentication Timeout'\r\n", "{kind:?}");
        assert!(
            took >= Duration::from_millis(2700) && took < Duration::from_millis(4500),
            "{kind:?}: {took:?} (expected 3s)"
        );
        let s = Server::start(*kind, &["-c", &explicit]);
        let (out, took) = silent_after_handshake(&s.addr(), &pki.path("ca.pem"));
        assert_eq!(out, b"-ERR 'Authentication Timeout'\r\n", "{kind:?}");
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_millis(2000),
            "{kind:?}: {took:?} (expected 1s)"
        );
    }
}
