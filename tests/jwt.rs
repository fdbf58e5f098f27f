//! Operator mode (issue #12): an operator JWT, account JWTs preloaded into the
//! MEMORY resolver and users logging in with user JWTs. Every scenario runs the
//! same config against natrium and the reference nats-server and compares what the
//! client gets back byte for byte (INFO lines left out); the expected outcome is
//! also asserted on its own, so the test means something without the reference.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use futures::StreamExt;
use nkeys::KeyPair;
use serde_json::json;
use support::jwt::{account, creds, now, operator, user};
use support::{nats_server_bin, Kind, Server, TempDir};

/// An operator with a signing key, a system account, account A (a signing key, a
/// scoped signing key, a revoked user, default permissions, a public stream export
/// and a private service export), account B importing both (the service with an
/// activation token), and account C with no limits at all.
struct World {
    dir: TempDir,
    a: KeyPair,
    a_signer: KeyPair,
    a_scoped: KeyPair,
    b: KeyPair,
    c: KeyPair,
    revoked: KeyPair,
    conf: String,
}

fn world() -> World {
    let dir = TempDir::new("jwt");
    let (op, op_signer) = (KeyPair::new_operator(), KeyPair::new_operator());
    let sys = KeyPair::new_account();
    let (a, a_signer, a_scoped) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let (b, c) = (KeyPair::new_account(), KeyPair::new_account());
    let revoked = KeyPair::new_user();
    let op_jwt = operator(
        &op,
        "OP",
        json!({"signing_keys": [op_signer.public_key()], "system_account": sys.public_key()}),
    );
    std::fs::write(dir.path("op.jwt"), &op_jwt).unwrap();
    let a_jwt = account(
        &a,
        "A",
        &op_signer,
        json!({
            "signing_keys": [a_signer.public_key(), {
                "kind": "user_scope", "key": a_scoped.public_key(), "role": "r",
                "template": {"pub": {"allow": ["scoped.{{name()}}"]}, "sub": {},
                             "subs": -1, "data": -1, "payload": -1}
            }],
            "revocations": {revoked.public_key(): now() + 60},
            "default_permissions": {"pub": {"deny": ["forbidden.>"]}},
            "exports": [
                {"name": "feed", "subject": "feed.>", "type": "stream"},
                {"name": "svc", "subject": "svc", "type": "service", "token_req": true},
            ],
        }),
    );
    let activation = support::jwt::encode(
        json!({"sub": b.public_key(), "name": "svc",
               "nats": {"type": "activation", "version": 2, "subject": "svc", "kind": "service"}}),
        &a,
    );
    let b_jwt = account(
        &b,
        "B",
        &op,
        json!({"imports": [
            {"name": "feed", "subject": "feed.>", "account": a.public_key(), "type": "stream"},
            {"name": "svc", "subject": "svc", "account": a.public_key(), "type": "service",
             "token": activation},
        ]}),
    );
    let c_jwt = account(&c, "C", &op, json!({"limits": null}));
    let sys_jwt = account(&sys, "SYS", &op, json!({}));
    let conf = dir.write_string(
        "server.conf",
        &format!(
            "operator: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{a_jwt}\"\n  \
             {}: \"{b_jwt}\"\n  {}: \"{c_jwt}\"\n  {}: \"{sys_jwt}\"\n}}\n",
            dir.path("op.jwt").display(),
            a.public_key(),
            b.public_key(),
            c.public_key(),
            sys.public_key()
        ),
    );
    World {
        dir,
        a,
        a_signer,
        a_scoped,
        b,
        c,
        revoked,
        conf,
    }
}

/// Logs in over a raw socket with `jwt` (signing the nonce with `seed` unless
/// None), sends `cmds` and a PING, and returns everything up to the PONG or the
/// close, INFO lines (and the server's own round-trip PING) left out.
fn session(port: u16, jwt: &str, seed: Option<&KeyPair>, cmds: &str) -> String {
    open_session(port, jwt, seed, cmds).1
}

/// [`session`], keeping the connection open.
fn open_session(port: u16, jwt: &str, seed: Option<&KeyPair>, cmds: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut info = Vec::new();
    let mut b = [0u8; 1];
    while !info.ends_with(b"\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed before INFO");
        info.push(b[0]);
    }
    let info: serde_json::Value = serde_json::from_slice(&info[5..]).unwrap();
    let nonce = info["nonce"].as_str().expect("operator mode sends a nonce");
    let mut connect = json!({"verbose": false, "pedantic": false, "jwt": jwt, "protocol": 1});
    if let Some(kp) = seed {
        let sig = kp.sign(nonce.as_bytes()).unwrap();
        connect["sig"] = BASE64URL_NOPAD.encode(&sig).into();
    }
    s.write_all(format!("CONNECT {connect}\r\n{cmds}PING\r\n").as_bytes())
        .unwrap();
    let got = support::client::until_pong(&mut s);
    (s, got)
}

/// The servers to compare: natrium, and the reference when installed.
fn servers(conf: &str) -> Vec<Server> {
    let mut v = vec![Server::start(Kind::Natrium, &["-c", conf])];
    if nats_server_bin().is_some() {
        v.push(Server::start(Kind::NatsServer, &["-c", conf]));
    }
    v
}

const VIOLATION: &str = "-ERR 'Authorization Violation'\r\n";

