//! Limits and hostile input, end to end: slow consumers are cut off without hurting
//! anyone else, connection and subscription limits answer like nats-server, and
//! garbage on many connections never takes the server down.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Server, TempDir};

fn connect(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut info = [0u8; 4096];
    let n = s.read(&mut info).unwrap();
    assert!(
        info[..n].starts_with(b"INFO {"),
        "{:?}",
        String::from_utf8_lossy(&info[..n])
    );
    s
}

/// Reads until `want` has been seen (or the connection ends); returns all bytes.
fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !got.windows(want.len()).any(|w| w == want) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn slow_consumer_is_closed_and_others_get_everything() {
    let dir = TempDir::new("slow");
    let path = dir.write("n.conf", "max_pending: 4MB\n");
    let server = Server::natrium(&["-c", path.to_str().unwrap()]);
    // The slow one subscribes and never reads again.
    let mut slow = connect(&server);
    slow.write_all(b"CONNECT {\"verbose\":false}\r\nSUB big 1\r\nPING\r\n")
        .unwrap();
    assert!(read_until(&mut slow, b"PONG\r\n").ends_with(b"PONG\r\n"));
    // The fast one reads on its own thread.
    let mut fast = connect(&server);
    fast.write_all(b"CONNECT {\"verbose\":false}\r\nSUB big 1\r\nPING\r\n")
        .unwrap();
    assert!(read_until(&mut fast, b"PONG\r\n").ends_with(b"PONG\r\n"));
    const N: usize = 800;
    const SIZE: usize = 60_000;
    let reader = std::thread::spawn(move || {
        let mut msgs = 0;
        let mut buf = vec![0u8; 1 << 20];
        let mut pending: Vec<u8> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while msgs < N && Instant::now() < deadline {
            let n = fast.read(&mut buf).unwrap();
            assert!(n > 0, "fast consumer was cut off after {msgs} messages");
            pending.extend_from_slice(&buf[..n]);
            // count complete frames: "MSG big 1 60000\r\n" + payload + "\r\n"
            while let Some(eol) = pending.windows(2).position(|w| w == b"\r\n") {
                let line = std::str::from_utf8(&pending[..eol]).unwrap().to_string();
                if line == "PING" {
                    fast.write_all(b"PONG\r\n").unwrap();
                    pending.drain(..eol + 2);
                    continue;
                }
                let size: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
                if pending.len() < eol + 2 + size + 2 {
                    break;
                }
                pending.drain(..eol + 2 + size + 2);
                msgs += 1;
            }
        }
        msgs
    });
    let mut publisher = connect(&server);
    publisher
        .write_all(b"CONNECT {\"verbose\":false}\r\n")
        .unwrap();
    let payload = vec![b'x'; SIZE];
    for _ in 0..N {
        publisher
            .write_all(format!("PUB big {SIZE}\r\n").as_bytes())
            .unwrap();
        publisher.write_all(&payload).unwrap();
        publisher.write_all(b"\r\n").unwrap();
    }
    publisher.write_all(b"PING\r\n").unwrap();
    assert!(read_until(&mut publisher, b"PONG\r\n").ends_with(b"PONG\r\n"));
    assert_eq!(
        reader.join().unwrap(),
        N,
        "the reading subscriber got every message"
    );
    assert!(
        server
            .wait_log("Slow Consumer Detected", Duration::from_secs(10))
            .is_some(),
        "slow consumer logged"
    );
    // The slow connection ends (after whatever was already in its socket buffers),
    // without an -ERR, as nats-server does.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        rest.len() < N * SIZE,
        "slow consumer was closed before getting everything"
    );
    assert!(
        !rest.windows(5).any(|w| w == b"-ERR "),
        "no -ERR to a slow consumer"
    );
}

