//! The `subs` scenario: interest at scale. How fast a server takes many unique
//! subscriptions and their UNSUBs, what they cost in resident memory and how much of
//! it comes back, and how long many subscribers on one subject take to build and to
//! remove (a table that scans its entries makes that quadratic).

use crate::proto::{Conn, Url};
use crate::report::{stat, Stat};
use crate::sys;
use serde_json::{json, Value};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct SubsSpec {
    /// Unique subscriptions in all.
    pub total: usize,
    /// Connections they are spread over.
    pub conns: usize,
    /// Subscriptions on one subject from one connection.
    pub same: usize,
}

impl SubsSpec {
    pub fn label(&self) -> String {
        format!(
            "subs {} over {} conns, {} on one subject",
            self.total, self.conns, self.same
        )
    }
}

/// One figure of a run.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub name: &'static str,
    pub unit: &'static str,
    pub value: f64,
    /// Whether a larger value is the better one (the ratio column says which way).
    pub higher_is_better: bool,
}

/// One run against one server.
#[derive(Clone, Debug)]
pub struct SubsResult {
    pub figures: Vec<Figure>,
}

fn fig(name: &'static str, unit: &'static str, value: f64, higher: bool) -> Figure {
    Figure {
        name,
        unit,
        value,
        higher_is_better: higher,
    }
}

/// Writes `lines(i)` for `i` in `0..n` in ~64 KiB writes, then PING, and waits for
/// the PONG: when it returns the server has processed every line.
fn send_all(
    c: &mut Conn,
    n: usize,
    mut line: impl FnMut(&mut Vec<u8>, usize),
) -> Result<(), String> {
    let mut buf = Vec::with_capacity(80 << 10);
    for i in 0..n {
        line(&mut buf, i);
        if buf.len() >= 64 << 10 {
            c.write_all(&buf)?;
            buf.clear();
        }
    }
    buf.extend_from_slice(b"PING\r\n");
    c.write_all(&buf)?;
    let deadline = Instant::now() + c.timeout;
    c.wait_pong(deadline)
}

/// Every connection sends its share (one thread each) and waits for its PONG; the
/// time until the last PONG.
fn on_all(
    conns: Vec<Conn>,
    shares: &[usize],
    subject: &str,
    unsub: bool,
) -> Result<(Vec<Conn>, f64), String> {
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            let (n, subject) = (shares[k], subject.to_string());
            thread::spawn(move || -> Result<Conn, String> {
                send_all(&mut c, n, |b, i| {
                    let sid = i + 1;
                    if unsub {
                        let _ = write!(b, "UNSUB {sid}\r\n");
                    } else {
                        let _ = write!(b, "SUB {subject}.{k}.{i} {sid}\r\n");
                    }
                })?;
                Ok(c)
            })
        })
        .collect();
    let mut back = Vec::with_capacity(handles.len());
    for h in handles {
        back.push(
            h.join()
                .map_err(|_| "a subs thread panicked".to_string())??,
        );
    }
    Ok((back, start.elapsed().as_secs_f64()))
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Resident set of the server, when its pid is known, after letting it settle.
fn rss(pid: Option<u32>) -> Option<f64> {
    thread::sleep(Duration::from_millis(300));
    pid.and_then(sys::proc_rss).map(|b| b as f64)
}