#[test]
fn user_jwt_logins_are_decided_as_nats_server_decides_them() {
    let w = world();
    let fresh = KeyPair::new_user;
    let mut cases: Vec<(&str, String, Option<KeyPair>, &str)> = Vec::new();
    let u = fresh();
    cases.push((
        "signed by the account",
        user(&u, "u", &w.a, json!({})),
        Some(u),
        "PONG\r\n",
    ));
    let u = fresh();
    cases.push((
        "no signature",
        user(&u, "u", &w.a, json!({})),
        None,
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "signed by another key",
        user(&u, "u", &w.a, json!({})),
        Some(fresh()),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "bearer token",
        user(&u, "u", &w.a, json!({"bearer_token": true})),
        None,
        "PONG\r\n",
    ));
    cases.push((
        "revoked",
        user(&w.revoked, "u", &w.a, json!({})),
        Some(KeyPair::from_seed(&w.revoked.seed().unwrap()).unwrap()),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "expired",
        support::jwt::encode(
            json!({"sub": u.public_key(), "exp": now() - 10,
                   "nats": {"type": "user", "version": 2, "subs": -1, "payload": -1}}),
            &w.a,
        ),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "account signing key",
        user(
            &u,
            "u",
            &w.a_signer,
            json!({"issuer_account": w.a.public_key()}),
        ),
        Some(u),
        "PONG\r\n",
    ));
    let u = fresh();
    cases.push((
        "signing key without issuer_account",
        user(&u, "u", &w.a_signer, json!({})),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "unknown signer for the account",
        user(
            &u,
            "u",
            &KeyPair::new_account(),
            json!({"issuer_account": w.a.public_key()}),
        ),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "scoped key, user sets limits",
        user(
            &u,
            "u",
            &w.a_scoped,
            json!({"issuer_account": w.a.public_key()}),
        ),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "account not in the resolver",
        user(&u, "u", &KeyPair::new_account(), json!({})),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "src outside",
        user(&u, "u", &w.a, json!({"src": ["10.1.2.0/24"]})),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "src inside",
        user(&u, "u", &w.a, json!({"src": ["127.0.0.0/8"]})),
        Some(u),
        "PONG\r\n",
    ));
    let u = fresh();
    cases.push((
        "websocket only",
        user(
            &u,
            "u",
            &w.a,
            json!({"allowed_connection_types": ["WEBSOCKET"]}),
        ),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "outside connect times",
        user(
            &u,
            "u",
            &w.a,
            json!({"times": [{"start": "00:00:00", "end": "00:00:01"}]}),
        ),
        Some(u),
        VIOLATION,
    ));
    let u = fresh();
    cases.push((
        "account without limits",
        user(&u, "u", &w.c, json!({})),
        Some(u),
        "-ERR 'maximum account active connections exceeded'\r\n",
    ));
    cases.push(("not a JWT", "not.a.jwt".into(), None, VIOLATION));
    for server in servers(&w.conf) {
        for (name, jwt, key, expect) in &cases {
            let got = session(server.port, jwt, key.as_ref(), "");
            assert_eq!(&got, expect, "{:?}: {name}", server.kind);
        }
    }
}

#[test]
fn user_and_account_limits_and_permissions_apply_as_nats_server_applies_them() {
    let w = world();
    let cmds = "SUB a 1\r\nSUB b 2\r\nPUB a 2\r\nhi\r\nPUB forbidden.x 2\r\nhi\r\n";
    let u1 = KeyPair::new_user();
    let u2 = KeyPair::new_user();
    let u3 = KeyPair::new_user();
    let u4 = KeyPair::new_user();
    let cases = [
        // Unlimited, with the account's default permissions (forbidden.> denied).
        (user(&u1, "u", &w.a, json!({})), &u1, cmds,
         "MSG a 1 2\r\nhi\r\n-ERR 'Permissions Violation for Publish to \"forbidden.x\"'\r\nPONG\r\n"),
        // One subscription, payloads of at most 2 bytes, its own permissions.
        (user(&u2, "u", &w.a, json!({"subs": 1, "payload": 2, "pub": {"allow": ["a"]}})), &u2,
         "SUB a 1\r\nSUB b 2\r\nPUB a 2\r\nhi\r\nPUB b 2\r\nhi\r\nPUB a 3\r\nhey\r\n",
         "-ERR 'maximum subscriptions exceeded'\r\nMSG a 1 2\r\nhi\r\n\
          -ERR 'Permissions Violation for Publish to \"b\"'\r\n-ERR 'Maximum Payload Violation'\r\n"),
        // No limits in the JWT: nothing may be subscribed or published with a payload.
        (user(&u3, "u", &w.a, json!({"subs": null, "data": null, "payload": null})), &u3,
         "SUB a 1\r\nPUB a 2\r\nhi\r\n",
         "-ERR 'maximum subscriptions exceeded'\r\n-ERR 'Maximum Payload Violation'\r\n"),
        // A scoped signing key's template: only scoped.<name> may be published.
        (support::jwt::encode(
            json!({"sub": u4.public_key(), "name": "bob",
                   "nats": {"type": "user", "version": 2, "issuer_account": w.a.public_key()}}),
            &w.a_scoped), &u4,
         "SUB scoped.bob 1\r\nPUB scoped.bob 2\r\nhi\r\nPUB scoped.eve 2\r\nhi\r\n",
         "MSG scoped.bob 1 2\r\nhi\r\n-ERR 'Permissions Violation for Publish to \"scoped.eve\"'\r\nPONG\r\n"),
    ];
    for server in servers(&w.conf) {
        for (i, (jwt, key, cmds, expect)) in cases.iter().enumerate() {
            let got = session(server.port, jwt, Some(key), cmds);
            assert_eq!(&got, expect, "{:?}: case {i}", server.kind);
        }
    }
}

