//! Raw-socket client protocol tests: exact wire bytes, errors and close behaviour, split
//! writes, and the same checks with publisher and subscribers on different client shards.
//!
//! Run against the reference with `NATRIUM_TEST_AS_NATS_SERVER=1`.

#[path = "support/shards.rs"]
mod shards;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use shards::{raw_by_shard, raw_pair, RawConn, RawMsg};
use support::Server;

const QUIET: &str = r#"{"verbose":false}"#;
const QUIET_HDR: &str = r#"{"verbose":false,"headers":true}"#;

fn quiet(server: &Server) -> RawConn {
    RawConn::connect(&server.addr(), QUIET)
}

/// Reads messages until one on subject `done` arrives; returns the ones before it.
fn until_done(c: &mut RawConn) -> Vec<RawMsg> {
    let mut out = Vec::new();
    loop {
        let m = c.read_msg();
        if m.subject == "done" {
            return out;
        }
        out.push(m);
    }
}

fn payloads(msgs: &[RawMsg]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// INFO and handshake
// ---------------------------------------------------------------------------------------

#[test]
fn info_line_shape() {
    let server = Server::natrium(&[]);
    let c = RawConn::open(&server.addr());
    let line = &c.info_line;
    assert!(
        line.starts_with(b"INFO {"),
        "{:?}",
        String::from_utf8_lossy(line)
    );
    assert!(
        line.ends_with(b"} \r\n"),
        "{:?}",
        String::from_utf8_lossy(line)
    );
    let info = &c.info;
    let id = info["server_id"].as_str().expect("server_id");
    assert_eq!(id.len(), 56, "server_id {id}");
    assert!(id.starts_with('N'), "server_id {id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "server_id {id}"
    );
    assert!(info["server_name"].is_string());
    assert!(
        info["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "{info}"
    );
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1048576);
    assert!(
        info["client_id"].as_u64().is_some_and(|id| id > 0),
        "{info}"
    );
    assert_eq!(info["client_ip"], "127.0.0.1");
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"], server.port);
    assert!(info.get("auth_required").is_none(), "{info}");
    assert!(info.get("tls_required").is_none(), "{info}");

    // Every connection gets a distinct client id; the server id is the same.
    let c2 = RawConn::open(&server.addr());
    assert_ne!(c2.client_id(), c.client_id());
    assert_eq!(c2.info["server_id"], c.info["server_id"]);
}

#[test]
fn connect_empty_is_verbose() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {}\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"PING\r\n");
    c.expect(b"PONG\r\n");
}

#[test]
fn ping_pong() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"PING\r\n");
    c.expect(b"PONG\r\n");
    c.send(b"ping\r\nPING\r\nPiNg\r\n");
    c.expect(b"PONG\r\nPONG\r\nPONG\r\n");
}

#[test]
fn connect_info_after_first_ping_with_protocol_1() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let line = c.read_line();
    assert!(line.starts_with(b"INFO {") && line.ends_with(b"} \r\n"));
    let info: serde_json::Value = serde_json::from_slice(&line[5..line.len() - 2]).unwrap();
    assert_eq!(info["connect_info"], true, "{info}");
    assert_eq!(info["remote_account"], "$G", "{info}");
    // Only once.
    c.send(b"PING\r\n");
    c.expect(b"PONG\r\n");
    c.ping();
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

#[test]
fn sub_pub_exact_bytes() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\n");
    c.expect(b"MSG foo 1 2\r\nhi\r\n");
    c.send(b"PUB foo bar 5\r\nhello\r\n");
    c.expect(b"MSG foo 1 bar 5\r\nhello\r\n");
    c.send(b"PUB foo 0\r\n\r\n");
    c.expect(b"MSG foo 1 0\r\n\r\n");
    // Payload bytes are opaque, CRLF included.
    c.send(b"PUB foo 6\r\na\r\nb\r\n\r\n");
    c.expect(b"MSG foo 1 6\r\na\r\nb\r\n\r\n");
    // Nothing else pending.
    c.ping();
}

