//! Security between servers (issues #13 and #16): TLS on routes (mutual, before the
//! first protocol byte, as nats-server forces for clusters) and on leaf nodes (the
//! hub's INFO in plaintext, then TLS), and route permissions; natrium and
//! nats-server in every mix, with real certificates from rcgen and async-nats
//! clients on both servers.

mod support;

use std::time::Duration;

use futures::StreamExt;
use support::client::{await_interest, connect, free_port, next, WAIT};
use support::pki::Ca;
use support::{nats_server_bin, Kind, Server, TempDir};

/// A CA, a certificate for both nodes (localhost, 127.0.0.1) and one signed by a
/// CA nobody trusts.
fn pki() -> TempDir {
    let dir = TempDir::new("cluster-tls");
    let ca = Ca::new("natrium cluster CA");
    ca.write(&dir.0, "ca.pem");
    ca.issue(&dir.0, "node", "localhost", &["localhost", "127.0.0.1"]);
    Ca::new("someone else").issue(&dir.0, "rogue", "localhost", &["localhost", "127.0.0.1"]);
    dir
}

/// A `tls {}` block with `cert` (`node` or `rogue`), the CA and `extra` lines.
fn tls_block(dir: &TempDir, cert: &str, extra: &str) -> String {
    format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\" {extra} }}",
        dir.path(&format!("{cert}.pem")).display(),
        dir.path(&format!("{cert}-key.pem")).display(),
        dir.path("ca.pem").display()
    )
}

/// The mixes to run: every pair but nats-server with itself (only natrium's when
/// the reference is not installed).
fn mixes() -> Vec<(Kind, Kind)> {
    let mut v = vec![(Kind::Natrium, Kind::Natrium)];
    if nats_server_bin().is_some() {
        v.push((Kind::Natrium, Kind::NatsServer));
        v.push((Kind::NatsServer, Kind::Natrium));
    }
    v
}

/// 50 messages each way between `a` and `b`, in order, none twice.
async fn exchange(a: &Server, b: &Server) {
    let (ca, cb) = (connect(a).await, connect(b).await);
    for (pubc, subc, subject) in [(&ca, &cb, "ab"), (&cb, &ca, "ba")] {
        let mut sub = subc.subscribe(format!("{subject}.*")).await.unwrap();
        subc.flush().await.unwrap();
        await_interest(pubc, &mut sub, &format!("{subject}.probe")).await;
        for i in 0..50 {
            pubc.publish(format!("{subject}.{i}"), i.to_string().into())
                .await
                .unwrap();
        }
        pubc.flush().await.unwrap();
        for i in 0..50 {
            assert_eq!(
                next(&mut sub).await.subject.as_str(),
                format!("{subject}.{i}")
            );
        }
        let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(extra.is_err(), "a message arrived twice: {extra:?}");
    }
}

