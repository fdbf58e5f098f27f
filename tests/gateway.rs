//! Gateways (issue #15): superclusters on loopback, natrium and nats-server clusters
//! in every mix, driven by the async-nats client on every server. Each natrium
//! server runs its gateway connections on its cluster core.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use async_nats::Client;
use futures::StreamExt;
use support::client::{await_interest, connect, free_port, next, WAIT};
use support::{Kind, Server};

fn conf(name: &str, body: &str) -> String {
    let path = std::env::temp_dir().join(format!("natrium-gw-{}-{name}.conf", std::process::id()));
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

/// A one-server cluster named `name` with its gateway on `port`, dialing `remotes`
/// (name, port).
fn gateway_server(
    kind: Kind,
    name: &str,
    port: u16,
    remotes: &[(&str, u16)],
    extra: &str,
) -> Server {
    let list: Vec<String> = remotes
        .iter()
        .map(|(n, p)| format!("{{name: {n}, url: \"nats://127.0.0.1:{p}\"}}"))
        .collect();
    let body = format!(
        "server_name: {name}1\n{extra}\ngateway {{ name: {name}, listen: \"127.0.0.1:{port}\", \
         gateways: [{}] }}\n",
        list.join(", ")
    );
    let path = conf(&format!("{name}-{port}"), &body);
    Server::start(kind, &["-c", &path])
}

/// Subscribes `subject` on `sub_side` and waits until `pub_side` reaches it.
async fn crossing(pub_side: &Client, sub_side: &Client, subject: &str) -> async_nats::Subscriber {
    let mut sub = sub_side.subscribe(subject.to_string()).await.unwrap();
    sub_side.flush().await.unwrap();
    let probe = subject.replace(['*', '>'], "probe");
    await_interest(pub_side, &mut sub, &probe).await;
    sub
}

/// A responder on `client` for `subject`, echoing the payload.
fn responder(client: &Client, mut svc: async_nats::Subscriber) -> tokio::task::JoinHandle<()> {
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(reply) = m.reply {
                c.publish(reply, m.payload).await.unwrap();
                c.flush().await.unwrap();
            }
        }
    })
}

/// A request with a reply subject subscribed just before it (no shared inbox):
/// the interest in the reply may not have reached the other cluster yet, which is
/// what the `_GR_.` rewrite is for.
async fn fresh_inbox_request(c: &Client, subject: &str, payload: &str) -> Vec<u8> {
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.unwrap();
    c.publish_with_reply(subject.to_string(), inbox, payload.to_string().into())
        .await
        .unwrap();
    c.flush().await.unwrap();
    next(&mut sub).await.payload.to_vec()
}

