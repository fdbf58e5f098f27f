//! Authentication and authorization (issue #5): token, user/password (plain and
//! bcrypt), nkeys, no_auth_user, the auth timeout, permissions across shards, reload,
//! and the rejection bytes compared with the reference nats-server.

#[path = "support/shards.rs"]
mod shards;
mod support;

use std::time::Duration;

use futures::StreamExt;
use shards::{split_by_shard, RawConn};
use support::{nats_server_bin, Server, TempDir};

const VIOLATION: &[u8] = b"-ERR 'Authorization Violation'\r\n";

fn start(tag: &str, conf: &str) -> (Server, TempDir) {
    let dir = TempDir::new(tag);
    let path = dir.write_string("auth.conf", conf);
    (Server::natrium(&["-c", &path]), dir)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `bytes` on a fresh connection and expects exactly `-ERR 'Authorization
/// Violation'` and a close.
fn expect_rejected(server: &Server, bytes: &str) {
    let mut c = RawConn::open(&server.addr());
    c.send(bytes.as_bytes());
    c.expect(VIOLATION);
    c.expect_closed();
}

/// Everything the server sends after INFO in reply to `bytes`, until it closes or
/// goes quiet for `quiet`.
fn reply_bytes(addr: &str, bytes: &[u8], quiet: Duration) -> (Vec<u8>, bool) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    // INFO first.
    while !all.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before INFO");
        all.extend_from_slice(&buf[..n]);
    }
    let pos = all.windows(2).position(|w| w == b"\r\n").unwrap();
    let mut out = all.split_off(pos + 2);
    s.write_all(bytes).unwrap();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