#[test]
fn sub_pub_between_connections_exact_bytes() {
    let server = Server::natrium(&[]);
    let mut sub = quiet(&server);
    let mut publ = quiet(&server);
    sub.send(b"SUB foo.bar 7\r\n");
    sub.ping();
    publ.send(b"PUB foo.bar reply.to 3\r\nabc\r\n");
    publ.ping();
    sub.expect(b"MSG foo.bar 7 reply.to 3\r\nabc\r\n");
    sub.ping();
}

#[test]
fn hpub_hmsg_exact_bytes() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::connect(&server.addr(), QUIET_HDR);
    c.send(b"SUB foo 1\r\nHPUB foo 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n");
    c.expect(b"HMSG foo 1 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n");
    c.send(b"HPUB foo rep 12 12\r\nNATS/1.0\r\n\r\n\r\n");
    c.expect(b"HMSG foo 1 rep 12 12\r\nNATS/1.0\r\n\r\n\r\n");
    // hdr == 0 is a plain message.
    c.send(b"HPUB foo 0 2\r\nhi\r\n");
    c.expect(b"MSG foo 1 2\r\nhi\r\n");
    c.ping();
}

#[test]
fn hmsg_to_subscriber_without_headers_is_stripped() {
    let server = Server::natrium(&[]);
    let mut sub = quiet(&server);
    let mut publ = RawConn::connect(&server.addr(), QUIET_HDR);
    sub.send(b"SUB foo 1\r\n");
    sub.ping();
    publ.send(b"HPUB foo 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n");
    publ.ping();
    sub.expect(b"MSG foo 1 2\r\nhi\r\n");
    sub.ping();
}

#[test]
fn verbose_ok_before_msg() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {}\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"SUB foo 1\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"PUB foo 2\r\nhi\r\n");
    c.expect(b"+OK\r\nMSG foo 1 2\r\nhi\r\n");
    c.send(b"UNSUB 1\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"PUB foo 2\r\nhi\r\n");
    c.expect(b"+OK\r\n");
    // Unknown sid: still +OK.
    c.send(b"UNSUB 99\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"PING\r\n");
    c.expect(b"PONG\r\n");
}

#[test]
fn case_insensitive_ops_and_tabs() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"sub\tfoo \t 1\r\npub foo\t2\r\nhi\r\nPub foo 2\r\nyo\r\n");
    c.expect(b"MSG foo 1 2\r\nhi\r\nMSG foo 1 2\r\nyo\r\n");
    c.send(b"unsub 1\r\nPUB foo 2\r\nhi\r\n");
    c.ping();
}

#[test]
fn split_writes() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    let all = b"SUB foo 1\r\nPUB foo 5\r\nhello\r\nHPUB".to_vec();
    // Byte by byte, each its own segment (nodelay + a short pause).
    for b in &all[..all.len() - 4] {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.expect(b"MSG foo 1 5\r\nhello\r\n");
    // Control line and payload split in odd places.
    for piece in [
        &b"PU"[..],
        b"B foo 1",
        b"0\r\n0123",
        b"456789\r",
        b"\nPUB foo 2\r\nh",
        b"i\r\n",
    ] {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    c.expect(b"MSG foo 1 10\r\n0123456789\r\nMSG foo 1 2\r\nhi\r\n");
    // Many operations in one write.
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(format!("PUB foo {}\r\n{}\r\n", i.to_string().len(), i).as_bytes());
    }
    c.send(&batch);
    let mut expected = Vec::new();
    for i in 0..100 {
        expected.extend_from_slice(
            format!("MSG foo 1 {}\r\n{}\r\n", i.to_string().len(), i).as_bytes(),
        );
    }
    c.expect(&expected);
    c.ping();
}

#[test]
fn bare_newline_terminators_accepted() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {\"verbose\":false}\nSUB foo 1\nPUB foo 2\nhi\r\nPING\n");
    c.expect(b"MSG foo 1 2\r\nhi\r\nPONG\r\n");
}