/// async-nats with `.creds` files: accounts are isolated; B gets A's exported
/// stream and calls A's private service with its activation token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_files_log_in_and_accounts_share_only_what_they_export() {
    let w = world();
    let login = |acc: &KeyPair, name: &str| {
        let u = KeyPair::new_user();
        let text = creds(&user(&u, name, acc, json!({})), &u.seed().unwrap());
        w.dir.write_string(&format!("{name}.creds"), &text)
    };
    let (ca, cb, cc) = (login(&w.a, "ua"), login(&w.b, "ub"), login(&w.c, "uc"));
    for server in servers(&w.conf) {
        let connect = |path: String| {
            let url = server.url();
            async move {
                async_nats::ConnectOptions::with_credentials_file(path)
                    .await
                    .unwrap()
                    .connect(url)
                    .await
            }
        };
        let a = connect(ca.clone()).await.expect("A logs in");
        let b = connect(cb.clone()).await.expect("B logs in");
        assert!(
            connect(cc.clone()).await.is_err(),
            "{:?}: C has no connections",
            server.kind
        );
        // The stream export: A's feed.x reaches B; A's other subjects do not.
        let mut feed = b.subscribe("feed.>").await.unwrap();
        let mut other = b.subscribe("other").await.unwrap();
        b.flush().await.unwrap();
        // B's interest reaches A's shard (natrium runs two) before A publishes.
        support::client::await_interest(&a, &mut feed, "feed.probe").await;
        a.publish("other", "no".into()).await.unwrap();
        a.publish("feed.x", "yes".into()).await.unwrap();
        a.flush().await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("feed crossed")
            .unwrap();
        assert_eq!(&m.payload[..], b"yes");
        let leaked = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
        assert!(leaked.is_err(), "{:?}: other crossed accounts", server.kind);
        // The service export with its token: B's request reaches A's responder.
        let mut svc = a.subscribe("svc").await.unwrap();
        a.flush().await.unwrap();
        let responder = a.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = svc.next().await {
                if let Some(reply) = m.reply {
                    responder.publish(reply, "pong".into()).await.unwrap();
                    responder.flush().await.unwrap();
                }
            }
        });
        // Until the responder's interest reached B's shard, a request gets no
        // responders; then the reply comes back.
        let deadline = std::time::Instant::now() + support::client::WAIT;
        loop {
            let r =
                tokio::time::timeout(Duration::from_millis(500), b.request("svc", "ping".into()))
                    .await;
            if let Ok(Ok(r)) = r {
                assert_eq!(&r.payload[..], b"pong");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}: B's request never reached A's service",
                server.kind
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
    }
}

/// Start-up errors in operator mode, as nats-server gives them.
#[test]
fn operator_mode_configuration_errors_match_the_reference() {
    let dir = TempDir::new("jwt-errors");
    let w = world();
    let conf = std::fs::read_to_string(&w.conf).unwrap();
    let cases = [
        (
            "missing",
            "operator: /nonexistent/op.jwt\nresolver: MEMORY\n".to_string(),
            "error parsing operator JWT: open /nonexistent/op.jwt: no such file or directory",
        ),
        (
            "noauth",
            format!("{conf}no_auth_user: x\n"),
            "no_auth_user not compatible with Trusted Operator",
        ),
    ];
    for (name, text, expect) in cases {
        let path = dir.write_string(&format!("{name}.conf"), &text);
        for (bin, text) in support::refused_start(&path) {
            assert!(text.contains(expect), "{bin:?}, {name}: {text}");
        }
    }
}

/// A leaf node remote with `credentials` logs in to an operator-mode hub with the
/// user JWT (signing the hub's nonce) and is bound to that user's account: the
/// hub's clients of account A and the spoke's clients exchange messages, in every
/// mix; a spoke whose user is revoked is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_remotes_log_in_with_credentials() {
    let w = world();
    let conf = std::fs::read_to_string(&w.conf).unwrap();
    let leaf_user = KeyPair::new_user();
    let leaf_creds = w.dir.write_string(
        "leaf.creds",
        &creds(
            &user(&leaf_user, "leaf", &w.a, json!({})),
            &leaf_user.seed().unwrap(),
        ),
    );
    let client = KeyPair::new_user();
    let client_creds = w.dir.write_string(
        "client.creds",
        &creds(
            &user(&client, "c", &w.a, json!({})),
            &client.seed().unwrap(),
        ),
    );
    let kinds: &[Kind] = &support::kinds();
    for &hub_kind in kinds {
        for &spoke_kind in kinds {
            if hub_kind == Kind::NatsServer && spoke_kind == Kind::NatsServer {
                continue;
            }
            eprintln!("hub {hub_kind:?}, spoke {spoke_kind:?}");
            let port = support::client::free_port();
            let hub_conf = w.dir.write_string(
                "hub.conf",
                &format!("{conf}leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"),
            );
            let hub = Server::start(hub_kind, &["-c", &hub_conf]);
            let spoke_conf = w.dir.write_string(
                "spoke.conf",
                &format!(
                    "leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{port}\", \
                     credentials: \"{leaf_creds}\" }} ] }}\n"
                ),
            );
            let spoke = Server::start(spoke_kind, &["-c", &spoke_conf]);
            let h = async_nats::ConnectOptions::with_credentials_file(client_creds.clone())
                .await
                .unwrap()
                .connect(hub.url())
                .await
                .unwrap();
            let s = support::client::connect(&spoke).await;
            for (publisher, subscriber, subject) in [(&h, &s, "down"), (&s, &h, "up")] {
                let mut sub = subscriber.subscribe(subject).await.unwrap();
                subscriber.flush().await.unwrap();
                support::client::await_interest(publisher, &mut sub, subject).await;
                publisher.publish(subject, "m".into()).await.unwrap();
                publisher.flush().await.unwrap();
                let m = support::client::next(&mut sub).await;
                assert_eq!(
                    &m.payload[..],
                    b"m",
                    "{hub_kind:?}/{spoke_kind:?}: {subject}"
                );
            }
            // A second spoke whose user the account revoked gets nowhere.
            let revoked_creds = w.dir.write_string(
                "revoked.creds",
                &creds(
                    &user(&w.revoked, "r", &w.a, json!({})),
                    &w.revoked.seed().unwrap(),
                ),
            );
            let bad_conf = w.dir.write_string(
                "bad-spoke.conf",
                &format!(
                    "leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{port}\", \
                     credentials: \"{revoked_creds}\" }} ] }}\n"
                ),
            );
            let _bad = Server::start(spoke_kind, &["-c", &bad_conf]);
            let refused = hub.wait_log("authentication error", support::client::WAIT);
            assert!(refused.is_some(), "{hub_kind:?} took a revoked leaf user");
        }
    }
}

/// Sends the websocket upgrade with `cookie`, then (once it is answered) CONNECT
/// without a JWT and PING in one masked frame; returns what came back up to the
/// PONG or the close (frames unwrapped, INFO lines left out).
fn ws_session(port: u16, cookie: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Cookie: {cookie}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // The upgrade must be answered before any frame (nats-server refuses early data).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during the upgrade");
        head.push(byte[0]);
    }
    let payload = b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n";
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut text = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        // Unwrap the server's (unmasked) frames.
        text.clear();
        let mut at = 0;
        while at + 2 <= raw.len() {
            let (len, hdr) = match raw[at + 1] & 0x7f {
                126 if at + 4 <= raw.len() => {
                    (u16::from_be_bytes([raw[at + 2], raw[at + 3]]) as usize, 4)
                }
                126 => break,
                n => (n as usize, 2),
            };
            if at + hdr + len > raw.len() {
                break;
            }
            if raw[at] & 0x0f != 0x8 {
                text.extend_from_slice(&raw[at + hdr..at + hdr + len]);
            }
            at += hdr + len;
        }
        if text.windows(6).any(|w| w == b"PONG\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&text)
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("INFO ") && *l != "PING\r\n")
        .collect()
}

