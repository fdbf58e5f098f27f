//! Clusters (issue #13): natrium nodes joined by routes, with each other and with the
//! reference nats-server in both directions (natrium seeds and nats-server seeds),
//! driven by the async-nats client on every node. Each natrium node runs two client
//! shards and its cluster core, so messages cross rings as well as routes.
//!
//! Every scenario counts exactly: a plain subscriber gets each message once, a queue
//! group gets each message once across all nodes, and nothing arrives twice.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Subscriber};
use futures::StreamExt;
use support::client::WAIT;
use support::client::{await_interest, connect, next};
use support::{Kind, Server};

const KINDS: [Kind; 2] = [Kind::Natrium, Kind::NatsServer];

/// A node listening for routes on a free port, soliciting `routes`.
fn node(kind: Kind, name: &str, routes: &[u16], extra: &[&str]) -> Server {
    let routes: Vec<String> = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let mut args = vec![
        "-n",
        name,
        "--cluster_name",
        "C1",
        "--cluster",
        "nats://127.0.0.1:-1",
    ];
    let joined = routes.join(",");
    if !routes.is_empty() {
        args.extend(["--routes", &joined]);
    }
    args.extend(extra);
    Server::start(kind, &args)
}

/// Messages that arrive within a short quiet period (after the expected ones).
async fn drain(sub: &mut Subscriber) -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        n += 1;
    }
    n
}