#[test]
fn wildcard_matching() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"SUB a.* 1\r\nSUB a.> 2\r\nSUB > 3\r\nSUB a.*.c 4\r\nSUB *.b.> 5\r\n");
    c.ping();
    // subject -> sids expected, in subscription order irrelevant: compare as sorted sets.
    let cases: &[(&str, &[&str])] = &[
        ("a", &["3"]),
        ("a.b", &["1", "2", "3"]),
        ("a.b.c", &["2", "3", "4", "5"]),
        ("x.b.c.d", &["3", "5"]),
        ("x.y", &["3"]),
        ("a.b.d", &["2", "3", "5"]),
    ];
    for (subject, sids) in cases {
        c.send(format!("PUB {subject} 1\r\nx\r\nPUB done 0\r\n\r\n").as_bytes());
        // `done` matches only `>` (sid 3).
        let mut got = Vec::new();
        loop {
            let m = c.read_msg();
            if m.subject == "done" {
                assert_eq!(m.sid, "3");
                break;
            }
            assert_eq!(&m.subject, subject);
            assert_eq!(m.payload, b"x");
            got.push(m.sid);
        }
        got.sort();
        assert_eq!(&got, sids, "subject {subject}");
    }
    c.ping();
}

#[test]
fn two_matching_subs_get_two_copies_and_duplicate_sid_is_ignored() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"SUB foo 1\r\nSUB foo 1\r\nSUB bar 1\r\nSUB f* 2\r\nSUB foo 2\r\n");
    c.ping();
    c.send(b"PUB bar 1\r\nx\r\nPUB foo 1\r\ny\r\nPUB done 0\r\n\r\n");
    c.send(b"SUB done 9\r\nPUB done 0\r\n\r\n");
    let msgs = until_done(&mut c);
    // Duplicate sids are ignored: sid 1 stays on foo, sid 2 stays on `f*` (literal).
    let mut got: Vec<(String, String)> = msgs
        .iter()
        .map(|m| (m.subject.clone(), m.sid.clone()))
        .collect();
    got.sort();
    assert_eq!(got, vec![("foo".to_string(), "1".to_string())]);
}

#[test]
fn unsub_with_max() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"SUB foo 1\r\nSUB done 2\r\nUNSUB 1 3\r\n");
    for i in 0..10 {
        c.send(format!("PUB foo 1\r\n{i}\r\n").as_bytes());
    }
    c.send(b"PUB done 0\r\n\r\n");
    assert_eq!(payloads(&until_done(&mut c)), ["0", "1", "2"]);
    // UNSUB with max <= delivered unsubscribes at once.
    c.send(b"SUB bar 3\r\nPUB bar 1\r\na\r\nPUB bar 1\r\nb\r\nUNSUB 3 1\r\nPUB bar 1\r\nc\r\nPUB done 0\r\n\r\n");
    assert_eq!(payloads(&until_done(&mut c)), ["a", "b"]);
    c.ping();
}

#[test]
fn queue_group_on_one_connection_delivers_once() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"SUB foo q 1\r\nSUB foo q 2\r\nSUB foo q 3\r\nSUB foo 4\r\nSUB foo other 5\r\nSUB done 9\r\n");
    let n = 300;
    for i in 0..n {
        c.send(format!("PUB foo {}\r\n{i}\r\n", i.to_string().len()).as_bytes());
    }
    c.send(b"PUB done 0\r\n\r\n");
    let msgs = until_done(&mut c);
    let mut by_sid: HashMap<String, Vec<String>> = HashMap::new();
    for m in &msgs {
        by_sid
            .entry(m.sid.clone())
            .or_default()
            .push(String::from_utf8(m.payload.clone()).unwrap());
    }
    let all: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(by_sid["4"], all, "plain sub sees everything in order");
    assert_eq!(by_sid["5"], all, "single-member group sees everything");
    let mut q: Vec<u32> = ["1", "2", "3"]
        .iter()
        .flat_map(|s| by_sid.get(*s).cloned().unwrap_or_default())
        .map(|p| p.parse().unwrap())
        .collect();
    q.sort();
    assert_eq!(
        q,
        (0..n).collect::<Vec<u32>>(),
        "group q got each message exactly once"
    );
    for s in ["1", "2", "3"] {
        assert!(
            by_sid.get(s).is_some_and(|v| v.len() >= 20),
            "member {s} starved: {:?}",
            by_sid.get(s).map(|v| v.len())
        );
    }
}