/// `websocket { jwt_cookie }` in operator mode: a bearer user JWT in the cookie
/// logs a browser in without credentials in CONNECT; a JWT that needs the nonce
/// signed cannot, and neither can a forged one.
#[test]
fn a_bearer_jwt_in_the_websocket_cookie_logs_in() {
    let w = world();
    let conf = std::fs::read_to_string(&w.conf).unwrap();
    let ws_port = support::client::free_port();
    let path = w.dir.write_string(
        "ws.conf",
        &format!(
            "{conf}websocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true, \
             jwt_cookie: \"my_jwt\" }}\n"
        ),
    );
    let u = KeyPair::new_user();
    let bearer = user(&u, "browser", &w.a, json!({"bearer_token": true}));
    let signed = user(&u, "browser", &w.a, json!({}));
    let forged = user(
        &u,
        "browser",
        &KeyPair::new_account(),
        json!({"bearer_token": true,
        "issuer_account": w.a.public_key()}),
    );
    let kinds = support::kinds();
    // One at a time: both would listen on the same websocket port.
    for kind in kinds {
        let server = Server::start(kind, &["-c", &path]);
        let ok = ws_session(ws_port, &format!("other=1; my_jwt={bearer}"));
        assert_eq!(ok, "PONG\r\n", "{:?}: bearer cookie", server.kind);
        for (name, jwt) in [("unsigned nonce", &signed), ("forged", &forged)] {
            let got = ws_session(ws_port, &format!("my_jwt={jwt}"));
            assert_eq!(got, VIOLATION, "{:?}: {name}", server.kind);
        }
        drop(server);
    }
}

/// `resolver { type: full, dir }`: accounts pushed at run time through
/// `$SYS.REQ.CLAIMS.UPDATE` (as `nsc push` does) are stored in the directory and
/// taken at once, survive a restart, can be looked up and listed; an update that
/// revokes a connected user disconnects it; bad pushes get the reference's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_resolver_takes_account_updates_at_run_time() {
    let kinds: &[Kind] = &support::kinds();
    for &kind in kinds {
        let dir = TempDir::new("jwt-full");
        let op = KeyPair::new_operator();
        let sys = KeyPair::new_account();
        let b = KeyPair::new_account();
        std::fs::write(
            dir.path("op.jwt"),
            operator(&op, "OP", json!({"system_account": sys.public_key()})),
        )
        .unwrap();
        let sys_jwt = account(&sys, "SYS", &op, json!({}));
        let conf = dir.write_string(
            "full.conf",
            &format!(
                "operator: \"{}\"\nsystem_account: {}\nresolver {{ type: full, dir: \"{}\", allow_delete: true }}\n\
                 resolver_preload {{ {}: \"{sys_jwt}\" }}\n",
                dir.path("op.jwt").display(),
                sys.public_key(),
                dir.path("jwt").display(),
                sys.public_key()
            ),
        );
        let creds_for = |acc: &KeyPair, name: &str| {
            let u = KeyPair::new_user();
            let text = creds(&user(&u, name, acc, json!({})), &u.seed().unwrap());
            (dir.write_string(&format!("{name}.creds"), &text), u)
        };
        let (sys_creds, _) = creds_for(&sys, "sys");
        let (b_creds, b_user) = creds_for(&b, "b");
        let login = |url: String, path: String| async move {
            async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .unwrap()
                .max_reconnects(Some(0))
                .connect(url)
                .await
        };
        let server = Server::start(kind, &["-c", &conf]);
        assert!(
            login(server.url(), b_creds.clone()).await.is_err(),
            "{kind:?}: B logged in before its JWT was pushed"
        );
        let s = login(server.url(), sys_creds.clone()).await.unwrap();
        let ask = |subject: String, body: String| {
            let s = s.clone();
            async move {
                let r = s
                    .request(subject, body.into())
                    .await
                    .expect("claims request");
                serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap_or_default()
            }
        };
        let b_jwt = account(&b, "B", &op, json!({}));
        let r = ask("$SYS.REQ.CLAIMS.UPDATE".into(), b_jwt.clone()).await;
        assert_eq!(r["data"]["code"], 200, "{kind:?}: {r}");
        assert_eq!(r["data"]["account"], b.public_key().as_str());
        let mut events = s.subscribe("$SYS.ACCOUNT.*.CONNECT").await.unwrap();
        s.flush().await.unwrap();
        let bc = login(server.url(), b_creds.clone())
            .await
            .expect("B logs in after the push");
        // The connect event carries the JWT facts, as the reference sends them.
        let ev = tokio::time::timeout(support::client::WAIT, events.next())
            .await
            .expect("no connect event")
            .unwrap();
        let ev: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
        let client = &ev["client"];
        assert_eq!(client["acc"], b.public_key().as_str(), "{kind:?}: {ev}");
        assert_eq!(client["name_tag"], "B", "{kind:?}: {ev}");
        assert_eq!(client["issuer_key"], b.public_key().as_str(), "{kind:?}");
        assert!(
            client["jwt"].as_str().is_some_and(|j| j.starts_with("eyJ")),
            "{kind:?}"
        );
        let looked = s
            .request(
                format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP", b.public_key()),
                "".into(),
            )
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&looked.payload),
            b_jwt,
            "{kind:?}: lookup"
        );
        let list = ask("$SYS.REQ.CLAIMS.LIST".into(), String::new()).await;
        assert!(
            list["data"]
                .as_array()
                .unwrap()
                .contains(&json!(b.public_key())),
            "{kind:?}: {list}"
        );
        // Bad pushes.
        let r = ask("$SYS.REQ.CLAIMS.UPDATE".into(), "garbage".into()).await;
        assert_eq!(
            r["error"]["description"], "jwt update resulted in error - expected 3 chunks",
            "{kind:?}: {r}"
        );
        let r = ask(
            format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", sys.public_key()),
            b_jwt.clone(),
        )
        .await;
        assert_eq!(
            r["error"]["description"],
            "jwt update resulted in error - subject does not match jwt content",
            "{kind:?}: {r}"
        );
        // Revoking the connected user closes its connection.
        let revoking = account(
            &b,
            "B",
            &op,
            json!({"revocations": {b_user.public_key(): now() + 60}}),
        );
        let r = ask(
            format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", b.public_key()),
            revoking,
        )
        .await;
        assert_eq!(r["data"]["code"], 200, "{kind:?}: {r}");
        let deadline = std::time::Instant::now() + support::client::WAIT;
        while bc.connection_state() == async_nats::connection::State::Connected {
            assert!(
                std::time::Instant::now() < deadline,
                "{kind:?}: the revoked user stays connected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A restart on the same directory knows B (a new user of B logs in).
        drop((s, bc));
        drop(server);
        let server = Server::start(kind, &["-c", &conf]);
        let (fresh, _) = creds_for(&b, "b2");
        assert!(
            login(server.url(), fresh.clone()).await.is_ok(),
            "{kind:?}: B forgotten after a restart"
        );
        // The operator deletes B: its users are refused from then on.
        let s = login(server.url(), sys_creds.clone()).await.unwrap();
        let delete = support::jwt::encode(
            json!({"sub": op.public_key(),
                   "nats": {"type": "generic", "version": 2, "accounts": [b.public_key()]}}),
            &op,
        );
        let r = s
            .request("$SYS.REQ.CLAIMS.DELETE", delete.into())
            .await
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(r["data"]["message"], "deleted 1 accounts", "{kind:?}: {r}");
        assert!(
            login(server.url(), fresh).await.is_err(),
            "{kind:?}: B's user logged in after the delete"
        );
    }
}

