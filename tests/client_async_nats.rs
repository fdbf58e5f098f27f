//! Black-box tests of the core server with the `async-nats` client, including the same
//! scenarios with publishers and subscribers explicitly on different client shards.
//!
//! Run against the reference with `NATRIUM_TEST_AS_NATS_SERVER=1`.

#[path = "support/shards.rs"]
mod shards;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use shards::{nats_by_shard, nats_pair};
use support::Server;

/// Hang protection for every wait (never a timing assertion).
const WAIT: Duration = Duration::from_secs(10);

const DIRECTIONS: [(usize, usize); 2] = [(0, 1), (1, 0)];

async fn connect(server: &Server) -> Client {
    connect_with(server, ConnectOptions::new()).await
}

async fn connect_with(server: &Server, opts: ConnectOptions) -> Client {
    tokio::time::timeout(WAIT, opts.connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

async fn next(sub: &mut Subscriber) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended unexpectedly")
}

/// Waits for the subscription to end (None) and returns the messages before that.
async fn until_end(sub: &mut Subscriber) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return out,
            Err(_) => panic!(
                "subscription did not end; got {} messages so far",
                out.len()
            ),
        }
    }
}

/// Reads until a message with payload `done`; returns the payloads before it.
async fn until_done(sub: &mut Subscriber) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = next(sub).await;
        let p = String::from_utf8(m.payload.to_vec()).unwrap();
        if p == "done" {
            return out;
        }
        out.push(p);
    }
}

/// Messages already buffered on the subscription, without waiting.
fn buffered(sub: &mut Subscriber) -> Vec<Message> {
    let mut out = Vec::new();
    // `unconstrained`: tokio's coop budget would otherwise report Pending after ~128 items.
    while let Some(Some(m)) = tokio::task::unconstrained(sub.next()).now_or_never() {
        out.push(m);
    }
    out
}

/// A round trip through the server on this connection. async-nats' `flush` only writes
/// the socket buffer (no PING/PONG), so this sends a request to a subject nobody listens
/// on and waits for the server's no-responders status (works with no_echo too):
/// afterwards the server has processed everything `c` sent before (SUB, UNSUB, PUB), and
/// every message the server sent `c` before is already in its subscriptions.
async fn sync(c: &Client) {
    let subject = format!("sync.{}", c.new_inbox());
    let err = tokio::time::timeout(WAIT, c.request(subject, Bytes::new()))
        .await
        .expect("sync round trip timed out")
        .expect_err("nobody listens on the sync subject");
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders,
        "{err}"
    );
}

/// Publishes `probe-<k>` on `subject` until `sub` receives one (bounded): for
/// subscriptions a sync round trip cannot cover (a `>` subscription also sees the round
/// trip's request). Returns with no probe left in flight to `sub`.
async fn wait_interest(publ: &Client, subject: &str, sub: &mut Subscriber) {
    for k in 0..100 {
        publ.publish(subject.to_string(), format!("probe-{k}").into())
            .await
            .unwrap();
        publ.flush().await.unwrap();
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            // Interest exists since this probe; every later probe is delivered and in
            // order, so read up to the last one published.
            let mut m = m.expect("subscription ended");
            while m.payload != format!("probe-{k}") {
                assert!(m.payload.starts_with(b"probe-"));
                m = next(sub).await;
            }
            return;
        }
    }
    panic!("interest on {subject} never became visible");
}