#[test]
fn no_echo() {
    let server = Server::natrium(&[]);
    let mut a = RawConn::connect(&server.addr(), r#"{"verbose":false,"echo":false}"#);
    let mut b = quiet(&server);
    a.send(b"SUB foo 1\r\n");
    a.ping();
    b.send(b"SUB foo 1\r\n");
    b.ping();
    a.send(b"PUB foo 4\r\nfrom\r\n");
    a.ping();
    b.send(b"PUB foo 2\r\nhi\r\n");
    a.expect(b"MSG foo 1 2\r\nhi\r\n");
    a.ping();
    let got = vec![b.read_msg(), b.read_msg()];
    assert_eq!(payloads(&got), ["from", "hi"]);
    b.ping();
}

#[test]
fn no_responders_exact_bytes() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::connect(
        &server.addr(),
        r#"{"verbose":false,"headers":true,"no_responders":true}"#,
    );
    c.send(b"SUB inbox.1 5\r\nPUB svc.x inbox.1 3\r\nreq\r\n");
    // L = 32 + len("svc.x")
    c.expect(b"HMSG inbox.1 5 37 37\r\nNATS/1.0 503\r\nNats-Subject: svc.x\r\n\r\n\r\n");
    // Without no_responders: nothing.
    let mut d = RawConn::connect(&server.addr(), QUIET_HDR);
    d.send(b"SUB inbox.2 1\r\nPUB svc.x inbox.2 3\r\nreq\r\n");
    d.ping();
}

// ---------------------------------------------------------------------------------------
// Errors and close behaviour
// ---------------------------------------------------------------------------------------

#[test]
fn err_bad_payload_terminator_closes() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"PUB foo 2\r\nhello\r\n");
    c.expect(b"-ERR 'Unknown Protocol Operation'\r\n");
    c.expect_closed();
}

#[test]
fn err_unknown_op_closes() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    c.send(b"FOO bar\r\n");
    c.expect(b"-ERR 'Unknown Protocol Operation'\r\n");
    c.expect_closed();

    let mut c = quiet(&server);
    c.send(b"MSG foo 1 2\r\nhi\r\n");
    c.expect(b"-ERR 'Unknown Protocol Operation'\r\n");
    c.expect_closed();

    // An op needing arguments must have a separator after its name.
    for bad in [
        &b" PING\r\n"[..],
        b"SUB\r\n",
        b"UNSUB\r\n",
        b"PUBfoo 1\r\n",
        b"\r\n",
    ] {
        let mut c = quiet(&server);
        c.send(bad);
        c.expect(b"-ERR 'Unknown Protocol Operation'\r\n");
        c.expect_closed();
    }
}

#[test]
fn err_invalid_subject_keeps_connection() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {}\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"SUB foo..bar 1\r\n");
    c.expect(b"-ERR 'Invalid Subject'\r\n");
    c.send(b"SUB foo.>.bar 2\r\n");
    c.expect(b"-ERR 'Invalid Subject'\r\n");
    c.send(b"SUB foo 3\r\n");
    c.expect(b"+OK\r\n");
    c.send(b"PUB foo 2\r\nhi\r\n");
    c.expect(b"+OK\r\nMSG foo 3 2\r\nhi\r\n");
    c.send(b"PING\r\n");
    c.expect(b"PONG\r\n");
}

#[test]
fn err_max_payload_closes() {
    let server = Server::natrium(&[]);
    // Exactly max_payload is accepted.
    let mut c = quiet(&server);
    let payload = vec![b'x'; 1048576];
    c.send(b"SUB big 1\r\nPUB big 1048576\r\n");
    c.send(&payload);
    c.send(b"\r\n");
    let m = c.read_msg();
    assert_eq!(m.subject, "big");
    assert_eq!(m.payload.len(), 1048576);
    assert!(m.payload == payload);
    c.ping();

    let mut c = quiet(&server);
    c.send(b"PUB foo 1048577\r\n");
    c.expect(b"-ERR 'Maximum Payload Violation'\r\n");
    c.expect_closed();

    let mut c = RawConn::connect(&server.addr(), QUIET_HDR);
    c.send(b"HPUB foo 12 1048577\r\n");
    c.expect(b"-ERR 'Maximum Payload Violation'\r\n");
    c.expect_closed();
}

