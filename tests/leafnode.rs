//! Leaf nodes (issue #16): a hub and a spoke, natrium and nats-server in every mix,
//! driven by the async-nats client on both servers. Each natrium server runs its
//! client shards and its cluster core, where the leaf connection lives.

mod support;

use std::time::{Duration, Instant};

use async_nats::Client;
use futures::StreamExt;
use support::client::{await_interest, connect, free_port, next, WAIT};
use support::{nats_server_bin, Kind, Server};

fn conf(name: &str, body: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("natrium-leaf-{}-{name}.conf", std::process::id()));
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

/// Pub/sub with wildcards both ways and request/reply both ways, each message once.
async fn exchange(hub: &Server, spoke: &Server) {
    let (h, s) = (connect(hub).await, connect(spoke).await);
    for (pubc, subc, subject) in [(&h, &s, "down"), (&s, &h, "up")] {
        let mut sub = subc.subscribe(format!("{subject}.*")).await.unwrap();
        subc.flush().await.unwrap();
        let probe = format!("{subject}.probe");
        await_interest(pubc, &mut sub, &probe).await;
        for i in 0..50 {
            pubc.publish(format!("{subject}.{i}"), i.to_string().into())
                .await
                .unwrap();
        }
        pubc.flush().await.unwrap();
        for i in 0..50 {
            let m = next(&mut sub).await;
            assert_eq!(m.subject.as_str(), format!("{subject}.{i}"));
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(extra.is_err(), "a message arrived twice: {extra:?}");
        // A responder on the subscriber's side answers the publisher's side.
        let mut svc = subc.subscribe(format!("svc.{subject}")).await.unwrap();
        subc.flush().await.unwrap();
        let responder = subc.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = svc.next().await {
                if let Some(reply) = m.reply {
                    responder.publish(reply, m.payload).await.unwrap();
                    responder.flush().await.unwrap();
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout(
                Duration::from_millis(500),
                pubc.request(format!("svc.{subject}"), "ping".into()),
            )
            .await
            {
                Ok(Ok(r)) => {
                    assert_eq!(&r.payload[..], b"ping");
                    break;
                }
                _ => assert!(Instant::now() < deadline, "no reply across the leaf"),
            }
        }
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_spoke_in_any_mix_exchange_messages_and_requests() {
    let kinds: &[Kind] = &support::kinds();
    for &hub_kind in kinds {
        for &spoke_kind in kinds {
            if hub_kind == Kind::NatsServer && spoke_kind == Kind::NatsServer {
                continue;
            }
            let port = free_port();
            let hub = Server::start(
                hub_kind,
                &[
                    "-c",
                    &conf(
                        "hub",
                        &format!(
                            "server_name: HUB\nleafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"
                        ),
                    ),
                ],
            );
            let spoke = Server::start(
                spoke_kind,
                &[
                    "-c",
                    &conf(
                        "spoke",
                        &format!(
                            "server_name: SPOKE\nleafnodes {{ remotes: [ {{ url: \
                             \"nats://127.0.0.1:{port}\" }} ] }}\n"
                        ),
                    ),
                ],
            );
            eprintln!("hub {hub_kind:?}, spoke {spoke_kind:?}");
            exchange(&hub, &spoke).await;
        }
    }
}

/// A queue group with members on the hub and the spoke: every message reaches exactly
/// one member, and members on both sides get some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_span_the_leaf_and_deliver_once() {
    let kinds: &[Kind] = &support::kinds();
    for &spoke_kind in kinds {
        let port = free_port();
        let hub = Server::start(
            Kind::Natrium,
            &[
                "-c",
                &conf(
                    "qhub",
                    &format!("leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"),
                ),
            ],
        );
        let spoke = Server::start(
            spoke_kind,
            &[
                "-c",
                &conf(
                    "qspoke",
                    &format!(
                        "leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{port}\" }} ] }}\n"
                    ),
                ),
            ],
        );
        let (h, s) = (connect(&hub).await, connect(&spoke).await);
        let mut near = h.queue_subscribe("work", "q".into()).await.unwrap();
        let mut far = s.queue_subscribe("work", "q".into()).await.unwrap();
        h.flush().await.unwrap();
        s.flush().await.unwrap();
        // The spoke's member is known to the hub once a plain probe crosses too.
        let mut probe = s.subscribe("work.ready").await.unwrap();
        s.flush().await.unwrap();
        await_interest(&h, &mut probe, "work.ready").await;
        let total = 400;
        for i in 0..total {
            h.publish("work", i.to_string().into()).await.unwrap();
        }
        h.flush().await.unwrap();
        let (mut a, mut b) = (0, 0);
        let deadline = Instant::now() + WAIT;
        while a + b < total && Instant::now() < deadline {
            tokio::select! {
                Some(_) = near.next() => a += 1,
                Some(_) = far.next() => b += 1,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        assert_eq!(a + b, total, "spoke {spoke_kind:?}: hub {a}, spoke {b}");
        assert!(a > 0 && b > 0, "spoke {spoke_kind:?}: hub {a}, spoke {b}");
        let late = tokio::time::timeout(Duration::from_millis(300), async {
            tokio::select! { m = near.next() => m, m = far.next() => m }
        })
        .await;
        assert!(late.is_err(), "a message arrived twice");
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The leaf entry of `/leafz?subs=1` on `http` whose subscriptions list `subject`,
/// waited for.
fn leaf_showing(http: u16, subject: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let leafz = support::http_get_json(http, "/leafz?subs=1");
        let found = leafz["leafs"].as_array().and_then(|leafs| {
            leafs
                .iter()
                .find(|l| {
                    l["subscriptions_list"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s == subject))
                })
                .cloned()
        });
        if let Some(l) = found {
            assert_eq!(leafz["leafnodes"], 1, "{leafz}");
            return l;
        }
        assert!(Instant::now() < deadline, "{subject} never shown: {leafz}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/leafz` (with `subs` and `acc`) and the `/varz` leaf figures on hub and spoke, key
/// sets as nats-server's, and the count back to 0 when the spoke is gone.
#[test]
fn leafz_and_varz_show_the_leaf_as_nats_server_does() {
    use std::io::Write;
    let mixes: &[(Kind, Kind)] = if nats_server_bin().is_some() {
        &[
            (Kind::Natrium, Kind::Natrium),
            (Kind::NatsServer, Kind::Natrium),
            (Kind::Natrium, Kind::NatsServer),
        ]
    } else {
        &[(Kind::Natrium, Kind::Natrium)]
    };
    let (mut hub_shapes, mut spoke_shapes) = (Vec::new(), Vec::new());
    for &(hub_kind, spoke_kind) in mixes {
        let port = free_port();
        let hub_conf = conf(
            "zhub",
            &format!(
                "server_name: HUB\nleafnodes {{ listen: \"127.0.0.1:{port}\", \
                 authorization {{ timeout: 3 }} }}\n"
            ),
        );
        let hub = support::Monitored::start(hub_kind, &["-c", &hub_conf]);
        let spoke_conf = conf(
            "zspoke",
            &format!(
                "server_name: SPOKE\nleafnodes {{ remotes: [ {{ url: \
                 \"nats://127.0.0.1:{port}\", deny_imports: [\"secret.>\"] }} ] }}\n"
            ),
        );
        let mut spoke = support::Monitored::start(spoke_kind, &["-c", &spoke_conf]);
        let mut sc = std::net::TcpStream::connect(spoke.server.addr()).unwrap();
        sc.write_all(b"CONNECT {}\r\nSUB watched.subject 1\r\nSUB work q 2\r\nPING\r\n")
            .unwrap();
        let mut hc = std::net::TcpStream::connect(hub.server.addr()).unwrap();
        hc.write_all(b"CONNECT {}\r\nSUB hub.subject 1\r\nPING\r\n")
            .unwrap();
        let mix = format!("hub {hub_kind:?}, spoke {spoke_kind:?}");

        let at_hub = leaf_showing(hub.http, "watched.subject");
        assert_eq!(at_hub["name"], "SPOKE", "{mix}: {at_hub}");
        assert_eq!(at_hub["is_spoke"], false, "{mix}: {at_hub}");
        assert_eq!(at_hub["account"], "$G", "{mix}: {at_hub}");
        let list = at_hub["subscriptions_list"].as_array().unwrap();
        assert!(list.iter().any(|s| s == "work"), "{mix}: {at_hub}");
        assert_eq!(
            at_hub["subscriptions"].as_u64(),
            Some(list.len() as u64),
            "{mix}"
        );
        let at_spoke = leaf_showing(spoke.http, "hub.subject");
        assert_eq!(at_spoke["name"], "HUB", "{mix}: {at_spoke}");
        assert_eq!(at_spoke["is_spoke"], true, "{mix}: {at_spoke}");
        assert_eq!(at_spoke["port"].as_u64(), Some(port as u64), "{mix}");

        let plain = support::http_get_json(hub.http, "/leafz");
        assert!(
            plain["leafs"][0].get("subscriptions_list").is_none(),
            "{mix}: {plain}"
        );
        let other = support::http_get_json(hub.http, "/leafz?acc=NOPE");
        assert_eq!(other["leafnodes"], 0, "{mix}: {other}");
        let mine = support::http_get_json(hub.http, "/leafz?acc=$G");
        assert_eq!(mine["leafnodes"], 1, "{mix}: {mine}");

        let hub_varz = support::http_get_json(hub.http, "/varz");
        assert_eq!(hub_varz["leafnodes"], 1, "{mix}");
        assert_eq!(
            hub_varz["leaf"]["port"].as_u64(),
            Some(port as u64),
            "{mix}"
        );
        assert_eq!(hub_varz["leaf"]["auth_timeout"], 3, "{mix}");
        let spoke_varz = support::http_get_json(spoke.http, "/varz");
        assert_eq!(spoke_varz["leafnodes"], 1, "{mix}");
        let remote = &spoke_varz["leaf"]["remotes"][0];
        assert_eq!(remote["local_account"], "$G", "{mix}: {remote}");
        assert_eq!(
            remote["urls"][0].as_str(),
            Some(format!("127.0.0.1:{port}").as_str()),
            "{mix}: {remote}"
        );
        assert_eq!(remote["deny"]["imports"][0], "secret.>", "{mix}: {remote}");
        assert!(spoke_varz["leaf"].get("port").is_none(), "{mix}");
        if hub_kind != spoke_kind {
            hub_shapes.push((hub_kind, keys(&at_hub), keys(&hub_varz["leaf"])));
            spoke_shapes.push((spoke_kind, keys(&at_spoke), keys(&spoke_varz["leaf"])));
        }

        spoke.server.signal(9);
        spoke.server.wait_exit(WAIT);
        let deadline = Instant::now() + WAIT;
        while support::http_get_json(hub.http, "/varz")["leafnodes"] != 0 {
            assert!(Instant::now() < deadline, "{mix}: the leaf never went away");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(support::http_get_json(hub.http, "/leafz")["leafnodes"], 0);
    }
    for shapes in [hub_shapes, spoke_shapes] {
        let [a, b] = &shapes[..] else {
            assert!(nats_server_bin().is_none(), "{} shapes", shapes.len());
            continue;
        };
        assert_eq!(a.1, b.1, "/leafz entry keys: {:?} vs {:?}", a.0, b.0);
        assert_eq!(a.2, b.2, "/varz leaf keys: {:?} vs {:?}", a.0, b.0);
    }
}

async fn login(server: &Server, user: &str) -> Client {
    tokio::time::timeout(
        WAIT,
        async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
            .connect(server.url()),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

/// A leaf binds one account on each side: the hub's user picks the hub account, the
/// remote's `account` the spoke's; other accounts on either side see nothing, and
/// `deny_imports`/`deny_exports` hold back what they name. A wrong password is refused
/// with the reference's errors on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_binds_one_account_on_each_side_and_denies_what_it_names() {
    let mixes: &[(Kind, Kind)] = if nats_server_bin().is_some() {
        &[
            (Kind::Natrium, Kind::Natrium),
            (Kind::NatsServer, Kind::Natrium),
            (Kind::Natrium, Kind::NatsServer),
        ]
    } else {
        &[(Kind::Natrium, Kind::Natrium)]
    };
    for &(hub_kind, spoke_kind) in mixes {
        let mix = format!("hub {hub_kind:?}, spoke {spoke_kind:?}");
        let port = free_port();
        let hub = Server::start(
            hub_kind,
            &[
                "-c",
                &conf(
                    "ahub",
                    &format!(
                        "accounts {{ A {{ users: [{{user: a, password: a}}] }}, \
                         B {{ users: [{{user: b, password: b}}] }} }}\n\
                         leafnodes {{ listen: \"127.0.0.1:{port}\", authorization {{ users: \
                         [ {{user: la, password: pa, account: A}} ] }} }}\n"
                    ),
                ),
            ],
        );
        let spoke_conf = |name: &str, password: &str| {
            conf(
                name,
                &format!(
                    "accounts {{ X {{ users: [{{user: x, password: x}}] }}, \
                     Y {{ users: [{{user: y, password: y}}] }} }}\n\
                     leafnodes {{ reconnect: 1, remotes: [ {{ url: \
                     \"nats://la:{password}@127.0.0.1:{port}\", account: X, \
                     deny_imports: [\"secret.>\"], deny_exports: [\"private.>\"] }} ] }}\n"
                ),
            )
        };
        let spoke = Server::start(spoke_kind, &["-c", &spoke_conf("aspoke", "pa")]);
        let (a, b) = (login(&hub, "a").await, login(&hub, "b").await);
        let (x, y) = (login(&spoke, "x").await, login(&spoke, "y").await);
        let mut at_b = b.subscribe(">").await.unwrap();
        let mut at_y = y.subscribe(">").await.unwrap();
        b.flush().await.unwrap();
        y.flush().await.unwrap();

        // Down: hub account A to spoke account X; secret.> is not imported.
        let mut at_x = x.subscribe(">").await.unwrap();
        x.flush().await.unwrap();
        await_interest(&a, &mut at_x, "down.probe").await;
        for subject in ["secret.1", "down.1"] {
            a.publish(subject, "m".into()).await.unwrap();
        }
        b.publish("down.2", "m".into()).await.unwrap();
        b.flush().await.unwrap();
        a.publish("down.3", "m".into()).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(next(&mut at_x).await.subject.as_str(), "down.1", "{mix}");
        assert_eq!(next(&mut at_x).await.subject.as_str(), "down.3", "{mix}");

        // Up: spoke account X to hub account A; private.> is not exported.
        let a_sub = login(&hub, "a").await;
        let mut at_a = a_sub.subscribe("up.>").await.unwrap();
        let mut at_a_private = a_sub.subscribe("private.>").await.unwrap();
        a_sub.flush().await.unwrap();
        await_interest(&x, &mut at_a, "up.probe").await;
        for subject in ["private.1", "up.1"] {
            x.publish(subject, "m".into()).await.unwrap();
        }
        y.publish("up.2", "m".into()).await.unwrap();
        y.flush().await.unwrap();
        x.publish("up.3", "m".into()).await.unwrap();
        x.flush().await.unwrap();
        assert_eq!(next(&mut at_a).await.subject.as_str(), "up.1", "{mix}");
        assert_eq!(next(&mut at_a).await.subject.as_str(), "up.3", "{mix}");
        let leaked = tokio::time::timeout(Duration::from_millis(300), at_a_private.next()).await;
        assert!(
            leaked.is_err(),
            "{mix}: deny_exports let through {leaked:?}"
        );

        // Accounts B and Y saw only their own publications.
        assert_eq!(next(&mut at_b).await.subject.as_str(), "down.2", "{mix}");
        assert_eq!(next(&mut at_y).await.subject.as_str(), "up.2", "{mix}");
        for (name, sub) in [("B", &mut at_b), ("Y", &mut at_y)] {
            let leaked = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
            assert!(leaked.is_err(), "{mix}: account {name} got {leaked:?}");
        }

        // A wrong password: refused by the hub, reported by the spoke, retried.
        let bad = Server::start(spoke_kind, &["-c", &spoke_conf("abad", "WRONG")]);
        let logged = hub
            .wait_log("authentication error - User \"la\"", WAIT)
            .unwrap_or_default();
        assert!(logged.contains("[ERR]"), "{mix}: hub log {logged:?}");
        assert!(
            hub.wait_log("Leafnode connection closed: Authentication Failure", WAIT)
                .is_some(),
            "{mix}"
        );
        assert!(
            bad.wait_log("Leafnode Error 'Authorization Violation'", WAIT)
                .is_some(),
            "{mix}: the spoke did not report the refusal"
        );
        assert!(
            bad.wait_log("Leafnode connection closed: Client Closed", WAIT)
                .is_some(),
            "{mix}"
        );
        drop(bad);
        // The good leaf still works (at_x saw X's own publications meanwhile).
        a.publish("down.4", "m".into()).await.unwrap();
        a.flush().await.unwrap();
        loop {
            let m = next(&mut at_x).await;
            if m.subject.starts_with("up.") || m.subject.starts_with("private.") {
                continue;
            }
            assert_eq!(m.subject.as_str(), "down.4", "{mix}");
            break;
        }
    }
}

/// A hub that is a cluster of two (natrium and nats-server in every mix), the spoke
/// attached to the first: clients on the other hub node and on the spoke exchange
/// messages and requests both ways, each message once, and a queue group with members
/// on the far hub node and on the spoke delivers each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_cluster_carries_leaf_traffic_across_its_routes() {
    let kinds: &[Kind] = &support::kinds();
    for &near_kind in kinds {
        for &far_kind in kinds {
            for &spoke_kind in kinds {
                let all = [near_kind, far_kind, spoke_kind];
                if all.iter().all(|k| *k == Kind::NatsServer) {
                    continue;
                }
                let mix = format!("near {near_kind:?}, far {far_kind:?}, spoke {spoke_kind:?}");
                eprintln!("{mix}");
                let (leaf_port, route_port) = (free_port(), free_port());
                let near = Server::start(
                    near_kind,
                    &[
                        "-c",
                        &conf(
                            "cnear",
                            &format!(
                                "server_name: NEAR\ncluster {{ name: HUBC, listen: \
                                 \"127.0.0.1:{route_port}\" }}\nleafnodes {{ listen: \
                                 \"127.0.0.1:{leaf_port}\" }}\n"
                            ),
                        ),
                    ],
                );
                let far = Server::start(
                    far_kind,
                    &[
                        "-c",
                        &conf(
                            "cfar",
                            &format!(
                                "server_name: FAR\ncluster {{ name: HUBC, listen: \
                                 \"127.0.0.1:-1\", routes: [\"nats://127.0.0.1:{route_port}\"] \
                                 }}\n"
                            ),
                        ),
                    ],
                );
                let spoke = Server::start(
                    spoke_kind,
                    &[
                        "-c",
                        &conf(
                            "cspoke",
                            &format!(
                                "server_name: SPOKE\nleafnodes {{ remotes: [ {{ url: \
                                 \"nats://127.0.0.1:{leaf_port}\" }} ] }}\n"
                            ),
                        ),
                    ],
                );
                exchange(&far, &spoke).await;
                let (f, s) = (connect(&far).await, connect(&spoke).await);
                let mut at_far = f.queue_subscribe("cwork", "q".into()).await.unwrap();
                let mut at_spoke = s.queue_subscribe("cwork", "q".into()).await.unwrap();
                f.flush().await.unwrap();
                s.flush().await.unwrap();
                let mut probe = s.subscribe("cwork.ready").await.unwrap();
                s.flush().await.unwrap();
                let n = connect(&near).await;
                await_interest(&n, &mut probe, "cwork.ready").await;
                let mut fprobe = f.subscribe("cwork.fready").await.unwrap();
                f.flush().await.unwrap();
                await_interest(&n, &mut fprobe, "cwork.fready").await;
                let total = 300;
                for i in 0..total {
                    n.publish("cwork", i.to_string().into()).await.unwrap();
                }
                n.flush().await.unwrap();
                let (mut a, mut b) = (0, 0);
                let deadline = Instant::now() + WAIT;
                while a + b < total && Instant::now() < deadline {
                    tokio::select! {
                        Some(_) = at_far.next() => a += 1,
                        Some(_) = at_spoke.next() => b += 1,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                assert_eq!(a + b, total, "{mix}: far {a}, spoke {b}");
                let late = tokio::time::timeout(Duration::from_millis(300), async {
                    tokio::select! { m = at_far.next() => m, m = at_spoke.next() => m }
                })
                .await;
                assert!(late.is_err(), "{mix}: a message arrived twice");
            }
        }
    }
}

/// Three servers whose remotes make a ring: the loop is found through the `$LDS.`
/// subject, one connection is refused with the reference's error, and what is left
/// (a chain) delivers each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_leafs_is_detected_and_broken() {
    let rings: &[[Kind; 3]] = if nats_server_bin().is_some() {
        &[
            [Kind::Natrium, Kind::Natrium, Kind::Natrium],
            [Kind::Natrium, Kind::NatsServer, Kind::Natrium],
        ]
    } else {
        &[[Kind::Natrium, Kind::Natrium, Kind::Natrium]]
    };
    for ring in rings {
        let ports = [free_port(), free_port(), free_port()];
        let servers: Vec<Server> = (0..3)
            .map(|i| {
                let next = ports[(i + 1) % 3];
                Server::start(
                    ring[i],
                    &[
                        "-c",
                        &conf(
                            &format!("ring{i}"),
                            &format!(
                                "server_name: R{i}\nleafnodes {{ listen: \"127.0.0.1:{}\", \
                                 remotes: [ {{ url: \"nats://127.0.0.1:{next}\" }} ] }}\n",
                                ports[i]
                            ),
                        ),
                    ],
                )
            })
            .collect();
        let deadline = Instant::now() + WAIT;
        let needle = "Loop detected for leafnode account=\"$G\"";
        while !servers
            .iter()
            .any(|s| s.wait_log(needle, Duration::from_millis(50)).is_some())
        {
            assert!(Instant::now() < deadline, "{ring:?}: no loop detected");
        }
        // What is left delivers at most once (nats-server itself may leave a server
        // cut off after breaking a ring, so reachability is not asserted), and no
        // message circles.
        let clients = [
            connect(&servers[0]).await,
            connect(&servers[1]).await,
            connect(&servers[2]).await,
        ];
        let mut subs = Vec::new();
        for c in &clients {
            subs.push(c.subscribe("ring.>").await.unwrap());
            c.flush().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, c) in clients.iter().enumerate() {
            c.publish(format!("ring.{i}"), "once".into()).await.unwrap();
            c.flush().await.unwrap();
        }
        for (j, sub) in subs.iter_mut().enumerate() {
            let mut seen = std::collections::HashMap::new();
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(500), sub.next()).await
            {
                *seen.entry(m.subject.to_string()).or_insert(0) += 1;
            }
            assert_eq!(
                seen.get(&format!("ring.{j}")),
                Some(&1),
                "{ring:?}: {seen:?}"
            );
            assert!(seen.values().all(|n| *n == 1), "{ring:?} R{j}: {seen:?}");
        }
    }
}

/// The hub is killed and a new one started on the same ports at once (as supervisors
/// do): the spoke dials again, and traffic flows both ways as before, with the
/// spoke's own clients kept all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_comes_back_and_the_spoke_rejoins() {
    let mixes: &[(Kind, Kind)] = if nats_server_bin().is_some() {
        &[
            (Kind::Natrium, Kind::Natrium),
            (Kind::NatsServer, Kind::Natrium),
            (Kind::Natrium, Kind::NatsServer),
        ]
    } else {
        &[(Kind::Natrium, Kind::Natrium)]
    };
    for &(hub_kind, spoke_kind) in mixes {
        let mix = format!("hub {hub_kind:?}, spoke {spoke_kind:?}");
        let (port, client_port) = (free_port(), free_port());
        let hub_conf = conf(
            "khub",
            &format!("port: {client_port}\nleafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"),
        );
        let mut hub = Server::start(hub_kind, &["-c", &hub_conf]);
        let spoke = Server::start(
            spoke_kind,
            &[
                "-c",
                &conf(
                    "kspoke",
                    &format!(
                        "leafnodes {{ reconnect: 1, remotes: [ {{ url: \
                         \"nats://127.0.0.1:{port}\" }} ] }}\n"
                    ),
                ),
            ],
        );
        let s = connect(&spoke).await;
        let mut kept = s.subscribe("kept.*").await.unwrap();
        s.flush().await.unwrap();
        {
            let h = connect(&hub).await;
            await_interest(&h, &mut kept, "kept.before").await;
        }
        hub.signal(libc::SIGKILL);
        hub.wait_exit(WAIT);
        drop(hub);
        let hub = Server::start(hub_kind, &["-c", &hub_conf]);
        let h = connect(&hub).await;
        await_interest(&h, &mut kept, "kept.after").await;
        h.publish("kept.last", "x".into()).await.unwrap();
        h.flush().await.unwrap();
        assert_eq!(next(&mut kept).await.subject.as_str(), "kept.last", "{mix}");
        exchange(&hub, &spoke).await;
    }
}

/// What a peer gets on the leaf port for bad input: the same bytes to natrium and to
/// nats-server, the same answer (INFO, pings and the reference's `$SYS` service
/// interest left out) and the same close.
#[test]
fn bad_input_on_the_leaf_port_gets_the_reference_answers() {
    use std::io::{Read, Write};
    let Some(_) = nats_server_bin() else {
        return;
    };
    let cases: &[&[u8]] = &[
        b"CONNECT {\"lang\":\"go\",\"verbose\":false}\r\n",
        b"LS+ foo\r\n",
        b"GARBAGE\r\n",
        b"PING\r\n",
        b"CONNECT {bad json\r\n",
        b"CONNECT {\"gateway\":\"G\"}\r\n",
        b"CONNECT {\"cluster\":\"a b\"}\r\n",
        b"CONNECT {}\r\nLS+ a b c d e\r\nPING\r\n",
        b"CONNECT {}\r\nLS+ foo bar\r\nPING\r\n",
        b"CONNECT {}\r\nLMSG foo x\r\n",
    ];
    let answer = |port: u16, input: &[u8]| -> Vec<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s.write_all(input).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        let mut lines: Vec<String> = String::from_utf8_lossy(&got)
            .split("\r\n")
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("INFO ")
                    && !l.starts_with("LS+ $SYS.")
                    && !l.starts_with("LS+ $LDS.")
                    && *l != "PING"
                    && *l != "PONG"
            })
            .map(str::to_string)
            .collect();
        lines.push(if closed { "<closed>" } else { "<open>" }.into());
        lines
    };
    let mut ports = Vec::new();
    let mut servers = Vec::new();
    for kind in [Kind::Natrium, Kind::NatsServer] {
        let port = free_port();
        servers.push(Server::start(
            kind,
            &[
                "-c",
                &conf(
                    "bad",
                    &format!("leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"),
                ),
            ],
        ));
        ports.push(port);
    }
    for input in cases {
        let ours = answer(ports[0], input);
        let theirs = answer(ports[1], input);
        assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(input));
    }
    for s in &servers {
        let log = s.wait_log("processLeafSub Parse Error: 'a b c d e'", WAIT);
        assert!(
            log.is_some_and(|l| l.contains("[ERR]")),
            "not logged as the reference"
        );
    }
}

/// A remote bound to an account the server does not have: nats-server refuses to
/// start (while `-t` passes the file), and so does natrium, in the same words.
#[test]
fn a_remote_bound_to_a_missing_account_refuses_to_start() {
    let path = conf(
        "missing-account",
        "leafnodes { remotes: [ { url: \"nats://127.0.0.1:1\", account: NOPE } ] }\n",
    );
    for (bin, text) in support::refused_start(&path) {
        let check = std::process::Command::new(&bin)
            .args(["-c", &path, "-t"])
            .output()
            .unwrap();
        assert!(check.status.success(), "{bin:?} -t refused the file");
        assert!(
            text.contains("cannot find local account \"NOPE\" specified in leafnode remote"),
            "{bin:?}: {text}"
        );
    }
}

/// `leafnodes { min_version }` on the hub: a spoke older than it is told so and
/// refused, by natrium as by nats-server; one at least that recent gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_refuses_spokes_older_than_min_version() {
    let kinds: &[Kind] = &support::kinds();
    for &hub_kind in kinds {
        for (min, admitted) in [("2.99.0", false), ("2.10.0", true)] {
            let port = free_port();
            let hub = Server::start(
                hub_kind,
                &[
                    "-c",
                    &conf(
                        "minhub",
                        &format!(
                            "leafnodes {{ listen: \"127.0.0.1:{port}\", min_version: \"{min}\" }}\n"
                        ),
                    ),
                ],
            );
            let spoke = Server::start(
                Kind::Natrium,
                &[
                    "-c",
                    &conf(
                        "minspoke",
                        &format!(
                            "leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{port}\" }} ] }}\n"
                        ),
                    ),
                ],
            );
            if admitted {
                exchange(&hub, &spoke).await;
            } else {
                let want = format!("minimum version required is \"{min}\"");
                assert!(
                    spoke.logged(&format!("connection rejected since {want}"), WAIT),
                    "{hub_kind:?}: the spoke was not told about {min}"
                );
            }
        }
    }
}

/// `leafnodes.remotes` reload as nats-server reloads them: a remote added by SIGHUP
/// is dialed, one removed is disconnected; any other leaf node change is refused
/// with the field nats-server names. Run with natrium and nats-server as the spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_leaf_remotes() {
    let dir = support::TempDir::new("leaf-reload");
    for spoke_kind in support::kinds() {
        eprintln!("spoke {spoke_kind:?}");
        let port = free_port();
        let hub = Server::start(
            Kind::Natrium,
            &[
                "-c",
                &conf(
                    &format!("reload-hub-{port}"),
                    &format!("server_name: HUB\nleafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"),
                ),
            ],
        );
        let write = |remotes: &str, extra: &str| {
            dir.write(
                "spoke.conf",
                &format!("server_name: SPOKE\nleafnodes {{ remotes: [{remotes}] {extra} }}\n"),
            )
        };
        let path = write("", "");
        let spoke = Server::start(spoke_kind, &["-c", path.to_str().unwrap()]);
        let (h, s) = (connect(&hub).await, connect(&spoke).await);
        let mut sub = h.subscribe("reloaded").await.unwrap();
        h.flush().await.unwrap();
        let remote = format!("{{ url: \"nats://127.0.0.1:{port}\" }}");
        write(&remote, "");
        spoke.signal(libc::SIGHUP);
        assert!(spoke.logged("Reloaded server configuration", WAIT));
        await_interest(&s, &mut sub, "reloaded").await;
        write("", "");
        spoke.signal(libc::SIGHUP);
        assert!(
            hub.logged("Leafnode connection closed", WAIT),
            "{spoke_kind:?}: the removed remote stayed connected"
        );
        write("", ", reconnect: 5");
        spoke.signal(libc::SIGHUP);
        let refused = spoke.wait_log("Failed to reload", WAIT).unwrap_or_default();
        assert!(
            refused.contains(
                "config reload not supported for LeafNode: field \"ReconnectInterval\": old=1s, \
                 new=5s"
            ),
            "{spoke_kind:?}: {refused}"
        );
    }
}

/// A hub written by hand that asks for a subject and then stops reading: the spoke
/// cuts the leaf connection as a slow consumer, and its own subscribers keep every
/// message (nothing on the spoke waits for the stalled hub).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_hub_is_cut_and_local_clients_lose_nothing() {
    use std::io::{Read, Write};
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let spoke = Server::start(
        Kind::Natrium,
        &[
            "-c",
            &conf(
                &format!("stalled-{fake_port}"),
                &format!(
                    "max_pending: 1048576\nleafnodes {{ remotes: [ {{ url: \
                     \"nats://127.0.0.1:{fake_port}\" }} ] }}\n"
                ),
            ),
        ],
    );
    let (mut hub, _) = fake.accept().unwrap();
    hub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let info = serde_json::json!({
        "server_id": "NFAKEHUB", "server_name": "fakehub", "version": "2.15.1",
        "proto": 1, "host": "127.0.0.1", "port": fake_port, "headers": true,
        "max_payload": 1048576, "nonce": "abc", "client_id": 1,
        "leafnode_urls": [format!("127.0.0.1:{fake_port}")],
    });
    hub.write_all(format!("INFO {info}\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !String::from_utf8_lossy(&got).contains("PING\r\n") {
        let n = hub.read(&mut buf).unwrap();
        assert!(n > 0, "the spoke closed the leaf");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("CONNECT {"));
    hub.write_all(format!("INFO {info}\r\nLS+ stall\r\nPING\r\n").as_bytes())
        .unwrap();
    let mut pong = Vec::new();
    while !String::from_utf8_lossy(&pong).contains("PONG") {
        let n = hub.read(&mut buf).unwrap();
        assert!(n > 0, "the spoke closed the leaf");
        pong.extend_from_slice(&buf[..n]);
    }
    // From here the hub reads nothing.
    let c = connect(&spoke).await;
    let mut local = c.subscribe("stall").await.unwrap();
    c.flush().await.unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    let mut sent = 0u32;
    let deadline = Instant::now() + WAIT;
    let publisher = connect(&spoke).await;
    let cut = loop {
        if let Some(line) = spoke.wait_log("Slow Consumer Detected", Duration::from_millis(1)) {
            break line;
        }
        for _ in 0..1000 {
            publisher.publish("stall", payload.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
        sent += 1000;
        assert!(Instant::now() < deadline, "the stalled hub was never cut");
    };
    assert!(cut.contains(" - lid:"), "not the leaf that was cut: {cut}");
    for _ in 0..sent {
        next(&mut local).await;
    }
    publisher.publish("stall", "after".into()).await.unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(&next(&mut local).await.payload[..], b"after");
    drop(hub);
}