/// A user JWT that expires while the client is connected: the connection gets
/// `-ERR 'User Authentication Expired'` and is closed, as nats-server does it.
#[test]
fn a_connection_is_closed_when_its_jwt_expires() {
    let w = world();
    for server in servers(&w.conf) {
        let u = KeyPair::new_user();
        let token = support::jwt::encode(
            json!({"sub": u.public_key(), "exp": now() + 3,
                   "nats": {"type": "user", "version": 2, "subs": -1, "payload": -1,
                            "data": -1}}),
            &w.a,
        );
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut info = Vec::new();
        let mut b = [0u8; 1];
        while !info.ends_with(b"\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1);
            info.push(b[0]);
        }
        let info: serde_json::Value = serde_json::from_slice(&info[5..]).unwrap();
        let sig = u.sign(info["nonce"].as_str().unwrap().as_bytes()).unwrap();
        let connect = json!({"verbose": false, "jwt": token, "sig": BASE64URL_NOPAD.encode(&sig)});
        s.write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("PONG\r\n") && text.ends_with("-ERR 'User Authentication Expired'\r\n"),
            "{:?}: {text:?}",
            server.kind
        );
    }
}

/// What monitoring and `$SYS.REQ.USER.INFO` tell of a JWT login, as the reference
/// tells it: `/connz?auth=1` carries the user JWT, its issuer (here an account
/// signing key) and the account JWT's name as `name_tag`; USER.INFO names the
/// account and the user by their JWT names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_and_user_info_show_the_jwt_facts() {
    let w = world();
    let kinds: &[Kind] = &support::kinds();
    let u = KeyPair::new_user();
    let token = user(
        &u,
        "alice",
        &w.a_signer,
        json!({"issuer_account": w.a.public_key(), "tags": ["team:blue"]}),
    );
    let path = w
        .dir
        .write_string("alice.creds", &creds(&token, &u.seed().unwrap()));
    for &kind in kinds {
        let http = support::client::free_port();
        let server = Server::start(kind, &["-c", &w.conf, "-m", &http.to_string()]);
        let c = async_nats::ConnectOptions::with_credentials_file(path.clone())
            .await
            .unwrap()
            .connect(server.url())
            .await
            .unwrap();
        c.flush().await.unwrap();
        let connz = support::http_get_json(http, "/connz?auth=1");
        let conn = &connz["connections"][0];
        assert_eq!(conn["authorized_user"], u.public_key().as_str(), "{kind:?}");
        assert_eq!(conn["account"], w.a.public_key().as_str(), "{kind:?}");
        assert_eq!(conn["jwt"], token.as_str(), "{kind:?}");
        assert_eq!(
            conn["issuer_key"],
            w.a_signer.public_key().as_str(),
            "{kind:?}"
        );
        assert_eq!(conn["name_tag"], "A", "{kind:?}");
        let r = c.request("$SYS.REQ.USER.INFO", "".into()).await.unwrap();
        let info: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            (&info["data"]["account_name"], &info["data"]["user_name"]),
            (&json!("A"), &json!("alice")),
            "{kind:?}: {info}"
        );
        assert_eq!(info["data"]["user"], u.public_key().as_str());
    }
}

/// What the test's account server answers for one account key.
#[derive(Clone)]
enum Answer {
    Jwt(String),
    NotFound,
    Junk,
    Hang,
}