/// Pub/sub with wildcards and requests both ways between clusters, each message once.
async fn exchange(a: &Client, b: &Client) {
    for (pubc, subc, tag) in [(a, b, "ab"), (b, a, "ba")] {
        let mut sub = crossing(pubc, subc, &format!("{tag}.*")).await;
        for i in 0..50 {
            pubc.publish(format!("{tag}.{i}"), i.to_string().into())
                .await
                .unwrap();
        }
        pubc.flush().await.unwrap();
        for i in 0..50 {
            let m = next(&mut sub).await;
            assert_eq!(m.subject.as_str(), format!("{tag}.{i}"));
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(extra.is_err(), "a message arrived twice: {extra:?}");
        let svc = crossing(pubc, subc, &format!("svc.{tag}")).await;
        let task = responder(subc, svc);
        let r = tokio::time::timeout(WAIT, pubc.request(format!("svc.{tag}"), "ping".into()))
            .await
            .expect("request timed out")
            .expect("request");
        assert_eq!(&r.payload[..], b"ping");
        for i in 0..5 {
            let payload = format!("fresh {i}");
            let got = tokio::time::timeout(
                WAIT,
                fresh_inbox_request(pubc, &format!("svc.{tag}"), &payload),
            )
            .await
            .expect("no response on a fresh inbox");
            assert_eq!(got, payload.as_bytes());
        }
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_in_any_mix_exchange_messages_and_requests() {
    let kinds = support::kinds();
    for &ka in &kinds {
        for &kb in &kinds {
            if ka == Kind::NatsServer && kb == Kind::NatsServer {
                continue;
            }
            eprintln!("GA {ka:?}, GB {kb:?}");
            let (pa, pb) = (free_port(), free_port());
            // Only GA is told of GB: GB dials back from what GA's connection said.
            let ga = gateway_server(ka, "GA", pa, &[("GB", pb)], "");
            let gb = gateway_server(kb, "GB", pb, &[], "");
            let (a, b) = (connect(&ga).await, connect(&gb).await);
            exchange(&a, &b).await;
        }
    }
}

/// Queue members in the publisher's cluster always win; a group with members only in
/// the other cluster gets every message there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_prefer_the_local_cluster() {
    for kb in support::kinds() {
        eprintln!("GA natrium, GB {kb:?}");
        let (pa, pb) = (free_port(), free_port());
        let ga = gateway_server(Kind::Natrium, "GA", pa, &[("GB", pb)], "");
        let gb = gateway_server(kb, "GB", pb, &[("GA", pa)], "");
        let (a, b) = (connect(&ga).await, connect(&gb).await);
        let mut remote = b.queue_subscribe("work", "q".into()).await.unwrap();
        b.flush().await.unwrap();
        // The remote member is reachable: a probe on the group's subject gets there.
        await_interest(&a, &mut remote, "work").await;
        let mut local = a.queue_subscribe("work", "q".into()).await.unwrap();
        a.flush().await.unwrap();
        let mut local2 = a.queue_subscribe("work", "q".into()).await.unwrap();
        a.flush().await.unwrap();
        for i in 0..200 {
            a.publish("work", i.to_string().into()).await.unwrap();
        }
        a.flush().await.unwrap();
        let mut got = 0;
        let deadline = Instant::now() + WAIT;
        while got < 200 && Instant::now() < deadline {
            tokio::select! {
                Some(_) = local.next() => got += 1,
                Some(_) = local2.next() => got += 1,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        assert_eq!(got, 200, "local members got {got} of 200");
        let stray = tokio::time::timeout(Duration::from_millis(300), remote.next()).await;
        assert!(stray.is_err(), "a remote member got a message: {stray:?}");
        // With the local members gone, the other cluster's member takes them all
        // (once the server has seen that this cluster has no member left).
        local.unsubscribe().await.unwrap();
        local2.unsubscribe().await.unwrap();
        a.flush().await.unwrap();
        await_interest(&a, &mut remote, "work").await;
        for i in 0..100 {
            a.publish("work", i.to_string().into()).await.unwrap();
        }
        a.flush().await.unwrap();
        for _ in 0..100 {
            next(&mut remote).await;
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), remote.next()).await;
        assert!(extra.is_err(), "a message arrived twice: {extra:?}");
    }
}

/// Three clusters where only GA->GB and GC->GB are configured: gossip tells GA and
/// GC of each other and they connect, so a message from GA reaches GC directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_mesh_through_gossip() {
    for kb in support::kinds() {
        eprintln!("GB {kb:?}");
        let (pa, pb, pc) = (free_port(), free_port(), free_port());
        let gb = gateway_server(kb, "GB", pb, &[], "");
        let ga = gateway_server(Kind::Natrium, "GA", pa, &[("GB", pb)], "");
        let gc = gateway_server(Kind::Natrium, "GC", pc, &[("GB", pb)], "");
        assert!(
            ga.logged("Outbound gateway connection to \"GC\"", WAIT),
            "GA never connected to GC"
        );
        assert!(gc.logged("Outbound gateway connection to \"GA\"", WAIT));
        let (a, c) = (connect(&ga).await, connect(&gc).await);
        let mut sub = crossing(&a, &c, "tri.>").await;
        a.publish("tri.x", "hello".into()).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(&next(&mut sub).await.payload[..], b"hello");
        let b = connect(&gb).await;
        let mut sub_b = crossing(&c, &b, "tri2").await;
        c.publish("tri2", "to b".into()).await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(&next(&mut sub_b).await.payload[..], b"to b");
    }
}

/// A cluster of two servers (routes) and a one-server cluster: a message from the
/// other cluster reaches a subscriber on the server it did not arrive at, and a
/// fresh-inbox request from that server gets its response through the route (the
/// `_GR_.` reply names it). natrium and nats-server mixed inside the cluster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_serves_the_whole_cluster_behind_it() {
    let kinds = support::kinds();
    let mut mixes = Vec::new();
    for &k1 in &kinds {
        for &k2 in &kinds {
            for &kb in &kinds {
                let natrium = [k1, k2, kb].iter().filter(|k| **k == Kind::Natrium).count();
                if natrium > 0 && (natrium == 3 || kb == Kind::NatsServer || k1 != k2) {
                    mixes.push((k1, k2, kb));
                }
            }
        }
    }
    for (k1, k2, kb) in mixes {
        eprintln!("A1 {k1:?}, A2 {k2:?}, GB {kb:?}");
        let (pa1, pa2, pb, r1, r2) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let cluster = |me: u16, other: u16| {
            format!(
                "cluster {{ name: GA, listen: \"127.0.0.1:{me}\", routes: \
                 [\"nats-route://127.0.0.1:{other}\"] }}"
            )
        };
        let a1 = gateway_server(k1, "GA", pa1, &[("GB", pb)], &cluster(r1, r2));
        let a2 = gateway_server(k2, "GA", pa2, &[("GB", pb)], &cluster(r2, r1));
        // GB knows only A1: its one outbound to GA goes there.
        let gb = gateway_server(kb, "GB", pb, &[("GA", pa1)], "");
        assert!(a2.logged("Outbound gateway connection to \"GB\"", WAIT));
        assert!(a1.logged("Outbound gateway connection to \"GB\"", WAIT));
        assert!(gb.logged("Outbound gateway connection to \"GA\"", WAIT));
        let (c2, b) = (connect(&a2).await, connect(&gb).await);
        let mut sub = crossing(&b, &c2, "deep").await;
        for i in 0..20 {
            b.publish("deep", i.to_string().into()).await.unwrap();
        }
        b.flush().await.unwrap();
        for i in 0..20 {
            assert_eq!(next(&mut sub).await.payload, i.to_string());
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(extra.is_err(), "a message arrived twice: {extra:?}");
        let svc = crossing(&c2, &b, "svc.deep").await;
        let task = responder(&b, svc);
        for i in 0..5 {
            let payload = format!("deep {i}");
            let got = tokio::time::timeout(WAIT, fresh_inbox_request(&c2, "svc.deep", &payload))
                .await
                .expect("no response through the route");
            assert_eq!(got, payload.as_bytes());
        }
        task.abort();
    }
}

/// A gateway killed (SIGKILL, as supervisors do) and started again on the same port
/// at once: both sides reconnect and messages flow again, both ways; the restarted
/// one natrium or nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_is_reconnected() {
    for kb in support::kinds() {
        eprintln!("GB {kb:?}");
        let (pa, pb) = (free_port(), free_port());
        let ga = gateway_server(Kind::Natrium, "GA", pa, &[("GB", pb)], "");
        let gb = gateway_server(kb, "GB", pb, &[("GA", pa)], "");
        let a = connect(&ga).await;
        {
            let b = connect(&gb).await;
            exchange(&a, &b).await;
        }
        gb.signal(libc::SIGKILL);
        drop(gb);
        let gb = gateway_server(kb, "GB", pb, &[("GA", pa)], "");
        let b = connect(&gb).await;
        exchange(&a, &b).await;
    }
}

/// The system account spans the supercluster: `$SYS.REQ.SERVER.PING` from one
/// cluster is answered by the servers of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ping_is_answered_across_clusters() {
    for kb in support::kinds() {
        eprintln!("GB {kb:?}");
        let accounts = "accounts { SYS { users: [{user: sys, password: sys}] }, \
                        APP { users: [{user: app, password: app}] } }\nsystem_account: SYS\n";
        let (pa, pb) = (free_port(), free_port());
        let ga = gateway_server(Kind::Natrium, "GA", pa, &[("GB", pb)], accounts);
        let gb = gateway_server(kb, "GB", pb, &[("GA", pa)], accounts);
        let connect_as = |s: &Server, user: &str| {
            let opts = async_nats::ConnectOptions::with_user_and_password(user.into(), user.into());
            let url = s.url();
            async move { opts.connect(url).await.unwrap() }
        };
        let sys = connect_as(&ga, "sys").await;
        // Accounts stay apart across the gateway too.
        let (app_a, app_b) = (connect_as(&ga, "app").await, connect_as(&gb, "app").await);
        let mut sub = crossing(&app_a, &app_b, "apps").await;
        app_a.publish("apps", "x".into()).await.unwrap();
        app_a.flush().await.unwrap();
        next(&mut sub).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let inbox = sys.new_inbox();
            let mut replies = sys.subscribe(inbox.clone()).await.unwrap();
            sys.publish_with_reply("$SYS.REQ.SERVER.PING", inbox, "".into())
                .await
                .unwrap();
            sys.flush().await.unwrap();
            let mut names = Vec::new();
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(700), replies.next()).await
            {
                let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                names.push(doc["server"]["name"].as_str().unwrap_or("").to_string());
            }
            names.sort();
            if names == ["GA1", "GB1"] {
                break;
            }
            assert!(Instant::now() < deadline, "PING answered by {names:?}");
        }
    }
}

