//! Monitoring over real HTTP: nats-server's endpoints (`/varz`, `/connz`, `/subsz`, ...)
//! with clients spread over both shards, the key sets compared with the reference
//! nats-server's, bad requests, slow and huge requests, and Prometheus `/metrics`.

#[path = "support/shards.rs"]
mod shards;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;

use std::time::{Duration, Instant};

use serde_json::Value;
use shards::{raw_by_shard, RawConn};
use support::{Kind, Monitored, TempDir};

const QUIET: &str = r#"{"verbose":false,"name":"mon","lang":"raw","version":"1.2.3"}"#;

struct HttpResp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Sends raw request bytes and reads the response until the server closes.
fn raw_http(port: u16, request: &[u8]) -> HttpResp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_http(&buf)
}

fn parse_http(buf: &[u8]) -> HttpResp {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResp {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(port: u16, path: &str) -> HttpResp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_http(port, req.as_bytes())
}

fn get_json(port: u16, path: &str) -> Value {
    let r = get(port, path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    assert_eq!(r.headers["content-type"], "application/json", "{path}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

/// Publishes `n` messages of `size` bytes on `subject` and waits for the PONG.
fn publish(c: &mut RawConn, subject: &str, n: usize, size: usize) {
    let payload = vec![b'x'; size];
    let mut out = Vec::new();
    for _ in 0..n {
        out.extend_from_slice(format!("PUB {subject} {size}\r\n").as_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(b"\r\n");
    }
    c.send(&out);
    c.ping();
}

#[test]
fn varz_and_metrics_count_clients_on_both_shards() {
    let m = Monitored::start(Kind::Natrium, &[]);
    // The system account's own service subscriptions count, as on nats-server.
    let internal = get_json(m.http, "/varz")["subscriptions"].as_u64().unwrap();
    let [mut s0, mut s1] = raw_by_shard(&m.server, [2, 2], QUIET);
    // One subscriber per shard on `foo`, one publisher per shard.
    s0[0].send(b"SUB foo 1\r\n");
    s0[0].ping();
    s1[0].send(b"SUB foo 1\r\nSUB bar 2\r\n");
    s1[0].ping();
    publish(&mut s0[1], "foo", 10, 8);
    publish(&mut s1[1], "foo", 5, 8);
    for sub in [&mut s0[0], &mut s1[0]] {
        for _ in 0..15 {
            sub.read_msg();
        }
        sub.ping();
    }

    let v = get_json(m.http, "/varz");
    assert_eq!(v["port"], m.server.port);
    assert_eq!(v["http_port"], m.http);
    assert_eq!(v["connections"], 4);
    assert!(v["total_connections"].as_u64().unwrap() >= 4);
    assert_eq!(v["subscriptions"], internal + 3);
    assert_eq!(v["in_msgs"], 15);
    assert_eq!(v["in_bytes"], 15 * 8);
    assert_eq!(v["in_client_msgs"], 15);
    assert_eq!(v["out_msgs"], 30);
    assert_eq!(v["out_bytes"], 30 * 8);
    assert_eq!(v["slow_consumers"], 0);
    assert_eq!(v["max_payload"], 1024 * 1024);
    assert_eq!(v["ping_interval"], 120_000_000_000u64);
    assert_eq!(v["auth_timeout"], 2);
    assert_eq!(v["cluster"], serde_json::json!({}));
    assert_eq!(
        v["http_req_stats"]["/varz"], 2,
        "the baseline read and this one"
    );
    assert!(v["mem"].as_u64().unwrap() > 0);
    let now = v["now"].as_str().unwrap();
    assert!(now.ends_with('Z') && now.contains('T'), "{now}");

    let metrics = get(m.http, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let samples = parse_prometheus(&metrics.body);
    let value = |name: &str, labels: &str| -> f64 {
        samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
            .value
    };
    let shard_sum = |name: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name && s.labels.contains("shard="))
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(value("natrium_connections", ""), 4.0);
    assert_eq!(value("natrium_in_msgs_total", ""), 15.0);
    assert_eq!(value("natrium_out_msgs_total", ""), 30.0);
    assert_eq!(value("natrium_subscriptions", ""), (internal + 3) as f64);
    // Per shard: the load is visible per core and adds up to the totals.
    let shard_label = |id: usize| {
        samples
            .iter()
            .find(|s| {
                s.name == "natrium_shard_in_msgs_total"
                    && s.labels.contains(&format!("shard=\"{id}\""))
            })
            .map(|s| s.value)
            .unwrap()
    };
    assert_eq!(shard_label(0), 10.0);
    assert_eq!(shard_label(1), 5.0);
    assert_eq!(shard_sum("natrium_shard_out_msgs_total"), 30.0);
    assert_eq!(shard_sum("natrium_shard_connections"), 4.0);
    assert_eq!(
        shard_sum("natrium_shard_subscriptions"),
        (internal + 3) as f64
    );
    assert!(value("process_resident_memory_bytes", "") > 0.0);
}

#[test]
fn connz_paging_sorting_subs_and_closed() {
    let m = Monitored::start(Kind::Natrium, &[]);
    let [mut s0, mut s1] = raw_by_shard(&m.server, [2, 2], QUIET);
    // Different message counts per connection: 1, 2, 3, 4.
    let mut all: Vec<&mut RawConn> = s0.iter_mut().chain(s1.iter_mut()).collect();
    for (i, c) in all.iter_mut().enumerate() {
        publish(c, "load", i + 1, 3);
    }
    let cids: Vec<u64> = all.iter().map(|c| c.client_id()).collect();
    all[0].send(b"SUB a 1\r\nSUB b.* q 2\r\nSUB c 3\r\nUNSUB 3 7\r\n");
    all[0].ping();

    let deadline = Instant::now() + Duration::from_secs(5);
    let v = loop {
        let v = get_json(m.http, "/connz");
        if v["num_connections"] == 4 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(v["num_connections"], 4);
    assert_eq!(v["total"], 4);
    assert_eq!(v["limit"], 1024);
    let got: Vec<u64> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cid"].as_u64().unwrap())
        .collect();
    let mut sorted = cids.clone();
    sorted.sort();
    assert_eq!(got, sorted, "default sort is by cid");
    let c0 = &v["connections"][0];
    assert_eq!(c0["kind"], "Client");
    assert_eq!(c0["type"], "nats");
    assert_eq!(c0["ip"], "127.0.0.1");
    assert_eq!(c0["name"], "mon");
    assert_eq!(c0["lang"], "raw");
    assert_eq!(c0["version"], "1.2.3");

    // Descending by msgs_from, page 2 of size 2.
    let v = get_json(m.http, "/connz?sort=msgs_from&offset=1&limit=2");
    assert_eq!(v["offset"], 1);
    assert_eq!(v["limit"], 2);
    assert_eq!(v["total"], 4);
    assert_eq!(v["num_connections"], 2);
    let page: Vec<u64> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["in_msgs"].as_u64().unwrap())
        .collect();
    assert_eq!(page, vec![3, 2]);
    assert_eq!(v["connections"][0]["cid"], cids[2]);
    assert_eq!(v["connections"][0]["in_bytes"], 9);

    // One connection by cid, with its subscriptions.
    let v = get_json(m.http, &format!("/connz?cid={}&subs=1", cids[0]));
    assert_eq!(v["num_connections"], 1);
    assert_eq!(v["limit"], 1);
    let c = &v["connections"][0];
    assert_eq!(c["subscriptions"], 3);
    assert_eq!(
        c["subscriptions_list"],
        serde_json::json!(["a", "b.*", "c"])
    );
    let v = get_json(m.http, &format!("/connz?cid={}&subs=detail", cids[0]));
    let d = &v["connections"][0]["subscriptions_list_detail"];
    assert_eq!(d.as_array().unwrap().len(), 3);
    let q = d
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject"] == "b.*")
        .unwrap();
    assert_eq!(q["qgroup"], "q");
    assert_eq!(q["sid"], "2");
    assert_eq!(q["cid"], cids[0]);
    let max = d
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject"] == "c")
        .unwrap();
    assert_eq!(max["max"], 7);

    // Close one (on shard 1): it moves to the closed list with a reason. (Surplus
    // connections the shard helper opened and dropped are closed ones too.)
    let closed_cid = s1[1].client_id();
    drop(s1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let v = loop {
        let v = get_json(m.http, "/connz?state=closed");
        let has = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["cid"] == closed_cid);
        if has {
            break v;
        }
        assert!(Instant::now() < deadline, "closed connection not listed");
        std::thread::sleep(Duration::from_millis(20));
    };
    let closed: Vec<&Value> = v["connections"].as_array().unwrap().iter().collect();
    let c = closed.iter().find(|c| c["cid"] == closed_cid).unwrap();
    assert!(!c["reason"].as_str().unwrap().is_empty());
    assert!(c["stop"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["in_msgs"], 4);
    let nclosed = v["total"].as_u64().unwrap();
    let v = get_json(m.http, "/connz");
    assert_eq!(v["num_connections"], 2);
    let v = get_json(m.http, "/connz?state=all&sort=msgs_from");
    assert_eq!(v["total"].as_u64().unwrap(), 2 + nclosed);
    assert_eq!(v["connections"][0]["cid"], closed_cid);
    let v = get_json(m.http, "/connz?state=closed&sort=stop");
    assert_eq!(v["total"].as_u64().unwrap(), nclosed);
    assert_eq!(v["connections"][0]["cid"], closed_cid, "latest stop first");
}

#[test]
fn subsz_lists_and_filters_subscriptions() {
    let m = Monitored::start(Kind::Natrium, &[]);
    // The system account's own service subscriptions count, as on nats-server.
    let internal = get_json(m.http, "/subsz")["num_subscriptions"]
        .as_u64()
        .unwrap();
    let [mut s0, mut s1] = raw_by_shard(&m.server, [1, 1], QUIET);
    s0[0].send(b"SUB foo.* 1\r\nSUB bar 2\r\n");
    s0[0].ping();
    s1[0].send(b"SUB foo.x q 9\r\n");
    s1[0].ping();
    let v = get_json(m.http, "/subsz");
    assert_eq!(v["num_subscriptions"], internal + 3);
    assert_eq!(v["num_inserts"], internal + 3);
    assert_eq!(v["total"], 0);
    assert!(v.get("subscriptions_list").is_none());
    let v = get_json(m.http, "/subsz?subs=1");
    assert_eq!(v["total"], 3);
    let list = v["subscriptions_list"].as_array().unwrap();
    assert!(list.iter().all(|s| s["account"] == "$G"));
    let v = get_json(m.http, "/subsz?subs=1&test=foo.x");
    assert_eq!(v["total"], 2);
    let subjects: BTreeSet<&str> = v["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, BTreeSet::from(["foo.*", "foo.x"]));
    let v = get_json(m.http, "/subscriptionsz?subs=1&limit=1&offset=1");
    assert_eq!(v["subscriptions_list"].as_array().unwrap().len(), 1);
    let r = get(m.http, "/subsz?test=foo.*");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "invalid test subject, must be valid publish subject: foo.*"
    );
}

/// The same setup on natrium and nats-server: the same top-level keys everywhere (and
/// the same keys in a connection entry).
#[test]
fn key_sets_match_reference() {
    if support::nats_server_bin().is_none() || support::natrium_is_reference() {
        eprintln!("nats-server not on PATH: skipped");
        return;
    }
    let n = Monitored::start(Kind::Natrium, &[]);
    let g = Monitored::start(Kind::NatsServer, &[]);
    let mut cn = RawConn::connect(&n.server.addr(), QUIET);
    let mut cg = RawConn::connect(&g.server.addr(), QUIET);
    for c in [&mut cn, &mut cg] {
        c.send(b"SUB foo 1\r\nPUB foo 2\r\nxx\r\n");
        c.read_msg();
        c.ping();
    }
    for path in [
        "/varz",
        "/connz",
        "/connz?subs=detail&auth=1",
        "/connz?state=all",
        "/subsz",
        "/subsz?subs=1&test=foo",
        "/routez",
        "/gatewayz",
        "/leafz",
        "/accountz",
        "/accountz?acc=$G",
        "/accstatz",
        "/healthz",
    ] {
        let vn = get_json(n.http, path);
        let vg = get_json(g.http, path);
        assert_eq!(keys(&vn), keys(&vg), "top-level keys of {path}");
        if path.starts_with("/connz") {
            let a = keys(&vn["connections"][0]);
            let b = keys(&vg["connections"][0]);
            assert_eq!(a, b, "connection keys of {path}");
        }
        if path == "/accountz?acc=$G" {
            let a = keys(&vn["account_detail"]);
            let b = keys(&vg["account_detail"]);
            assert_eq!(a, b, "account_detail keys");
        }
    }
    assert_eq!(get(n.http, "/healthz").body, get(g.http, "/healthz").body);
}

/// Bad query values get 400 and the reference's message; unknown paths 404.
#[test]
fn bad_requests_match_reference() {
    let n = Monitored::start(Kind::Natrium, &[]);
    let reference = (support::nats_server_bin().is_some() && !support::natrium_is_reference())
        .then(|| Monitored::start(Kind::NatsServer, &[]));
    let cases: &[(&str, u16, &str)] = &[
        ("/nope", 404, "404 page not found\n"),
        ("/varz/", 404, "404 page not found\n"),
        (
            "/connz?limit=abc",
            400,
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        (
            "/connz?offset=abc",
            400,
            "Error decoding int for 'offset': strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        ("/connz?sort=bogus", 400, "invalid sorting option: bogus"),
        ("/connz?state=x", 400, "Error decoding state for x"),
        (
            "/connz?subs=x",
            400,
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"x\": invalid syntax",
        ),
        (
            "/connz?cid=abc",
            400,
            "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"abc\": invalid syntax",
        ),
        ("/connz?sort=stop", 400, "sort by stop only valid on closed connections"),
        ("/connz?sort=reason&state=all", 400, "sort by reason only valid on closed connections"),
        (
            "/connz?limit=99999999999999999999",
            400,
            "Error decoding int for 'limit': strconv.Atoi: parsing \"99999999999999999999\": value out of range",
        ),
        ("/accountz?acc=nope", 400, "Account nope does not exist"),
        (
            "/healthz?js-enabled-only=x",
            400,
            "Error decoding boolean for 'js-enabled-only': strconv.ParseBool: parsing \"x\": invalid syntax",
        ),
    ];
    for (path, status, body) in cases {
        let r = get(n.http, path);
        assert_eq!(r.status, *status, "{path}");
        assert_eq!(r.body, *body, "{path}");
        assert!(
            r.headers["content-type"].starts_with("text/plain"),
            "{path}"
        );
        if let Some(g) = &reference {
            let rg = get(g.http, path);
            assert_eq!(
                (rg.status, rg.body.as_str()),
                (*status, *body),
                "reference {path}"
            );
        }
    }
    // Negative offset and limit fall back to the defaults, as in the reference.
    let v = get_json(n.http, "/connz?offset=-1&limit=-5");
    assert_eq!(
        (v["offset"].as_u64(), v["limit"].as_u64()),
        (Some(0), Some(1024))
    );
    // The index page is HTML.
    let r = get(n.http, "/");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    assert!(r.body.contains("varz"));
}

/// Oversized heads get 431, a slow head is cut off after 5 s, garbage gets 400, and a
/// stuck monitoring client delays neither other monitoring requests nor the shards.
#[test]
fn huge_slow_and_garbage_requests_are_cut_off() {
    let m = Monitored::start(Kind::Natrium, &[]);
    let huge = format!(
        "GET /varz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(raw_http(m.http, huge.as_bytes()).status, 431);
    assert_eq!(raw_http(m.http, b"NOT HTTP AT ALL\r\n\r\n").status, 400);

    // A slow client: part of a head, then nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    slow.write_all(b"GET /varz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let began = Instant::now();
    // Meanwhile monitoring and clients are served.
    let mut c = RawConn::connect(&m.server.addr(), QUIET);
    publish(&mut c, "x", 3, 1);
    assert_eq!(get_json(m.http, "/varz")["in_msgs"], 3);
    assert!(began.elapsed() < Duration::from_secs(2));
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "slow head cut off after {took:?}"
    );

    // Keep-alive: two requests on one connection.
    let mut ka = TcpStream::connect(("127.0.0.1", m.http)).unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = ka.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

#[test]
fn port_in_use_is_fatal() {
    if support::natrium_is_reference() {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = std::process::Command::new(support::natrium_bin())
        .args(["-a", "127.0.0.1", "-p", "-1", "-m", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[FTL]"), "{err}");
}

/// The monitor starts before the client port (log order as nats-server's) and `/varz`
/// answers as soon as the `Listening for client connections` line is out;
/// `http_base_path` from the config file prefixes every endpoint.
#[test]
fn monitor_starts_before_client_port() {
    use std::io::BufRead;
    if support::natrium_is_reference() {
        return;
    }
    let dir = TempDir::new("conf");
    let conf = dir.0.join("mon.conf");
    std::fs::write(&conf, "http: \"127.0.0.1:-1\"\nhttp_base_path: /mon\n").unwrap();
    let mut child = std::process::Command::new(support::natrium_bin())
        .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
        .arg(&conf)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut http = None;
    let mut checked = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("[INF] Starting http monitor on ").nth(1) {
            http = rest
                .trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
        if line.contains("Listening for client connections on") {
            let port = http.expect("monitor line before the client port line");
            assert_eq!(get(port, "/mon/varz").status, 200);
            assert_eq!(get(port, "/varz").status, 404);
            let v = get_json(port, "/mon/connz");
            assert_eq!(v["num_connections"], 0);
            checked = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(checked, "no listening line");
}

struct Sample {
    name: String,
    labels: String,
    value: f64,
}

/// A strict reader of the Prometheus text format (0.0.4): every family has HELP and
/// TYPE before its samples, names and labels are well formed, values parse, no sample
/// (name and labels) repeats, and families are not interleaved.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn valid_name(n: &str) -> bool {
        let mut ch = n.chars();
        matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && ch.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"")?;
            if !valid_name(name) || name.starts_with("__") {
                return None;
            }
            let mut val = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        '\\' => val.push('\\'),
                        '"' => val.push('"'),
                        _ => return None,
                    },
                    '"' => break i,
                    c => val.push(c),
                }
            };
            out.push((name.to_string(), val));
            rest = &after[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.is_empty() {
                return None;
            }
        }
        Some(out)
    }
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut done_families: BTreeSet<String> = BTreeSet::new();
    let mut current = String::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "blank line in exposition");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad HELP name {line}");
            assert!(helps.insert(name.to_string()), "second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(it.next().is_none(), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{line}"
            );
            assert!(
                !done_families.contains(name),
                "TYPE after samples of {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
            None => (series, ""),
        };
        assert!(valid_name(name), "bad metric name in {line}");
        assert!(parse_labels(labels).is_some(), "bad labels in {line}");
        assert!(types.contains_key(name), "sample before TYPE: {line}");
        assert!(helps.contains(name), "sample without HELP: {line}");
        if types[name] == "counter" {
            assert!(value.parse::<f64>().unwrap() >= 0.0, "{line}");
        }
        if current != name {
            assert!(!done_families.contains(name), "family {name} interleaved");
            if !current.is_empty() {
                done_families.insert(current.clone());
            }
            current = name.to_string();
        }
        assert!(seen.insert(series.to_string()), "duplicate series {series}");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.push(Sample {
            name: name.into(),
            labels: labels.into(),
            value,
        });
    }
    assert!(!samples.is_empty());
    samples
}