#[test]
fn err_max_control_line_closes() {
    let server = Server::natrium(&[]);
    let mut c = quiet(&server);
    let subject = "a".repeat(5000);
    c.send(format!("SUB {subject} 1\r\n").as_bytes());
    c.expect(b"-ERR 'maximum control line exceeded'\r\n");
    c.expect_closed();
}

#[test]
fn bad_sizes_and_args_close_without_err() {
    let server = Server::natrium(&[]);
    for bad in [
        &b"PUB foo -1\r\n"[..],
        b"PUB foo 0000000001\r\n",
        b"PUB foo x\r\n",
        b"PUB a b c 1\r\n",
        b"PUB a\r\n",
        b"SUB a\r\n",
        b"SUB a b c d\r\n",
        b"UNSUB a b c\r\n",
    ] {
        let mut c = quiet(&server);
        c.send(bad);
        eprintln!("case {:?}", String::from_utf8_lossy(bad));
        c.expect_closed();
    }
}

#[test]
fn bad_connect_json_closes_without_err() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {not json\r\n");
    c.expect_closed();
}

#[test]
fn hpub_without_headers_closes_without_err() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::connect(&server.addr(), r#"{"verbose":false,"headers":false}"#);
    c.send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    c.expect_closed();
}

#[test]
fn err_invalid_client_protocol() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {\"verbose\":false,\"protocol\":2}\r\n");
    c.expect(b"-ERR 'invalid client protocol'\r\n");
    c.expect_closed();
}

#[test]
fn err_no_responders_requires_headers() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::open(&server.addr());
    c.send(b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n");
    c.expect(b"-ERR 'no responders requires headers support'\r\n");
    c.expect_closed();
}

#[test]
fn pedantic_invalid_publish_subject_still_delivered() {
    let server = Server::natrium(&[]);
    let mut c = RawConn::connect(&server.addr(), r#"{"verbose":false,"pedantic":true}"#);
    c.send(b"SUB > 1\r\nPUB foo.* 2\r\nhi\r\n");
    c.expect(b"-ERR 'Invalid Publish Subject'\r\nMSG foo.* 1 2\r\nhi\r\n");
    c.ping();
    let mut c = RawConn::connect(&server.addr(), r#"{"verbose":false,"pedantic":false}"#);
    c.send(b"SUB > 1\r\nPUB foo.* 2\r\nhi\r\n");
    c.expect(b"MSG foo.* 1 2\r\nhi\r\n");
    c.ping();
}

// ---------------------------------------------------------------------------------------
// Cross-shard: publisher on one shard, subscribers on the other, both directions.
// ---------------------------------------------------------------------------------------

const DIRECTIONS: [(usize, usize); 2] = [(0, 1), (1, 0)];

#[test]
fn cross_shard_exact_bytes() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (mut publ, mut sub) = raw_pair(&server, p, s, QUIET_HDR);
        sub.send(b"SUB foo.bar 7\r\nSUB foo.* 8\r\n");
        sub.ping();
        publ.send(b"PUB foo.bar reply.to 3\r\nabc\r\n");
        publ.send(b"HPUB foo.bar 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n");
        publ.ping();
        let mut frames = Vec::new();
        for _ in 0..4 {
            frames.push(String::from_utf8(sub.read_frame()).unwrap());
        }
        // Per message the two subscriptions may come in either order; messages stay in order.
        frames[0..2].sort();
        frames[2..4].sort();
        assert_eq!(
            frames,
            [
                "MSG foo.bar 7 reply.to 3\r\nabc\r\n",
                "MSG foo.bar 8 reply.to 3\r\nabc\r\n",
                "HMSG foo.bar 7 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n",
                "HMSG foo.bar 8 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n",
            ],
            "publisher shard {p}, subscriber shard {s}"
        );
        sub.ping();
    }
}