/// `/gatewayz?accs=1` and the `/varz` gateway section, next to the reference's: the
/// same keys, the connection on both lists, every account interest-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatewayz_matches_the_reference_shape() {
    let mut shapes = Vec::new();
    for kind in support::kinds() {
        let (pa, pb, http) = (free_port(), free_port(), free_port());
        let ga = gateway_server(
            kind,
            "GA",
            pa,
            &[("GB", pb)],
            &format!("http: \"127.0.0.1:{http}\""),
        );
        let gb = gateway_server(Kind::Natrium, "GB", pb, &[], "");
        assert!(gb.logged("Outbound gateway connection to \"GA\"", WAIT));
        assert!(ga.logged("Inbound gateway connection from \"GB\"", WAIT));
        let doc = support::http_get_json(http, "/gatewayz?accs=1");
        assert_eq!(doc["name"], "GA");
        assert_eq!(doc["port"], pa);
        let out = &doc["outbound_gateways"]["GB"];
        assert_eq!(out["configured"], true, "{doc}");
        assert_eq!(out["connection"]["port"], pb);
        assert_eq!(out["connection"]["kind"], "Gateway");
        let inbound = &doc["inbound_gateways"]["GB"][0];
        assert_eq!(inbound["configured"], false, "{doc}");
        for acc in out["accounts"].as_array().unwrap() {
            assert_eq!(acc["interest_mode"], "Interest-Only");
        }
        let only = support::http_get_json(http, "/gatewayz?gw_name=GX");
        assert!(only["outbound_gateways"].is_null(), "{only}");
        if kind == Kind::Natrium {
            let metrics = http_get_text(http, "/metrics");
            for line in [
                "natrium_links{kind=\"gateway_outbound\"} 1",
                "natrium_links{kind=\"gateway_inbound\"} 1",
            ] {
                assert!(metrics.contains(line), "no {line:?} in {metrics}");
            }
            assert!(metrics.contains("natrium_link_out_msgs_total{kind=\"gateway_outbound\""));
        }
        let varz = support::http_get_json(http, "/varz");
        assert_eq!(varz["gateway"]["name"], "GA");
        assert_eq!(varz["gateway"]["gateways"][0]["name"], "GB");
        assert_eq!(varz["cluster"]["name"], "GA");
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        shapes.push((
            kind,
            keys(&doc),
            keys(&out["connection"]),
            keys(&varz["gateway"]),
        ));
    }
    if let [(_, d1, c1, v1), (_, d2, c2, v2)] = &shapes[..] {
        assert_eq!(d1, d2);
        assert_eq!(c1, c2);
        assert_eq!(v1, v2);
    }
}

