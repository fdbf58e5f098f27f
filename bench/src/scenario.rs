//! The scenarios: publishers, subscribers and requesters on plain threads with
//! blocking sockets, coordinated through a few atomics.

use crate::check::{union_check, Bitmap, CheckSum, Ordered};
use crate::proto::{decode, parse, Conn, Event, PubBatcher, Url};
use crate::sys;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::io::{ErrorKind, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// publish only, no subscribers
    Pub,
    /// 1 publisher -> 1 subscriber
    Pubsub,
    /// 1 publisher -> N subscribers, each on its own connection
    Fanout,
    /// 1 publisher -> N members of one queue group
    Queue,
    /// N publishers -> M subscribers
    Manypubs,
    /// request/reply round trips: N requesters, M responders (a queue group when M > 1)
    Reqreply,
    /// connection rate: N clients each connect, handshake (INFO, CONNECT, PING ->
    /// PONG) and close, again and again
    Connect,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pub => "pub",
            Kind::Pubsub => "pubsub",
            Kind::Fanout => "fanout",
            Kind::Queue => "queue",
            Kind::Manypubs => "manypubs",
            Kind::Reqreply => "reqreply",
            Kind::Connect => "connect",
        }
    }
    /// Default (publishers, subscribers).
    pub fn defaults(self) -> (usize, usize) {
        match self {
            Kind::Pub => (1, 0),
            Kind::Pubsub => (1, 1),
            Kind::Fanout => (1, 10),
            Kind::Queue => (1, 4),
            Kind::Manypubs => (4, 4),
            Kind::Reqreply => (1, 1),
            Kind::Connect => (1, 0),
        }
    }
}

/// How much to send: a count per publisher, or a duration.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    Msgs(u64),
    For(Duration),
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub kind: Kind,
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    pub amount: Amount,
}

impl Spec {
    pub fn label(&self) -> String {
        let size = human_size(self.size);
        match self.kind {
            Kind::Pub => format!("pub x{} {size}", self.pubs),
            Kind::Reqreply => format!("reqreply {}req/{}resp {size}", self.pubs, self.subs),
            Kind::Queue => format!("queue {}->q{} {size}", self.pubs, self.subs),
            Kind::Connect => format!("connect x{}", self.pubs),
            k => format!("{} {}->{} {size}", k.name(), self.pubs, self.subs),
        }
    }
}

pub fn human_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}MB", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KB", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// Options that do not change what is measured.
#[derive(Clone, Debug)]
pub struct RunOpts {
    pub url: Url,
    /// Where subscribers connect when it is not `url` (another node of a cluster).
    pub sub_url: Option<Url>,
    pub subject: String,
    pub timeout: Duration,
    /// Max bytes a subscriber may lag behind the publishers (0 = no flow control).
    pub window: u64,
    pub server_pid: Option<u32>,
    pub progress: bool,
    pub server_name: String,
}

#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn from_hist(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |v: u64| v as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

#[derive(Clone, Debug)]
pub struct RunResult {
    pub spec: Spec,
    pub server: String,
    pub published: u64,
    pub pub_secs: f64,
    pub delivered: u64,
    pub deliv_secs: f64,
    pub latency: Option<Latency>,
    pub gen_cpu: f64,
    pub server_cpu: Option<f64>,
    pub check: CheckSum,
    pub slow_consumers: usize,
    pub wall_secs: f64,
}