/// A minimal HTTP account server (`GET <prefix><key>`), counting requests per key.
struct AccountServer {
    port: u16,
    hits: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

fn account_server(answers: std::collections::HashMap<String, Answer>) -> AccountServer {
    account_server_with(answers, None)
}

/// A plain or TLS connection the account server answers on.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// [`account_server`], over TLS with `tls`.
fn account_server_with(
    answers: std::collections::HashMap<String, Answer>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> AccountServer {
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits: Arc<Mutex<std::collections::HashMap<String, usize>>> = Default::default();
    let counted = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { break };
            let (answers, hits) = (answers.clone(), counted.clone());
            let tls = tls.clone();
            std::thread::spawn(move || {
                let mut conn: Box<dyn Conn> = match tls {
                    Some(cfg) => {
                        let Ok(server) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        Box::new(rustls::StreamOwned::new(server, tcp))
                    }
                    None => Box::new(tcp),
                };
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let key = path.rsplit('/').next().unwrap_or("").to_string();
                *hits.lock().unwrap().entry(key.clone()).or_default() += 1;
                let reply = |status: &str, body: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                // The account server's root answers (nats-server checks it at start).
                let base = if path == "/jwt/v1/accounts/" {
                    Answer::Jwt(String::new())
                } else {
                    Answer::NotFound
                };
                let out = match answers.get(&key).cloned().unwrap_or(base) {
                    Answer::Jwt(j) if path.starts_with("/jwt/v1/accounts/") => reply("200 OK", &j),
                    Answer::Jwt(_) | Answer::NotFound => reply("404 Not Found", "not found\n"),
                    Answer::Junk => reply("200 OK", "this is not a JWT"),
                    Answer::Hang => {
                        std::thread::sleep(Duration::from_secs(6));
                        return;
                    }
                };
                let _ = conn.write_all(out.as_bytes());
            });
        }
    });
    AccountServer { port, hits }
}

/// `resolver: URL(...)`: accounts are fetched over HTTP when their first user logs
/// in and kept; an account the server does not have (404), junk for an answer and an
/// account server that hangs refuse the login as nats-server refuses it, and the
/// accounts already fetched keep working meanwhile.
#[test]
fn url_resolver_fetches_accounts_as_nats_server_does() {
    let dir = TempDir::new("jwturl");
    let op = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let (a, b, missing, junk, hang) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let op_jwt = operator(&op, "OP", json!({"system_account": sys.public_key()}));
    std::fs::write(dir.path("op.jwt"), &op_jwt).unwrap();
    let answers: std::collections::HashMap<String, Answer> = [
        (
            sys.public_key(),
            Answer::Jwt(account(&sys, "SYS", &op, json!({}))),
        ),
        (
            a.public_key(),
            Answer::Jwt(account(
                &a,
                "A",
                &op,
                json!({"exports": [{"name": "feed", "subject": "feed.>", "type": "stream"}]}),
            )),
        ),
        (
            b.public_key(),
            Answer::Jwt(account(
                &b,
                "B",
                &op,
                json!({"imports": [{"name": "feed", "subject": "feed.>",
                                    "account": a.public_key(), "type": "stream"}]}),
            )),
        ),
        (missing.public_key(), Answer::NotFound),
        (junk.public_key(), Answer::Junk),
        (hang.public_key(), Answer::Hang),
    ]
    .into_iter()
    .collect();
    let http = account_server(answers);
    let conf = dir.write_string(
        "url.conf",
        &format!(
            "operator: \"{}\"\nresolver: URL(\"http://127.0.0.1:{}/jwt/v1/accounts/\")\n",
            dir.path("op.jwt").display(),
            http.port
        ),
    );
    let login = |port: u16, acc: &KeyPair, cmds: &str| {
        let u = KeyPair::new_user();
        session(port, &user(&u, "u", acc, json!({})), Some(&u), cmds)
    };
    let mut outcomes = Vec::new();
    for server in servers(&conf) {
        let port = server.port;
        // B first: its import names A, which is fetched with it.
        let ub = KeyPair::new_user();
        let (mut sb, pong) = open_session(
            port,
            &user(&ub, "b", &b, json!({})),
            Some(&ub),
            "SUB feed.x 1\r\n",
        );
        assert_eq!(pong, "PONG\r\n", "{:?}", server.kind);
        let mut got = vec![login(port, &a, "PUB feed.x 5\r\nfed a\r\n")];
        sb.write_all(b"PING\r\n").unwrap();
        got.push(support::client::until_pong(&mut sb));
        got.push(login(port, &a, "SUB a.b 1\r\nPUB a.b 2\r\nhi\r\n"));
        for acc in [&missing, &junk, &hang] {
            got.push(login(port, acc, ""));
        }
        got.push(login(port, &a, "SUB a.c 1\r\nPUB a.c 2\r\nok\r\n"));
        assert_eq!(got[0], "PONG\r\n", "{:?}", server.kind);
        assert_eq!(
            got[1], "MSG feed.x 1 5\r\nfed a\r\nPONG\r\n",
            "{:?}",
            server.kind
        );
        assert_eq!(got[2], "MSG a.b 1 2\r\nhi\r\nPONG\r\n", "{:?}", server.kind);
        for refused in &got[3..6] {
            assert_eq!(refused, VIOLATION, "{:?}", server.kind);
        }
        assert_eq!(got[6], "MSG a.c 1 2\r\nok\r\nPONG\r\n", "{:?}", server.kind);
        if server.kind == Kind::Natrium {
            // Fetched once, then kept.
            assert_eq!(http.hits.lock().unwrap().get(&a.public_key()), Some(&1));
        }
        outcomes.push(got);
        http.hits.lock().unwrap().clear();
    }
    if outcomes.len() == 2 {
        assert_eq!(outcomes[0], outcomes[1], "natrium and nats-server differ");
    }
    // An account server whose root does not answer 200: neither server starts.
    let url = format!("\"http://127.0.0.1:{}/other/\"", http.port);
    let bad = dir.write_string(
        "bad.conf",
        &format!(
            "operator: \"{}\"\nresolver: URL({url})\n",
            dir.path("op.jwt").display()
        ),
    );
    for (bin, text) in support::refused_start(&bad) {
        assert!(
            text.contains(&format!("could not fetch <{url}>: 404 Not Found")),
            "{bin:?}: {text}"
        );
    }
}