/// The body of `GET path` on the monitoring port.
fn http_get_text(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// What a client, garbage or interest on an inbound connection gets at the gateway
/// port, next to the reference's bytes; the gateway keeps serving the real peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_get_the_reference_answers() {
    let mut answers = Vec::new();
    for kind in support::kinds() {
        let port = free_port();
        let g = gateway_server(kind, "GA", port, &[], "");
        let mut got = Vec::new();
        for input in [
            &b"CONNECT {\"verbose\":false,\"lang\":\"go\"}\r\nPING\r\n"[..],
            b"PING\r\n",
            b"BOGUS\r\n",
            b"CONNECT {\"gateway\":\"GZ\"}\r\nRS+ $G foo\r\nPING\r\n",
        ] {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut first = [0u8; 4096];
            let n = s.read(&mut first).unwrap();
            assert!(first[..n].starts_with(b"INFO {"), "no INFO first");
            s.write_all(input).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            got.push(String::from_utf8_lossy(&rest).into_owned());
        }
        assert_eq!(got[0], "-ERR 'attempted to connect to gateway port'\r\n");
        assert_eq!(got[1], "-ERR 'Authorization Violation'\r\n");
        assert!(g.logged("Received RS+ from gateway on inbound connection", WAIT));
        answers.push(got);
        drop(g);
    }
    if let [a, b] = &answers[..] {
        assert_eq!(a, b);
    }
}