/// `name` accepting routes on `port` with `tls`, dialing `routes`.
fn route_conf(dir: &TempDir, name: &str, port: u16, routes: &[u16], tls: &str) -> String {
    let routes: Vec<String> = routes
        .iter()
        .map(|p| format!("\"nats://localhost:{p}\""))
        .collect();
    dir.write_string(
        &format!("{name}.conf"),
        &format!(
            "server_name: {name}\ncluster {{\n name: C\n listen: \"127.0.0.1:{port}\"\n routes: \
             [{}]\n {tls}\n}}\n",
            routes.join(", ")
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_over_tls_carry_messages_in_every_mix() {
    let dir = pki();
    let tls = tls_block(&dir, "node", "");
    for (acceptor, dialer) in mixes() {
        eprintln!("acceptor {acceptor:?}, dialer {dialer:?}");
        let (pa, pb) = (free_port(), free_port());
        let a = Server::start(acceptor, &["-c", &route_conf(&dir, "A", pa, &[], &tls)]);
        let b = Server::start(dialer, &["-c", &route_conf(&dir, "B", pb, &[pa], &tls)]);
        exchange(&a, &b).await;
        for (server, kind) in [(&a, acceptor), (&b, dialer)] {
            if kind == Kind::Natrium {
                let seen = server.logged("Route connection created", WAIT);
                assert!(seen, "natrium logged no route");
            }
        }
    }
}

/// What the accepting side of a route sees of a peer that cannot do route TLS:
/// a certificate from an unknown CA, or no TLS at all. Run against both servers:
/// the same log lines and no route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_peers_without_a_trusted_certificate_are_refused_as_nats_server_does() {
    let dir = pki();
    let good = tls_block(&dir, "node", "");
    let rogue = tls_block(&dir, "rogue", "");
    let acceptors: &[Kind] = &support::kinds();
    for &acceptor in acceptors {
        for (peer, expect) in [
            (rogue.as_str(), "TLS route handshake error: tls: "),
            (
                "",
                "TLS route handshake error: tls: first record does not look like a TLS handshake",
            ),
        ] {
            eprintln!("acceptor {acceptor:?}, peer tls {:?}", !peer.is_empty());
            let (pa, pb) = (free_port(), free_port());
            let a = Server::start(acceptor, &["-c", &route_conf(&dir, "A", pa, &[], &good)]);
            // The dialer is natrium too: it tries again every second.
            let _b = Server::start(
                Kind::Natrium,
                &["-c", &route_conf(&dir, "B", pb, &[pa], peer)],
            );
            let line = a.wait_log(expect, WAIT);
            assert!(line.is_some(), "{acceptor:?} never logged {expect:?}");
            let closed = a.wait_log("Router connection closed: TLS Handshake Failure", WAIT);
            assert!(closed.is_some(), "{acceptor:?}: no close line");
            assert!(
                a.wait_log("Route connection created", Duration::from_secs(2))
                    .is_none(),
                "{acceptor:?} took a route it should have refused"
            );
        }
    }
}

/// `verify_and_map`: the peer's certificate (DNS name `localhost`) must name the
/// cluster's user; a certificate naming someone else is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_verify_and_map_takes_the_user_from_the_certificate() {
    let dir = pki();
    let plain = tls_block(&dir, "node", "");
    let mapped = tls_block(&dir, "node", ", verify_and_map: true");
    let acceptors: &[Kind] = &support::kinds();
    for &acceptor in acceptors {
        for (user, admitted) in [("localhost", true), ("someone", false)] {
            eprintln!("acceptor {acceptor:?}, cluster user {user}");
            let (pa, pb) = (free_port(), free_port());
            let conf = dir.write_string(
                "A.conf",
                &format!(
                    "cluster {{\n name: C\n listen: \"127.0.0.1:{pa}\"\n authorization \
                     {{ user: {user} }}\n {mapped}\n}}\n"
                ),
            );
            let a = Server::start(acceptor, &["-c", &conf]);
            let b = Server::start(
                Kind::Natrium,
                &["-c", &route_conf(&dir, "B", pb, &[pa], &plain)],
            );
            if admitted {
                exchange(&a, &b).await;
            } else {
                let line = a.wait_log("Router connection closed: Authentication Failure", WAIT);
                assert!(
                    line.is_some(),
                    "{acceptor:?} admitted a route it should refuse"
                );
            }
        }
    }
}

/// `leafnodes { listen, tls }` on `port`, with `extra` lines in its `tls {}`.
fn hub_conf(dir: &TempDir, port: u16, tls: &str) -> String {
    dir.write_string(
        "hub.conf",
        &format!("server_name: HUB\nleafnodes {{\n listen: \"127.0.0.1:{port}\"\n {tls}\n}}\n"),
    )
}

/// A spoke dialing `url` with the remote's `tls` block.
fn spoke_conf(dir: &TempDir, url: &str, tls: &str) -> String {
    dir.write_string(
        "spoke.conf",
        &format!(
            "server_name: SPOKE\nleafnodes {{ remotes: [ {{\n url: \"{url}\"\n {tls}\n}} ] }}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_nodes_over_tls_carry_messages_in_every_mix() {
    let dir = pki();
    let serve = tls_block(&dir, "node", "");
    let trust = format!("tls {{ ca_file: \"{}\" }}", dir.path("ca.pem").display());
    for (hub_kind, spoke_kind) in mixes() {
        // A nats:// URL with a `tls {}` block, and a tls:// URL.
        for scheme in ["nats", "tls"] {
            eprintln!("hub {hub_kind:?}, spoke {spoke_kind:?}, {scheme}://");
            let port = free_port();
            let hub = Server::start(hub_kind, &["-c", &hub_conf(&dir, port, &serve)]);
            let url = format!("{scheme}://localhost:{port}");
            let spoke = Server::start(spoke_kind, &["-c", &spoke_conf(&dir, &url, &trust)]);
            exchange(&hub, &spoke).await;
        }
    }
}

/// A hub with `verify: true` wants the spoke's certificate: a spoke that only
/// trusts the CA is refused (and keeps trying), one with a certificate gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifying_leaf_hub_refuses_a_spoke_without_a_certificate() {
    let dir = pki();
    let serve = tls_block(&dir, "node", ", verify: true");
    let trust_only = format!("tls {{ ca_file: \"{}\" }}", dir.path("ca.pem").display());
    let with_cert = tls_block(&dir, "node", "");
    for (hub_kind, spoke_kind) in mixes() {
        eprintln!("hub {hub_kind:?}, spoke {spoke_kind:?}");
        let port = free_port();
        let hub = Server::start(hub_kind, &["-c", &hub_conf(&dir, port, &serve)]);
        let url = format!("nats://localhost:{port}");
        {
            let _spoke = Server::start(spoke_kind, &["-c", &spoke_conf(&dir, &url, &trust_only)]);
            let line = hub.wait_log("TLS leafnode handshake error", WAIT);
            assert!(
                line.is_some(),
                "hub {hub_kind:?} took a spoke without a certificate"
            );
        }
        let spoke = Server::start(spoke_kind, &["-c", &spoke_conf(&dir, &url, &with_cert)]);
        exchange(&hub, &spoke).await;
    }
}

/// A spoke without TLS settings dialing a TLS hub follows the hub's INFO into TLS
/// (system roots, which do not know the test CA: refused, and nothing else
/// happens); `insecure: true` skips the check and connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_follows_the_hubs_tls_requirement() {
    let dir = pki();
    let serve = tls_block(&dir, "node", "");
    let port = free_port();
    let hub = Server::start(Kind::Natrium, &["-c", &hub_conf(&dir, port, &serve)]);
    let url = format!("nats://localhost:{port}");
    {
        let spoke = Server::start(Kind::Natrium, &["-c", &spoke_conf(&dir, &url, "")]);
        let tried = spoke.logged("TLS leafnode handshake error", WAIT);
        assert!(tried, "the spoke did not try TLS");
        let closed = hub
            .wait_log("Leafnode connection closed", WAIT)
            .unwrap_or_default();
        assert!(closed.contains("TLS Handshake Failure"), "hub: {closed}");
    }
    let spoke = Server::start(
        Kind::Natrium,
        &["-c", &spoke_conf(&dir, &url, "tls { insecure: true }")],
    );
    exchange(&hub, &spoke).await;
}

/// `cluster { permissions }` on node P: P announces interest only inside `import`
/// (so nothing else is sent to it) and takes route interest only inside `export`
/// (so nothing else leaves it). Each blocked message is published just before an
/// allowed one on the same connection and route: when the allowed one arrives, the
/// blocked one would have too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_permissions_limit_what_crosses_in_every_mix() {
    let dir = TempDir::new("route-perms");
    let perms =
        "permissions { import: { allow: \"in.>\", deny: \"in.secret\" }, export: \"out.>\" }";
    for (p_kind, q_kind) in mixes() {
        eprintln!("permissions on {p_kind:?}, peer {q_kind:?}");
        let (pp, pq) = (free_port(), free_port());
        let p = Server::start(p_kind, &["-c", &route_conf(&dir, "P", pp, &[], perms)]);
        let q = Server::start(q_kind, &["-c", &route_conf(&dir, "Q", pq, &[pp], "")]);
        let (cp, cq) = (connect(&p).await, connect(&q).await);
        // Into P: "in.1" crosses, "in.secret" and "other" do not.
        // Out of P: "out.1" crosses, "private" does not.
        for (publisher, subscriber, allowed, blocked) in [
            (&cq, &cp, "in.1", "other"),
            (&cq, &cp, "in.2", "in.secret"),
            (&cp, &cq, "out.1", "private"),
        ] {
            let mut ok = subscriber.subscribe(allowed.to_string()).await.unwrap();
            let mut no = subscriber.subscribe(blocked.to_string()).await.unwrap();
            subscriber.flush().await.unwrap();
            await_interest(publisher, &mut ok, allowed).await;
            for _ in 0..3 {
                publisher
                    .publish(blocked.to_string(), "x".into())
                    .await
                    .unwrap();
                publisher
                    .publish(allowed.to_string(), "y".into())
                    .await
                    .unwrap();
            }
            publisher.flush().await.unwrap();
            for _ in 0..3 {
                next(&mut ok).await;
            }
            let leaked = tokio::time::timeout(Duration::from_millis(300), no.next()).await;
            assert!(leaked.is_err(), "{p_kind:?}/{q_kind:?}: {blocked} crossed");
            // The same subject published on P's own side still reaches P's client.
            if std::ptr::eq(subscriber, &cp) {
                cp.publish(blocked.to_string(), "local".into())
                    .await
                    .unwrap();
                assert_eq!(&next(&mut no).await.payload[..], b"local");
            }
        }
    }
}

