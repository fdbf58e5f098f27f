//! Black-box tests of websocket clients (issue #14): the HTTP upgrade and RFC 6455
//! frames as raw bytes, compared with the reference nats-server where its answer is
//! deterministic, a standard client (nats-py over ws://) exchanging messages with TCP
//! clients, and bad input that must leave the rest of the server undisturbed.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Kind, Server, TempDir};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server of `kind` with a plain websocket listener; `extra` goes inside the block.
struct WsServer {
    server: Server,
    ws_port: u16,
    _dir: TempDir,
}

fn start(kind: Kind, extra: &str, top: &str) -> WsServer {
    let dir = TempDir::new("ws");
    let ws_port = free_port();
    let conf = dir.write_string(
        "ws.conf",
        &format!("{top}\nwebsocket {{ host: 127.0.0.1, port: {ws_port}, no_tls: true {extra} }}\n"),
    );
    let server = Server::of(kind, &["-c", &conf]);
    WsServer {
        server,
        ws_port,
        _dir: dir,
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn good_request() -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Everything the server sends within `wait` (or until it closes: `<EOF>` marks that).
fn read_all(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                out.extend_from_slice(b"<EOF>");
                return out;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                out.extend_from_slice(b"<EOF>");
                return out;
            }
            Err(_) => return out,
        }
    }
}