/// A gateway that answers with another name is refused and not registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misnamed_gateway_is_refused() {
    for kind in support::kinds() {
        let (pa, px) = (free_port(), free_port());
        let _gx = gateway_server(kind, "GX", px, &[], "");
        let ga = gateway_server(Kind::Natrium, "GA", pa, &[("GB", px)], "");
        let line = ga
            .wait_log("rejected, wanted to connect to", WAIT)
            .expect("no refusal logged");
        assert!(
            line.contains(
                "Connection from \"GX\" rejected, wanted to connect to \"GB\", this is \"GA\""
            ),
            "{line}"
        );
        assert!(!ga.logged("Outbound gateway connection to", Duration::from_millis(300)));
    }
}

/// Gateway credentials and `reject_unknown_cluster`: a configured cluster with the
/// right password gets in; a wrong password and an unknown cluster are refused with
/// the reference's `-ERR` and log lines, on the dialing side too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_credentials_and_unknown_clusters_are_checked() {
    for acceptor in support::kinds() {
        eprintln!("GA {acceptor:?}");
        let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
        let auth = "authorization { user: gw, password: s3cret }";
        let ga = Server::start(
            acceptor,
            &[
                "-c",
                &conf(
                    &format!("auth-GA-{pa}"),
                    &format!(
                        "gateway {{ name: GA, listen: \"127.0.0.1:{pa}\", {auth}, \
                         reject_unknown_cluster: true, gateways: [{{name: GB, url: \
                         \"nats://gw:s3cret@127.0.0.1:{pb}\"}}] }}\n"
                    ),
                ),
            ],
        );
        let gb = Server::start(
            Kind::Natrium,
            &[
                "-c",
                &conf(
                    &format!("auth-GB-{pb}"),
                    &format!(
                        "gateway {{ name: GB, listen: \"127.0.0.1:{pb}\", {auth}, gateways: \
                         [{{name: GA, url: \"nats://gw:s3cret@127.0.0.1:{pa}\"}}] }}\n"
                    ),
                ),
            ],
        );
        let intruder = |name: &str, port: u16, pass: &str| {
            Server::start(
                Kind::Natrium,
                &[
                    "-c",
                    &conf(
                        &format!("auth-{name}-{port}"),
                        &format!(
                            "gateway {{ name: {name}, listen: \"127.0.0.1:{port}\", gateways: \
                             [{{name: GA, url: \"nats://gw:{pass}@127.0.0.1:{pa}\"}}] }}\n"
                        ),
                    ),
                ],
            )
        };
        let gc = intruder("GC", pc, "s3cret");
        let gd = intruder("GB", pd, "wrong");
        assert!(ga.logged("Inbound gateway connection from \"GB\"", WAIT));
        assert!(ga.logged("Rejecting connection from gateway \"GC\"", WAIT));
        assert!(ga.logged("authentication error - User \"gw\"", WAIT));
        assert!(gc.logged(
            "Gateway Error 'Connection to gateway \"GA\" rejected'",
            WAIT
        ));
        assert!(gd.logged("Gateway Error 'Authorization Violation'", WAIT));
        // The legitimate pair still carries messages.
        let (a, b) = (connect(&ga).await, connect(&gb).await);
        let mut sub = crossing(&a, &b, "ok").await;
        a.publish("ok", "x".into()).await.unwrap();
        a.flush().await.unwrap();
        next(&mut sub).await;
    }
}