#[test]
fn max_connections_and_max_subscriptions() {
    let dir = TempDir::new("max");
    let path = dir.write("n.conf", "max_connections: 2\nmax_subscriptions: 3\n");
    let server = Server::natrium(&["-c", path.to_str().unwrap()]);
    let mut a = connect(&server);
    let _b = connect(&server);
    // The third still gets INFO, then the error, then the close.
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut refused = Vec::new();
    let _ = c.read_to_end(&mut refused);
    assert!(
        refused.starts_with(b"INFO {"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    assert!(
        refused.ends_with(b" \r\n-ERR 'maximum connections exceeded'\r\n"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    a.write_all(
        b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\nPING\r\n",
    )
    .unwrap();
    let got = read_until(&mut a, b"PONG\r\n");
    assert_eq!(got, b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n");
    // The connection stays and its three subscriptions work.
    a.write_all(b"PUB c 2\r\nok\r\nPUB d 2\r\nno\r\nPING\r\n")
        .unwrap();
    assert_eq!(
        read_until(&mut a, b"PONG\r\n"),
        b"MSG c 3 2\r\nok\r\nPONG\r\n"
    );
}

#[test]
fn garbage_on_many_connections_leaves_the_server_serving() {
    let server = Server::natrium(&[]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds: [&[u8]; 6] = [
        b"PUB foo 5\r\nhello\r\n",
        b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        b"SUB foo q 1\r\n",
        b"CONNECT {\"headers\":true}\r\n",
        b"UNSUB 1 2\r\n",
        b"PING\r\n",
    ];
    for round in 0..60 {
        let mut s = connect(&server);
        let mut bytes = Vec::new();
        for _ in 0..(next() % 20 + 1) {
            let mut piece = seeds[(next() % seeds.len() as u64) as usize].to_vec();
            // mutate: flip, drop or insert bytes
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % piece.len();
                match next() % 3 {
                    0 => piece[at] = next() as u8,
                    1 => {
                        piece.remove(at);
                    }
                    _ => piece.insert(at, next() as u8),
                }
                if piece.is_empty() {
                    piece.push(b'X');
                }
            }
            bytes.extend_from_slice(&piece);
        }
        if round % 3 == 0 {
            bytes.extend((0..(next() % 5000)).map(|_| next() as u8));
        }
        let _ = s.write_all(&bytes);
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        let mut sink = [0u8; 65536];
        let _ = s.read(&mut sink);
    }
    // Still serving, on both shards.
    let mut sub = connect(&server);
    sub.write_all(b"CONNECT {\"verbose\":false}\r\nSUB after 1\r\nPING\r\n")
        .unwrap();
    assert!(read_until(&mut sub, b"PONG\r\n").ends_with(b"PONG\r\n"));
    for _ in 0..4 {
        let mut publisher = connect(&server);
        publisher
            .write_all(b"CONNECT {\"verbose\":false}\r\nPUB after 2\r\nok\r\nPING\r\n")
            .unwrap();
        assert!(read_until(&mut publisher, b"PONG\r\n").ends_with(b"PONG\r\n"));
    }
    let got = read_until(
        &mut sub,
        b"ok\r\nMSG after 1 2\r\nok\r\nMSG after 1 2\r\nok\r\nMSG after 1 2\r\nok\r\n",
    );
    assert_eq!(
        got.windows(13).filter(|w| *w == b"MSG after 1 2").count(),
        4
    );
}

/// Signals are blocked in every thread but the control thread, monitoring threads
/// included: a SIGHUP or SIGUSR1 must never run its default action (terminate).
#[test]
fn signals_never_kill_a_server_with_monitoring() {
    let dir = TempDir::new("sig");
    let path = dir.write("n.conf", "ping_interval: \"2m\"\n");
    let mut server = Server::natrium(&["-c", path.to_str().unwrap(), "-m", "-1"]);
    for _ in 0..10 {
        server.signal(libc::SIGHUP);
        server.signal(libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.wait_exit(Duration::from_millis(300)).is_none(),
        "server died from a signal"
    );
    let mut c = connect(&server);
    c.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    assert!(read_until(&mut c, b"PONG\r\n").ends_with(b"PONG\r\n"));
}
