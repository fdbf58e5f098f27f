//! natrium-bench: raw-protocol NATS load generator and natrium vs nats-server comparison.

mod check;
mod proto;
mod report;
mod scenario;
mod server;
mod subs;
mod sys;
mod ws;

use clap::Parser;
use report::{ChartRow, Compared};
use scenario::{Amount, Kind, RunOpts, RunResult, Spec};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Cmd {
    /// publish only, no subscribers
    Pub,
    /// 1 publisher -> 1 subscriber
    Pubsub,
    /// 1 publisher -> N subscribers (--subs, default 10), each its own connection
    Fanout,
    /// 1 publisher -> N members of one queue group (--subs, default 4)
    Queue,
    /// N publishers (--pubs, default 4) -> M subscribers (--subs, default 4)
    Manypubs,
    /// request/reply latency: N requesters (--pubs), M responders (--subs)
    Reqreply,
    /// connection rate: N clients (--pubs) connecting, handshaking, closing
    Connect,
    /// the default suite: pub, 1->1, fan-out 1->10 and 1->100, queue, many pubs, req/reply
    Suite,
    /// interest at scale: SUB/UNSUB rates and memory of --sub-total unique
    /// subscriptions over --sub-conns connections, and --same-subject SUBs on one subject
    Subs,
}