/// Only one server of a cluster lists the other cluster's gateway: the route tells
/// the rest of the cluster, and they connect to it too, whichever server (natrium or
/// nats-server) knew it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_spread_through_the_cluster() {
    let kinds = support::kinds();
    for &k1 in &kinds {
        for &k2 in &kinds {
            if k1 == Kind::NatsServer && k2 == Kind::NatsServer {
                continue;
            }
            eprintln!("A1 {k1:?}, A2 {k2:?}");
            let (pa1, pa2, pb, r1, r2) = (
                free_port(),
                free_port(),
                free_port(),
                free_port(),
                free_port(),
            );
            let cluster = |me: u16, other: u16| {
                format!(
                    "cluster {{ name: GA, listen: \"127.0.0.1:{me}\", routes: \
                     [\"nats-route://127.0.0.1:{other}\"] }}"
                )
            };
            let gb = gateway_server(Kind::Natrium, "GB", pb, &[], "");
            let a1 = gateway_server(k1, "GA", pa1, &[("GB", pb)], &cluster(r1, r2));
            let a2 = gateway_server(k2, "GA", pa2, &[], &cluster(r2, r1));
            assert!(
                a2.logged("Outbound gateway connection to \"GB\"", WAIT),
                "A2 never connected to GB"
            );
            let (c2, b) = (connect(&a2).await, connect(&gb).await);
            let mut sub = crossing(&c2, &b, "spread").await;
            c2.publish("spread", "x".into()).await.unwrap();
            c2.flush().await.unwrap();
            next(&mut sub).await;
            drop(a1);
        }
    }
}