fn seq(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

async fn publish_seq(c: &Client, subject: &str, n: usize) {
    for i in 0..n {
        c.publish(subject.to_string(), i.to_string().into())
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Core behaviour
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pub_sub_same_and_other_connection() {
    let server = Server::natrium(&[]);
    let a = connect(&server).await;
    let b = connect(&server).await;
    assert_eq!(a.server_info().max_payload, 1048576);
    assert!(a.server_info().headers);
    let mut sa = a.subscribe("greet").await.unwrap();
    let mut sb = b.subscribe("greet").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    publish_seq(&a, "greet", 10).await;
    a.publish("greet", "done".into()).await.unwrap();
    sync(&a).await;
    assert_eq!(until_done(&mut sa).await, seq(10));
    assert_eq!(until_done(&mut sb).await, seq(10));
    let m = {
        a.publish_with_reply("greet", "the.reply", "x".into())
            .await
            .unwrap();
        next(&mut sb).await
    };
    assert_eq!(m.subject.as_str(), "greet");
    assert_eq!(m.reply.as_ref().map(|r| r.as_str()), Some("the.reply"));
    assert_eq!(&m.payload[..], b"x");
}

#[tokio::test]
async fn wildcards() {
    let server = Server::natrium(&[]);
    let sc = connect(&server).await;
    let pc = connect(&server).await;
    let mut star = sc.subscribe("a.*").await.unwrap();
    let mut gt = sc.subscribe("a.>").await.unwrap();
    let mut mid = sc.subscribe("*.b.*").await.unwrap();
    sync(&sc).await;
    // `>` matches the sync round trip's request too, so it lives on its own connection and
    // its interest is awaited by probing.
    let ac = connect(&server).await;
    let mut all = ac.subscribe(">").await.unwrap();
    wait_interest(&pc, "probe", &mut all).await;
    for s in ["a", "a.b", "a.b.c", "x.b.y", "a.c", "b"] {
        pc.publish(s, s.into()).await.unwrap();
    }
    // A subject every subscription matches ends each stream.
    pc.publish("a.b.done", "done".into()).await.unwrap();
    pc.publish("a.done", "done".into()).await.unwrap();
    pc.flush().await.unwrap();
    // `a.*` matches only the second marker, `*.b.*` only the first; `a.>` and `>` both.
    assert_eq!(until_done(&mut star).await, ["a.b", "a.c"]);
    assert_eq!(until_done(&mut gt).await, ["a.b", "a.b.c", "a.c"]);
    assert_eq!(until_done(&mut mid).await, ["a.b.c", "x.b.y"]);
    assert_eq!(
        until_done(&mut all).await,
        ["a", "a.b", "a.b.c", "x.b.y", "a.c", "b"]
    );
    assert_eq!(until_done(&mut gt).await, Vec::<String>::new());
    assert_eq!(until_done(&mut all).await, Vec::<String>::new());
    // Nothing else arrived.
    for sub in [&mut star, &mut gt, &mut mid, &mut all] {
        assert!(buffered(sub).is_empty());
    }
}

#[tokio::test]
async fn queue_group_exactly_once_and_balanced() {
    let server = Server::natrium(&[]);
    let publ = connect(&server).await;
    let members_n = 4;
    let mut members = Vec::new();
    for _ in 0..members_n {
        let c = connect(&server).await;
        let q = c.queue_subscribe("work", "workers".into()).await.unwrap();
        let done = c.subscribe("work.done").await.unwrap();
        sync(&c).await;
        members.push((c, q, done));
    }
    // A plain subscriber beside the group sees everything.
    let mut plain = publ.subscribe("work").await.unwrap();
    sync(&publ).await;
    let n = 2000;
    publish_seq(&publ, "work", n).await;
    publ.publish("work.done", "done".into()).await.unwrap();
    publ.publish("work", "done".into()).await.unwrap();
    sync(&publ).await;
    assert_eq!(until_done(&mut plain).await, seq(n));
    let mut all = Vec::new();
    for (k, (_c, q, done)) in members.iter_mut().enumerate() {
        next(done).await;
        // Every queue message for this connection was read before `work.done`.
        let mut got: Vec<usize> = buffered(q)
            .iter()
            .map(|m| std::str::from_utf8(&m.payload).unwrap())
            .filter(|p| *p != "done")
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "member {k} out of order"
        );
        // Roughly balanced: expected n/4 = 500 each; a member under 100 means no balancing.
        assert!(
            got.len() >= n / members_n / 5,
            "member {k} got {} of {n}",
            got.len()
        );
        all.append(&mut got);
    }
    all.sort();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "each message exactly once");
}

#[tokio::test]
async fn request_reply() {
    let server = Server::natrium(&[]);
    let svc = connect(&server).await;
    let req = connect(&server).await;
    let mut sub = svc.subscribe("svc.echo").await.unwrap();
    sync(&svc).await;
    let responder = tokio::spawn({
        let svc = svc.clone();
        async move {
            while let Some(m) = sub.next().await {
                let reply = m.reply.clone().expect("request has a reply subject");
                let mut body = b"echo:".to_vec();
                body.extend_from_slice(&m.payload);
                svc.publish(reply, body.into()).await.unwrap();
            }
        }
    });
    let resp = tokio::time::timeout(WAIT, req.request("svc.echo", "hello".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&resp.payload[..], b"echo:hello");
    responder.abort();
}

#[tokio::test]
async fn many_concurrent_requests() {
    let server = Server::natrium(&[]);
    let svc = connect(&server).await;
    let req = connect(&server).await;
    let responder = spawn_echo(&svc, "svc.many", None).await;
    let futs = (0..300).map(|i| {
        let req = req.clone();
        async move {
            let resp = req
                .request("svc.many", format!("r{i}").into())
                .await
                .unwrap();
            assert_eq!(resp.payload, Bytes::from(format!("echo:r{i}")));
        }
    });
    tokio::time::timeout(WAIT, futures::future::join_all(futs))
        .await
        .expect("requests timed out");
    responder.abort();
}

/// Spawns a responder answering `echo:<payload>` (in a queue group if given).
async fn spawn_echo(
    svc: &Client,
    subject: &str,
    queue: Option<&str>,
) -> tokio::task::JoinHandle<()> {
    let mut sub = match queue {
        Some(q) => svc
            .queue_subscribe(subject.to_string(), q.to_string())
            .await
            .unwrap(),
        None => svc.subscribe(subject.to_string()).await.unwrap(),
    };
    sync(svc).await;
    let svc = svc.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let reply = m.reply.clone().expect("request has a reply subject");
            let mut body = b"echo:".to_vec();
            body.extend_from_slice(&m.payload);
            svc.publish(reply, body.into()).await.unwrap();
        }
    })
}