#[test]
fn cross_shard_fanout_ordered_exact_counts() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        // Publisher on shard p; three subscribers on shard s and one beside the publisher.
        let mut need = [0, 0];
        need[p] += 2;
        need[s] += 3;
        let mut conns = raw_by_shard(&server, need, QUIET);
        let mut publ = conns[p].pop().unwrap();
        let mut subs: Vec<RawConn> = std::mem::take(&mut conns[s]);
        subs.append(&mut conns[p]);
        for c in subs.iter_mut() {
            c.send(b"SUB fan.* 1\r\nSUB done 2\r\n");
            c.ping();
        }
        let n = 500;
        let mut batch = Vec::new();
        for i in 0..n {
            batch.extend_from_slice(
                format!("PUB fan.x {}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
            );
        }
        batch.extend_from_slice(b"PUB done 0\r\n\r\n");
        publ.send(&batch);
        let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        for (k, c) in subs.iter_mut().enumerate() {
            let msgs = until_done(c);
            assert_eq!(
                payloads(&msgs),
                expected,
                "subscriber {k} (publisher shard {p})"
            );
            assert!(msgs.iter().all(|m| m.subject == "fan.x" && m.sid == "1"));
            c.ping();
        }
    }
}

#[test]
fn cross_shard_queue_group_exactly_once() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        // Publisher on p; two members on s, one member on p.
        let mut need = [0, 0];
        need[p] += 2;
        need[s] += 2;
        let mut conns = raw_by_shard(&server, need, QUIET);
        let mut publ = conns[p].pop().unwrap();
        let mut members: Vec<RawConn> = std::mem::take(&mut conns[s]);
        members.append(&mut conns[p]);
        for c in members.iter_mut() {
            c.send(b"SUB work q 1\r\nSUB done 2\r\n");
            c.ping();
        }
        let n = 600u32;
        let mut batch = Vec::new();
        for i in 0..n {
            batch.extend_from_slice(
                format!("PUB work {}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
            );
        }
        batch.extend_from_slice(b"PUB done 0\r\n\r\n");
        publ.send(&batch);
        let mut all = Vec::new();
        for (k, c) in members.iter_mut().enumerate() {
            let got: Vec<u32> = payloads(&until_done(c))
                .iter()
                .map(|p| p.parse().unwrap())
                .collect();
            assert!(
                got.len() >= 30,
                "member {k} got only {} of {n} (publisher shard {p})",
                got.len()
            );
            // Each member sees its share in publish order.
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "member {k} out of order"
            );
            all.extend(got);
            c.ping();
        }
        all.sort();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "each message exactly once (publisher shard {p})"
        );
    }
}

#[test]
fn cross_shard_request_reply() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (mut req, mut svc) = raw_pair(&server, p, s, QUIET);
        svc.send(b"SUB svc.echo 1\r\n");
        svc.ping();
        req.send(b"SUB _INBOX.abc 9\r\n");
        for i in 0..50 {
            let body = format!("req{i}");
            req.send(format!("PUB svc.echo _INBOX.abc {}\r\n{body}\r\n", body.len()).as_bytes());
            let m = svc.read_msg();
            assert_eq!(m.subject, "svc.echo");
            assert_eq!(m.reply.as_deref(), Some("_INBOX.abc"));
            assert_eq!(m.payload, body.as_bytes());
            let resp = format!("resp{i}");
            svc.send(format!("PUB _INBOX.abc {}\r\n{resp}\r\n", resp.len()).as_bytes());
            req.expect(format!("MSG _INBOX.abc 9 {}\r\n{resp}\r\n", resp.len()).as_bytes());
        }
        req.ping();
        svc.ping();
    }
}

#[test]
fn cross_shard_no_responders_after_unsub() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (mut req, mut svc) = raw_pair(
            &server,
            p,
            s,
            r#"{"verbose":false,"headers":true,"no_responders":true}"#,
        );
        svc.send(b"SUB svc 1\r\n");
        svc.ping();
        req.send(b"SUB inbox 1\r\nPUB svc inbox 1\r\nx\r\n");
        svc.expect(b"MSG svc 1 inbox 1\r\nx\r\n");
        svc.send(b"UNSUB 1\r\n");
        svc.ping();
        req.send(b"PUB svc inbox 1\r\ny\r\n");
        req.expect(b"HMSG inbox 1 35 35\r\nNATS/1.0 503\r\nNats-Subject: svc\r\n\r\n\r\n");
        req.ping();
        svc.ping();
    }
}