/// A gateway peer written by hand (it plays cluster GB): it floods interest and takes
/// it all back, then stops reading while its interest draws messages. natrium cuts
/// it as a slow consumer; another cluster (GC) keeps getting everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_then_stalled_gateway_is_cut_alone() {
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let (pa, pc, http) = (free_port(), free_port(), free_port());
    let ga = gateway_server(
        Kind::Natrium,
        "GA",
        pa,
        &[("GB", fake_port), ("GC", pc)],
        &format!("max_pending: 1048576\nhttp: \"127.0.0.1:{http}\""),
    );
    let gc = gateway_server(Kind::Natrium, "GC", pc, &[("GA", pa)], "");
    let (mut peer, _) = fake.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let info = serde_json::json!({
        "server_id": "NFAKEGATEWAYPEER", "server_name": "fake", "version": "2.15.1",
        "proto": 3, "host": "127.0.0.1", "port": fake_port, "headers": true,
        "max_payload": 1048576, "gateway": "GB",
        "gateway_urls": [format!("127.0.0.1:{fake_port}")],
        "gateway_nrp": true, "gateway_iom": true,
    });
    peer.write_all(format!("INFO {info}\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !String::from_utf8_lossy(&got).contains("\"gateway\":\"GA\"") {
        let n = peer.read(&mut buf).unwrap();
        assert!(n > 0, "natrium closed the gateway");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("CONNECT {"));
    // A flood of interest, all of it taken back: nothing is left behind.
    let mut flood = String::new();
    for i in 0..20_000 {
        flood.push_str(&format!("RS+ $G flood.{i}\r\n"));
    }
    for i in 0..20_000 {
        flood.push_str(&format!("RS- $G flood.{i}\r\n"));
    }
    flood.push_str("RS- $G never.subscribed\r\nA- $G\r\nA+ $G\r\nRS+ $G stall\r\nPING\r\n");
    peer.write_all(flood.as_bytes()).unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let n = peer.read(&mut buf).unwrap();
        assert!(n > 0, "natrium closed the gateway during the flood");
        seen.extend_from_slice(&buf[..n]);
    }
    let doc = support::http_get_json(http, "/gatewayz");
    assert_eq!(
        doc["outbound_gateways"]["GB"]["connection"]["subscriptions"], 1,
        "{doc}"
    );
    // Now GB stops reading; its interest in `stall` keeps drawing messages.
    let (a, c) = (connect(&ga).await, connect(&gc).await);
    let mut at_c = crossing(&a, &c, "stall").await;
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    let mut sent = 0u32;
    let deadline = Instant::now() + WAIT;
    while !ga.logged("Slow Consumer Detected", Duration::from_millis(1)) {
        for _ in 0..1000 {
            a.publish("stall", payload.clone()).await.unwrap();
        }
        a.flush().await.unwrap();
        sent += 1000;
        assert!(
            Instant::now() < deadline,
            "the stalled gateway was never cut"
        );
    }
    for _ in 0..sent {
        next(&mut at_c).await;
    }
    // GA still serves, and still reaches GC.
    a.publish("stall", "after".into()).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(&next(&mut at_c).await.payload[..], b"after");
    drop(peer);
}