#[tokio::test]
async fn headers_round_trip() {
    let server = Server::natrium(&[]);
    let a = connect(&server).await;
    let b = connect(&server).await;
    let mut sub = b.subscribe("hdr").await.unwrap();
    sync(&b).await;
    let mut headers = HeaderMap::new();
    headers.insert("X-One", "1");
    headers.append("X-Multi", "first");
    headers.append("X-Multi", "second");
    headers.append("X-Multi", "third value with spaces");
    a.publish_with_headers("hdr", headers, "body".into())
        .await
        .unwrap();
    sync(&a).await;
    let m = next(&mut sub).await;
    assert_eq!(&m.payload[..], b"body");
    let h = m.headers.expect("headers delivered");
    assert_eq!(h.get("X-One").map(|v| v.as_str()), Some("1"));
    let multi: Vec<&str> = h.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["first", "second", "third value with spaces"]);
    assert_eq!(m.status, None);

    // Headers with an empty payload, and through a request/reply.
    let svc = connect(&server).await;
    let mut ssub = svc.subscribe("hdr.svc").await.unwrap();
    sync(&svc).await;
    let task = tokio::spawn({
        let svc = svc.clone();
        async move {
            let m = ssub.next().await.unwrap();
            let got = m.headers.unwrap();
            let mut back = HeaderMap::new();
            for v in got.get_all("K") {
                back.append("K-Back", v.as_str());
            }
            svc.publish_with_headers(m.reply.unwrap(), back, Bytes::new())
                .await
                .unwrap();
        }
    });
    let mut hm = HeaderMap::new();
    hm.append("K", "a");
    hm.append("K", "b");
    let resp = tokio::time::timeout(
        WAIT,
        a.send_request(
            "hdr.svc",
            async_nats::Request::new().headers(hm).payload(Bytes::new()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let back: Vec<&str> = resp
        .headers
        .as_ref()
        .unwrap()
        .get_all("K-Back")
        .map(|v| v.as_str())
        .collect();
    assert_eq!(back, ["a", "b"]);
    assert!(resp.payload.is_empty());
    task.await.unwrap();
}

#[tokio::test]
async fn no_responders() {
    let server = Server::natrium(&[]);
    let c = connect(&server).await;
    let err = tokio::time::timeout(WAIT, c.request("nobody.home", "x".into()))
        .await
        .expect("request hung instead of failing")
        .expect_err("request with no subscribers must fail");
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders,
        "{err}"
    );
    // Still connected and usable.
    let mut s = c.subscribe("ok").await.unwrap();
    c.publish("ok", "y".into()).await.unwrap();
    assert_eq!(&next(&mut s).await.payload[..], b"y");
}

#[tokio::test]
async fn subscriber_drain_delivers_pending_then_ends() {
    let server = Server::natrium(&[]);
    let c = connect(&server).await;
    let mut sub = c.subscribe("drain.me").await.unwrap();
    sync(&c).await;
    publish_seq(&c, "drain.me", 200).await;
    // async-nats ends a draining subscription right after writing UNSUB, so make sure the
    // messages are in the client first: the PONG follows every MSG for this connection.
    sync(&c).await;
    sub.drain().await.unwrap();
    let got: Vec<String> = until_end(&mut sub)
        .await
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(got, seq(200));
    sync(&c).await;
    // The interest is gone on the server: a request now has no responders.
    let other = connect(&server).await;
    let err = tokio::time::timeout(WAIT, other.request("drain.me", "x".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders
    );
}

#[tokio::test]
async fn client_drain() {
    let server = Server::natrium(&[]);
    let c = connect(&server).await;
    let mut s1 = c.subscribe("cd.one").await.unwrap();
    let mut s2 = c.subscribe("cd.two").await.unwrap();
    sync(&c).await;
    publish_seq(&c, "cd.one", 50).await;
    publish_seq(&c, "cd.two", 50).await;
    sync(&c).await;
    c.drain().await.unwrap();
    let p = |v: Vec<Message>| -> Vec<String> {
        v.iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(p(until_end(&mut s1).await), seq(50));
    assert_eq!(p(until_end(&mut s2).await), seq(50));
    // The client closes after draining; commands then fail (bounded retries while the
    // connection task winds down).
    let mut closed = false;
    for _ in 0..200 {
        if tokio::time::timeout(WAIT, c.subscribe("cd.after"))
            .await
            .unwrap()
            .is_err()
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(closed, "commands after drain must fail");
}

#[tokio::test]
async fn unsubscribe_after_n() {
    let server = Server::natrium(&[]);
    let c = connect(&server).await;
    let p = connect(&server).await;
    let mut sub = c.subscribe("ua").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    sync(&c).await;
    publish_seq(&p, "ua", 10).await;
    sync(&p).await;
    let got = until_end(&mut sub).await;
    let got: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(got, ["0", "1", "2"]);
    // The server dropped the interest too.
    let err = tokio::time::timeout(WAIT, p.request("ua", "x".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders
    );
}

#[tokio::test]
async fn flush_then_all_delivered() {
    let server = Server::natrium(&[]);
    let s = connect(&server).await;
    let p = connect(&server).await;
    let mut sub = s.subscribe("fl").await.unwrap();
    sync(&s).await;
    for round in 0..5 {
        publish_seq(&p, "fl", 1000).await;
        p.publish("fl", "done".into()).await.unwrap();
        // Client::flush writes out everything queued; it must succeed.
        tokio::time::timeout(WAIT, p.flush())
            .await
            .expect("flush hung")
            .expect("flush");
        assert_eq!(until_done(&mut sub).await, seq(1000), "round {round}");
    }
    assert!(buffered(&mut sub).is_empty());
}

#[tokio::test]
async fn large_payloads() {
    let server = Server::natrium(&[]);
    let s = connect(&server).await;
    let p = connect(&server).await;
    let mut sub = s.subscribe("big").await.unwrap();
    sync(&s).await;
    let sizes = [1048576usize, 1048576 - 1, 1_000_000, 65536 + 7, 0];
    for (k, size) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..*size).map(|i| (i * 31 + k) as u8).collect();
        p.publish("big", body.into()).await.unwrap();
    }
    sync(&p).await;
    for (k, size) in sizes.iter().enumerate() {
        let m = next(&mut sub).await;
        assert_eq!(m.payload.len(), *size);
        let body: Vec<u8> = (0..*size).map(|i| (i * 31 + k) as u8).collect();
        assert!(m.payload[..] == body[..], "payload {k} corrupted");
    }
    // Large message with headers too.
    let mut h = HeaderMap::new();
    h.insert("Big", "yes");
    p.publish_with_headers("big", h, vec![7u8; 1_040_000].into())
        .await
        .unwrap();
    let m = next(&mut sub).await;
    assert_eq!(m.payload.len(), 1_040_000);
    assert!(m.payload.iter().all(|b| *b == 7));
    assert_eq!(m.headers.unwrap().get("Big").unwrap().as_str(), "yes");
}

#[tokio::test]
async fn max_payload_violation_reported_by_client() {
    let server = Server::natrium(&[]);
    let c = connect(&server).await;
    let err = c
        .publish("big", vec![0u8; 1048577].into())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );
    // The connection is unaffected.
    let mut s = c.subscribe("small").await.unwrap();
    c.publish("small", "ok".into()).await.unwrap();
    assert_eq!(&next(&mut s).await.payload[..], b"ok");
}

#[tokio::test]
async fn ordering_one_publisher_many_subscribers() {
    let server = Server::natrium(&[]);
    let p = connect(&server).await;
    let mut subs = Vec::new();
    for _ in 0..4 {
        let c = connect(&server).await;
        let s = c.subscribe("ord").await.unwrap();
        sync(&c).await;
        subs.push((c, s));
    }
    let n = 5000;
    publish_seq(&p, "ord", n).await;
    p.publish("ord", "done".into()).await.unwrap();
    sync(&p).await;
    for (k, (_c, s)) in subs.iter_mut().enumerate() {
        assert_eq!(until_done(s).await, seq(n), "subscriber {k}");
    }
}

#[tokio::test]
async fn fanout_many_connections_exact_counts() {
    let server = Server::natrium(&[]);
    let p = connect(&server).await;
    let mut subs = Vec::new();
    for _ in 0..16 {
        let c = connect(&server).await;
        let a = c.subscribe("fan.x").await.unwrap();
        let b = c.subscribe("fan.*").await.unwrap();
        let d = c.subscribe("fan.>").await.unwrap();
        sync(&c).await;
        subs.push((c, vec![a, b, d]));
    }
    let n = 300;
    publish_seq(&p, "fan.x", n).await;
    p.publish("fan.y", "other".into()).await.unwrap();
    p.publish("fan.x", "done".into()).await.unwrap();
    sync(&p).await;
    for (k, (_c, ss)) in subs.iter_mut().enumerate() {
        for (j, s) in ss.iter_mut().enumerate() {
            let got = until_done(s).await;
            let mut want = seq(n);
            if j > 0 {
                want.push("other".into());
            }
            assert_eq!(got, want, "connection {k} subscription {j}");
        }
    }
}

#[tokio::test]
async fn no_echo() {
    let server = Server::natrium(&[]);
    let quiet = connect_with(&server, ConnectOptions::new().no_echo()).await;
    let loud = connect(&server).await;
    let mut qs = quiet.subscribe("echo").await.unwrap();
    let mut ls = loud.subscribe("echo").await.unwrap();
    sync(&quiet).await;
    sync(&loud).await;
    quiet.publish("echo", "from-quiet".into()).await.unwrap();
    sync(&quiet).await;
    loud.publish("echo", "from-loud".into()).await.unwrap();
    loud.publish("echo", "done".into()).await.unwrap();
    sync(&loud).await;
    assert_eq!(until_done(&mut qs).await, ["from-loud"]);
    // Two publishers: no order between them is promised.
    let mut got = until_done(&mut ls).await;
    got.sort();
    assert_eq!(got, ["from-loud", "from-quiet"]);
}

// ---------------------------------------------------------------------------------------
// Cross-shard: publisher on shard p, subscribers on shard s, for (p, s) = (0, 1) and (1, 0).
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cross_shard_fanout() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let mut need = [0, 0];
        need[p] += 2;
        need[s] += 3;
        let mut got = nats_by_shard(&server, need, ConnectOptions::new).await;
        let publ = got[p].pop().unwrap();
        let mut subs = Vec::new();
        let mut conns = std::mem::take(&mut got[s]);
        conns.append(&mut got[p]);
        for c in conns {
            let a = c.subscribe("xs.fan").await.unwrap();
            let b = c.subscribe("xs.*").await.unwrap();
            sync(&c).await;
            subs.push((c, a, b));
        }
        let n = 1000;
        publish_seq(&publ, "xs.fan", n).await;
        publ.publish("xs.fan", "done".into()).await.unwrap();
        sync(&publ).await;
        for (k, (_c, a, b)) in subs.iter_mut().enumerate() {
            assert_eq!(until_done(a).await, seq(n), "sub {k}, publisher shard {p}");
            assert_eq!(
                until_done(b).await,
                seq(n),
                "wildcard sub {k}, publisher shard {p}"
            );
        }
    }
}