#[test]
fn token_auth() {
    let (server, _d) = start("token", "authorization { token: s3cr3t }\n");
    let c = RawConn::open(&server.addr());
    assert_eq!(c.info["auth_required"], true, "{}", c.info);
    assert!(c.info.get("nonce").is_none());
    RawConn::connect(&server.addr(), r#"{"verbose":false,"auth_token":"s3cr3t"}"#).ping();
    expect_rejected(&server, "CONNECT {\"auth_token\":\"nope\"}\r\nPING\r\n");
    expect_rejected(&server, "CONNECT {}\r\nPING\r\n");
    assert!(server
        .wait_log(
            "authentication error - Token \"[REDACTED]\"",
            Duration::from_secs(5)
        )
        .is_some());
    rt().block_on(async {
        let nc = async_nats::ConnectOptions::with_token("s3cr3t".into())
            .connect(server.url())
            .await
            .unwrap();
        nc.flush().await.unwrap();
    });
}

#[test]
fn user_password_and_bcrypt_users() {
    let hash = bcrypt::hash("bobpw", 4).unwrap();
    let conf = format!(
        "authorization {{\n  users = [\n    {{user: alice, password: secret}}\n    \
         {{user: bob, password: \"{hash}\"}}\n  ]\n}}\n"
    );
    let (server, _d) = start("userpass", &conf);
    RawConn::connect(
        &server.addr(),
        r#"{"verbose":false,"user":"alice","pass":"secret"}"#,
    )
    .ping();
    RawConn::connect(
        &server.addr(),
        r#"{"verbose":false,"user":"bob","pass":"bobpw"}"#,
    )
    .ping();
    expect_rejected(
        &server,
        "CONNECT {\"user\":\"bob\",\"pass\":\"wrong\"}\r\nPING\r\n",
    );
    expect_rejected(
        &server,
        "CONNECT {\"user\":\"alice\",\"pass\":\"wrong\"}\r\nPING\r\n",
    );
    expect_rejected(
        &server,
        "CONNECT {\"user\":\"zed\",\"pass\":\"secret\"}\r\nPING\r\n",
    );
    let line = server
        .wait_log(
            "authentication error - User \"alice\"",
            Duration::from_secs(5),
        )
        .expect("log line");
    assert!(line.contains("[ERR]") && !line.contains("wrong"), "{line}");
    rt().block_on(async {
        for (u, p) in [("alice", "secret"), ("bob", "bobpw")] {
            let nc = async_nats::ConnectOptions::with_user_and_password(u.into(), p.into())
                .connect(server.url())
                .await
                .unwrap();
            nc.flush().await.unwrap();
        }
    });
}

#[test]
fn cli_user_and_pass() {
    let server = Server::natrium(&["--user", "u", "--pass", "p"]);
    RawConn::connect(&server.addr(), r#"{"verbose":false,"user":"u","pass":"p"}"#).ping();
    expect_rejected(
        &server,
        "CONNECT {\"user\":\"u\",\"pass\":\"x\"}\r\nPING\r\n",
    );
    let server = Server::natrium(&["--auth", "tok"]);
    RawConn::connect(&server.addr(), r#"{"verbose":false,"auth_token":"tok"}"#).ping();
    expect_rejected(&server, "CONNECT {\"auth_token\":\"x\"}\r\nPING\r\n");
}

#[test]
fn nkey_users() {
    let kp = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{\n  users = [\n    {{nkey: {}}}\n  ]\n}}\n",
        kp.public_key()
    );
    let (server, _d) = start("nkey", &conf);
    let sign = |c: &RawConn, kp: &nkeys::KeyPair, url: bool| {
        let nonce = c.info["nonce"].as_str().expect("nonce in INFO").to_string();
        assert_eq!(nonce.len(), 15, "{nonce}");
        let sig = kp.sign(nonce.as_bytes()).unwrap();
        if url {
            data_encoding::BASE64URL_NOPAD.encode(&sig)
        } else {
            data_encoding::BASE64.encode(&sig)
        }
    };
    for url in [true, false] {
        let mut c = RawConn::open(&server.addr());
        let sig = sign(&c, &kp, url);
        c.handshake(&format!(
            r#"{{"verbose":false,"nkey":"{}","sig":"{sig}"}}"#,
            kp.public_key()
        ));
        c.ping();
    }
    // Signed by another key, unknown key, no signature, a replayed signature.
    let mut c = RawConn::open(&server.addr());
    let sig = sign(&c, &other, true);
    c.send(
        format!(
            "CONNECT {{\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\n",
            kp.public_key()
        )
        .as_bytes(),
    );
    c.expect(VIOLATION);
    c.expect_closed();
    let mut c = RawConn::open(&server.addr());
    let sig = sign(&c, &other, true);
    c.send(
        format!(
            "CONNECT {{\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\n",
            other.public_key()
        )
        .as_bytes(),
    );
    c.expect(VIOLATION);
    c.expect_closed();
    expect_rejected(
        &server,
        &format!("CONNECT {{\"nkey\":\"{}\"}}\r\n", kp.public_key()),
    );
    let first = RawConn::open(&server.addr());
    let replayed = sign(&first, &kp, true);
    let mut c = RawConn::open(&server.addr());
    c.send(
        format!(
            "CONNECT {{\"nkey\":\"{}\",\"sig\":\"{replayed}\"}}\r\n",
            kp.public_key()
        )
        .as_bytes(),
    );
    c.expect(VIOLATION);
    c.expect_closed();
    assert!(server
        .wait_log("authentication error - Nkey", Duration::from_secs(5))
        .is_some());
    let seed = kp.seed().unwrap();
    rt().block_on(async {
        let nc = async_nats::ConnectOptions::with_nkey(seed)
            .connect(server.url())
            .await
            .unwrap();
        nc.flush().await.unwrap();
    });
}

#[test]
fn no_auth_user_applies_its_permissions() {
    let conf = "no_auth_user: guest\nauthorization {\n  users = [\n    \
                {user: guest, password: g, permissions: {publish: \"pub.>\", subscribe: \"sub.>\"}}\n    \
                {user: alice, password: a}\n  ]\n}\n";
    let (server, _d) = start("noauth", conf);
    let c = RawConn::open(&server.addr());
    assert!(c.info.get("auth_required").is_none(), "{}", c.info);
    // Telnet style: no CONNECT; the first op authenticates as guest.
    let mut c = RawConn::open(&server.addr());
    c.send(b"PUB foo 1\r\nx\r\nSUB sub.x 1\r\nPING\r\n");
    c.expect(b"-ERR 'Permissions Violation for Publish to \"foo\"'\r\n+OK\r\nPONG\r\n");
    let mut c = RawConn::connect(&server.addr(), r#"{"verbose":false}"#);
    c.send(b"SUB foo 1\r\nPING\r\n");
    c.expect(b"-ERR 'Permissions Violation for Subscription to \"foo\"'\r\nPONG\r\n");
    // Naming a user means no fallback.
    expect_rejected(&server, "CONNECT {\"user\":\"guest\"}\r\nPING\r\n");
    RawConn::connect(
        &server.addr(),
        r#"{"verbose":false,"user":"alice","pass":"a"}"#,
    )
    .ping();
    rt().block_on(async {
        let nc = async_nats::connect(server.url()).await.unwrap();
        let mut sub = nc.subscribe("sub.a").await.unwrap();
        nc.flush().await.unwrap();
        let alice = async_nats::ConnectOptions::with_user_and_password("alice".into(), "a".into())
            .connect(server.url())
            .await
            .unwrap();
        // Alice may sit on the other shard: her shard learns of the subscription a
        // moment after its flush, so she publishes until one arrives.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let m = loop {
            alice.publish("sub.a", "hi".into()).await.unwrap();
            alice.flush().await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                break m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing reached the no_auth_user subscriber"
            );
        };
        assert_eq!(&m.payload[..], b"hi");
    });
}

