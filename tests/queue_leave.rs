//! Queue groups while members leave (issue #20): a message chosen for a member that has
//! gone by the time it arrives goes to another member of the group, never to nobody
//! while one remains. Members sit on different client shards, so the publisher's shard
//! picks from a replica that lags the member's own shard by a ring hop.
//!
//! Every scenario asserts exact counts: each message reaches exactly one member, and
//! each member sees its share in publish order. Run against the reference with
//! `NATRIUM_TEST_AS_NATS_SERVER=1`.

#[path = "support/shards.rs"]
mod shards;
mod support;

use std::time::{Duration, Instant};

use shards::{raw_by_shard, raw_pair, RawConn};
use support::{http_get_json, Kind, Monitored, Server};

const QUIET: &str = r#"{"verbose":false}"#;

/// `n` PUBs on `subject` with payloads `0..n`, as one write.
fn batch(subject: &str, n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = i.to_string();
        out.extend_from_slice(format!("PUB {subject} {}\r\n{body}\r\n", body.len()).as_bytes());
    }
    out
}

/// Reads frames until PONG, returning the payloads of the messages before it.
fn until_pong(c: &mut RawConn, into: &mut Vec<u32>) {
    loop {
        let frame = c.read_frame();
        if frame == b"PONG\r\n" {
            return;
        }
        into.push(payload_of(&frame));
    }
}

/// The numeric payload of one raw MSG frame.
fn payload_of(frame: &[u8]) -> u32 {
    assert!(
        frame.starts_with(b"MSG "),
        "not a MSG: {:?}",
        String::from_utf8_lossy(frame)
    );
    let end = frame.windows(2).position(|w| w == b"\r\n").unwrap();
    let body = &frame[end + 2..frame.len() - 2];
    std::str::from_utf8(body).unwrap().parse().unwrap()
}

/// Together the members hold `0..n` exactly once; each member's list is in publish
/// order when `ordered`.
fn assert_once(n: u32, members: &[&[u32]], ordered: bool, what: &str) {
    for (k, got) in members.iter().enumerate() {
        let mut sorted = got.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            got.len(),
            "{what}: member {k} got a message twice"
        );
        if ordered {
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "{what}: member {k} out of publish order"
            );
        }
    }
    let mut all: Vec<u32> = members.iter().flat_map(|m| m.iter().copied()).collect();
    all.sort_unstable();
    let counts: Vec<usize> = members.iter().map(|m| m.len()).collect();
    if all != (0..n).collect::<Vec<_>>() {
        let mut seen = vec![0u32; n as usize];
        for v in &all {
            seen[*v as usize] += 1;
        }
        let lost = seen.iter().filter(|&&c| c == 0).count();
        let twice = seen.iter().filter(|&&c| c > 1).count();
        panic!("{what}: members got {counts:?} of {n}: {lost} lost, {twice} more than once");
    }
}

/// Exactly once and in publish order per member.
fn assert_exactly_once(n: u32, members: &[&[u32]], what: &str) {
    assert_once(n, members, true, what);
}

/// The nats.js drain test, as the issue reports it: A and B in one queue group on
/// different shards; B publishes `n`; A drains (UNSUB + PING) on its first message; B
/// drains after publishing. Everything reaches A or B before their PONGs.
fn drain_round(a: &mut RawConn, b: &mut RawConn, round: u32, n: u32) {
    let subject = format!("drain.{round}");
    for c in [&mut *a, &mut *b] {
        c.send(format!("SUB {subject} q1 {round}\r\n").as_bytes());
        c.ping();
    }
    let mut got_b = Vec::new();
    let got_a = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut got = Vec::new();
            let first = a.read_frame();
            got.push(payload_of(&first));
            a.send(format!("UNSUB {round}\r\nPING\r\n").as_bytes());
            until_pong(a, &mut got);
            got
        });
        let mut out = batch(&subject, n);
        out.extend_from_slice(format!("UNSUB {round}\r\nPING\r\n").as_bytes());
        b.send(&out);
        until_pong(b, &mut got_b);
        reader.join().unwrap()
    });
    assert_exactly_once(n, &[&got_a, &got_b], &format!("drain round {round}"));
}