/// Sends a raw HTTP request and returns the answer with the `Date` value blanked.
fn http(port: u16, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(req).unwrap();
    let out = read_all(&mut s, Duration::from_millis(400));
    let text = String::from_utf8_lossy(&out).into_owned();
    let text = text.replace("<EOF>", "");
    text.lines()
        .map(|l| {
            if l.starts_with("Date: ") {
                "Date: X"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens a websocket, reads the 101 and the INFO frame; returns the stream and INFO.
fn open(port: u16) -> (TcpStream, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(good_request().as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, info) = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed during handshake: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&got, b"\r\n\r\n") {
            if let Some((payload, _)) = parse_frame(&got[end + 4..]) {
                break (end, payload);
            }
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&got[..head_end + 4]),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    let line = String::from_utf8(info).unwrap();
    let json = line
        .strip_prefix("INFO ")
        .and_then(|l| l.strip_suffix(" \r\n"))
        .expect("INFO line");
    (s, serde_json::from_str(json).unwrap())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A server frame (unmasked): its payload and total length.
fn parse_frame(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
    let (len, at) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        l => (l as usize, 2),
    };
    let payload = b.get(at..at + len)?.to_vec();
    Some((payload, at + len))
}

/// A client frame; masked with a fixed key unless `mask` is false.
fn frame(op: u8, payload: &[u8], fin: bool, mask: bool, rsv: u8) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | rsv | op];
    let m = if mask { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(m | n as u8);
    } else if n < 65536 {
        out.push(m | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    if mask {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn bin(payload: &[u8]) -> Vec<u8> {
    frame(2, payload, true, true, 0)
}

/// Sends `frames` one by one on a fresh websocket; returns what came back, with
/// INFO lines (which differ between servers) replaced by `INFO{}` and frame lengths
/// that cover an INFO written as `~`.
fn exchange(port: u16, frames: &[Vec<u8>]) -> String {
    let (mut s, _) = open(port);
    for f in frames {
        if s.write_all(f).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let out = read_all(&mut s, Duration::from_millis(600));
    normalise(&out)
}

/// Frames shown as `[op]payload`, INFO JSON hidden.
fn normalise(out: &[u8]) -> String {
    let mut rest = out;
    let mut shown = String::new();
    while let Some((payload, used)) = parse_frame(rest) {
        let op = rest[0] & 0x0f;
        let mut text = String::from_utf8_lossy(&payload).into_owned();
        if let Some(i) = text.find("INFO {") {
            text.truncate(i);
            text.push_str("INFO{}");
        }
        shown.push_str(&format!("[{op}]{text:?}"));
        rest = &rest[used..];
    }
    shown.push_str(&String::from_utf8_lossy(rest));
    shown
}

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"protocol\":1}\r\n";

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

#[test]
fn upgrade_and_http_errors_match_reference() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let ours = start(Kind::Natrium, "", "");
    let theirs = start(Kind::NatsServer, "", "");
    let good = good_request();
    let cases: Vec<(&str, String)> = vec![
        ("post", good.replacen("GET", "POST", 1)),
        ("no host", good.replace("Host: 127.0.0.1\r\n", "")),
        ("no upgrade", good.replace("Upgrade: websocket\r\n", "")),
        ("no connection", good.replace("Connection: Upgrade\r\n", "")),
        (
            "no key",
            good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
        ),
        ("version 12", good.replace("Version: 13", "Version: 12")),
        ("plain GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("garbage", "hello\r\n\r\n".into()),
    ];
    for (name, req) in &cases {
        let a = http(ours.ws_port, req.as_bytes());
        let b = http(theirs.ws_port, req.as_bytes());
        assert_eq!(a, b, "{name}");
        assert!(a.starts_with("HTTP/1.1 4"), "{name}: {a}");
    }
    // The 101 (checked byte for byte in `open`) and INFO naming the websocket port.
    for s in [&ours, &theirs] {
        let (_c, info) = open(s.ws_port);
        assert_eq!(info["port"], s.ws_port, "{:?}", s.server.kind);
        assert_eq!(info["host"], "127.0.0.1");
        assert_eq!(info["client_ip"], "127.0.0.1");
    }
    // Nats-No-Masking is echoed, and unmasked frames are then fine.
    for s in [&ours, &theirs] {
        let mut c = TcpStream::connect(("127.0.0.1", s.ws_port)).unwrap();
        let req = good.replace("\r\n\r\n", "\r\nNats-No-Masking: true\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let got = read_all(&mut c, Duration::from_millis(300));
        assert!(find(&got, b"Nats-No-Masking: true\r\n\r\n").is_some());
        c.write_all(&frame(2, &cat(CONNECT, b"PING\r\n"), true, false, 0))
            .unwrap();
        let got = normalise(&read_all(&mut c, Duration::from_millis(300)));
        assert!(got.contains("PONG"), "{:?}: {got}", s.server.kind);
    }
}

#[test]
fn frames_match_reference() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let ours = start(Kind::Natrium, "", "");
    let theirs = start(Kind::NatsServer, "", "");
    let close = |code: u16, text: &[u8]| frame(8, &cat(&code.to_be_bytes(), text), true, true, 0);
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("binary", vec![bin(&cat(CONNECT, b"PING\r\n"))]),
        (
            "text",
            vec![frame(1, &cat(CONNECT, b"PING\r\n"), true, true, 0)],
        ),
        ("ping", vec![frame(9, b"hi", true, true, 0)]),
        ("empty ping", vec![frame(9, b"", true, true, 0)]),
        (
            "pong ignored",
            vec![
                frame(10, b"x", true, true, 0),
                bin(&cat(CONNECT, b"PING\r\n")),
            ],
        ),
        ("close", vec![close(1000, b"bye")]),
        ("empty close", vec![frame(8, b"", true, true, 0)]),
        (
            "fragmented",
            vec![
                frame(2, &cat(CONNECT, b"PI"), false, true, 0),
                frame(0, b"NG\r\n", true, true, 0),
            ],
        ),
        (
            "ping between fragments",
            vec![
                frame(2, &cat(CONNECT, b"PI"), false, true, 0),
                frame(9, b"x", true, true, 0),
                frame(0, b"NG\r\n", true, true, 0),
            ],
        ),
        (
            "sub and pub",
            vec![bin(&cat(
                CONNECT,
                b"SUB a 1\r\nPUB a 5\r\nhello\r\nPING\r\n",
            ))],
        ),
        (
            "op split over frames",
            vec![
                bin(&cat(CONNECT, b"SUB a 1\r\nPUB a 5\r\nhe")),
                bin(b"llo\r\nPING\r\n"),
            ],
        ),
        (
            "close in the middle of a message",
            vec![
                frame(2, &cat(CONNECT, b"PUB a 10\r\nab"), false, true, 0),
                close(1000, b""),
            ],
        ),
    ];
    for (name, frames) in &cases {
        let a = exchange(ours.ws_port, frames);
        let b = exchange(theirs.ws_port, frames);
        assert_eq!(a, b, "{name}");
    }
    // One frame can carry many ops and one op many frames: 1000 messages round trip.
    let (mut c, _) = open(ours.ws_port);
    let mut batch = cat(CONNECT, b"SUB big 1\r\n");
    for _ in 0..1000 {
        batch.extend_from_slice(b"PUB big 3\r\nabc\r\n");
    }
    batch.extend_from_slice(b"PING\r\n");
    for chunk in batch.chunks(777) {
        c.write_all(&bin(chunk)).unwrap();
    }
    let got = normalise(&read_all(&mut c, Duration::from_millis(800)));
    assert_eq!(got.matches("MSG big 1 3").count(), 1000, "{got}");
    assert!(got.contains("PONG"));
}

#[test]
fn protocol_errors_close_with_the_reference_status() {
    // nats-server queues the same close frame for each of these but often closes the
    // socket before it is flushed; these are its texts (websocket.go), checked
    // against its log, with status 1002 (protocol error).
    let ours = start(Kind::Natrium, "", "");
    let close = |text: &str| {
        let mut p = 1002u16.to_be_bytes().to_vec();
        p.extend_from_slice(text.as_bytes());
        format!("[8]{:?}<EOF>", String::from_utf8_lossy(&p))
    };
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (
            vec![frame(2, &cat(CONNECT, b"PING\r\n"), true, false, 0)],
            "mask bit missing",
        ),
        (
            vec![frame(0, b"PING\r\n", true, true, 0)],
            "invalid continuation frame",
        ),
        (
            vec![
                frame(2, b"PI", false, true, 0),
                frame(2, b"NG\r\n", true, true, 0),
            ],
            "new message started before final frame for previous message was received",
        ),
        (vec![frame(3, b"x", true, true, 0)], "unknown opcode 3"),
        (
            vec![frame(2, CONNECT, true, true, 0x40)],
            "compressed frame received without negotiated permessage-deflate",
        ),
        (
            vec![frame(2, CONNECT, true, true, 0x20)],
            "RSV2 and RSV3 must be clear",
        ),
        (
            vec![frame(9, b"x", false, true, 0)],
            "control frame does not have final bit set",
        ),
        (
            vec![frame(9, &[b'x'; 126], true, true, 0)],
            "control frame length bigger than maximum allowed of 125 bytes",
        ),
        (
            vec![frame(8, b"\x03", true, true, 0)],
            "close frame payload cannot be 1 byte",
        ),
    ];
    for (frames, text) in &cases {
        assert_eq!(exchange(ours.ws_port, frames), close(text), "{text}");
    }
    // A NATS protocol error: -ERR in a binary frame, then a close frame saying why.
    let got = exchange(ours.ws_port, &[bin(b"FOO\r\n")]);
    let mut want = "[2]\"-ERR 'Unknown Protocol Operation'\\r\\n\"".to_string();
    let mut p = 1002u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"Protocol Violation");
    want.push_str(&format!("[8]{:?}<EOF>", String::from_utf8_lossy(&p)));
    assert_eq!(got, want);
    // The server is undisturbed: TCP and websocket clients still work.
    assert_tcp_ok(ours.server.port);
    let got = exchange(ours.ws_port, &[bin(&cat(CONNECT, b"PING\r\n"))]);
    assert!(got.starts_with("[2]\"PONG\\r\\nINFO{}"), "{got}");
}

fn assert_tcp_ok(port: u16) {
    let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();
    let got = read_all(&mut t, Duration::from_millis(400));
    assert!(find(&got, b"PONG\r\n").is_some());
}

#[test]
fn bad_input_never_disturbs_the_server() {
    let ours = start(Kind::Natrium, ", handshake_timeout: \"500ms\"", "");
    // Slowloris: a request head that never ends is cut at the handshake timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", ours.ws_port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let got = read_all(&mut slow, Duration::from_secs(3));
    assert_eq!(got, b"<EOF>");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A declared 1 TB frame, a frame cut short, binary junk, a huge header.
    for junk in [
        {
            let mut f = vec![0x82, 0xff];
            f.extend_from_slice(&(1u64 << 40).to_be_bytes());
            f.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
            f
        },
        bin(b"PUB a 1000\r\nabc")[..9].to_vec(),
        (0..=255u8).cycle().take(5000).collect(),
    ] {
        let (mut c, _) = open(ours.ws_port);
        c.write_all(&junk).unwrap();
        drop(c);
    }
    let mut big = TcpStream::connect(("127.0.0.1", ours.ws_port)).unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100_000));
    let _ = big.write_all(&req);
    drop(big);
    assert_tcp_ok(ours.server.port);
    let got = exchange(ours.ws_port, &[bin(&cat(CONNECT, b"PING\r\n"))]);
    assert!(got.starts_with("[2]\"PONG\\r\\nINFO{}"), "{got}");
}

#[test]
fn origin_checks_match_reference() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let extra = ", same_origin: true, allowed_origins: [\"http://127.0.0.1:1234\"]";
    let ours = start(Kind::Natrium, extra, "");
    let theirs = start(Kind::NatsServer, extra, "");
    let good = good_request();
    for origin in [
        "http://evil.com",
        "http://127.0.0.1",
        "http://127.0.0.1:1234",
        "bad",
    ] {
        let req = good.replace("\r\n\r\n", &format!("\r\nOrigin: {origin}\r\n\r\n"));
        let a = http(ours.ws_port, req.as_bytes());
        let b = http(theirs.ws_port, req.as_bytes());
        let cut = |s: &str| s.split("INFO").next().unwrap_or_default().to_string();
        assert_eq!(cut(&a), cut(&b), "{origin}");
    }
}