#[test]
fn first_op_must_be_connect() {
    let (server, _d) = start("firstop", "authorization { user: u, password: p }\n");
    for op in [
        "PING\r\n",
        "SUB foo 1\r\n",
        "PUB foo 1\r\nx\r\n",
        "PONG\r\n",
    ] {
        expect_rejected(&server, op);
    }
    // A CONNECT with the legacy account field is refused too.
    expect_rejected(
        &server,
        "CONNECT {\"user\":\"u\",\"pass\":\"p\",\"account\":\"A\"}\r\n",
    );
    // A CONNECT with a wrongly typed field is closed without -ERR (as nats-server).
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {\"user\":\"u\",\"pass\":1}\r\nPING\r\n");
    c.expect_closed();
}

#[test]
fn auth_timeout() {
    let (server, _d) = start(
        "timeout",
        "authorization {\n  timeout: 0.5\n  token: t\n}\n",
    );
    let mut c = RawConn::open(&server.addr());
    let t = std::time::Instant::now();
    c.expect(b"-ERR 'Authentication Timeout'\r\n");
    c.expect_closed();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // An authenticated client is not timed out.
    let mut ok = RawConn::connect(&server.addr(), r#"{"verbose":false,"auth_token":"t"}"#);
    std::thread::sleep(Duration::from_millis(900));
    ok.ping();
}

// ---------------------------------------------------------------------------------------
// Authorization across shards
// ---------------------------------------------------------------------------------------

const PERMS: &str = "authorization {
  users = [
    {user: pub, password: p, permissions: {publish: {allow: [\"foo.>\", \"q.>\", \"req.>\"], deny: \"foo.nope\"}, subscribe: \"_INBOX.>\"}}
    {user: sub, password: s, permissions: {subscribe: {allow: [\"foo.>\", \"q.a grp\"], deny: \"foo.secret\"}, publish: \"foo.>\"}}
    {user: resp, password: r, permissions: {subscribe: \"req.>\", allow_responses: true}}
  ]
}
";

/// A connection for `user` on shard `shard` (by client id parity).
fn on_shard(server: &Server, shard: usize, user: &str, pass: &str) -> RawConn {
    let mut need = [0, 0];
    need[shard] = 1;
    let mut got = split_by_shard(server, need, || {
        let c = RawConn::open(&server.addr());
        let cid = c.client_id();
        (c, cid)
    });
    let mut c = got[shard].remove(0);
    c.handshake(&format!(
        r#"{{"verbose":false,"user":"{user}","pass":"{pass}"}}"#
    ));
    c
}

#[test]
fn subscribe_deny_filters_wildcard_deliveries_across_shards() {
    let (server, _d) = start("perm-sub", PERMS);
    let mut sub = on_shard(&server, 1, "sub", "s");
    let mut publ = on_shard(&server, 0, "pub", "p");
    sub.send(b"SUB foo.secret 1\r\nSUB foo.* 2\r\nPING\r\n");
    sub.expect(b"-ERR 'Permissions Violation for Subscription to \"foo.secret\"'\r\nPONG\r\n");
    publ.send(b"PUB foo.secret 1\r\nx\r\nPUB foo.a 1\r\ny\r\nPING\r\n");
    publ.expect(b"PONG\r\n");
    let m = sub.read_msg();
    assert_eq!(
        (m.subject.as_str(), m.payload.as_slice()),
        ("foo.a", &b"y"[..])
    );
    sub.ping();
    // Publish deny: the message is dropped, the connection stays.
    publ.send(b"PUB foo.nope 1\r\nz\r\nPUB bar 1\r\nz\r\nPING\r\n");
    publ.expect(
        b"-ERR 'Permissions Violation for Publish to \"foo.nope\"'\r\n\
          -ERR 'Permissions Violation for Publish to \"bar\"'\r\nPONG\r\n",
    );
    assert!(server
        .wait_log(
            "\"$G/user:pub\" - Publish Violation - Subject \"foo.nope\"",
            Duration::from_secs(5)
        )
        .is_some());
    // Allowed again after a denial (the per-subject cache keeps both answers).
    for _ in 0..3 {
        publ.send(b"PUB foo.nope 1\r\nz\r\nPUB foo.b 1\r\nw\r\nPING\r\n");
        publ.expect(b"-ERR 'Permissions Violation for Publish to \"foo.nope\"'\r\nPONG\r\n");
        assert_eq!(sub.read_msg().subject, "foo.b");
    }
}

#[test]
fn queue_permissions() {
    let (server, _d) = start("perm-queue", PERMS);
    let mut sub = on_shard(&server, 1, "sub", "s");
    sub.send(b"SUB q.a 1\r\nSUB q.a other 2\r\nSUB q.a grp 3\r\nPING\r\n");
    sub.expect(
        b"-ERR 'Permissions Violation for Subscription to \"q.a\"'\r\n\
          -ERR 'Permissions Violation for Subscription to \"q.a\" using queue \"other\"'\r\nPONG\r\n",
    );
    let mut publ = on_shard(&server, 0, "pub", "p");
    publ.send(b"PUB q.a 2\r\nhi\r\nPING\r\n");
    publ.expect(b"PONG\r\n");
    let m = sub.read_msg();
    assert_eq!((m.subject.as_str(), m.sid.as_str()), ("q.a", "3"));
}

#[test]
fn allow_responses_across_shards() {
    let (server, _d) = start("perm-resp", PERMS);
    let mut resp = on_shard(&server, 1, "resp", "r");
    let mut req = on_shard(&server, 0, "pub", "p");
    resp.send(b"SUB req.x 1\r\nPING\r\n");
    resp.expect(b"PONG\r\n");
    req.send(b"SUB _INBOX.1 9\r\nPUB req.x _INBOX.1 1\r\nq\r\nPING\r\n");
    req.expect(b"PONG\r\n");
    let m = resp.read_msg();
    assert_eq!(m.reply.as_deref(), Some("_INBOX.1"));
    resp.send(b"PUB _INBOX.1 1\r\na\r\nPUB _INBOX.1 1\r\nb\r\nPUB other 1\r\nc\r\nPING\r\n");
    resp.expect(
        b"-ERR 'Permissions Violation for Publish to \"_INBOX.1\"'\r\n\
          -ERR 'Permissions Violation for Publish to \"other\"'\r\nPONG\r\n",
    );
    let m = req.read_msg();
    assert_eq!(
        (m.subject.as_str(), m.payload.as_slice()),
        ("_INBOX.1", &b"a"[..])
    );
    req.ping();
}

// ---------------------------------------------------------------------------------------
// Reload and config checks
// ---------------------------------------------------------------------------------------

#[test]
fn reload_applies_to_open_connections() {
    let dir = TempDir::new("reload");
    let path = dir.write_string(
        "auth.conf",
        "authorization {\n  users = [\n    {user: alice, password: a, permissions: {subscribe: [\"foo.>\", \"bar\"], publish: \">\"}}\n    {user: dave, password: d}\n  ]\n}\n",
    );
    let server = Server::natrium(&["-c", &path]);
    let mut alice = RawConn::connect(
        &server.addr(),
        r#"{"verbose":false,"user":"alice","pass":"a"}"#,
    );
    alice.send(b"SUB foo.x 1\r\nSUB bar 2\r\nSUB bar q 3\r\nPING\r\n");
    alice.expect(b"PONG\r\n");
    let mut dave = RawConn::connect(
        &server.addr(),
        r#"{"verbose":false,"user":"dave","pass":"d"}"#,
    );
    dir.write_string(
        "auth.conf",
        "authorization {\n  users = [\n    {user: alice, password: a, permissions: {subscribe: [\"foo.>\"], publish: \">\"}}\n  ]\n}\n",
    );
    server.signal(libc::SIGHUP);
    assert!(server
        .wait_log("Reloaded server configuration", Duration::from_secs(5))
        .is_some());
    dave.expect_closed();
    // Sent by alice's shard when it applies the reload (subscriptions in sid order).
    alice.expect(
        b"-ERR 'Permissions Violation for Subscription to \"bar\" (sid \"2\")'\r\n\
          -ERR 'Permissions Violation for Subscription to \"bar\" using queue \"q\" (sid \"3\")'\r\n",
    );
    alice.ping();
    // The removed subscriptions get nothing; the allowed one still works.
    alice.send(b"PUB bar 1\r\nx\r\nPUB foo.x 1\r\ny\r\n");
    assert_eq!(alice.read_msg().subject, "foo.x");
}

#[test]
fn check_reports_authorization_errors_with_positions() {
    let dir = TempDir::new("check");
    let cases = [
        (
            "authorization {\n  users: [\n    {nkey: UBAD}\n  ]\n}\n",
            "3:6: Not a valid public nkey for a user",
        ),
        (
            "authorization {\n  users = [\n    {user: a, password: b}\n    {user: a, password: c}\n  ]\n}\n",
            "1:0: Duplicate user \"a\" detected",
        ),
        (
            "authorization {\n  default_permissions: { publish: { allow: \"a b\" } }\n  users: [ {user: a, password: b} ]\n}\n",
            "2:37: subject \"a b\" is not a valid subject",
        ),
        ("authorization { token: x, user: a, password: b }\n", "1:0: Cannot have a user/pass and token"),
        ("authorization { foo: 1 }\n", "1:16: unknown field \"foo\""),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.write_string(&format!("c{i}.conf"), text);
        for bin in [Some(support::natrium_bin()), nats_server_bin()]
            .into_iter()
            .flatten()
        {
            let out = std::process::Command::new(&bin)
                .args(["-t", "-c", &path])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{bin:?} accepted {text}");
            assert!(err.contains(want), "{bin:?}: {err:?} lacks {want:?}");
        }
    }
}

#[test]
fn no_auth_user_must_exist() {
    let dir = TempDir::new("noauth-missing");
    let path = dir.write_string(
        "a.conf",
        "no_auth_user: zed\nauthorization { users: [{user: a, password: b}] }\n",
    );
    let out = std::process::Command::new(support::natrium_bin())
        .args(["-p", "-1", "-c", &path])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no_auth_user: \"zed\" not present as user or nkey"));
}

// ---------------------------------------------------------------------------------------
// Differential: the rejection bytes match the reference
// ---------------------------------------------------------------------------------------

#[test]
fn rejections_match_reference() {
    if nats_server_bin().is_none() {
        eprintln!("nats-server not installed; skipping");
        return;
    }
    let conf = "authorization {\n  users = [\n    {user: alice, password: secret, permissions: {publish: {allow: [\"foo.>\"], deny: [\"foo.secret\"]}, subscribe: {allow: [\"foo.>\", \"bar q1\"], deny: \"foo.secret\"}}}\n  ]\n}\n";
    let dir = TempDir::new("diff");
    let path = dir.write_string("a.conf", conf);
    let ours = Server::start(support::Kind::Natrium, &["-c", &path]);
    let reference = Server::nats_server(&["-c", &path]);
    let cases: &[&[u8]] = &[
        b"PING\r\n",
        b"CONNECT {\"user\":\"alice\",\"pass\":\"bad\"}\r\nPING\r\n",
        b"CONNECT {\"user\":\"alice\",\"pass\":1}\r\nPING\r\n",
        b"CONNECT {\"verbose\":false}\r\nPING\r\n",
        b"CONNECT {\"auth_token\":\"x\"}\r\nPING\r\n",
        b"CONNECT {\"user\":\"alice\",\"pass\":\"secret\",\"verbose\":false}\r\nPUB foo.secret 1\r\nx\r\nPUB bar 1\r\nx\r\nSUB foo.secret 1\r\nSUB foo.* 2\r\nSUB bar 3\r\nSUB bar q1 4\r\nSUB bar q2 5\r\nPING\r\n",
    ];
    for case in cases {
        let quiet = Duration::from_millis(500);
        let a = reply_bytes(&ours.addr(), case, quiet);
        let b = reply_bytes(&reference.addr(), case, quiet);
        assert_eq!(
            (String::from_utf8_lossy(&a.0), a.1),
            (String::from_utf8_lossy(&b.0), b.1),
            "for {:?}",
            String::from_utf8_lossy(case)
        );
    }
}

// ---------------------------------------------------------------------------------------
// allowed_connection_types, and auth_required in INFO after CONNECT and reload
// ---------------------------------------------------------------------------------------

/// natrium serves only plain client connections (`STANDARD`): a user whose
/// `allowed_connection_types` leaves it out is refused like bad credentials, also
/// through `no_auth_user`. Same bytes as nats-server.
#[test]
fn allowed_connection_types_without_standard_are_refused() {
    let conf = "authorization {\n  users = [\n    {user: ws, password: p, allowed_connection_types: [\"WEBSOCKET\", \"mqtt\"]}\n    {user: std, password: p, allowed_connection_types: [\"STANDARD\", \"LEAFNODE\"]}\n    {user: lower, password: p, allowed_connection_types: \"standard\"}\n    {user: any, password: p, allowed_connection_types: []}\n    {user: leaf, password: p, allowed_connection_types: [\"LEAFNODE\"]}\n  ]\n}\nno_auth_user: leaf\n";
    let dir = TempDir::new("conntypes");
    let path = dir.write_string("a.conf", conf);
    let ours = Server::natrium(&["-c", &path]);
    let reference = nats_server_bin().map(|_| Server::nats_server(&["-c", &path]));
    let cases: &[(&str, bool)] = &[
        (r#"{"verbose":false,"user":"ws","pass":"p"}"#, false),
        (r#"{"verbose":false,"user":"ws","pass":"wrong"}"#, false),
        (r#"{"verbose":false,"user":"std","pass":"p"}"#, true),
        (r#"{"verbose":false,"user":"lower","pass":"p"}"#, true),
        (r#"{"verbose":false,"user":"any","pass":"p"}"#, true),
        (r#"{"verbose":false}"#, false),
    ];
    for (connect, ok) in cases {
        let bytes = format!("CONNECT {connect}\r\nPING\r\n");
        let quiet = Duration::from_millis(300);
        let got = reply_bytes(&ours.addr(), bytes.as_bytes(), quiet);
        if *ok {
            assert_eq!(got, (b"PONG\r\n".to_vec(), false), "{connect}");
        } else {
            assert_eq!(got, (VIOLATION.to_vec(), true), "{connect}");
        }
        if let Some(r) = &reference {
            assert_eq!(
                got,
                reply_bytes(&r.addr(), bytes.as_bytes(), quiet),
                "natrium vs nats-server for {connect}"
            );
        }
    }
    assert!(ours
        .wait_log("authentication error - User \"ws\"", Duration::from_secs(3))
        .is_some());
    assert!(ours
        .wait_log(
            "authentication error - User \"leaf\"",
            Duration::from_secs(3)
        )
        .is_some());
}

#[test]
fn allowed_connection_types_config_errors_match_reference() {
    let dir = TempDir::new("conntypes-check");
    let cases = [
        (
            "authorization {\n  users: [\n    {user: a, password: b, allowed_connection_types: [\"foo\", \"Standard\", \"bar\"]}\n  ]\n}\n",
            "3:28: invalid connection types [\"FOO\" \"BAR\"]",
        ),
        (
            "authorization {\n  users: [\n    {user: a, password: b, allowed_connection_types: 5}\n  ]\n}\n",
            "3:28: error parsing allowed connection types: unsupported type int64",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.write_string(&format!("c{i}.conf"), text);
        for bin in [Some(support::natrium_bin()), nats_server_bin()]
            .into_iter()
            .flatten()
        {
            let out = std::process::Command::new(&bin)
                .args(["-t", "-c", &path])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{bin:?} accepted {text}");
            assert!(err.contains(want), "{bin:?}: {err:?} lacks {want:?}");
        }
    }
}

/// Sends a protocol-1 CONNECT and PING; returns `auth_required` of the INFO that
/// follows the PONG (connect_info).
fn connect_info_auth_required(addr: &str, connect: &str) -> bool {
    let mut c = RawConn::open(addr);
    c.send(format!("CONNECT {connect}\r\nPING\r\n").as_bytes());
    c.expect(b"PONG\r\n");
    let line = String::from_utf8(c.read_line()).unwrap();
    let json = line
        .strip_prefix("INFO ")
        .expect("connect_info INFO")
        .trim();
    let info: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(info["connect_info"], true, "{line}");
    info.get("auth_required")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The INFO sent after CONNECT says whether auth is required now: true with
/// `no_auth_user` too (only the first INFO hides it), and after a reload that
/// added or removed users. Same as nats-server.
#[test]
fn connect_info_auth_required_follows_config_and_reload() {
    let kinds: &[support::Kind] = if nats_server_bin().is_some() {
        &[support::Kind::Natrium, support::Kind::NatsServer]
    } else {
        &[support::Kind::Natrium]
    };
    let anon = r#"{"protocol":1,"verbose":false}"#;
    let user = r#"{"protocol":1,"verbose":false,"user":"a","pass":"b"}"#;
    for kind in kinds {
        let dir = TempDir::new(&format!("ci-{kind:?}"));
        let path = dir.write_string(
            "a.conf",
            "authorization { users: [{user: a, password: b}] }\nno_auth_user: a\n",
        );
        let server = Server::start(*kind, &["-c", &path]);
        assert!(connect_info_auth_required(&server.addr(), anon), "{kind:?}");

        dir.write_string("a.conf", "debug: false\n");
        server.signal(libc::SIGHUP);
        assert!(server
            .wait_log("Reloaded server configuration", Duration::from_secs(5))
            .is_some());
        assert!(
            !connect_info_auth_required(&server.addr(), anon),
            "{kind:?}"
        );

        dir.write_string("a.conf", "authorization { user: a, password: b }\n");
        server.signal(libc::SIGHUP);
        assert!(server
            .wait_log("Reloaded server configuration", Duration::from_secs(5))
            .is_some());
        assert!(connect_info_auth_required(&server.addr(), user), "{kind:?}");
    }
}