#[test]
fn drain_while_publishing_loses_nothing() {
    let server = Server::natrium(&[]);
    // Both directions: the draining member on shard 0 and on shard 1.
    for (sa, sb) in [(0, 1), (1, 0)] {
        let (mut a, mut b) = raw_pair(&server, sa, sb, QUIET);
        for round in 0..100 {
            drain_round(&mut a, &mut b, round, 1000);
        }
    }
}

/// Auto-unsubscribe: A takes exactly `max` then leaves by itself; the messages its
/// shard gets for it afterwards go to B.
#[test]
fn auto_unsubscribe_member_hands_over_the_rest() {
    let server = Server::natrium(&[]);
    for (sa, sb) in [(0, 1), (1, 0)] {
        let (mut a, mut b) = raw_pair(&server, sa, sb, QUIET);
        let mut publ = {
            let mut need = [0, 0];
            need[sb] = 1;
            raw_by_shard(&server, need, QUIET)[sb].remove(0)
        };
        for round in 0..50u32 {
            let subject = format!("auto.{round}");
            let max = 1 + round % 7;
            a.send(format!("SUB {subject} q {round}\r\nUNSUB {round} {max}\r\n").as_bytes());
            a.ping();
            b.send(format!("SUB {subject} q {round}\r\n").as_bytes());
            b.ping();
            let n = 500;
            let mut out = batch(&subject, n);
            out.extend_from_slice(b"PING\r\n");
            publ.send(&out);
            publ.expect(b"PONG\r\n");
            let mut got_a = Vec::new();
            let mut got_b = Vec::new();
            a.send(b"PING\r\n");
            until_pong(&mut a, &mut got_a);
            b.send(format!("UNSUB {round}\r\nPING\r\n").as_bytes());
            until_pong(&mut b, &mut got_b);
            let what = format!("auto-unsubscribe round {round}");
            assert_eq!(got_a.len() as u32, max, "{what}: A must get exactly max");
            assert!(
                got_a.windows(2).all(|w| w[0] < w[1]),
                "{what}: A out of order"
            );
            // B's order is not asserted: what the publisher's shard chose for A after
            // A's last message was already on its way reaches B later than messages
            // published after it (see the issue note: without loss, exact max and
            // lagging replicas, a handed-over message cannot keep its place).
            assert_once(n, &[&got_a, &got_b], false, &what);
        }
    }
}