#[tokio::test]
async fn cross_shard_queue_group() {
    let server = Server::natrium(&[]);
    for (p, _s) in DIRECTIONS {
        // Two members on each shard, publisher on p.
        let mut got = nats_by_shard(&server, [3 - p, 2 + p], ConnectOptions::new).await;
        let publ = got[p].pop().unwrap();
        let mut members = Vec::new();
        for (shard, group) in got.iter_mut().enumerate() {
            for c in group.drain(..) {
                let q = c.queue_subscribe("xs.work", "g".into()).await.unwrap();
                let done = c.subscribe("xs.done").await.unwrap();
                sync(&c).await;
                members.push((shard, c, q, done));
            }
        }
        assert_eq!(members.len(), 4);
        let n = 2000;
        publish_seq(&publ, "xs.work", n).await;
        publ.publish("xs.done", "done".into()).await.unwrap();
        sync(&publ).await;
        let mut all = Vec::new();
        let mut per_shard = [0usize; 2];
        for (k, (shard, _c, q, done)) in members.iter_mut().enumerate() {
            next(done).await;
            let mut got: Vec<usize> = buffered(q)
                .iter()
                .map(|m| std::str::from_utf8(&m.payload).unwrap().parse().unwrap())
                .collect();
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "member {k} out of order"
            );
            assert!(
                !got.is_empty(),
                "member {k} on shard {shard} got nothing (publisher shard {p})"
            );
            assert!(
                got.len() >= n / 4 / 5,
                "member {k} on shard {shard} got {} of {n}",
                got.len()
            );
            per_shard[*shard] += got.len();
            all.append(&mut got);
        }
        all.sort();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "exactly once across shards (publisher shard {p})"
        );
        assert!(per_shard[0] > 0 && per_shard[1] > 0, "{per_shard:?}");
    }
}