impl RunResult {
    pub fn pub_rate(&self) -> f64 {
        rate(self.published, self.pub_secs)
    }
    pub fn deliv_rate(&self) -> f64 {
        rate(self.delivered, self.deliv_secs)
    }
    /// The figure compared between servers: deliveries/s, or publishes/s for `pub`,
    /// or round trips/s for `reqreply`.
    pub fn primary(&self) -> f64 {
        match self.spec.kind {
            Kind::Pub => self.pub_rate(),
            _ => self.deliv_rate(),
        }
    }
    pub fn ok(&self) -> bool {
        self.check.ok()
    }
    pub fn to_json(&self) -> Value {
        let lat = self.latency.as_ref().map(|l| {
            json!({"count": l.count, "p50_us": l.p50, "p90_us": l.p90, "p99_us": l.p99,
                   "p999_us": l.p999, "max_us": l.max})
        });
        let size = self.spec.size as f64;
        json!({
            "scenario": self.spec.kind.name(),
            "label": self.spec.label(),
            "server": self.server,
            "size": self.spec.size,
            "pubs": self.spec.pubs,
            "subs": self.spec.subs,
            "published": self.published,
            "published_msgs_per_sec": self.pub_rate(),
            "published_bytes_per_sec": self.pub_rate() * size,
            "delivered": self.delivered,
            "delivered_msgs_per_sec": self.deliv_rate(),
            "delivered_bytes_per_sec": self.deliv_rate() * size,
            "primary_msgs_per_sec": self.primary(),
            "latency": lat,
            "generator_cpu_secs": self.gen_cpu,
            "server_cpu_secs": self.server_cpu,
            "wall_secs": self.wall_secs,
            "check": {
                "ok": self.ok(), "expected": self.check.expected, "unique": self.check.unique,
                "lost": self.check.lost, "duplicated": self.check.dups,
                "reordered": self.check.reordered, "foreign": self.check.foreign,
                "slow_consumers": self.slow_consumers,
            },
        })
    }
}

/// The server's CPU seconds since `before` (both read from `--server-pid`).
fn server_cpu_since(opts: &RunOpts, before: Option<f64>) -> Option<f64> {
    Some(opts.server_pid.and_then(sys::proc_cpu)? - before?)
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

struct SubState {
    received: AtomicU64,
    dead: AtomicBool,
    /// The PONG after SUB arrived: the server has registered the subscription.
    ready: AtomicBool,
}

struct Shared {
    abort: AtomicBool,
    stop: AtomicBool,
    published: AtomicU64,
    subs: Vec<SubState>,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: String) {
        let mut g = self.first_error.lock().unwrap();
        if g.is_none() {
            *g = Some(e);
        }
        self.abort.store(true, SeqCst);
    }
    fn error(&self) -> Option<String> {
        self.first_error.lock().unwrap().clone()
    }
}

enum Tracker {
    Ordered(Vec<Ordered>),
    Bitmap(Vec<Bitmap>),
}

struct SubOut {
    tracker: Tracker,
    hist: Histogram<u64>,
    received: u64,
    last: Option<Instant>,
    closed: Option<String>,
    foreign: u64,
}

/// Run one scenario once against `opts.url`.
pub fn run(spec: &Spec, opts: &RunOpts) -> Result<RunResult, String> {
    if spec.size < crate::proto::HEADER_LEN {
        return Err(format!(
            "--size must be at least {} (payloads carry publisher id and sequence)",
            crate::proto::HEADER_LEN
        ));
    }
    if spec.pubs == 0 {
        return Err("--pubs must be at least 1".into());
    }
    if !matches!(spec.kind, Kind::Pub | Kind::Connect) && spec.subs == 0 {
        return Err("--subs must be at least 1".into());
    }
    if spec.kind == Kind::Reqreply {
        return run_reqreply(spec, opts);
    }
    if spec.kind == Kind::Connect {
        return run_connect(spec, opts);
    }
    run_msgs(spec, opts)
}

/// One connecting thread's count and handshake times.
type ConnectOut = Result<(u64, Histogram<u64>), String>;