#[test]
fn config_errors_match_reference() {
    let dir = TempDir::new("wscfg");
    let ref_bin = support::nats_server_bin().expect("nats-server not on PATH");
    for (conf, want) in [
        (
            "websocket { port: 1, no_tls: true, foo: 1 }",
            "unknown field \"foo\"",
        ),
        (
            "websocket { port: \"x\", no_tls: true }",
            "interface conversion",
        ),
        (
            "websocket { port: 1, no_tls: true, handshake_timeout: \"x\" }",
            "invalid duration",
        ),
        (
            "websocket { port: 1, no_tls: true, password_cookie: p }",
            "unknown field",
        ),
    ] {
        let path = dir.write_string("t.conf", conf);
        let run = |bin: &std::path::Path| {
            let out = Command::new(bin)
                .args(["-t", "-c", &path])
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok_a, a) = run(&support::natrium_bin());
        let (ok_b, b) = run(&ref_bin);
        assert!(!ok_a && !ok_b, "{conf}: {a} / {b}");
        let line = |s: &str| {
            s.lines().find(|l| l.contains(want)).map(|l| {
                l.trim_start_matches("nats-server: ")
                    .trim_start_matches("natrium: ")
                    .to_string()
            })
        };
        assert_eq!(line(&a), line(&b), "{conf}\nnatrium: {a}\nnats-server: {b}");
        assert!(line(&a).is_some(), "{conf}: {a}");
    }
    // Without tls {} and without no_tls, the server refuses to start (-t accepts it).
    let path = dir.write_string(
        "t.conf",
        &format!(
            "port: {}\nwebsocket {{ port: {} }}",
            free_port(),
            free_port()
        ),
    );
    for bin in [support::natrium_bin(), ref_bin.clone()] {
        let out = Command::new(&bin).args(["-c", &path]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("websocket requires TLS configuration"),
            "{bin:?}: {err}"
        );
    }
}