#[tokio::test]
async fn cross_shard_ordering_per_publisher() {
    let server = Server::natrium(&[]);
    // One publisher on each shard, two subscribers on each shard.
    let mut got = nats_by_shard(&server, [3, 3], ConnectOptions::new).await;
    let pubs = [got[0].pop().unwrap(), got[1].pop().unwrap()];
    let mut subs = Vec::new();
    for (shard, group) in got.iter_mut().enumerate() {
        for c in group.drain(..) {
            let s = c.subscribe("xs.ord").await.unwrap();
            sync(&c).await;
            subs.push((shard, c, s));
        }
    }
    let n = 2000;
    let tasks: Vec<_> = pubs
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    c.publish("xs.ord", format!("{k}:{i}").into())
                        .await
                        .unwrap();
                }
                c.publish("xs.ord", format!("{k}:done").into())
                    .await
                    .unwrap();
                c.flush().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
    }
    for (j, (shard, _c, s)) in subs.iter_mut().enumerate() {
        let mut next_seq = [0usize; 2];
        let mut done = [false; 2];
        while !(done[0] && done[1]) {
            let m = next(s).await;
            let text = std::str::from_utf8(&m.payload).unwrap().to_string();
            let (k, i) = text.split_once(':').unwrap();
            let k: usize = k.parse().unwrap();
            assert!(
                !done[k],
                "subscriber {j} (shard {shard}) got {text} after publisher {k} was done"
            );
            if i == "done" {
                assert_eq!(
                    next_seq[k], n,
                    "subscriber {j} (shard {shard}) missed messages of publisher {k}"
                );
                done[k] = true;
            } else {
                assert_eq!(
                    i.parse::<usize>().unwrap(),
                    next_seq[k],
                    "subscriber {j} (shard {shard}) publisher {k}"
                );
                next_seq[k] += 1;
            }
        }
        assert!(buffered(s).is_empty());
    }
}