/// A reload that changes `cluster { permissions }` applies to the routes that are
/// up: interest the new import allows is announced, interest it forbids withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_route_permissions_apply_to_live_routes() {
    let dir = TempDir::new("route-perms-reload");
    let (pp, pq) = (free_port(), free_port());
    let narrow = "permissions { import: \"in.>\" }";
    let wide = "permissions { import: \"other\" }";
    let conf = route_conf(&dir, "P", pp, &[], narrow);
    let p = Server::start(Kind::Natrium, &["-c", &conf]);
    let q = Server::start(
        Kind::Natrium,
        &["-c", &route_conf(&dir, "Q", pq, &[pp], "")],
    );
    let (cp, cq) = (connect(&p).await, connect(&q).await);
    let mut inside = cp.subscribe("in.1").await.unwrap();
    let mut other = cp.subscribe("other").await.unwrap();
    cp.flush().await.unwrap();
    await_interest(&cq, &mut inside, "in.1").await;
    route_conf(&dir, "P", pp, &[], wide);
    p.signal(libc::SIGHUP);
    assert!(
        p.wait_log("Reloaded: cluster", WAIT).is_some(),
        "no reload line"
    );
    // "other" is announced now...
    await_interest(&cq, &mut other, "other").await;
    // ...and "in.1" is withdrawn: published before a marker on "other", it is gone.
    cq.publish("in.1", "x".into()).await.unwrap();
    cq.publish("other", "marker".into()).await.unwrap();
    cq.flush().await.unwrap();
    assert_eq!(&next(&mut other).await.payload[..], b"marker");
    let leaked = tokio::time::timeout(Duration::from_millis(300), inside.next()).await;
    assert!(leaked.is_err(), "in.1 still crosses after the reload");
}