/// Pub/sub, wildcards, request/reply and headers between clients on two nodes.
async fn exchange(a: &Server, b: &Server) {
    let (ca, cb) = (connect(a).await, connect(b).await);
    for (publisher, subscriber, tag) in [(&ca, &cb, "ab"), (&cb, &ca, "ba")] {
        let mut exact = subscriber.subscribe(format!("{tag}.exact")).await.unwrap();
        let mut wild = subscriber.subscribe(format!("{tag}.*.w")).await.unwrap();
        let mut full = subscriber.subscribe(format!("{tag}.>")).await.unwrap();
        subscriber.flush().await.unwrap();
        await_interest(publisher, &mut exact, &format!("{tag}.exact")).await;
        await_interest(publisher, &mut wild, &format!("{tag}.x.w")).await;
        drain(&mut full).await;
        for i in 0..100 {
            publisher
                .publish(format!("{tag}.exact"), format!("{i}").into())
                .await
                .unwrap();
            publisher
                .publish(format!("{tag}.{i}.w"), format!("{i}").into())
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        for i in 0..100 {
            assert_eq!(
                next(&mut exact).await.payload,
                format!("{i}"),
                "{tag} in order"
            );
            assert_eq!(
                next(&mut wild).await.subject.as_str(),
                format!("{tag}.{i}.w")
            );
        }
        for _ in 0..200 {
            next(&mut full).await;
        }
        assert_eq!(
            drain(&mut exact).await + drain(&mut wild).await,
            0,
            "{tag}: duplicates"
        );
        assert_eq!(drain(&mut full).await, 0, "{tag}: duplicates on >");

        // Headers cross the route.
        let mut hsub = subscriber.subscribe(format!("{tag}.hdr")).await.unwrap();
        subscriber.flush().await.unwrap();
        await_interest(publisher, &mut hsub, &format!("{tag}.hdr")).await;
        let mut headers = HeaderMap::new();
        headers.insert("X-Node", tag);
        publisher
            .publish_with_headers(format!("{tag}.hdr"), headers, "h".into())
            .await
            .unwrap();
        let m = next(&mut hsub).await;
        assert_eq!(
            m.headers
                .as_ref()
                .and_then(|h| h.get("X-Node"))
                .map(|v| v.as_str()),
            Some(tag)
        );

        // Request/reply: the responder is on the other node, the reply comes back.
        let mut service = subscriber.subscribe(format!("{tag}.svc")).await.unwrap();
        subscriber.flush().await.unwrap();
        await_interest(publisher, &mut service, &format!("{tag}.svc")).await;
        let responder = subscriber.clone();
        let task = tokio::spawn(async move {
            for _ in 0..10 {
                let Some(m) = service.next().await else {
                    return;
                };
                let reply = m.reply.clone().expect("request has a reply");
                let body = format!("re:{}", String::from_utf8_lossy(&m.payload));
                responder.publish(reply, body.into()).await.unwrap();
            }
            responder.flush().await.unwrap();
        });
        for i in 0..10 {
            let r = tokio::time::timeout(
                WAIT,
                publisher.request(format!("{tag}.svc"), format!("{i}").into()),
            )
            .await
            .expect("request timed out")
            .expect("request");
            assert_eq!(r.payload, format!("re:{i}"));
        }
        task.await.unwrap();
    }
}

/// A queue group with members on both nodes takes each message exactly once.
async fn queue_across(a: &Server, b: &Server) {
    let (ca, cb) = (connect(a).await, connect(b).await);
    let mut qa = ca.queue_subscribe("work", "g".into()).await.unwrap();
    let mut qb = cb.queue_subscribe("work", "g".into()).await.unwrap();
    let mut watch = cb.subscribe("work").await.unwrap();
    ca.flush().await.unwrap();
    cb.flush().await.unwrap();
    // The plain watcher on B proves B's interest reached A; the queue member on A
    // proves nothing about routes, so wait on the watcher.
    await_interest(&ca, &mut watch, "work").await;
    // Probes went to the group too: drain them before counting.
    drain(&mut qa).await;
    drain(&mut qb).await;
    for publisher in [&ca, &cb] {
        for i in 0..200 {
            publisher
                .publish("work", format!("{i}").into())
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        let mut seen = vec![0u8; 200];
        let mut got = 0;
        while got < 200 {
            let m = tokio::select! {
                m = next(&mut qa) => m,
                m = next(&mut qb) => m,
            };
            let i: usize = String::from_utf8_lossy(&m.payload).parse().unwrap();
            seen[i] += 1;
            got += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "each message once: {seen:?}");
        assert_eq!(
            drain(&mut qa).await + drain(&mut qb).await,
            0,
            "no duplicates"
        );
        for _ in 0..200 {
            next(&mut watch).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_any_mix_exchange_messages_queue_groups_and_requests() {
    for seed_kind in KINDS {
        for joiner_kind in KINDS {
            if seed_kind == Kind::NatsServer && joiner_kind == Kind::NatsServer {
                continue;
            }
            let seed = node(seed_kind, "A", &[], &[]);
            let joiner = node(joiner_kind, "B", &[seed.route_port()], &[]);
            exchange(&seed, &joiner).await;
            queue_across(&seed, &joiner).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_join_one_seed_find_each_other() {
    // B and C know only A; a message from C reaches B directly (routes never forward
    // another route's messages), so B and C must have connected through gossip. A
    // nats-server seed tells only B of C (not C of B): B must dial whatever the ids,
    // which one round in two got wrong before, hence three rounds of that mix.
    let seeded_by_reference = [(Kind::NatsServer, Kind::Natrium, Kind::Natrium); 3];
    for (a_kind, b_kind, c_kind) in [
        (Kind::Natrium, Kind::NatsServer, Kind::Natrium),
        (Kind::Natrium, Kind::Natrium, Kind::NatsServer),
    ]
    .into_iter()
    .chain(seeded_by_reference)
    {
        eprintln!("seed {a_kind:?}, {b_kind:?} and {c_kind:?}");
        let a = node(a_kind, "A", &[], &[]);
        let b = node(b_kind, "B", &[a.route_port()], &[]);
        let c = node(c_kind, "C", &[a.route_port()], &[]);
        let (cb, cc) = (connect(&b).await, connect(&c).await);
        let mut sub = cb.subscribe("mesh").await.unwrap();
        cb.flush().await.unwrap();
        await_interest(&cc, &mut sub, "mesh").await;
        for i in 0..50 {
            cc.publish("mesh", format!("{i}").into()).await.unwrap();
        }
        cc.flush().await.unwrap();
        for i in 0..50 {
            assert_eq!(next(&mut sub).await.payload, format!("{i}"));
        }
        assert_eq!(drain(&mut sub).await, 0, "no duplicates through A");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_dialing_each_other_keep_one_route() {
    for other in KINDS {
        // B dials A; A is then restarted on its ports dialing B, while B redials A:
        // both sides hold a configured route and one connection must survive.
        let a = node(Kind::Natrium, "A", &[], &[]);
        let (a_port, a_route) = (a.port, a.route_port());
        let b = node(other, "B", &[a_route], &[]);
        drop(a);
        let a = Server::start(
            Kind::Natrium,
            &[
                "-n",
                "A",
                "-p",
                &a_port.to_string(),
                "--cluster_name",
                "C1",
                "--cluster",
                &format!("nats://127.0.0.1:{a_route}"),
                "--routes",
                &format!("nats://127.0.0.1:{}", b.route_port()),
            ],
        );
        let (ca, cb) = (connect(&a).await, connect(&b).await);
        let mut sub = cb.subscribe("dup").await.unwrap();
        cb.flush().await.unwrap();
        await_interest(&ca, &mut sub, "dup").await;
        // Let B's redial and A's dial both land and the duplicate be resolved.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drain(&mut sub).await;
        await_interest(&ca, &mut sub, "dup").await;
        for i in 0..100 {
            ca.publish("dup", format!("{i}").into()).await.unwrap();
        }
        ca.flush().await.unwrap();
        for i in 0..100 {
            assert_eq!(next(&mut sub).await.payload, format!("{i}"), "{other:?}");
        }
        assert_eq!(
            drain(&mut sub).await,
            0,
            "{other:?}: one route, no duplicates"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_comes_back_and_interest_is_rebuilt() {
    for other in KINDS {
        let a = node(Kind::Natrium, "A", &[], &[]);
        let b = node(other, "B", &[a.route_port()], &[]);
        let ca = connect(&a).await;
        let mut sub = ca.subscribe("back").await.unwrap();
        ca.flush().await.unwrap();
        let cb = connect(&b).await;
        await_interest(&cb, &mut sub, "back").await;
        drop(cb);
        let (port, route) = (b.port, b.route_port());
        drop(b); // SIGKILL
        let b = Server::start(
            other,
            &[
                "-n",
                "B",
                "--cluster_name",
                "C1",
                "--cluster",
                &format!("nats://127.0.0.1:{route}"),
                "--routes",
                &format!("nats://127.0.0.1:{}", a.route_port()),
                "-p",
                &port.to_string(),
            ],
        );
        let cb = connect(&b).await;
        await_interest(&cb, &mut sub, "back").await;
        for i in 0..100 {
            cb.publish("back", format!("{i}").into()).await.unwrap();
        }
        cb.flush().await.unwrap();
        for i in 0..100 {
            assert_eq!(next(&mut sub).await.payload, format!("{i}"));
        }
        assert_eq!(drain(&mut sub).await, 0, "nothing twice after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_credentials_are_checked() {
    let dir = support::TempDir::new("cluster-auth");
    let conf = |name: &str, routes: &str| {
        dir.write(
            &format!("{name}.conf"),
            &format!(
                "cluster {{\n  name: C1\n  listen: 127.0.0.1:-1\n  authorization {{ user: ruser, password: s3cret }}\n  routes: [{routes}]\n}}\n"
            ),
        )
    };
    for kind in KINDS {
        let a_conf = conf(&format!("a-{kind:?}"), "");
        let a = Server::start(kind, &["-n", "A", "-c", a_conf.to_str().unwrap()]);
        let port = a.route_port();
        // Right credentials: a natrium node joins.
        let good = conf(
            "good",
            &format!("\"nats-route://ruser:s3cret@127.0.0.1:{port}\""),
        );
        let b = Server::start(Kind::Natrium, &["-n", "B", "-c", good.to_str().unwrap()]);
        let (ca, cb) = (connect(&a).await, connect(&b).await);
        let mut sub = ca.subscribe("auth").await.unwrap();
        ca.flush().await.unwrap();
        await_interest(&cb, &mut sub, "auth").await;
        // Wrong credentials: the same bytes get the same answer from both servers.
        let got = raw_route_exchange(
            port,
            "CONNECT {\"user\":\"ruser\",\"pass\":\"wrong\",\"cluster\":\"C1\",\"name\":\"NFAKE\",\"headers\":true}\r\n",
        );
        assert!(
            got.contains("-ERR 'Authorization Violation'"),
            "{kind:?}: {got}"
        );
    }
}

/// Connects to a route port, reads the INFO, sends `input`, and returns everything
/// the server sends until it closes (or 3 s pass).
fn raw_route_exchange(port: u16, input: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut info = Vec::new();
    let mut byte = [0u8; 1];
    while !info.ends_with(b"\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        info.push(byte[0]);
    }
    assert!(
        info.starts_with(b"INFO {"),
        "{:?}",
        String::from_utf8_lossy(&info)
    );
    s.write_all(input.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_route_peers_get_the_reference_errors() {
    let cases = [
        (
            "client CONNECT",
            "CONNECT {\"lang\":\"go\",\"verbose\":false}\r\n",
        ),
        ("op before CONNECT", "PING\r\n"),
        (
            "other cluster",
            "CONNECT {\"cluster\":\"ZZ\",\"name\":\"NFAKE\",\"headers\":true}\r\n",
        ),
        (
            "gateway",
            "CONNECT {\"gateway\":\"G2\",\"name\":\"NFAKE\"}\r\n",
        ),
    ];
    let servers = KINDS.map(|k| node(k, "A", &[], &[]));
    for (what, input) in cases {
        let answers: Vec<String> = servers
            .iter()
            .map(|s| {
                let got = raw_route_exchange(s.route_port(), input);
                got.lines()
                    .filter(|l| l.starts_with("-ERR"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        assert!(!answers[1].is_empty(), "{what}: the reference sent no -ERR");
        assert_eq!(answers[0], answers[1], "{what}: natrium vs nats-server");
    }
    // Garbage after a good handshake closes the route and leaves the server serving.
    let natrium = &servers[0];
    let got = raw_route_exchange(
        natrium.route_port(),
        "CONNECT {\"cluster\":\"C1\",\"name\":\"NFAKE\",\"headers\":true}\r\nINFO {\"server_id\":\"NFAKE\",\"cluster\":\"C1\"}\r\nBOGUS\r\n",
    );
    assert!(got.contains("-ERR"), "garbage gets an -ERR: {got}");
    let mut c = std::net::TcpStream::connect(natrium.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"INFO ", "still serving clients");
}

/// Keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[test]
fn routez_and_varz_show_the_cluster_as_nats_server_does() {
    let mut shapes = Vec::new();
    for kind in KINDS {
        let a = support::Monitored::start(
            kind,
            &[
                "-n",
                "A",
                "--cluster_name",
                "C1",
                "--cluster",
                "nats://127.0.0.1:-1",
            ],
        );
        let b = node(Kind::Natrium, "B", &[a.server.route_port()], &[]);
        let mut client = std::net::TcpStream::connect(b.addr()).unwrap();
        client
            .write_all(b"CONNECT {\"verbose\":false}\r\nSUB watched.subject 1\r\nPING\r\n")
            .unwrap();
        let deadline = Instant::now() + WAIT;
        let route = loop {
            let routez = support::http_get_json(a.http, "/routez?subs=1");
            let found = routez["routes"].as_array().and_then(|routes| {
                routes
                    .iter()
                    .find(|r| {
                        r["subscriptions_list"]
                            .as_array()
                            .is_some_and(|l| l.iter().any(|s| s == "watched.subject"))
                    })
                    .cloned()
            });
            if let Some(r) = found {
                assert_eq!(r["remote_name"], "B", "{kind:?}: {r}");
                assert_eq!(r["did_solicit"], false, "{kind:?}: {r}");
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?}: B's interest never shown: {routez}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let varz = support::http_get_json(a.http, "/varz");
        assert_eq!(varz["cluster"]["name"], "C1", "{kind:?}");
        assert_eq!(
            varz["cluster"]["cluster_port"].as_u64(),
            Some(a.server.route_port() as u64)
        );
        let plain = support::http_get_json(a.http, "/routez");
        assert!(plain["num_routes"].as_u64() >= Some(1), "{plain}");
        shapes.push((keys(&route), keys(&varz["cluster"])));
    }
    assert_eq!(shapes[0], shapes[1], "natrium vs nats-server key sets");
}

/// Reads INFO lines from `s` until one satisfies `want` (PINGs answered); panics after
/// `WAIT`.
fn await_info(
    s: &mut std::net::TcpStream,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    let mut buf = Vec::new();
    loop {
        while let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..nl + 2).collect();
            if line.starts_with(b"PING") {
                s.write_all(b"PONG\r\n").unwrap();
            }
            if let Some(json) = line.strip_prefix(b"INFO ") {
                let info: serde_json::Value = serde_json::from_slice(json).unwrap();
                if want(&info) {
                    return info;
                }
            }
        }
        assert!(Instant::now() < deadline, "no such INFO");
        let mut tmp = [0u8; 4096];
        match s.read(&mut tmp) {
            Ok(0) => panic!("closed"),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => {}
        }
    }
}

#[test]
fn clients_learn_the_cluster_urls_as_nodes_come_and_go() {
    for kind in KINDS {
        let a = node(kind, "A", &[], &[]);
        let mut s = std::net::TcpStream::connect(a.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let first = await_info(&mut s, |_| true);
        assert_eq!(first["cluster"], "C1", "{kind:?}: {first}");
        assert!(
            first.get("connect_urls").is_none(),
            "{kind:?}: alone: {first}"
        );
        s.write_all(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
            .unwrap();
        let b = node(Kind::Natrium, "B", &[a.route_port()], &[]);
        let (a_url, b_url) = (a.addr(), b.addr());
        let joined = await_info(&mut s, |i| {
            i["connect_urls"].as_array().is_some_and(|u| u.len() == 2)
        });
        let urls: Vec<&str> = joined["connect_urls"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u.as_str())
            .collect();
        assert_eq!(urls, [a_url.as_str(), b_url.as_str()], "{kind:?}");
        drop(b);
        let left = await_info(&mut s, |i| {
            i["connect_urls"].as_array().is_some_and(|u| u.len() == 1)
        });
        assert_eq!(left["connect_urls"][0], a_url.as_str(), "{kind:?}");
        let later = std::net::TcpStream::connect(a.addr()).unwrap();
        let mut later = later;
        later
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let info = await_info(&mut later, |_| true);
        assert_eq!(info["connect_urls"][0], a_url.as_str(), "{kind:?}: {info}");
    }
}

#[test]
fn a_node_in_lame_duck_mode_is_dropped_from_the_cluster_urls() {
    for kind in KINDS {
        let a = node(kind, "A", &[], &[]);
        let mut s = std::net::TcpStream::connect(a.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
            .unwrap();
        // A long grace period: B must still be in lame duck mode when A drops it,
        // however loaded this machine is.
        let dir = support::TempDir::new("cluster-ldm");
        let conf = dir.write("b.conf", "lame_duck_grace_period: \"30s\"\n");
        let mut b = node(
            Kind::Natrium,
            "B",
            &[a.route_port()],
            &["-c", conf.to_str().unwrap()],
        );
        // A client keeps B in lame duck mode for a while instead of stopping at once.
        let mut held = std::net::TcpStream::connect(b.addr()).unwrap();
        held.write_all(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
            .unwrap();
        // Its PONG: B has taken the connection before it hears SIGUSR2 (a server
        // with no client left ends lame duck mode at once).
        held.set_read_timeout(Some(WAIT)).unwrap();
        let got = support::client::until_pong(&mut held);
        assert!(got.ends_with("PONG\r\n"), "B did not answer: {got:?}");
        await_info(&mut s, |i| {
            i["connect_urls"].as_array().is_some_and(|u| u.len() == 2)
        });
        b.signal(libc::SIGUSR2);
        let info = await_info(&mut s, |i| {
            i["connect_urls"].as_array().is_some_and(|u| u.len() == 1)
        });
        assert_eq!(info["connect_urls"][0], a.addr().as_str(), "{kind:?}");
        assert!(
            b.wait_exit(Duration::ZERO).is_none(),
            "B is still in lame duck mode"
        );
        let mut tmp = [0u8; 256];
        let _ = held.read(&mut tmp);
    }
}

#[test]
fn a_peer_that_stops_reading_is_cut_and_nobody_else_notices() {
    let dir = support::TempDir::new("cluster-slow");
    let conf = dir.write(
        "a.conf",
        "max_pending: 16MB\nwrite_deadline: \"10s\"\ncluster {\n  name: C1\n  listen: 127.0.0.1:-1\n}\n",
    );
    let a = Server::start(Kind::Natrium, &["-n", "A", "-c", conf.to_str().unwrap()]);
    // A fake peer: handshake, interest in `flood`, then it never reads again.
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", a.route_port())).unwrap();
    peer.write_all(
        b"CONNECT {\"cluster\":\"C1\",\"name\":\"NFAKE\",\"headers\":true}\r\n\
          INFO {\"server_id\":\"NFAKE\",\"server_name\":\"fake\",\"cluster\":\"C1\",\"headers\":true}\r\n\
          RS+ $G flood\r\n",
    )
    .unwrap();
    let _ = peer.set_recv_buffer_size_hint();
    // A local subscriber and a publisher of 64 MB in 256 KB messages.
    let mut sub = std::net::TcpStream::connect(a.addr()).unwrap();
    sub.write_all(b"CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n")
        .unwrap();
    // Its PONG says the interest is in place on every shard: publish only after it.
    let mut hello = Vec::new();
    sub.set_read_timeout(Some(WAIT)).unwrap();
    while !hello.ends_with(b"PONG\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(sub.read(&mut byte).unwrap(), 1, "no PONG: {hello:?}");
        hello.push(byte[0]);
    }
    let mut publisher = std::net::TcpStream::connect(a.addr()).unwrap();
    publisher
        .write_all(b"CONNECT {\"verbose\":false}\r\n")
        .unwrap();
    let body = vec![b'~'; 256 * 1024];
    // The publisher stays within 8 MB of what the local subscriber has read, so that
    // only the stalled route can outgrow max_pending, however slow this machine is.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = read.clone();
    let reader = std::thread::spawn(move || {
        // The local subscriber reads everything: 256 messages.
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        sub.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        while got < 256 * (256 * 1024) {
            match sub.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += buf[..n].iter().filter(|&&b| b == b'~').count(),
            }
            seen.store(got, std::sync::atomic::Ordering::Relaxed);
        }
        got
    });
    for i in 0..256 {
        let deadline = Instant::now() + WAIT;
        while i * body.len() > read.load(std::sync::atomic::Ordering::Relaxed) + (8 << 20) {
            assert!(Instant::now() < deadline, "the local subscriber stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
        publisher
            .write_all(format!("PUB flood {}\r\n", body.len()).as_bytes())
            .unwrap();
        publisher.write_all(&body).unwrap();
        publisher.write_all(b"\r\n").unwrap();
    }
    let cut = a
        .wait_log("Slow Consumer Detected", WAIT)
        .unwrap_or_default();
    assert!(cut.contains("rid:"), "the stalled route was not cut: {cut}");
    // The route is cut by max_pending (the peer never reads); the generous write
    // deadline keeps a subscriber on a loaded machine from being cut for a stall.
    let got = reader.join().unwrap();
    let sub_cut = a.wait_log("cid:", Duration::from_millis(10));
    assert_eq!(
        got,
        256 * 256 * 1024,
        "the local subscriber got it all ({sub_cut:?})"
    );
}

trait RecvHint {
    fn set_recv_buffer_size_hint(&self) -> std::io::Result<()>;
}

impl RecvHint for std::net::TcpStream {
    /// A small receive buffer, so that a peer that stops reading stalls its sender soon.
    fn set_recv_buffer_size_hint(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 4096;
        // SAFETY: setting a socket option on a socket we own, with a valid int.
        let rc = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_interest_is_per_account() {
    let dir = support::TempDir::new("cluster-accounts");
    let conf = |name: &str, routes: &str| {
        dir.write(
            &format!("{name}.conf"),
            &format!(
                "accounts {{\n  RED: {{ users: [{{user: red, password: r}}] }}\n  BLUE: {{ users: [{{user: blue, password: b}}] }}\n}}\n\
                 cluster {{\n  name: C1\n  listen: 127.0.0.1:-1\n  routes: [{routes}]\n}}\n"
            ),
        )
    };
    for other in KINDS {
        let a_conf = conf("a", "");
        let a = Server::start(Kind::Natrium, &["-n", "A", "-c", a_conf.to_str().unwrap()]);
        let b_conf = conf(
            &format!("b-{other:?}"),
            &format!("\"nats://127.0.0.1:{}\"", a.route_port()),
        );
        let b = Server::start(other, &["-n", "B", "-c", b_conf.to_str().unwrap()]);
        let user = |s: &Server, u: &str, p: &str| {
            async_nats::ConnectOptions::with_user_and_password(u.into(), p.into()).connect(s.url())
        };
        let red_a = user(&a, "red", "r").await.unwrap();
        let blue_a = user(&a, "blue", "b").await.unwrap();
        let red_b = user(&b, "red", "r").await.unwrap();
        let blue_b = user(&b, "blue", "b").await.unwrap();
        let mut red_sub = red_b.subscribe("shared.subject").await.unwrap();
        let mut blue_sub = blue_b.subscribe("shared.subject").await.unwrap();
        red_b.flush().await.unwrap();
        blue_b.flush().await.unwrap();
        await_interest(&red_a, &mut red_sub, "shared.subject").await;
        await_interest(&blue_a, &mut blue_sub, "shared.subject").await;
        for i in 0..20 {
            red_a
                .publish("shared.subject", format!("red{i}").into())
                .await
                .unwrap();
        }
        red_a.flush().await.unwrap();
        for i in 0..20 {
            assert_eq!(
                next(&mut red_sub).await.payload,
                format!("red{i}"),
                "{other:?}"
            );
        }
        assert_eq!(
            drain(&mut blue_sub).await,
            0,
            "{other:?}: RED leaked into BLUE"
        );
        assert_eq!(drain(&mut red_sub).await, 0, "{other:?}: duplicates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_routes() {
    let dir = support::TempDir::new("cluster-reload");
    for other in KINDS {
        let b = node(other, "B", &[], &[]);
        let conf = |routes: &str, port: &str| {
            dir.write(
                "a.conf",
                &format!("cluster {{\n  name: C1\n  listen: 127.0.0.1:{port}\n  routes: [{routes}]\n}}\n"),
            )
        };
        let path = conf("", "-1");
        let a = Server::start(Kind::Natrium, &["-n", "A", "-c", path.to_str().unwrap()]);
        let (ca, cb) = (connect(&a).await, connect(&b).await);
        let mut sub = cb.subscribe("reloaded").await.unwrap();
        cb.flush().await.unwrap();
        conf(&format!("\"nats://127.0.0.1:{}\"", b.route_port()), "-1");
        a.signal(libc::SIGHUP);
        assert!(
            a.wait_log("Reloaded: cluster routes", WAIT).is_some(),
            "{other:?}"
        );
        await_interest(&ca, &mut sub, "reloaded").await;
        conf("", "-1");
        a.signal(libc::SIGHUP);
        assert!(
            a.wait_log("Route Removed", WAIT).is_some(),
            "{other:?}: route not closed"
        );
        conf("", "16709");
        a.signal(libc::SIGHUP);
        let refused = a.wait_log("Failed to reload", WAIT).unwrap_or_default();
        assert!(
            refused.contains("config reload not supported for cluster port"),
            "{other:?}: {refused}"
        );
    }
}