#[tokio::test]
async fn cross_shard_request_reply() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (req, svc) = nats_pair(&server, p, s).await;
        let responder = spawn_echo(&svc, "xs.svc", Some("svcq")).await;
        let futs = (0..200).map(|i| {
            let req = req.clone();
            async move {
                let resp = req.request("xs.svc", format!("r{i}").into()).await.unwrap();
                assert_eq!(resp.payload, Bytes::from(format!("echo:r{i}")));
            }
        });
        tokio::time::timeout(WAIT, futures::future::join_all(futs))
            .await
            .expect("requests timed out");
        responder.abort();
    }
}

#[tokio::test]
async fn cross_shard_unsubscribe_propagates() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (publ, subc) = nats_pair(&server, p, s).await;
        // Interest visible across shards: a request is answered.
        let mut sub = subc.subscribe("xs.unsub").await.unwrap();
        sync(&subc).await;
        let serve = async {
            let m = next(&mut sub).await;
            subc.publish(m.reply.unwrap(), "echo:a".into())
                .await
                .unwrap();
        };
        let (resp, ()) = tokio::join!(
            tokio::time::timeout(WAIT, publ.request("xs.unsub", "a".into())),
            serve
        );
        assert_eq!(&resp.unwrap().unwrap().payload[..], b"echo:a");
        // After UNSUB (flushed: the server processed it) the other shard has no responders.
        sub.unsubscribe().await.unwrap();
        sync(&subc).await;
        let err = tokio::time::timeout(WAIT, publ.request("xs.unsub", "b".into()))
            .await
            .unwrap()
            .expect_err("answered after unsubscribe");
        assert_eq!(
            err.kind(),
            async_nats::client::RequestErrorKind::NoResponders,
            "publisher shard {p}"
        );

        // A sibling subscription on the same connection keeps receiving.
        let mut gone = subc.subscribe("xs.g").await.unwrap();
        let mut stays = subc.subscribe("xs.s").await.unwrap();
        sync(&subc).await;
        publ.publish("xs.g", "1".into()).await.unwrap();
        publ.publish("xs.s", "1".into()).await.unwrap();
        sync(&publ).await;
        assert_eq!(&next(&mut gone).await.payload[..], b"1");
        assert_eq!(&next(&mut stays).await.payload[..], b"1");
        gone.unsubscribe().await.unwrap();
        sync(&subc).await;
        let err = tokio::time::timeout(WAIT, publ.request("xs.g", "x".into()))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            async_nats::client::RequestErrorKind::NoResponders
        );
        publ.publish("xs.s", "2".into()).await.unwrap();
        publ.publish("xs.s", "done".into()).await.unwrap();
        sync(&publ).await;
        assert_eq!(until_done(&mut stays).await, ["2"]);

        // unsubscribe_after across shards.
        let mut limited = subc.subscribe("xs.lim").await.unwrap();
        limited.unsubscribe_after(5).await.unwrap();
        sync(&subc).await;
        publish_seq(&publ, "xs.lim", 20).await;
        sync(&publ).await;
        let got: Vec<String> = until_end(&mut limited)
            .await
            .iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
            .collect();
        assert_eq!(got, seq(5), "publisher shard {p}");
        let err = tokio::time::timeout(WAIT, publ.request("xs.lim", "x".into()))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            async_nats::client::RequestErrorKind::NoResponders
        );
    }
}