/// Members come and go while one publisher publishes: six members on both shards
/// drain one after another, one more joins halfway and stays with the first stayer.
/// Every message reaches exactly one member, in publish order for each.
#[test]
fn members_coming_and_going_lose_nothing() {
    let server = Server::natrium(&[]);
    let [mut s0, mut s1] = raw_by_shard(&server, [5, 4], QUIET);
    let mut publ = s0.pop().unwrap();
    let mut joiner = s1.pop().unwrap();
    let mut members: Vec<RawConn> = Vec::new();
    for _ in 0..3 {
        members.push(s1.remove(0));
        members.push(s0.remove(0));
    }
    members.push(s0.remove(0));
    let stay = members.len() - 1;
    for c in members.iter_mut().chain([&mut joiner]) {
        // Stayers learn the run is over from a plain subscription.
        c.send(b"SUB done 2\r\n");
    }
    for c in members.iter_mut() {
        c.send(b"SUB many q 1\r\n");
        c.ping();
    }
    joiner.ping();
    let n = 3000;
    let (join_tx, join_rx) = std::sync::mpsc::channel::<()>();
    let got: Vec<Vec<u32>> = std::thread::scope(|s| {
        let stayer_loop = |c: &mut RawConn| {
            let mut got = Vec::new();
            loop {
                let frame = c.read_frame();
                if frame.starts_with(b"MSG done ") {
                    return got;
                }
                got.push(payload_of(&frame));
            }
        };
        let mut leavers = Vec::new();
        let mut stayer = None;
        for (k, c) in members.iter_mut().enumerate() {
            if k == stay {
                stayer = Some(s.spawn(move || stayer_loop(c)));
                continue;
            }
            leavers.push(s.spawn(move || {
                // Each drains after a number of messages that grows with k.
                let leave_after = 1 + k * 40;
                let mut got = Vec::new();
                while got.len() < leave_after {
                    got.push(payload_of(&c.read_frame()));
                }
                c.send(b"UNSUB 1\r\nPING\r\n");
                until_pong(c, &mut got);
                got
            }));
        }
        let joined = s.spawn(move || {
            join_rx.recv().unwrap();
            joiner.send(b"SUB many q 1\r\n");
            stayer_loop(&mut joiner)
        });
        // Slow enough that leavers leave and the joiner joins while messages flow.
        for chunk in 0..30 {
            if chunk == 15 {
                join_tx.send(()).unwrap();
            }
            let mut out = Vec::new();
            for i in chunk * 100..(chunk + 1) * 100 {
                let body = i.to_string();
                out.extend_from_slice(format!("PUB many {}\r\n{body}\r\n", body.len()).as_bytes());
            }
            publ.send(&out);
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut out: Vec<Vec<u32>> = leavers.into_iter().map(|h| h.join().unwrap()).collect();
        publ.send(b"PUB done 0\r\n\r\nPING\r\n");
        publ.expect(b"PONG\r\n");
        out.push(stayer.unwrap().join().unwrap());
        out.push(joined.join().unwrap());
        out
    });
    assert!(
        !got.last().unwrap().is_empty(),
        "the member that joined halfway got nothing"
    );
    let refs: Vec<&[u32]> = got.iter().map(|v| v.as_slice()).collect();
    assert_exactly_once(n, &refs, "members coming and going");
}

/// `/connz?state=closed` out_msgs of one closed connection, polled until it is listed.
fn closed_out_msgs(monitor: u16, cid: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc = http_get_json(monitor, "/connz?state=closed&limit=1000");
        let found = doc["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["cid"].as_u64() == Some(cid))
            .map(|c| c["out_msgs"].as_u64().unwrap());
        if let Some(n) = found {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "cid {cid} never listed as closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A member disconnects while messages for it are on their way from the other shard.
/// What the server had queued to it is gone with the connection (as with nats-server),
/// so the server's own count for it (closed connections' out_msgs) plus what B read
/// must be exactly the messages published: none dropped on the way, none twice.
#[test]
fn disconnecting_member_hands_over_what_was_in_flight() {
    let m = Monitored::start(Kind::Natrium, &[]);
    let (server, monitor) = (&m.server, m.http);
    for round in 0..30u32 {
        let (sa, sb) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let (mut a, mut b) = raw_pair(server, sa, sb, QUIET);
        let subject = format!("gone.{round}");
        for c in [&mut a, &mut b] {
            c.send(format!("SUB {subject} q 1\r\n").as_bytes());
            c.ping();
        }
        let a_cid = a.client_id();
        let n = 1000;
        let mut got_b = Vec::new();
        std::thread::scope(|s| {
            s.spawn(move || {
                // Gone on the first message, without UNSUB.
                let _ = a.read_frame();
                a.stream.shutdown(std::net::Shutdown::Both).unwrap();
            });
            let mut out = batch(&subject, n);
            out.extend_from_slice(b"PING\r\n");
            b.send(&out);
            until_pong(&mut b, &mut got_b);
        });
        // Anything still in flight after B's PONG would land before this PONG.
        b.send(b"UNSUB 1\r\nPING\r\n");
        until_pong(&mut b, &mut got_b);
        let to_a = closed_out_msgs(monitor, a_cid);
        // Handed-over messages may arrive after later ones (see the auto-unsubscribe
        // test); none may arrive twice.
        let mut unique = got_b.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            got_b.len(),
            "round {round}: B got a message twice"
        );
        assert_eq!(
            to_a + got_b.len() as u64,
            n as u64,
            "round {round}: server queued {to_a} to A, B read {}",
            got_b.len()
        );
    }
}