#[test]
fn nats_py_over_websocket_with_tcp_clients() {
    let ours = start(Kind::Natrium, "", "");
    let script = r#"
import asyncio, sys, nats
async def main():
    ws = await nats.connect(f"ws://127.0.0.1:{sys.argv[1]}")
    tcp = await nats.connect(f"nats://127.0.0.1:{sys.argv[2]}")
    sub = await ws.subscribe("t.>")
    tsub = await tcp.subscribe("w.>")
    await ws.flush(); await tcp.flush()
    await tcp.publish("t.1", b"from tcp"); await tcp.flush()
    m = await sub.next_msg(timeout=3); assert m.data == b"from tcp", m.data
    await ws.publish("w.1", b"x" * 300000); await ws.flush()
    m = await tsub.next_msg(timeout=3); assert len(m.data) == 300000
    async def h(msg): await msg.respond(b"re:" + msg.data)
    await ws.subscribe("svc", cb=h); await ws.flush()
    r = await tcp.request("svc", b"hi", timeout=3); assert r.data == b"re:hi", r.data
    r = await ws.request("svc", b"me", timeout=3); assert r.data == b"re:me", r.data
    for i in range(2000): await tcp.publish("t.x", b"%d" % i)
    await tcp.flush()
    for i in range(2000):
        m = await sub.next_msg(timeout=3); assert m.data == b"%d" % i
    await ws.drain(); await tcp.drain()
    print("OK")
asyncio.run(main())
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &ours.ws_port.to_string(),
            &ours.server.port.to_string(),
        ])
        .output()
        .expect("python3 with nats-py and aiohttp (pip install nats-py aiohttp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn websocket_authorization_overrides_the_server_s() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let top = "authorization { token: main }";
    let extra = ", authorization { token: wstok, timeout: 1 }";
    let ours = start(Kind::Natrium, extra, top);
    let theirs = start(Kind::NatsServer, extra, top);
    for tok in ["wstok", "main", ""] {
        let c = format!("CONNECT {{\"verbose\":false,\"auth_token\":\"{tok}\"}}\r\nPING\r\n");
        let a = exchange(ours.ws_port, &[bin(c.as_bytes())]);
        let b = exchange(theirs.ws_port, &[bin(c.as_bytes())]);
        assert_eq!(a, b, "token {tok:?}");
    }
    // Authentication Failure is a policy violation (1008).
    let c = b"CONNECT {\"verbose\":false,\"auth_token\":\"main\"}\r\n";
    let (mut s, _) = open(ours.ws_port);
    s.write_all(&bin(c)).unwrap();
    let raw = read_all(&mut s, Duration::from_millis(500));
    assert!(
        raw.ends_with(b"\x88\x18\x03\xf0Authentication Failure<EOF>"),
        "{raw:?}"
    );
    // TCP clients keep the server's token.
    for (tok, ok) in [("main", true), ("wstok", false)] {
        let mut t = TcpStream::connect(("127.0.0.1", ours.server.port)).unwrap();
        t.write_all(format!("CONNECT {{\"auth_token\":\"{tok}\"}}\r\nPING\r\n").as_bytes())
            .unwrap();
        let got = read_all(&mut t, Duration::from_millis(400));
        assert_eq!(find(&got, b"PONG\r\n").is_some(), ok, "{tok}");
    }
    // The websocket auth timeout (1s) closes a silent websocket client.
    let (mut c, info) = open(ours.ws_port);
    assert_eq!(info["auth_required"], true);
    let t = Instant::now();
    let got = normalise(&read_all(&mut c, Duration::from_secs(3)));
    assert!(got.contains("Authentication Timeout"), "{got}");
    assert!(t.elapsed() < Duration::from_millis(2500));
}