#[tokio::test]
async fn cross_shard_no_echo() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let mut need = [0, 0];
        need[p] += 1;
        need[s] += 1;
        let mut got = nats_by_shard(&server, need, || ConnectOptions::new().no_echo()).await;
        let a = got[p].pop().unwrap();
        let b = got[s].pop().unwrap();
        let mut sa = a.subscribe("xs.echo").await.unwrap();
        let mut sb = b.subscribe("xs.echo").await.unwrap();
        sync(&a).await;
        sync(&b).await;
        a.publish("xs.echo", "a".into()).await.unwrap();
        a.publish("xs.echo", "done".into()).await.unwrap();
        sync(&a).await;
        b.publish("xs.echo", "b".into()).await.unwrap();
        b.publish("xs.echo", "done".into()).await.unwrap();
        sync(&b).await;
        assert_eq!(until_done(&mut sa).await, ["b"], "publisher shard {p}");
        assert_eq!(until_done(&mut sb).await, ["a"], "publisher shard {p}");
        // Echo still works for other connections' subscribers on the publisher's shard.
        let (c, _) = nats_pair(&server, p, p).await;
        let mut sc = c.subscribe("xs.echo").await.unwrap();
        sync(&c).await;
        a.publish("xs.echo", "a2".into()).await.unwrap();
        a.publish("xs.echo", "done".into()).await.unwrap();
        sync(&a).await;
        assert_eq!(until_done(&mut sc).await, ["a2"]);
        assert_eq!(until_done(&mut sb).await, ["a2"]);
        assert!(buffered(&mut sa).is_empty());
    }
}