/// Connections per second: `spec.pubs` threads, each connecting, completing the
/// handshake (the PONG proves the server authenticated the client) and closing, for
/// the duration or `--msgs` connections each. The handshake time is the latency.
fn run_connect(spec: &Spec, opts: &RunOpts) -> Result<RunResult, String> {
    let cpu0 = sys::self_cpu();
    let srv0 = opts.server_pid.and_then(sys::proc_cpu);
    let start = Instant::now();
    let threads: Vec<JoinHandle<ConnectOut>> = (0..spec.pubs)
        .map(|i| {
            let (url, timeout, amount) = (opts.url.clone(), opts.timeout, spec.amount);
            thread::spawn(move || {
                let mut hist = new_hist();
                let mut n = 0u64;
                let begin = Instant::now();
                loop {
                    let done = match amount {
                        Amount::Msgs(m) => n >= m,
                        Amount::For(d) => begin.elapsed() >= d,
                    };
                    if done {
                        return Ok((n, hist));
                    }
                    let t = Instant::now();
                    let c = Conn::connect(&url, &format!("bench-conn-{i}"), timeout)?;
                    let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
                    drop(c);
                    n += 1;
                }
            })
        })
        .collect();
    let mut total = 0u64;
    let mut hist = new_hist();
    for t in threads {
        let (n, h) = t
            .join()
            .map_err(|_| "a connect thread panicked".to_string())??;
        total += n;
        let _ = hist.add(&h);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(RunResult {
        spec: spec.clone(),
        server: opts.server_name.clone(),
        published: total,
        pub_secs: secs,
        delivered: total,
        deliv_secs: secs,
        latency: Latency::from_hist(&hist),
        gen_cpu: sys::self_cpu() - cpu0,
        server_cpu: server_cpu_since(opts, srv0),
        check: CheckSum {
            expected: total,
            unique: total,
            ..CheckSum::default()
        },
        slow_consumers: 0,
        wall_secs: secs,
    })
}

fn sub_subject(opts: &RunOpts, spec: &Spec) -> String {
    format!("{}.{}", opts.subject, spec.kind.name())
}

fn run_msgs(spec: &Spec, opts: &RunOpts) -> Result<RunResult, String> {
    let subject = sub_subject(opts, spec);
    let nsubs = if spec.kind == Kind::Pub { 0 } else { spec.subs };
    let queue = spec.kind == Kind::Queue;
    let shared = Arc::new(Shared {
        abort: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        published: AtomicU64::new(0),
        subs: (0..nsubs)
            .map(|_| SubState {
                received: AtomicU64::new(0),
                dead: AtomicBool::new(false),
                ready: AtomicBool::new(false),
            })
            .collect(),
        first_error: Default::default(),
    });

    // Connect and subscribe everyone before anybody publishes.
    let mut sub_conns = Vec::with_capacity(nsubs);
    let mut probe = match &opts.sub_url {
        Some(_) => Some(Conn::connect(&opts.url, "bench-probe", opts.timeout)?),
        None => None,
    };
    for i in 0..nsubs {
        let url = opts.sub_url.as_ref().unwrap_or(&opts.url);
        let mut c = Conn::connect(url, &format!("bench-sub-{i}"), opts.timeout)?;
        let q = queue.then_some("benchq");
        match probe.as_mut() {
            Some(p) => c.subscribe_across(p, &subject, q, 1, &format!("{subject}.probe.{i}"))?,
            None => c.subscribe_nowait(&subject, q, 1)?,
        }
        sub_conns.push(c);
    }
    drop(probe);
    let mut pub_conns = Vec::with_capacity(spec.pubs);
    for i in 0..spec.pubs {
        pub_conns.push(Conn::connect(
            &opts.url,
            &format!("bench-pub-{i}"),
            opts.timeout,
        )?);
    }
    let _ = epoch();
    let barrier = Arc::new(Barrier::new(spec.pubs + 1));
    let rusage0 = sys::self_cpu();
    let srv0 = opts.server_pid.and_then(sys::proc_cpu);

    let mut sub_handles: Vec<JoinHandle<SubOut>> = Vec::with_capacity(nsubs);
    for (i, c) in sub_conns.into_iter().enumerate() {
        let sh = shared.clone();
        let npubs = spec.pubs;
        let h = thread::Builder::new()
            .name(format!("sub{i}"))
            .spawn(move || sub_loop(c, sh, i, npubs, queue))
            .map_err(|e| e.to_string())?;
        sub_handles.push(h);
    }
    let frame_len = PubBatcher::new(&subject, None, spec.size, 64 << 10).frame_len() as u64;
    // The window is the total of frames in flight towards all subscribers, so the
    // server always has work queued but the drain at the end stays short.
    let window_msgs = if opts.window == 0 || nsubs == 0 {
        u64::MAX
    } else if queue {
        (opts.window / frame_len).max(64)
    } else {
        (opts.window / frame_len / nsubs as u64).max(64)
    };
    let mut pub_handles = Vec::with_capacity(spec.pubs);
    for (i, c) in pub_conns.into_iter().enumerate() {
        let sh = shared.clone();
        let b = barrier.clone();
        let subj = subject.clone();
        let size = spec.size;
        let amount = spec.amount;
        let timeout = opts.timeout;
        let h = thread::Builder::new()
            .name(format!("pub{i}"))
            .spawn(move || {
                pub_loop(
                    c,
                    sh,
                    b,
                    i as u32,
                    &subj,
                    size,
                    amount,
                    window_msgs,
                    queue,
                    timeout,
                )
            })
            .map_err(|e| e.to_string())?;
        pub_handles.push(h);
    }
    // Every subscription must be confirmed (PONG) before anybody publishes.
    let deadline = Instant::now() + opts.timeout;
    while !shared.subs.iter().all(|s| s.ready.load(SeqCst)) {
        if shared.abort.load(SeqCst) || Instant::now() >= deadline {
            if shared.error().is_none() {
                shared.fail(format!(
                    "subscriptions not confirmed by the server within {:?}",
                    opts.timeout
                ));
            }
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    // Publishers wait at the barrier and check `abort` right after it.
    barrier.wait();
    let start = Instant::now();

    // Wait for the publishers, with progress.
    let mut last_print = Instant::now();
    let tty = opts.progress && std::io::stderr().is_terminal();
    while !pub_handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(20));
        if tty && last_print.elapsed() >= Duration::from_millis(500) {
            last_print = Instant::now();
            let p = shared.published.load(Relaxed);
            let d: u64 = shared.subs.iter().map(|s| s.received.load(Relaxed)).sum();
            let el = start.elapsed().as_secs_f64();
            eprint!(
                "\r  {} {}: published {} ({}/s) delivered {} ({}/s)   ",
                opts.server_name,
                spec.label(),
                si(p as f64),
                si(p as f64 / el),
                si(d as f64),
                si(d as f64 / el)
            );
            let _ = std::io::stderr().flush();
        }
    }
    if tty && last_print != start {
        eprint!("\r{:100}\r", "");
    }
    let mut published = 0u64;
    let mut per_pub = vec![0u64; spec.pubs];
    let mut pub_end = start;
    for (i, h) in pub_handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok((n, end))) => {
                per_pub[i] = n;
                published += n;
                pub_end = pub_end.max(end);
            }
            Ok(Err(e)) => shared.fail(e),
            Err(_) => shared.fail("publisher thread panicked".into()),
        }
    }

    // Drain: wait until every live subscriber has what it should, or nothing moves.
    if !shared.abort.load(SeqCst) && nsubs > 0 {
        let idle = opts.timeout.min(Duration::from_secs(3));
        let mut last_total = u64::MAX;
        let mut last_move = Instant::now();
        loop {
            if shared.abort.load(SeqCst) {
                break;
            }
            let live: Vec<&SubState> = shared
                .subs
                .iter()
                .filter(|s| !s.dead.load(SeqCst))
                .collect();
            let done = if queue {
                live.iter().map(|s| s.received.load(Relaxed)).sum::<u64>() >= published
                    || live.is_empty()
            } else {
                live.iter().all(|s| s.received.load(Relaxed) >= published)
            };
            if done {
                break;
            }
            let total: u64 = shared.subs.iter().map(|s| s.received.load(Relaxed)).sum();
            if total != last_total {
                last_total = total;
                last_move = Instant::now();
            } else if last_move.elapsed() >= idle {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
    shared.stop.store(true, SeqCst);
    let mut outs = Vec::with_capacity(nsubs);
    for h in sub_handles {
        match h.join() {
            Ok(o) => outs.push(o),
            Err(_) => shared.fail("subscriber thread panicked".into()),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let gen_cpu = sys::self_cpu() - rusage0;
    let server_cpu = server_cpu_since(opts, srv0);
    if let Some(e) = shared.error() {
        return Err(e);
    }

    // Checks.
    let mut check = CheckSum::default();
    let mut slow = 0usize;
    let mut hist = new_hist();
    let mut delivered = 0u64;
    let mut last = start;
    if queue {
        let closed = outs.iter().filter(|o| o.closed.is_some()).count();
        slow += closed;
        for (p, &published_p) in per_pub.iter().enumerate() {
            let maps: Vec<&Bitmap> = outs
                .iter()
                .filter_map(|o| match &o.tracker {
                    Tracker::Bitmap(v) => v.get(p),
                    _ => None,
                })
                .collect();
            let mut c = union_check(&maps, published_p);
            if closed > 0 {
                // Messages queued to a closed member are lost by design.
                c.lost = 0;
            }
            check.add(&c);
        }
    }
    for o in &outs {
        delivered += o.received;
        check.foreign += o.foreign;
        if let Some(t) = o.last {
            last = last.max(t);
        }
        let _ = hist.add(&o.hist);
        if queue {
            continue;
        }
        if o.closed.is_some() {
            slow += 1;
            continue;
        }
        if let Tracker::Ordered(v) = &o.tracker {
            for (p, t) in v.iter().enumerate() {
                check.add(&t.summary(per_pub[p]));
            }
        }
    }
    for o in &outs {
        if let Some(why) = &o.closed {
            eprintln!(
                "natrium-bench: WARNING: a subscriber was closed by the server (slow consumer): {why}"
            );
        }
    }
    Ok(RunResult {
        spec: spec.clone(),
        server: opts.server_name.clone(),
        published,
        pub_secs: (pub_end - start).as_secs_f64(),
        delivered,
        deliv_secs: (last - start).as_secs_f64(),
        latency: Latency::from_hist(&hist),
        gen_cpu,
        server_cpu,
        check,
        slow_consumers: slow,
        wall_secs: wall,
    })
}

#[allow(clippy::too_many_arguments)]
fn pub_loop(
    mut c: Conn,
    sh: Arc<Shared>,
    barrier: Arc<Barrier>,
    id: u32,
    subject: &str,
    size: usize,
    amount: Amount,
    window: u64,
    queue: bool,
    timeout: Duration,
) -> Result<(u64, Instant), String> {
    let mut b = PubBatcher::new(subject, None, size, 64 << 10);
    barrier.wait();
    let start = Instant::now();
    let (limit, deadline) = match amount {
        Amount::Msgs(n) => (n, None),
        Amount::For(d) => (u64::MAX, Some(start + d)),
    };
    let mut seq = 0u64;
    while seq < limit {
        if sh.abort.load(Relaxed) {
            return Err("aborted".into());
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                break;
            }
        }
        if window != u64::MAX {
            wait_window(&sh, window, queue, timeout)?;
        }
        let n = (b.per_batch as u64).min(limit - seq);
        b.buf.clear();
        let stamp = now_ns();
        for _ in 0..n {
            b.push(id, seq, stamp);
            seq += 1;
        }
        c.write_all(&b.buf).map_err(|e| format!("publisher: {e}"))?;
        sh.published.fetch_add(n, Relaxed);
    }
    c.flush()
        .map_err(|e| format!("publisher flush (PING/PONG): {e}"))?;
    Ok((seq, Instant::now()))
}

/// Flow control: block while the slowest live subscriber lags more than `window` messages.
fn wait_window(sh: &Shared, window: u64, queue: bool, timeout: Duration) -> Result<(), String> {
    let mut since: Option<(Instant, u64)> = None;
    loop {
        let p = sh.published.load(Relaxed);
        let mut progress = 0u64;
        let lag = if queue {
            let r: u64 = sh.subs.iter().map(|s| s.received.load(Relaxed)).sum();
            progress = r;
            p.saturating_sub(r)
        } else {
            let mut worst = 0;
            for s in &sh.subs {
                if s.dead.load(Relaxed) {
                    continue;
                }
                let r = s.received.load(Relaxed);
                progress += r;
                worst = worst.max(p.saturating_sub(r));
            }
            worst
        };
        if lag <= window {
            return Ok(());
        }
        if sh.abort.load(Relaxed) {
            return Err("aborted".into());
        }
        match since {
            None => since = Some((Instant::now(), progress)),
            Some((_, pr)) if pr != progress => since = Some((Instant::now(), progress)),
            Some((t, _)) if t.elapsed() > timeout => {
                return Err(format!(
                    "subscribers made no progress for {:?} ({} messages behind)",
                    timeout, lag
                ))
            }
            _ => {}
        }
        thread::sleep(Duration::from_micros(50));
    }
}

fn sub_loop(mut c: Conn, sh: Arc<Shared>, idx: usize, npubs: usize, queue: bool) -> SubOut {
    let _ = c.stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut ordered: Vec<Ordered> = Vec::new();
    let mut bitmaps: Vec<Bitmap> = Vec::new();
    if queue {
        bitmaps.resize_with(npubs, Default::default);
    } else {
        ordered.resize_with(npubs, Default::default);
    }
    let mut hist = new_hist();
    let mut received = 0u64;
    let mut foreign = 0u64;
    let mut last = None;
    let mut closed = None;
    let mut rd = std::mem::replace(&mut c.rd, crate::proto::ReadBuf::new(0));
    rd.grow(512 << 10);
    let mut pings = 0usize;
    loop {
        if sh.stop.load(Relaxed) || sh.abort.load(Relaxed) {
            break;
        }
        match rd.read_from(&mut c.stream) {
            Ok(0) => {
                if !sh.subs[idx].ready.load(SeqCst) {
                    sh.fail("server closed the connection before confirming SUB".into());
                }
                closed = Some("connection closed".to_string());
                break;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                closed = Some(format!("read failed: {e}"));
                break;
            }
        }
        let now = Instant::now();
        let now_n = now.duration_since(epoch()).as_nanos() as u64;
        let mut err = None;
        let r = parse(&mut rd, |ev| match ev {
            Event::Msg { payload, .. } => {
                received += 1;
                match decode(payload) {
                    Some((id, seq, stamp)) if (id as usize) < npubs => {
                        if queue {
                            bitmaps[id as usize].record(seq);
                        } else {
                            ordered[id as usize].record(seq);
                        }
                        if let Some(s) = stamp {
                            hist.saturating_record(now_n.saturating_sub(s).max(1));
                        }
                    }
                    _ => foreign += 1,
                }
            }
            Event::Ping => pings += 1,
            Event::Err(e) => err = Some(String::from_utf8_lossy(e).to_string()),
            Event::Pong => sh.subs[idx].ready.store(true, SeqCst),
        });
        if received > 0 {
            last = Some(now);
        }
        sh.subs[idx].received.store(received, Relaxed);
        if let Err(e) = r {
            sh.fail(format!("subscriber: {e}"));
            break;
        }
        while pings > 0 {
            pings -= 1;
            if let Err(e) = c.write_all(b"PONG\r\n") {
                closed = Some(e);
                break;
            }
        }
        if let Some(e) = err {
            if !sh.subs[idx].ready.load(SeqCst) {
                sh.fail(format!("server refused the subscription: {e}"));
            }
            closed = Some(e);
            break;
        }
    }
    if closed.is_some() {
        sh.subs[idx].dead.store(true, SeqCst);
    }
    let tracker = if queue {
        Tracker::Bitmap(bitmaps)
    } else {
        Tracker::Ordered(ordered)
    };
    SubOut {
        tracker,
        foreign,
        hist,
        received,
        last,
        closed,
    }
}

fn run_reqreply(spec: &Spec, opts: &RunOpts) -> Result<RunResult, String> {
    let subject = sub_subject(opts, spec);
    let shared = Arc::new(Shared {
        abort: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        published: AtomicU64::new(0),
        subs: Vec::new(),
        first_error: Default::default(),
    });
    let mut responders = Vec::new();
    for i in 0..spec.subs {
        let mut c = Conn::connect(&opts.url, &format!("bench-resp-{i}"), opts.timeout)?;
        c.subscribe(&subject, (spec.subs > 1).then_some("benchresp"), 1)?;
        responders.push(c);
    }
    let mut requesters = Vec::new();
    for i in 0..spec.pubs {
        let mut c = Conn::connect(&opts.url, &format!("bench-req-{i}"), opts.timeout)?;
        c.subscribe(&format!("{subject}.inbox.{i}"), None, 1)?;
        requesters.push(c);
    }
    let rusage0 = sys::self_cpu();
    let srv0 = opts.server_pid.and_then(sys::proc_cpu);
    let served = Arc::new(AtomicU64::new(0));
    let mut resp_handles = Vec::new();
    for c in responders {
        let sh = shared.clone();
        let served = served.clone();
        resp_handles.push(thread::spawn(move || responder_loop(c, sh, served)));
    }
    let barrier = Arc::new(Barrier::new(spec.pubs + 1));
    let mut req_handles = Vec::new();
    for (i, c) in requesters.into_iter().enumerate() {
        let sh = shared.clone();
        let b = barrier.clone();
        let subj = subject.clone();
        let (size, amount) = (spec.size, spec.amount);
        req_handles.push(thread::spawn(move || {
            requester_loop(c, sh, b, i as u32, &subj, size, amount)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut hist = new_hist();
    let mut total = 0u64;
    let mut check = CheckSum::default();
    let mut end = start;
    for h in req_handles {
        match h.join() {
            Ok(Ok((n, hh, c, e))) => {
                total += n;
                let _ = hist.add(&hh);
                check.add(&c);
                end = end.max(e);
            }
            Ok(Err(e)) => shared.fail(e),
            Err(_) => shared.fail("requester thread panicked".into()),
        }
    }
    shared.stop.store(true, SeqCst);
    for h in resp_handles {
        if let Ok(Err(e)) = h.join() {
            shared.fail(e);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let gen_cpu = sys::self_cpu() - rusage0;
    let server_cpu = server_cpu_since(opts, srv0);
    if let Some(e) = shared.error() {
        return Err(e);
    }
    let secs = (end - start).as_secs_f64();
    Ok(RunResult {
        spec: spec.clone(),
        server: opts.server_name.clone(),
        published: total,
        pub_secs: secs,
        delivered: total,
        deliv_secs: secs,
        latency: Latency::from_hist(&hist),
        gen_cpu,
        server_cpu,
        check,
        slow_consumers: 0,
        wall_secs: wall,
    })
}

fn responder_loop(mut c: Conn, sh: Arc<Shared>, served: Arc<AtomicU64>) -> Result<(), String> {
    let _ = c.stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut out: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        if sh.stop.load(Relaxed) || sh.abort.load(Relaxed) {
            return Ok(());
        }
        match c.rd.read_from(&mut c.stream) {
            Ok(0) => {
                let e = "responder: server closed the connection".to_string();
                sh.fail(e.clone());
                return Err(e);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                let e = format!("responder: read failed: {e}");
                sh.fail(e.clone());
                return Err(e);
            }
        }
        out.clear();
        let mut err = None;
        let mut n = 0u64;
        let r = parse(&mut c.rd, |ev| match ev {
            Event::Msg {
                reply: Some(r),
                payload,
            } => {
                n += 1;
                out.extend_from_slice(b"PUB ");
                out.extend_from_slice(r);
                out.push(b' ');
                out.extend_from_slice(itoa(payload.len()).as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            Event::Msg { reply: None, .. } => {}
            Event::Ping => out.extend_from_slice(b"PONG\r\n"),
            Event::Err(e) => err = Some(String::from_utf8_lossy(e).to_string()),
            Event::Pong => {}
        });
        if let Err(e) = r.and(err.map_or(Ok(()), Err)) {
            let e = format!("responder: {e}");
            sh.fail(e.clone());
            return Err(e);
        }
        if !out.is_empty() {
            if let Err(e) = c.write_all(&out) {
                let e = format!("responder: {e}");
                sh.fail(e.clone());
                return Err(e);
            }
        }
        served.fetch_add(n, Relaxed);
    }
}

fn itoa(n: usize) -> String {
    n.to_string()
}

type ReqOut = (u64, Histogram<u64>, CheckSum, Instant);

fn requester_loop(
    mut c: Conn,
    sh: Arc<Shared>,
    barrier: Arc<Barrier>,
    id: u32,
    subject: &str,
    size: usize,
    amount: Amount,
) -> Result<ReqOut, String> {
    let inbox = format!("{subject}.inbox.{id}");
    let mut b = PubBatcher::new(subject, Some(&inbox), size, 0);
    let mut hist = new_hist();
    let mut check = CheckSum::default();
    barrier.wait();
    let start = Instant::now();
    let (limit, deadline) = match amount {
        Amount::Msgs(n) => (n, None),
        Amount::For(d) => (u64::MAX, Some(start + d)),
    };
    let timeout = c.timeout;
    let mut seq = 0u64;
    while seq < limit {
        if sh.abort.load(Relaxed) {
            return Err("aborted".into());
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                break;
            }
        }
        b.buf.clear();
        b.push(id, seq, now_ns());
        let t0 = Instant::now();
        c.write_all(&b.buf).map_err(|e| format!("requester: {e}"))?;
        // Wait for the reply.
        let mut got: Option<Result<(), String>> = None;
        let mut pong = false;
        while got.is_none() {
            let r = parse(&mut c.rd, |ev| match ev {
                Event::Msg { payload, .. } => match decode(payload) {
                    Some((i, s, _)) if i == id && s == seq && got.is_none() => got = Some(Ok(())),
                    Some((i, s, _)) if i == id && s <= seq => check.dups += 1,
                    _ => check.foreign += 1,
                },
                Event::Ping => pong = true,
                Event::Err(e) => {
                    got = Some(Err(format!(
                        "requester: server error: {}",
                        String::from_utf8_lossy(e)
                    )))
                }
                Event::Pong => {}
            });
            r.map_err(|e| format!("requester: {e}"))?;
            if pong {
                pong = false;
                c.write_all(b"PONG\r\n")?;
            }
            if got.is_some() {
                break;
            }
            match c.rd.read_from(&mut c.stream) {
                Ok(0) => return Err("requester: server closed the connection".into()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("requester: no reply within {timeout:?}"))
                }
                Err(e) => return Err(format!("requester: read failed: {e}")),
            }
        }
        got.unwrap()?;
        hist.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
        check.unique += 1;
        seq += 1;
    }
    check.expected = seq;
    check.lost = seq.saturating_sub(check.unique);
    Ok((seq, hist, check, Instant::now()))
}

/// 1234567 -> "1.23M"
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