/// `name`'s gateway on `port` with `tls`, dialing the gateways in `remotes`.
fn gateway_conf(
    dir: &TempDir,
    name: &str,
    port: u16,
    remotes: &[(&str, u16)],
    tls: &str,
) -> String {
    let list: Vec<String> = remotes
        .iter()
        .map(|(n, p)| format!("{{name: {n}, url: \"nats://127.0.0.1:{p}\"}}"))
        .collect();
    dir.write_string(
        &format!("gw-{name}-{port}.conf"),
        &format!(
            "server_name: {name}1\ngateway {{\n name: {name}, listen: \"127.0.0.1:{port}\", \
             gateways: [{}]\n {tls}\n}}\n",
            list.join(", ")
        ),
    )
}

/// Gateways (issue #15) over TLS, mutual and before the first protocol byte as for
/// routes: messages cross both ways in every mix, and a peer whose certificate comes
/// from an unknown CA never gets a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_over_tls_carry_messages_and_refuse_strangers() {
    let dir = pki();
    let tls = tls_block(&dir, "node", "");
    for (acceptor, dialer) in mixes() {
        eprintln!("acceptor {acceptor:?}, dialer {dialer:?}");
        let (pa, pb) = (free_port(), free_port());
        let a = Server::start(acceptor, &["-c", &gateway_conf(&dir, "GA", pa, &[], &tls)]);
        let b = Server::start(
            dialer,
            &["-c", &gateway_conf(&dir, "GB", pb, &[("GA", pa)], &tls)],
        );
        exchange(&a, &b).await;
    }
    // A gateway's own `tls {}` in the list is used to dial it (the block has none).
    for acceptor in support::kinds() {
        let (pa, pb) = (free_port(), free_port());
        let a = Server::start(acceptor, &["-c", &gateway_conf(&dir, "GA", pa, &[], &tls)]);
        let body = format!(
            "server_name: GB1\ngateway {{ name: GB, listen: \"127.0.0.1:{pb}\", gateways: \
             [{{name: GA, url: \"nats://127.0.0.1:{pa}\", {tls}}}] }}\n"
        );
        let b = Server::start(
            Kind::Natrium,
            &["-c", &dir.write_string(&format!("gw-own-{pb}.conf"), &body)],
        );
        assert!(
            b.logged("Outbound gateway connection to \"GA\"", WAIT),
            "{acceptor:?}: no gateway with the remote's own TLS"
        );
        drop(a);
    }
    let rogue = tls_block(&dir, "rogue", "");
    for acceptor in support::kinds() {
        let (pa, pb) = (free_port(), free_port());
        let a = Server::start(acceptor, &["-c", &gateway_conf(&dir, "GA", pa, &[], &tls)]);
        let _b = Server::start(
            Kind::Natrium,
            &["-c", &gateway_conf(&dir, "GB", pb, &[("GA", pa)], &rogue)],
        );
        let line = a.wait_log("TLS gateway handshake error: tls: ", WAIT);
        assert!(line.is_some(), "{acceptor:?} logged no handshake error");
        assert!(
            a.wait_log("Inbound gateway connection from", Duration::from_secs(2))
                .is_none(),
            "{acceptor:?} took a gateway it should have refused"
        );
    }
}