#[test]
fn monitoring_shows_websocket_clients() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let extra = ", same_origin: true, compression: false, handshake_timeout: \"3s\", \
                 allowed_origins: [\"http://a.com\"]";
    let mut varz = Vec::new();
    let mut types = Vec::new();
    for kind in [Kind::Natrium, Kind::NatsServer] {
        let http = free_port();
        let s = start(kind, extra, &format!("http: 127.0.0.1:{http}"));
        let (mut c, _) = open(s.ws_port);
        c.write_all(&bin(
            b"CONNECT {\"verbose\":false,\"name\":\"wsc\"}\r\nSUB a 1\r\nPING\r\n",
        ))
        .unwrap();
        let _ = read_all(&mut c, Duration::from_millis(300));
        let mut tcp = TcpStream::connect(("127.0.0.1", s.server.port)).unwrap();
        tcp.write_all(b"CONNECT {\"name\":\"tcp\"}\r\nPING\r\n")
            .unwrap();
        let _ = read_all(&mut tcp, Duration::from_millis(300));
        let mut v = support::http_get_json(http, "/varz")["websocket"].clone();
        v["port"] = serde_json::json!("P");
        varz.push(v);
        let conns = support::http_get_json(http, "/connz")["connections"].clone();
        let mut t: Vec<(String, String)> = conns
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["type"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        t.sort();
        types.push(t);
    }
    assert_eq!(varz[0], varz[1]);
    assert_eq!(types[0], types[1]);
    assert_eq!(
        types[0],
        [
            ("tcp".into(), "nats".into()),
            ("wsc".into(), "websocket".into())
        ]
    );
}

#[test]
fn nats_py_over_wss() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = TempDir::new("wss");
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "ws test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    let ca_path = dir.write_string("ca.pem", &ca.pem());
    let cert_path = dir.write_string("server.pem", &cert.pem());
    let key_path = dir.write_string("server-key.pem", &key.serialize_pem());
    let ws_port = free_port();
    let conf = dir.write_string(
        "wss.conf",
        &format!(
            "websocket {{ host: 127.0.0.1, port: {ws_port}, tls {{ cert_file: \"{cert_path}\", \
             key_file: \"{key_path}\" }} }}\n"
        ),
    );
    let server = Server::natrium(&["-c", &conf]);
    // A plain ws:// upgrade on the wss:// port gets nothing but a close.
    let mut plain = TcpStream::connect(("127.0.0.1", ws_port)).unwrap();
    plain.write_all(good_request().as_bytes()).unwrap();
    let got = read_all(&mut plain, Duration::from_secs(3));
    assert!(find(&got, b"101").is_none(), "{got:?}");
    let script = r#"