/// An account JWT's `mappings` map its users' publishes as nats-server maps them.
#[test]
fn account_jwt_mappings_apply() {
    let dir = TempDir::new("jwtmap");
    let op = KeyPair::new_operator();
    let (sys, a) = (KeyPair::new_account(), KeyPair::new_account());
    let op_jwt = operator(&op, "OP", json!({"system_account": sys.public_key()}));
    std::fs::write(dir.path("op.jwt"), &op_jwt).unwrap();
    let a_jwt = account(
        &a,
        "A",
        &op,
        json!({"mappings": {"in.*": [{"subject": "out.{{wildcard(1)}}", "weight": 100}], "foo": [{"subject": "bar", "weight": 100}], "orders.>": [{"subject": "new.orders.>"}]}}),
    );
    let sys_jwt = account(&sys, "SYS", &op, json!({}));
    let conf = dir.write_string(
        "map.conf",
        &format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: {{ type: full, dir: \"{}\" }}\n",
            dir.path("op.jwt").display(),
            sys.public_key(),
            dir.path("jwts").display(),
        ),
    );
    std::fs::create_dir_all(dir.path("jwts")).unwrap();
    std::fs::write(
        dir.path("jwts").join(format!("{}.jwt", a.public_key())),
        &a_jwt,
    )
    .unwrap();
    std::fs::write(
        dir.path("jwts").join(format!("{}.jwt", sys.public_key())),
        &sys_jwt,
    )
    .unwrap();
    // natrium only: nats-server 2.15.1 did not apply these hand-made account JWT
    // mappings (MEMORY or full resolver alike), while nsc-made ones are documented
    // to work; which claim it misses is an open question (see the issue note).
    {
        let server = Server::start(Kind::Natrium, &["-c", &conf]);
        let u = KeyPair::new_user();
        let got = session(
            server.port,
            &user(&u, "u", &a, json!({})),
            Some(&u),
            "SUB > 1\r\nPUB in.q 1\r\nx\r\nPUB orders.1.2 1\r\ny\r\nPUB other 1\r\nz\r\nPUB foo 1\r\nf\r\n",
        );
        assert_eq!(
            got,
            "MSG out.q 1 1\r\nx\r\nMSG new.orders.1.2 1 1\r\ny\r\nMSG other 1 1\r\nz\r\n\
             MSG bar 1 1\r\nf\r\nPONG\r\n"
        );
    }
}

/// An account update that lowers `limits.conn` below the connections the account
/// has closes the excess ones as nats-server does (which ones, and what they get).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_connection_limit_closes_the_excess() {
    let mut seen = Vec::new();
    for kind in support::kinds() {
        let dir = TempDir::new("jwt-tight");
        let op = KeyPair::new_operator();
        let (sys, a) = (KeyPair::new_account(), KeyPair::new_account());
        std::fs::write(
            dir.path("op.jwt"),
            operator(&op, "OP", json!({"system_account": sys.public_key()})),
        )
        .unwrap();
        let sys_jwt = account(&sys, "SYS", &op, json!({}));
        let limited = |n: i64| {
            let mut limits = support::jwt::unlimited();
            limits["conn"] = json!(n);
            account(&a, "A", &op, json!({ "limits": limits }))
        };
        let conf = dir.write_string(
            "full.conf",
            &format!(
                "operator: \"{}\"\nsystem_account: {}\nresolver {{ type: full, dir: \"{}\" }}\n\
                 resolver_preload {{ {}: \"{sys_jwt}\", {}: \"{}\" }}\n",
                dir.path("op.jwt").display(),
                sys.public_key(),
                dir.path("jwt").display(),
                sys.public_key(),
                a.public_key(),
                limited(4)
            ),
        );
        let server = Server::start(kind, &["-c", &conf]);
        let mut conns = Vec::new();
        for _ in 0..4 {
            let u = KeyPair::new_user();
            let (s, pong) = open_session(server.port, &user(&u, "u", &a, json!({})), Some(&u), "");
            assert_eq!(pong, "PONG\r\n", "{kind:?}");
            conns.push(s);
            std::thread::sleep(Duration::from_millis(20));
        }
        let su = KeyPair::new_user();
        let (mut s, _) = open_session(
            server.port,
            &user(&su, "s", &sys, json!({})),
            Some(&su),
            &format!(
                "PUB $SYS.REQ.CLAIMS.UPDATE {}\r\n{}\r\n",
                limited(2).len(),
                limited(2)
            ),
        );
        s.write_all(b"PING\r\n").unwrap();
        let _ = support::client::until_pong(&mut s);
        std::thread::sleep(Duration::from_millis(500));
        let mut fates = Vec::new();
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let _ = c.write_all(b"PING\r\n");
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            loop {
                match c.read(&mut b) {
                    Ok(0) => {
                        buf.extend_from_slice(b"<closed>");
                        break;
                    }
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                    Err(_) => break,
                }
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            // The server's own PINGs are not the point.
            fates.push(text.replace("PING\r\n", ""));
        }
        // The count went down with them: two are left, so a third is refused.
        let u = KeyPair::new_user();
        fates.push(session(
            server.port,
            &user(&u, "u", &a, json!({})),
            Some(&u),
            "",
        ));
        let excess = "-ERR 'maximum account active connections exceeded'\r\n";
        assert_eq!(
            fates[..2],
            ["PONG\r\n", "PONG\r\n"],
            "{kind:?}: the oldest stay"
        );
        assert_eq!(
            fates[2..4],
            [format!("{excess}<closed>"), format!("{excess}<closed>")],
            "{kind:?}"
        );
        assert_eq!(fates[4], excess, "{kind:?}");
        seen.push(fates);
    }
    if seen.len() == 2 {
        assert_eq!(seen[0], seen[1]);
    }
}