#[test]
fn cross_shard_unsub_stops_delivery() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (mut publ, mut sub) = raw_pair(&server, p, s, QUIET);
        sub.send(b"SUB foo 1\r\nSUB done 2\r\n");
        sub.ping();
        publ.send(b"PUB foo 1\r\na\r\nPUB done 0\r\n\r\n");
        assert_eq!(payloads(&until_done(&mut sub)), ["a"]);
        sub.send(b"UNSUB 1\r\n");
        sub.ping();
        publ.send(b"PUB foo 1\r\nb\r\nPUB done 0\r\n\r\n");
        assert_eq!(
            payloads(&until_done(&mut sub)),
            Vec::<String>::new(),
            "delivered after UNSUB"
        );
        // Auto-unsubscribe after a count, across shards.
        sub.send(b"SUB bar 3\r\nUNSUB 3 4\r\n");
        sub.ping();
        let mut batch = Vec::new();
        for i in 0..10 {
            batch.extend_from_slice(format!("PUB bar 1\r\n{i}\r\n").as_bytes());
        }
        batch.extend_from_slice(b"PUB done 0\r\n\r\n");
        publ.send(&batch);
        assert_eq!(payloads(&until_done(&mut sub)), ["0", "1", "2", "3"]);
        publ.send(b"PUB bar 1\r\nz\r\nPUB done 0\r\n\r\n");
        assert_eq!(payloads(&until_done(&mut sub)), Vec::<String>::new());
        sub.ping();
        publ.ping();
    }
}

#[test]
fn cross_shard_no_echo() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let mut need = [0, 0];
        need[p] += 1;
        need[s] += 1;
        let mut ne = raw_by_shard(&server, need, r#"{"verbose":false,"echo":false}"#);
        let mut a = ne[p].pop().unwrap(); // no_echo publisher on p
        let mut b = ne[s].pop().unwrap(); // no_echo subscriber on s
        a.send(b"SUB foo 1\r\nSUB done 2\r\n");
        a.ping();
        b.send(b"SUB foo 1\r\nSUB done 2\r\n");
        b.ping();
        a.send(b"PUB foo 1\r\na\r\nPUB done 0\r\n\r\n");
        b.send(b"PUB foo 1\r\nb\r\nPUB done 0\r\n\r\n");
        // a: only b's message, then b's done (a's own done is not echoed).
        assert_eq!(payloads(&until_done(&mut a)), ["b"]);
        // b: a's message and a's done; then nothing from itself.
        assert_eq!(payloads(&until_done(&mut b)), ["a"]);
        a.ping();
        b.ping();
    }
}

#[test]
fn cross_shard_wildcards() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (mut publ, mut sub) = raw_pair(&server, p, s, QUIET);
        sub.send(b"SUB a.* 1\r\nSUB a.> 2\r\nSUB *.b.c 3\r\nSUB done 9\r\n");
        sub.ping();
        publ.send(b"PUB a 1\r\n0\r\nPUB a.b 1\r\n1\r\nPUB a.b.c 1\r\n2\r\nPUB x.b.c 1\r\n3\r\nPUB x.b 1\r\n4\r\nPUB done 0\r\n\r\n");
        let mut got: Vec<(String, String, String)> = until_done(&mut sub)
            .into_iter()
            .map(|m| (m.subject, m.sid, String::from_utf8(m.payload).unwrap()))
            .collect();
        got.sort();
        let want: Vec<(String, String, String)> = [
            ("a.b", "1", "1"),
            ("a.b", "2", "1"),
            ("a.b.c", "2", "2"),
            ("a.b.c", "3", "2"),
            ("x.b.c", "3", "3"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        assert_eq!(got, want, "publisher shard {p}");
        sub.ping();
    }
}