/// Stream and service imports across servers, as nats-server does them: the
/// importing server announces interest in the exporting account and imports what
/// arrives; a response on a `_R_.` reply made by another server goes back to it.
/// Across a gateway and across a route, natrium and nats-server mixed, each
/// message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_work_across_gateways_and_routes() {
    let accounts = "accounts {\n  A { users: [{user: a, password: a}], exports: [{service: \
                    \"svc.>\"}, {stream: \"feed.>\"}] }\n  B { users: [{user: b, password: b}], \
                    imports: [{service: {account: A, subject: \"svc.>\"}}, {stream: {account: \
                    A, subject: \"feed.>\"}, prefix: imported}] }\n}\n";
    let kinds = support::kinds();
    for link in ["gateway", "route"] {
        for &ka in &kinds {
            for &kb in &kinds {
                if ka == Kind::NatsServer && kb == Kind::NatsServer {
                    continue;
                }
                eprintln!("{link}: requester side {ka:?}, responder side {kb:?}");
                let (pa, pb) = (free_port(), free_port());
                let (sa, sb) = if link == "gateway" {
                    (
                        gateway_server(ka, "GA", pa, &[("GB", pb)], accounts),
                        gateway_server(kb, "GB", pb, &[("GA", pa)], accounts),
                    )
                } else {
                    let node = |kind, name: &str, me: u16, other: u16| {
                        let body = format!(
                            "server_name: {name}\n{accounts}cluster {{ name: C, listen: \
                             \"127.0.0.1:{me}\", routes: [\"nats-route://127.0.0.1:{other}\"] }}\n"
                        );
                        Server::start(kind, &["-c", &conf(&format!("imp-{name}-{me}"), &body)])
                    };
                    (node(ka, "A1", pa, pb), node(kb, "B1", pb, pa))
                };
                let login = |s: &Server, user: &str| {
                    let opts = async_nats::ConnectOptions::with_user_and_password(
                        user.into(),
                        user.into(),
                    );
                    let url = s.url();
                    async move { opts.connect(url).await.unwrap() }
                };
                // Account B on the first server, account A on the second.
                let (b, a) = (login(&sa, "b").await, login(&sb, "a").await);
                let mut feed = b.subscribe("imported.feed.>").await.unwrap();
                b.flush().await.unwrap();
                await_interest(&a, &mut feed, "feed.probe").await;
                for i in 0..20 {
                    a.publish(format!("feed.{i}"), i.to_string().into())
                        .await
                        .unwrap();
                }
                a.flush().await.unwrap();
                for i in 0..20 {
                    let m = next(&mut feed).await;
                    assert_eq!(m.subject.as_str(), format!("imported.feed.{i}"));
                }
                let extra = tokio::time::timeout(Duration::from_millis(300), feed.next()).await;
                assert!(
                    extra.is_err(),
                    "an imported message arrived twice: {extra:?}"
                );
                let mut svc = a.subscribe("svc.echo").await.unwrap();
                a.flush().await.unwrap();
                let responder = a.clone();
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
                        b.request("svc.echo", "ping".into()),
                    )
                    .await
                    {
                        Ok(Ok(r)) => {
                            assert_eq!(&r.payload[..], b"ping");
                            break;
                        }
                        _ => assert!(Instant::now() < deadline, "no response through the import"),
                    }
                }
                task.abort();
            }
        }
    }
}

/// A responder on a leaf node of a hub in the other cluster: its response on a
/// rewritten (`_GR_.`) reply comes back through the hub to the requester's cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_behind_a_leaf_answers_across_clusters() {
    for hub_kind in support::kinds() {
        for spoke_kind in support::kinds() {
            if hub_kind == Kind::NatsServer && spoke_kind == Kind::NatsServer {
                continue;
            }
            eprintln!("hub {hub_kind:?}, spoke {spoke_kind:?}");
            let (pa, pb, leaf) = (free_port(), free_port(), free_port());
            let ga = gateway_server(Kind::Natrium, "GA", pa, &[("GB", pb)], "");
            let gb = gateway_server(
                hub_kind,
                "GB",
                pb,
                &[("GA", pa)],
                &format!(
                    "system_account: SYS\naccounts {{ SYS {{}} }}\nleafnodes {{ listen: \
                     \"127.0.0.1:{leaf}\" }}"
                ),
            );
            let spoke = Server::start(
                spoke_kind,
                &[
                    "-c",
                    &conf(
                        &format!("spoke-{leaf}"),
                        &format!(
                            "server_name: SPOKE\nleafnodes {{ remotes: [ {{ url: \
                             \"nats://127.0.0.1:{leaf}\" }} ] }}\n"
                        ),
                    ),
                ],
            );
            assert!(gb.logged("Outbound gateway connection to \"GA\"", WAIT));
            let (a, s) = (connect(&ga).await, connect(&spoke).await);
            let svc = crossing(&a, &s, "svc.leaf").await;
            let task = responder(&s, svc);
            for i in 0..5 {
                let payload = format!("leaf {i}");
                let got = tokio::time::timeout(WAIT, fresh_inbox_request(&a, "svc.leaf", &payload))
                    .await
                    .expect("no response from behind the leaf");
                assert_eq!(got, payload.as_bytes());
            }
            task.abort();
        }
    }
}