/// `resolver { type: cache }` on a lone server: accounts in its directory log in,
/// updates are taken for the accounts it holds ("jwt updated cache") and skipped
/// for the others (answered only on the per-account subject), as nats-server does.
#[test]
fn the_cache_resolver_updates_only_what_it_holds() {
    let mut seen = Vec::new();
    for kind in support::kinds() {
        let dir = TempDir::new("jwt-cache");
        let op = KeyPair::new_operator();
        let (sys, a, b) = (
            KeyPair::new_account(),
            KeyPair::new_account(),
            KeyPair::new_account(),
        );
        std::fs::write(
            dir.path("op.jwt"),
            operator(&op, "OP", json!({"system_account": sys.public_key()})),
        )
        .unwrap();
        let sys_jwt = account(&sys, "SYS", &op, json!({}));
        std::fs::create_dir_all(dir.path("jwt")).unwrap();
        std::fs::write(
            dir.path("jwt").join(format!("{}.jwt", a.public_key())),
            account(&a, "A", &op, json!({})),
        )
        .unwrap();
        let conf = dir.write_string(
            "cache.conf",
            &format!(
                "operator: \"{}\"\nsystem_account: {}\nresolver {{ type: cache, dir: \"{}\", ttl: \"1h\", limit: 10 }}\n\
                 resolver_preload {{ {}: \"{sys_jwt}\" }}\n",
                dir.path("op.jwt").display(),
                sys.public_key(),
                dir.path("jwt").display(),
                sys.public_key()
            ),
        );
        let server = Server::start(kind, &["-c", &conf]);
        let login = |acc: &KeyPair| {
            let u = KeyPair::new_user();
            session(server.port, &user(&u, "u", acc, json!({})), Some(&u), "")
        };
        assert_eq!(login(&a), "PONG\r\n", "{kind:?}");
        let su = KeyPair::new_user();
        let (mut s, _) = open_session(
            server.port,
            &user(&su, "s", &sys, json!({})),
            Some(&su),
            "SUB r 1\r\n",
        );
        let a2 = account(&a, "A2", &op, json!({"tags": ["x"]}));
        let b_jwt = account(&b, "B", &op, json!({}));
        let mut replies = Vec::new();
        for (subject, body) in [
            ("$SYS.REQ.CLAIMS.UPDATE".to_string(), a2.clone()),
            (
                format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", b.public_key()),
                b_jwt.clone(),
            ),
            ("$SYS.REQ.CLAIMS.LIST".to_string(), String::new()),
        ] {
            s.write_all(format!("PUB {subject} r {}\r\n{body}\r\nPING\r\n", body.len()).as_bytes())
                .unwrap();
            // Replies may take a while (the reference looks unknown accounts up
            // first): PING until one comes or 4 s pass.
            let mut got = support::client::until_pong(&mut s);
            for _ in 0..13 {
                if got.contains("MSG r ") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
                s.write_all(b"PING\r\n").unwrap();
                got += &support::client::until_pong(&mut s);
            }
            // The payload of the reply, if any, without the server object.
            let payload = got
                .split("\r\n")
                .find(|l| l.starts_with('{'))
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("server");
                    if let Some(list) = v["data"].as_array_mut() {
                        list.sort_by_key(|k| k.as_str().unwrap_or("").to_string());
                    }
                    v.to_string()
                })
                .unwrap_or_else(|| "no reply".into());
            replies.push(payload);
        }
        assert_eq!(login(&b), VIOLATION, "{kind:?}: B was skipped");
        assert_eq!(login(&a), "PONG\r\n", "{kind:?}");
        let [ua, pb, list] = &replies[..] else {
            unreachable!()
        };
        // nats-server 2.15.1 answers these updates only now and then (each seen
        // answered and unanswered in successive runs, 4 s allowed); natrium always
        // answers, with the reference's words when it does.
        for (r, words) in [(ua, "jwt updated cache"), (pb, "jwt update cache skipped")] {
            if kind == Kind::Natrium || r != "no reply" {
                assert!(r.contains(words), "{kind:?}: {r}");
            }
        }
        if kind == Kind::Natrium || list != "no reply" {
            assert!(list.contains(&a.public_key()), "{kind:?}: {list}");
        }
        // Keys differ between runs: compare with them replaced.
        // The listed accounts, named, when answered.
        let mut listed: Vec<String> = serde_json::from_str::<serde_json::Value>(list)
            .ok()
            .and_then(|v| v["data"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k.as_str())
            .map(|k| {
                [(&sys, "SYS"), (&a, "A"), (&b, "B")]
                    .iter()
                    .find(|(p, _)| p.public_key() == k)
                    .map_or(k.to_string(), |(_, n)| n.to_string())
            })
            .collect();
        listed.sort();
        seen.push(listed);
    }
    if seen.len() == 2 && !seen[1].is_empty() {
        assert_eq!(seen[0], seen[1]);
    }
}

/// The URL resolver over `https://`, the server checked against `resolver_tls`'s
/// `ca_file`: accounts are fetched and work, on both servers.
#[test]
fn url_resolver_fetches_over_https_with_resolver_tls() {
    use rustls::pki_types::pem::PemObject;
    let dir = TempDir::new("jwturl-tls");
    let ca = support::pki::Ca::new("resolver CA");
    ca.write(&dir.0, "ca.pem");
    ca.issue(&dir.0, "http", "localhost", &["localhost", "127.0.0.1"]);
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(dir.path("http.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.path("http-key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let op = KeyPair::new_operator();
    let (sys, a) = (KeyPair::new_account(), KeyPair::new_account());
    let op_jwt = operator(&op, "OP", json!({"system_account": sys.public_key()}));
    std::fs::write(dir.path("op.jwt"), &op_jwt).unwrap();
    let answers: std::collections::HashMap<String, Answer> = [
        (
            sys.public_key(),
            Answer::Jwt(account(&sys, "SYS", &op, json!({}))),
        ),
        (
            a.public_key(),
            Answer::Jwt(account(&a, "A", &op, json!({}))),
        ),
    ]
    .into_iter()
    .collect();
    let https = account_server_with(answers, Some(std::sync::Arc::new(cfg)));
    let conf = dir.write_string(
        "url.conf",
        &format!(
            "operator: \"{}\"\nresolver: URL(\"https://127.0.0.1:{}/jwt/v1/accounts/\")\n\
             resolver_tls {{ ca_file: \"{}\" }}\n",
            dir.path("op.jwt").display(),
            https.port,
            dir.path("ca.pem").display()
        ),
    );
    for server in servers(&conf) {
        let u = KeyPair::new_user();
        let got = session(
            server.port,
            &user(&u, "u", &a, json!({})),
            Some(&u),
            "SUB a.b 1\r\nPUB a.b 2\r\nhi\r\n",
        );
        assert_eq!(got, "MSG a.b 1 2\r\nhi\r\nPONG\r\n", "{:?}", server.kind);
    }
    // Without the CA the resolver's certificate is not trusted: no start.
    let untrusted = dir.write_string(
        "untrusted.conf",
        &format!(
            "operator: \"{}\"\nresolver: URL(\"https://127.0.0.1:{}/jwt/v1/accounts/\")\n",
            dir.path("op.jwt").display(),
            https.port
        ),
    );
    for (bin, err) in support::refused_start(&untrusted) {
        assert!(err.contains("could not fetch"), "{bin:?}: {err}");
    }
}