/// Runs the scenario once against `url`; `pid` gives the memory figures.
pub fn run(
    spec: &SubsSpec,
    url: &Url,
    pid: Option<u32>,
    timeout: Duration,
    subject: &str,
) -> Result<SubsResult, String> {
    if spec.conns == 0 || spec.total < spec.conns {
        return Err("subs: need at least one subscription per connection".into());
    }
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        conns.push(Conn::connect(url, &format!("bench-subs-{i}"), timeout)?);
    }
    let shares: Vec<usize> = (0..spec.conns)
        .map(|k| spec.total / spec.conns + usize::from(k < spec.total % spec.conns))
        .collect();
    let subject = format!("{subject}.subs");
    let rss0 = rss(pid);
    let (conns, sub_secs) = on_all(conns, &shares, &subject, false)?;
    let rss1 = rss(pid);
    let (conns, unsub_secs) = on_all(conns, &shares, &subject, true)?;
    // Allocators hand memory back lazily (Go's scavenger over minutes, glibc at
    // trim points): give both the same short while.
    thread::sleep(Duration::from_secs(2));
    let rss2 = rss(pid);
    drop(conns);

    let mut c = Conn::connect(url, "bench-subs-same", timeout)?;
    let start = Instant::now();
    send_all(&mut c, spec.same, |b, i| {
        let _ = write!(b, "SUB {subject}.same {}\r\n", i + 1);
    })?;
    let same_sub = start.elapsed().as_secs_f64();
    let start = Instant::now();
    send_all(&mut c, spec.same, |b, i| {
        let _ = write!(b, "UNSUB {}\r\n", i + 1);
    })?;
    let same_unsub = start.elapsed().as_secs_f64();
    drop(c);

    let mut figures = vec![
        fig("SUB/s", "/s", rate(spec.total, sub_secs), true),
        fig("UNSUB/s", "/s", rate(spec.total, unsub_secs), true),
    ];
    if let (Some(a), Some(b), Some(c)) = (rss0, rss1, rss2) {
        figures.push(fig("RSS per sub", "B", (b - a) / spec.total as f64, false));
        let grown = (b - a).max(1.0);
        figures.push(fig(
            "RSS returned after UNSUB",
            "%",
            ((b - c) / grown * 100.0).clamp(0.0, 100.0),
            true,
        ));
    }
    figures.push(fig("one subject SUB", "s", same_sub, false));
    figures.push(fig("one subject UNSUB", "s", same_unsub, false));
    Ok(SubsResult { figures })
}

/// One line per run for the progress output.
pub fn one_line(r: &SubsResult) -> String {
    r.figures
        .iter()
        .map(|f| format!("{} {}", f.name, value_text(f.value, f.unit)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn value_text(v: f64, unit: &str) -> String {
    match unit {
        "/s" => crate::scenario::si(v),
        "s" => format!("{v:.3}s"),
        "%" => format!("{v:.0}%"),
        _ => format!("{v:.0} {unit}"),
    }
}

fn stat_of(runs: &[SubsResult], name: &str) -> Option<Stat> {
    let v: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.figures.iter().filter(|f| f.name == name).map(|f| f.value))
        .collect();
    (!v.is_empty()).then(|| stat(&v))
}

/// The side-by-side table: medians (min-max) and natrium's advantage, where above
/// 1.00x natrium is better whichever way the figure points.
pub fn compare_table(spec: &SubsSpec, nat: &[SubsResult], ns: &[SubsResult]) -> String {
    let mut out = format!(
        "{}\n{:<26} {:>26} {:>26} {:>10}\n{}\n",
        spec.label(),
        "figure",
        "natrium median (min-max)",
        "nats-server median (min-max)",
        "advantage",
        "-".repeat(91)
    );
    let Some(first) = nat.first().or(ns.first()) else {
        return out;
    };
    for f in &first.figures {
        let (a, b) = (stat_of(nat, f.name), stat_of(ns, f.name));
        let cell = |s: Option<Stat>| {
            s.map_or("-".into(), |s| {
                format!(
                    "{} ({}-{})",
                    value_text(s.median, f.unit),
                    value_text(s.min, f.unit),
                    value_text(s.max, f.unit)
                )
            })
        };
        let adv = match (a, b) {
            (Some(a), Some(b)) if a.median > 0.0 && b.median > 0.0 => {
                let r = if f.higher_is_better {
                    a.median / b.median
                } else {
                    b.median / a.median
                };
                format!("{r:.2}x")
            }
            _ => "-".into(),
        };
        out += &format!(
            "{:<26} {:>26} {:>26} {:>10}\n",
            f.name,
            cell(a),
            cell(b),
            adv
        );
    }
    out
}

/// The runs as JSON.
pub fn to_json(spec: &SubsSpec, nat: &[SubsResult], ns: &[SubsResult]) -> Value {
    let runs = |rs: &[SubsResult]| {
        rs.iter()
            .map(|r| {
                r.figures
                    .iter()
                    .map(|f| (f.name.to_string(), json!(f.value)))
                    .collect::<serde_json::Map<_, _>>()
            })
            .collect::<Vec<_>>()
    };
    json!({
        "scenario": "subs",
        "label": spec.label(),
        "total": spec.total, "conns": spec.conns, "same_subject": spec.same,
        "natrium": runs(nat),
        "nats_server": runs(ns),
    })
}