import asyncio, ssl, sys, nats
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[3])
    # Generous timeouts: a debug build's TLS on a loaded machine is slow.
    ws = await nats.connect(f"wss://127.0.0.1:{sys.argv[1]}", tls=ctx, connect_timeout=10)
    tcp = await nats.connect(f"nats://127.0.0.1:{sys.argv[2]}", connect_timeout=10)
    sub = await ws.subscribe("s")
    # nats-py writes a flush's PING ahead of a SUB still in its pending buffer, so
    # a PONG alone does not prove the SUB arrived; its own echo does, and the PING
    # after it then waits until every shard has the interest.
    await ws.publish("s", b"echo")
    m = await sub.next_msg(timeout=10); assert m.data == b"echo", m.data
    await ws.flush(timeout=10)
    await tcp.publish("s", b"over tls"); await tcp.flush(timeout=10)
    m = await sub.next_msg(timeout=10); assert m.data == b"over tls", m.data
    assert ws.connected_url.scheme == "wss"
    await ws.drain(); await tcp.drain()
    print("OK")
asyncio.run(main())
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &ws_port.to_string(),
            &server.port.to_string(),
            &ca_path,
        ])
        .output()
        .expect("python3 with nats-py and aiohttp");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn deflate_raw(p: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(p.len() + 64);
    c.compress_vec(p, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate_raw(z: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new(false);
    let input = [z, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(z.len() * 20 + 1024);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

#[test]
fn permessage_deflate_as_the_reference_negotiates_it() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let ours = start(Kind::Natrium, ", compression: true", "");
    let theirs = start(Kind::NatsServer, ", compression: true", "");
    let offer = good_request().replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    );
    let heads: Vec<String> = [&ours, &theirs]
        .iter()
        .map(|s| {
            let a = http(s.ws_port, offer.as_bytes());
            a.split("\n\n").next().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(heads[0], heads[1]);
    assert!(heads[0].contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"));

    // Compressed frames in (one message over two frames), compressed frames out.
    let mut s = TcpStream::connect(("127.0.0.1", ours.ws_port)).unwrap();
    s.write_all(offer.as_bytes()).unwrap();
    let got = read_all(&mut s, Duration::from_millis(300));
    let end = find(&got, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got[end] & 0x40, 0x40, "INFO is compressed");
    let mut msg = cat(CONNECT, b"SUB a 1\r\nPUB a 3000\r\n");
    msg.extend((0..3000).map(|i| b"abcdefgh"[i % 8]));
    msg.extend_from_slice(b"\r\nPING\r\n");
    let z = deflate_raw(&msg);
    s.write_all(&frame(2, &z[..10], false, true, 0x40)).unwrap();
    s.write_all(&frame(0, &z[10..], true, true, 0)).unwrap();
    s.write_all(&bin(b"PING\r\n")).unwrap();
    let got = read_all(&mut s, Duration::from_millis(500));
    let mut rest = &got[..];
    let mut plain = Vec::new();
    while let Some((payload, used)) = parse_frame(rest) {
        if rest[0] & 0x40 != 0 {
            plain.extend(inflate_raw(&payload));
        } else {
            plain.extend(payload);
        }
        rest = &rest[used..];
    }
    let text = String::from_utf8_lossy(&plain);
    assert!(text.starts_with("MSG a 1 3000\r\nabcdefgh"), "{text}");
    assert_eq!(text.matches("PONG\r\n").count(), 2, "{text}");
    // Without compression configured, the offer is ignored (RSV1 frames are then
    // refused: see protocol_errors_close_with_the_reference_status).
    let plain_server = start(Kind::Natrium, "", "");
    let a = http(plain_server.ws_port, offer.as_bytes());
    assert!(!a.contains("Sec-WebSocket-Extensions"), "{a}");
}

#[test]
fn nats_py_with_compression() {
    let ours = start(Kind::Natrium, ", compression: true", "");
    let script = r#"
import asyncio, sys, nats
async def main():
    ws = await nats.connect(f"ws://127.0.0.1:{sys.argv[1]}")
    tcp = await nats.connect(f"nats://127.0.0.1:{sys.argv[2]}")
    sub = await ws.subscribe("c")
    tsub = await tcp.subscribe("d")
    await ws.flush()
    body = b"compress me " * 5000
    await tcp.publish("c", body); await tcp.flush()
    m = await sub.next_msg(timeout=3); assert m.data == body
    await ws.publish("d", body); await ws.flush()
    m = await tsub.next_msg(timeout=3); assert m.data == body
    await ws.drain(); await tcp.drain()
    print("OK")
asyncio.run(main())
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &ours.ws_port.to_string(),
            &ours.server.port.to_string(),
        ])
        .output()
        .expect("python3 with nats-py and aiohttp");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn token_cookie_logs_in_as_the_reference() {
    assert!(
        support::nats_server_bin().is_some(),
        "nats-server not on PATH"
    );
    let top = "authorization { token: s3cr3t }";
    let extra = ", token_cookie: nats_token";
    let ours = start(Kind::Natrium, extra, top);
    let theirs = start(Kind::NatsServer, extra, top);
    for cookie in [
        "nats_token=s3cr3t",
        "other=1; nats_token=s3cr3t",
        "nats_token=bad",
        "x=s3cr3t",
    ] {
        let mut outs = Vec::new();
        for s in [&ours, &theirs] {
            let mut c = TcpStream::connect(("127.0.0.1", s.ws_port)).unwrap();
            let req = good_request().replace("\r\n\r\n", &format!("\r\nCookie: {cookie}\r\n\r\n"));
            c.write_all(req.as_bytes()).unwrap();
            let _ = read_all(&mut c, Duration::from_millis(300));
            c.write_all(&bin(b"CONNECT {\"verbose\":false}\r\nPING\r\n"))
                .unwrap();
            outs.push(normalise(&read_all(&mut c, Duration::from_millis(400))));
        }
        assert_eq!(outs[0], outs[1], "{cookie}");
        let good = cookie.contains("nats_token=s3cr3t");
        assert_eq!(outs[0].contains("PONG"), good, "{cookie}: {}", outs[0]);
    }
}

/// In a cluster, websocket clients are told the websocket URLs of every server
/// (this one's first, a peer's `advertise` as given) in `connect_urls`; TCP
/// clients keep the client URLs. Mixed with nats-server both ways; alone, a server
/// tells websocket clients no URLs.
#[test]
fn websocket_clients_learn_the_clusters_websocket_urls() {
    let kinds: &[(Kind, Kind)] = if support::nats_server_bin().is_some() {
        &[
            (Kind::Natrium, Kind::Natrium),
            (Kind::Natrium, Kind::NatsServer),
            (Kind::NatsServer, Kind::Natrium),
        ]
    } else {
        &[(Kind::Natrium, Kind::Natrium)]
    };
    for &(ka, kb) in kinds {
        let (ra, rb) = (free_port(), free_port());
        let a = start(
            ka,
            "",
            &format!("cluster {{ name: W, listen: \"127.0.0.1:{ra}\" }}"),
        );
        let b = start(
            kb,
            ", advertise: \"ws.example.com:443\"",
            &format!(
                "cluster {{ name: W, listen: \"127.0.0.1:{rb}\", routes: [\"nats://127.0.0.1:{ra}\"] }}"
            ),
        );
        let own_a = format!("127.0.0.1:{}", a.ws_port);
        let want_a = serde_json::json!([own_a, "ws.example.com:443"]);
        let want_b = serde_json::json!(["ws.example.com:443", own_a]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_s, ia) = open(a.ws_port);
            let (_t, ib) = open(b.ws_port);
            if ia["connect_urls"] == want_a && ib["connect_urls"] == want_b {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ka:?}/{kb:?}: {} and {}",
                ia["connect_urls"],
                ib["connect_urls"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // A TCP client of A still gets the client URLs.
        let mut tcp = TcpStream::connect(("127.0.0.1", a.server.port)).unwrap();
        let info = read_all(&mut tcp, Duration::from_millis(300));
        let info = String::from_utf8_lossy(&info);
        assert!(!info.contains("ws.example.com"), "{ka:?}: {info}");
    }
    let alone = start(Kind::Natrium, "", "");
    let (_s, info) = open(alone.ws_port);
    assert!(info.get("connect_urls").is_none(), "{info}");
}