#[tokio::test]
async fn cross_shard_wildcards() {
    let server = Server::natrium(&[]);
    for (p, s) in DIRECTIONS {
        let (publ, subc) = nats_pair(&server, p, s).await;
        let mut star = subc.subscribe("w.*").await.unwrap();
        let mut gt = subc.subscribe("w.>").await.unwrap();
        let mut mid = subc.subscribe("*.m.*").await.unwrap();
        sync(&subc).await;
        for subj in ["w", "w.a", "w.a.b", "x.m.y", "w.m.z", "x.m"] {
            publ.publish(subj, subj.into()).await.unwrap();
        }
        publ.publish("w.m.done", "done".into()).await.unwrap();
        publ.publish("w.done", "done".into()).await.unwrap();
        sync(&publ).await;
        assert_eq!(until_done(&mut star).await, ["w.a"], "publisher shard {p}");
        assert_eq!(
            until_done(&mut gt).await,
            ["w.a", "w.a.b", "w.m.z"],
            "publisher shard {p}"
        );
        assert_eq!(
            until_done(&mut mid).await,
            ["x.m.y", "w.m.z"],
            "publisher shard {p}"
        );
        assert_eq!(until_done(&mut gt).await, Vec::<String>::new());
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (name, sub) in [("star", &mut star), ("gt", &mut gt), ("mid", &mut mid)] {
            counts.insert(name, buffered(sub).len());
        }
        assert_eq!(counts.values().sum::<usize>(), 0, "{counts:?}");
    }
}

/// Large payloads are queued by reference and sent with vectored writes when several
/// subscribers on one shard get them: every byte must still arrive intact, in order,
/// on both shards, with and without headers.
#[tokio::test]
async fn large_payload_fanout_arrives_byte_exact() {
    let server = Server::natrium(&[]);
    let [s0, s1] = nats_by_shard(&server, [3, 3], ConnectOptions::new).await;
    let publisher = s0[0].clone();
    let mut subs = Vec::new();
    for c in s0.iter().chain(s1.iter()) {
        // two subscriptions per connection: the same payload twice in one queue
        subs.push(c.subscribe("big.data").await.unwrap());
        subs.push(c.subscribe("big.*").await.unwrap());
    }
    for c in s0.iter().chain(s1.iter()) {
        sync(c).await;
    }
    // Pseudo-random contents and sizes around the sharing threshold and far above it.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut sent = Vec::new();
    for i in 0..60usize {
        let size = [511, 512, 513, 4096, 65_536, 300_000][i % 6] + i;
        let body: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let body = Bytes::from(body);
        if i % 3 == 0 {
            let mut headers = HeaderMap::new();
            headers.insert("Seq", i.to_string().as_str());
            publisher
                .publish_with_headers("big.data", headers, body.clone())
                .await
                .unwrap();
        } else {
            publisher.publish("big.data", body.clone()).await.unwrap();
        }
        sent.push(body);
    }
    sync(&publisher).await;
    for (n, sub) in subs.iter_mut().enumerate() {
        for (i, want) in sent.iter().enumerate() {
            let m = next(sub).await;
            assert_eq!(m.payload.len(), want.len(), "sub {n} msg {i}: size");
            assert!(m.payload == *want, "sub {n} msg {i}: payload bytes differ");
            if i % 3 == 0 {
                let seq = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Seq"))
                    .map(|v| v.to_string());
                assert_eq!(
                    seq.as_deref(),
                    Some(i.to_string().as_str()),
                    "sub {n} msg {i}"
                );
            }
        }
    }
}