/// Measure msgs/sec and latency of a NATS server, or of natrium and nats-server
/// side by side (--compare). Every payload carries a publisher id and sequence
/// number in its first 12 bytes; subscribers check count, loss, duplication and
/// order, and any loss or reordering fails the run (exit 1). Errors exit 2.
#[derive(Parser, Debug)]
#[command(name = "natrium-bench", version)]
struct Cli {
    /// What to run
    #[arg(value_enum)]
    scenario: Cmd,
    /// Server to drive (ignored with --compare)
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// Payload size in bytes (at least 12: publisher id + sequence; >= 20 adds a timestamp)
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Messages per publisher (requests per requester for reqreply)
    #[arg(long, conflicts_with = "duration")]
    msgs: Option<u64>,
    /// Publish for this long instead of a count: 3s, 500ms, 1m [default: 3s; suite: 1s]
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Publishers (requesters for reqreply)
    #[arg(long)]
    pubs: Option<usize>,
    /// Subscribers (queue members for queue, responders for reqreply)
    #[arg(long)]
    subs: Option<usize>,
    /// Subject prefix
    #[arg(long, default_value = "bench")]
    subject: String,
    /// Print JSON on stdout (the table goes to stderr)
    #[arg(long)]
    json: bool,
    /// Write an SVG chart of throughput per scenario
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Start natrium and nats-server pinned to the same cores and alternate them
    #[arg(long)]
    compare: bool,
    /// natrium binary [default: <workspace>/target/release/natrium, built if missing]
    #[arg(long, value_name = "PATH")]
    natrium: Option<PathBuf>,
    /// nats-server binary [default: nats-server on PATH]
    #[arg(long, value_name = "PATH")]
    nats_server: Option<PathBuf>,
    /// Cores for the server(s) the harness starts [default with --compare: 0]
    #[arg(long, value_name = "LIST")]
    server_cores: Option<String>,
    /// Cores for the load generator [default with --compare: 1]
    #[arg(long, value_name = "LIST")]
    client_cores: Option<String>,
    /// With --compare: run each server as a two-node cluster, publishers on one node
    /// and subscribers on the other, so every message crosses a route
    #[arg(long)]
    cluster: bool,
    /// With --compare: run each server as a hub and a spoke, publishers on the hub
    /// and subscribers on the spoke, so every message crosses a leaf connection
    #[arg(long, conflicts_with = "cluster")]
    leaf: bool,
    /// With --compare: run each server as two one-server clusters joined by a
    /// gateway, publishers in the first and subscribers in the second, so every
    /// message crosses the gateway
    #[arg(long, conflicts_with_all = ["cluster", "leaf"])]
    gateway: bool,
    /// With --compare: subscribers connect over websocket (ws://, no TLS, no
    /// compression) to each server's websocket listener; publishers use TCP
    #[arg(long, conflicts_with_all = ["cluster", "leaf", "gateway"])]
    websocket: bool,
    /// Subscribers connect here instead of --url (another node of a cluster)
    #[arg(long, value_name = "URL")]
    sub_url: Option<String>,
    /// Rounds per server with --compare (A B A B ...)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: u64,
    /// A .creds file: every connection logs in with its user JWT (operator mode)
    #[arg(long, value_name = "FILE")]
    creds: Option<String>,
    /// With --compare: start both servers with this config file (`-c FILE`), e.g.
    /// an operator-mode configuration for --creds
    #[arg(long, value_name = "FILE")]
    server_config: Option<String>,
    /// PID of the server at --url, to report its CPU time
    #[arg(long)]
    server_pid: Option<u32>,
    /// Flow control: max bytes of frames in flight from publishers to all subscribers
    /// together (each subscriber may lag WINDOW/subs; 0 = no flow control)
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    window: u64,
    /// Timeout for every wait (connect, handshake, replies, stalls)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// No progress lines
    #[arg(long, short)]
    quiet: bool,
    /// subs: unique subscriptions in all
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    sub_total: u64,
    /// subs: connections the unique subscriptions are spread over
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sub_conns: u64,
    /// subs: subscriptions on one subject from one connection
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    same_subject: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration '{s}' (want e.g. 3s, 500ms, 1m)"))?;
    if !(v.is_finite() && v > 0.0 && v * mul < 86400.0) {
        return Err(format!("duration '{s}' out of range"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mul) = [
        ("kib", 1u64 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("kb", 1000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let v: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad size '{s}' (want e.g. 8MiB, 65536)"))?;
    v.checked_mul(mul)
        .ok_or_else(|| format!("size '{s}' too large"))
}

/// `url` with `--creds` when given.
fn with_creds(cli: &Cli, url: proto::Url) -> Result<proto::Url, String> {
    match &cli.creds {
        Some(path) => url.with_creds(path),
        None => Ok(url),
    }
}

fn kind_of(c: Cmd) -> Option<Kind> {
    Some(match c {
        Cmd::Pub => Kind::Pub,
        Cmd::Pubsub => Kind::Pubsub,
        Cmd::Fanout => Kind::Fanout,
        Cmd::Queue => Kind::Queue,
        Cmd::Manypubs => Kind::Manypubs,
        Cmd::Reqreply => Kind::Reqreply,
        Cmd::Connect => Kind::Connect,
        Cmd::Suite | Cmd::Subs => return None,
    })
}

fn suite(amount: Amount) -> Vec<Spec> {
    let s = |kind, size, pubs, subs| Spec {
        kind,
        size,
        pubs,
        subs,
        amount,
    };
    vec![
        s(Kind::Pub, 16, 1, 0),
        s(Kind::Pub, 1024, 1, 0),
        s(Kind::Pubsub, 16, 1, 1),
        s(Kind::Pubsub, 1024, 1, 1),
        s(Kind::Fanout, 16, 1, 10),
        s(Kind::Fanout, 1024, 1, 10),
        s(Kind::Fanout, 16, 1, 100),
        s(Kind::Fanout, 1024, 1, 100),
        s(Kind::Queue, 16, 1, 4),
        s(Kind::Manypubs, 16, 4, 4),
        s(Kind::Reqreply, 16, 1, 1),
        s(Kind::Reqreply, 16, 10, 1),
    ]
}

fn specs(cli: &Cli) -> Result<Vec<Spec>, String> {
    let amount = match (cli.msgs, cli.duration) {
        (Some(0), _) => return Err("--msgs must be at least 1".into()),
        (Some(n), _) => Amount::Msgs(n),
        (None, Some(d)) => Amount::For(d),
        (None, None) if cli.scenario == Cmd::Suite => Amount::For(Duration::from_secs(1)),
        (None, None) => Amount::For(Duration::from_secs(3)),
    };
    match kind_of(cli.scenario) {
        None => Ok(suite(amount)),
        Some(kind) => {
            let (dp, ds) = kind.defaults();
            let spec = Spec {
                kind,
                size: cli.size,
                pubs: cli.pubs.unwrap_or(dp),
                subs: if kind == Kind::Pub {
                    0
                } else {
                    cli.subs.unwrap_or(ds)
                },
                amount,
            };
            if spec.size < proto::HEADER_LEN {
                return Err(format!(
                    "--size must be at least {} (payloads carry publisher id and sequence)",
                    proto::HEADER_LEN
                ));
            }
            if spec.size > 64 << 20 {
                return Err("--size too large (max 64MiB)".into());
            }
            if spec.pubs == 0 || (!matches!(kind, Kind::Pub | Kind::Connect) && spec.subs == 0) {
                return Err("--pubs and --subs must be at least 1".into());
            }
            if spec.pubs > 10_000 || spec.subs > 10_000 {
                return Err("--pubs/--subs at most 10000".into());
            }
            Ok(vec![spec])
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("natrium-bench: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let one_line = e.replace('\n', " ");
            eprintln!("natrium-bench: error: {one_line}");
            ExitCode::from(2)
        }
    }
}

fn say(cli: &Cli, s: &str) {
    if !cli.quiet {
        eprintln!("{s}");
    }
}

/// Returns Ok(true) when every check passed.
fn run(cli: &Cli) -> Result<bool, String> {
    let specs = specs(cli)?;
    let server_cores = match (&cli.server_cores, cli.compare) {
        (Some(s), _) => sys::parse_cores(s)?,
        (None, true) => sys::parse_cores("0")?,
        (None, false) => Vec::new(),
    };
    let client_cores = match (&cli.client_cores, cli.compare) {
        (Some(s), _) => Some(sys::parse_cores(s)?),
        (None, true) => Some(sys::parse_cores("1")?),
        (None, false) => None,
    };
    if !cli.compare && cli.server_cores.is_some() {
        return Err(
            "--server-cores needs --compare (the harness only pins servers it starts)".into(),
        );
    }
    if let Some(c) = &client_cores {
        sys::pin(c).map_err(|e| format!("cannot pin the generator to cores {c:?}: {e}"))?;
    }
    let mut opts = RunOpts {
        url: with_creds(cli, proto::Url::parse(&cli.url)?)?,
        sub_url: cli.sub_url.as_deref().map(proto::Url::parse).transpose()?,
        subject: cli.subject.clone(),
        timeout: cli.timeout,
        window: cli.window,
        server_pid: cli.server_pid,
        progress: !cli.quiet,
        server_name: "server".into(),
    };
    if cli.subject.is_empty() || cli.subject.contains([' ', '\t', '*', '>']) {
        return Err(format!("bad --subject '{}'", cli.subject));
    }
    if cli.scenario == Cmd::Subs {
        return subs_scenario(cli, &opts, &server_cores);
    }
    if cli.compare {
        compare(cli, &specs, &mut opts, &server_cores)
    } else {
        single(cli, &specs, &opts)
    }
}

/// The `subs` scenario, against --url or (--compare) both servers in turn.
fn subs_scenario(cli: &Cli, opts: &RunOpts, server_cores: &[usize]) -> Result<bool, String> {
    if cli.sub_conns > cli.sub_total {
        return Err("--sub-conns must not exceed --sub-total".into());
    }
    let spec = subs::SubsSpec {
        total: cli.sub_total as usize,
        conns: cli.sub_conns as usize,
        same: cli.same_subject as usize,
    };
    let (mut nat_runs, mut ns_runs) = (Vec::new(), Vec::new());
    if !cli.compare {
        let r = subs::run(
            &spec,
            &opts.url,
            opts.server_pid,
            opts.timeout,
            &opts.subject,
        )?;
        say(cli, &format!("{}: {}", spec.label(), subs::one_line(&r)));
        for f in &r.figures {
            println!("{:<26} {:.3} {}", f.name, f.value, f.unit);
        }
        return Ok(true);
    }
    let nat = server::natrium(cli.natrium.as_deref())?;
    let ns = server::nats_server(cli.nats_server.as_deref())?;
    say(
        cli,
        &format!(
            "natrium: {}\nnats-server: {}\nserver cores {:?}, client cores {}, {} rounds",
            nat.path.display(),
            ns.path.display(),
            server_cores,
            cli.client_cores.as_deref().unwrap_or("1"),
            cli.rounds
        ),
    );
    for round in 1..=cli.rounds {
        for bin in [&nat, &ns] {
            let mut srv = bin.start_with(server_cores, cli.timeout, &[])?;
            let url = proto::Url::parse(&srv.url())?;
            let r = subs::run(&spec, &url, Some(srv.pid), opts.timeout, &opts.subject);
            let tail = srv.log_tail();
            srv.stop();
            let r = r.map_err(|e| format!("subs on {}: {e} ({tail})", bin.name))?;
            say(
                cli,
                &format!(
                    "round {round}/{} {:<11} {}",
                    cli.rounds,
                    bin.name,
                    subs::one_line(&r)
                ),
            );
            if bin.name == "natrium" {
                nat_runs.push(r);
            } else {
                ns_runs.push(r);
            }
        }
    }
    let table = subs::compare_table(&spec, &nat_runs, &ns_runs);
    if cli.json {
        eprint!("\n{table}");
        let mut v = subs::to_json(&spec, &nat_runs, &ns_runs);
        v["server_cores"] = json!(server_cores);
        v["rounds"] = json!(cli.rounds);
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        print!("\n{table}");
    }
    Ok(true)
}

fn loud_failure(r: &RunResult) {
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!(
        "!!! FAILED: {} on {}: {}",
        r.spec.label(),
        r.server,
        report::check_text(r)
    );
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
}

fn one_line(r: &RunResult) -> String {
    let lat = r
        .latency
        .as_ref()
        .map(|l| format!(" p50 {:.0}us p99 {:.0}us", l.p50, l.p99))
        .unwrap_or_default();
    format!(
        "{} msg/s{lat} [{}]",
        scenario::si(r.primary()),
        report::check_text(r)
    )
}

fn single(cli: &Cli, specs: &[Spec], opts: &RunOpts) -> Result<bool, String> {
    let mut results = Vec::new();
    let n = specs.len();
    for (i, spec) in specs.iter().enumerate() {
        let r = scenario::run(spec, opts).map_err(|e| format!("{}: {e}", spec.label()))?;
        say(
            cli,
            &format!("[{}/{n}] {}: {}", i + 1, spec.label(), one_line(&r)),
        );
        if !r.ok() {
            loud_failure(&r);
        }
        results.push(r);
    }
    let ok = results.iter().all(|r| r.ok());
    let table = report::table(&results);
    if cli.json {
        eprint!("\n{table}");
        let v = json!({"ok": ok, "url": cli.url,
                       "results": results.iter().map(|r| r.to_json()).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        print!("\n{table}");
    }
    if let Some(path) = &cli.chart {
        let rows: Vec<ChartRow> = results
            .iter()
            .map(|r| ChartRow {
                label: r.spec.label(),
                values: vec![Some(report::stat(&[r.primary()]))],
                note: String::new(),
            })
            .collect();
        let svg = report::svg("natrium-bench throughput", &[&opts.server_name], &rows);
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if !ok {
        eprintln!("natrium-bench: FAILED: delivery check failed (loss, duplication or reordering), see above");
    }
    Ok(ok)
}

fn compare(
    cli: &Cli,
    specs: &[Spec],
    opts: &mut RunOpts,
    server_cores: &[usize],
) -> Result<bool, String> {
    let nat = server::natrium(cli.natrium.as_deref())?;
    let ns = server::nats_server(cli.nats_server.as_deref())?;
    say(
        cli,
        &format!(
            "natrium: {}{}\nnats-server: {}\nserver cores {:?}, client cores {}, {} rounds",
            nat.path.display(),
            if nat.pass_cores {
                ""
            } else {
                " (a nats-server: no --cores)"
            },
            ns.path.display(),
            server_cores,
            cli.client_cores.as_deref().unwrap_or("1"),
            cli.rounds
        ),
    );
    let mut all = Vec::new();
    let n = specs.len();
    for (i, spec) in specs.iter().enumerate() {
        let mut c = Compared {
            spec: spec.clone(),
            natrium: Vec::new(),
            nats: Vec::new(),
        };
        for round in 1..=cli.rounds {
            for bin in [&nat, &ns] {
                let mut ws_port = None;
                let (mut srv, sub_node) = if cli.cluster {
                    let (a, b) = bin.start_pair(server_cores, cli.timeout)?;
                    (a, Some(b))
                } else if cli.leaf {
                    let (a, b) = bin.start_leaf_pair(server_cores, cli.timeout)?;
                    (a, Some(b))
                } else if cli.gateway {
                    let (a, b) = bin.start_gateway_pair(server_cores, cli.timeout)?;
                    (a, Some(b))
                } else if cli.websocket {
                    let (a, ws) = bin.start_websocket(server_cores, cli.timeout)?;
                    ws_port = Some(ws);
                    (a, None)
                } else {
                    let extra: Vec<String> = match &cli.server_config {
                        Some(path) => vec!["-c".into(), path.clone()],
                        None => Vec::new(),
                    };
                    (bin.start_with(server_cores, cli.timeout, &extra)?, None)
                };
                let mut url = with_creds(cli, proto::Url::parse(&srv.url())?)?;
                // Credentials given in --url go to the servers the harness starts.
                let given = proto::Url::parse(&cli.url)?;
                (url.user, url.pass, url.token) = (given.user, given.pass, given.token);
                opts.url = url;
                opts.sub_url = sub_node
                    .as_ref()
                    .map(|b| proto::Url::parse(&b.url()))
                    .transpose()?;
                if let Some(ws) = ws_port.take() {
                    opts.sub_url = Some(proto::Url::parse(&format!("ws://127.0.0.1:{ws}"))?);
                }
                opts.server_pid = Some(srv.pid);
                opts.server_name = bin.name.clone();
                let r = scenario::run(spec, opts);
                let alive = srv.alive();
                let tail = srv.log_tail();
                srv.stop();
                drop(sub_node);
                let r = r.map_err(|e| {
                    if alive {
                        format!("{} on {}: {e}", spec.label(), bin.name)
                    } else {
                        format!(
                            "{} on {}: {e} (server died: {tail})",
                            spec.label(),
                            bin.name
                        )
                    }
                })?;
                say(
                    cli,
                    &format!(
                        "[{}/{n}] {} round {round}/{} {:<11} {}",
                        i + 1,
                        spec.label(),
                        cli.rounds,
                        bin.name,
                        one_line(&r)
                    ),
                );
                if !r.ok() {
                    loud_failure(&r);
                }
                if bin.name == "natrium" {
                    c.natrium.push(r);
                } else {
                    c.nats.push(r);
                }
            }
        }
        all.push(c);
    }
    let ok = all.iter().all(|c| c.ok());
    let table = report::compare_table(&all);
    if cli.json {
        eprint!("\n{table}");
        let v = json!({
            "ok": ok,
            "natrium": nat.path.display().to_string(),
            "nats_server": ns.path.display().to_string(),
            "server_cores": server_cores,
            "client_cores": cli.client_cores.clone().unwrap_or_else(|| "1".into()),
            "rounds": cli.rounds,
            "compare": all.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        print!("\n{table}");
    }
    if let Some(path) = &cli.chart {
        let rows: Vec<ChartRow> = all
            .iter()
            .map(|c| ChartRow {
                label: c.spec.label(),
                values: vec![
                    Some(Compared::stat_of(&c.natrium)),
                    Some(Compared::stat_of(&c.nats)),
                ],
                note: format!("x{:.2}", c.ratio()),
            })
            .collect();
        let svg = report::svg(
            "natrium vs nats-server (median of rounds, min-max whiskers)",
            &["natrium", "nats-server"],
            &rows,
        );
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if !ok {
        eprintln!("natrium-bench: FAILED: delivery check failed (loss, duplication or reordering), see above");
    }
    Ok(ok)
}
