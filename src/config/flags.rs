//! Command-line flags in Go's flag syntax, as nats-server takes them: `-p 4222`,
//! `--port 4222`, `-port=4222`, `--port=4222`; booleans as `-D` or `-D=false`.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{self, Report};
use super::options::Options;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server.
    Run(Box<Options>),
    /// Print usage and exit.
    Help,
    /// Print the version and exit.
    Version,
    /// `--signal CMD[=PID]`: send a signal to a running server and exit.
    Signal {
        /// The command (`ldm`, `stop`, `quit`, `term`, `reopen`, `reload`), with
        /// its `=PID` or `=PIDFILE` part if given.
        spec: String,
        /// Options from the rest of the command line (`-P`, `-c`).
        opts: Box<Options>,
    },
}

/// A command-line error, printed as one line before the usage.
#[derive(Debug, PartialEq, Eq)]
pub struct FlagError(pub String);

/// Usage text for `-h`.
pub const USAGE: &str = "\
Usage: natrium [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222, -1 for random)
    -n, --name, --server_name <name> Server name (default: auto)
    -P, --pid <file>                 File to store PID
    --ports_file_dir <dir>           Creates a ports file in the specified directory (<executable_name>_<pid>.ports)
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -m, --http_port <port>           Use port for http monitoring
    -ms, --https_port <port>         Use port for https monitoring
    --client_advertise <host:port>   Client URL to advertise to other servers
    -js, --jetstream                 Accepted for compatibility; JetStream is not available
    -sd, --store_dir <dir>           Accepted for compatibility

Authorization Options:
    --user <user>                    User required for connections
    --pass <password>                Password required for connections
    --auth <token>                   Authorization token required for connections

TLS Options:
    --tls                            Enable TLS, do not verify clients (default: false)
    --tlscert <file>                 Server certificate file
    --tlskey <file>                  Private key for server certificate
    --tlsverify                      Enable TLS, verify client certificates
    --tlscacert <file>               Client certificate CA for verification

Logging Options:
    -sl, --signal <signal>[=<pid>]   Send signal to a running server (ldm, stop, quit, term, reopen, reload);
                                     without a pid: the -P pid file, else the only process of this name
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
    --logtime_utc                    Timestamps in UTC instead of local time
    --log_size_limit <bytes>         Logfile size limit (rotates the log file)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace

Runtime Options (natrium):
    --shards <n>                     Client shards (default: one per allowed core)
    --cores <list>                   Cores to pin shards to, e.g. 0,2-3 (default: the process affinity)
    --spin_us <n>                    Busy-poll n microseconds before parking an idle shard
                                     (default: 40 when each shard has a core of its own, else 0)

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
";

fn parse_bool(name: &str, v: &str) -> Result<bool, FlagError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError(format!(
            "invalid boolean value {v:?} for -{name}: parse error"
        ))),
    }
}

/// Why [`go_int`] refused a number: Go's `strconv` error kinds, as its flag package
/// words them.
#[derive(Debug, PartialEq, Eq)]
enum IntError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseInt(s, 0, 64)`, which its flag package uses for integer flags:
/// an optional sign, then decimal, `0x` hex, `0o`/`0` octal or `0b` binary digits,
/// with `_` allowed between digits.
fn go_int(s: &str) -> Result<i64, IntError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Underscores only between digits, or between the base prefix and a digit.
    let mut prev_digit = prefixed;
    for c in digits.chars() {
        if c == '_' {
            if !prev_digit {
                return Err(IntError::Syntax);
            }
            prev_digit = false;
        } else {
            prev_digit = true;
        }
    }
    if digits.ends_with('_') {
        return Err(IntError::Syntax);
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(IntError::Syntax);
    }
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|_| IntError::Range)?;
    if neg {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(IntError::Range);
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| IntError::Range)
    }
}

/// An integer flag value, with Go's flag errors (`parse error`, `value out of range`).
fn parse_int<T: TryFrom<i64>>(name: &str, v: &str) -> Result<T, FlagError> {
    let why = match go_int(v) {
        Ok(n) => match T::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => "value out of range",
        },
        Err(IntError::Range) => "value out of range",
        Err(IntError::Syntax) => "parse error",
    };
    Err(FlagError(format!(
        "invalid value {v:?} for flag -{name}: {why}"
    )))
}

/// Parses a core list like `0,2-3`.
pub fn parse_cores(v: &str) -> Result<Vec<usize>, FlagError> {
    let bad = || {
        FlagError(format!(
            "invalid value \"{v}\" for flag -cores: want a list like 0,2-3"
        ))
    };
    let mut out = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Flags that take a value (`-p 4222`, `-p=4222`); every other flag is a boolean.
/// nats-server's flags, plus natrium's runtime ones (`--shards`, `--cores`, ...).
const VALUE_FLAGS: &[&str] = &[
    "a",
    "addr",
    "net",
    "p",
    "port",
    "n",
    "name",
    "server_name",
    "P",
    "pid",
    "ports_file_dir",
    "l",
    "log",
    "c",
    "config",
    "sd",
    "store_dir",
    "cluster",
    "cluster_listen",
    "cluster_advertise",
    "routes",
    "cluster_name",
    "connect_retries",
    "r",
    "remote_syslog",
    "m",
    "http_port",
    "ms",
    "https_port",
    "client_advertise",
    "tlscert",
    "tlskey",
    "tlscacert",
    "user",
    "pass",
    "auth",
    "log_size_limit",
    "max_traced_msg_len",
    "sl",
    "signal",
    "shards",
    "cores",
    "spin_us",
    "max_payload",
    "ping_interval",
];

/// Parses argv (without the program name) onto the defaults.
pub fn parse(args: &[String]) -> Result<Command, LoadError> {
    parse_onto(args, Options::default())
}

/// Parses argv onto `base` (e.g. options loaded from a config file): every flag
/// given overrides the same option in `base`, wherever it stands on the line.
///
/// As Go's flag package does for nats-server: flags end at the first argument that
/// is not one (or after `--`); a flag it does not know is an error before any value
/// is taken; `-h`/`-v` are booleans acted on once the whole line parsed; and the
/// first argument after the flags may be the command `version` or `help`.
pub fn parse_onto(args: &[String], base: Options) -> Result<Command, LoadError> {
    let mut o = base;
    let mut signal = None;
    let (mut version, mut help) = (false, false);
    let mut rest: &[String] = &[];
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.len() < 2 || !arg.starts_with('-') {
            rest = &args[i..];
            break;
        }
        i += 1;
        if arg == "--" {
            rest = &args[i..];
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError(format!("bad flag syntax: {arg}")).into());
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        // Boolean flags: present means true; `=value` sets it explicitly.
        let flag_bool = |inline: &Option<String>| -> Result<bool, FlagError> {
            inline.as_deref().map_or(Ok(true), |v| parse_bool(name, v))
        };
        match name {
            "h" | "help" => help = flag_bool(&inline)?,
            "v" | "version" => version = flag_bool(&inline)?,
            "D" | "debug" => o.debug = flag_bool(&inline)?,
            "V" | "trace" => o.trace = flag_bool(&inline)?,
            "DV" | "DVV" => {
                let on = flag_bool(&inline)?;
                o.debug = on;
                o.trace = on;
                if name == "DVV" {
                    o.trace_verbose = on;
                }
            }
            "VV" => {
                let on = flag_bool(&inline)?;
                o.trace = on;
                o.trace_verbose = on;
            }
            "T" | "logtime" => o.logtime = flag_bool(&inline)?,
            "js" | "jetstream" => o.jetstream = flag_bool(&inline)?,
            "no_advertise" => {
                flag_bool(&inline)?;
                o.cluster_flags.push("no_advertise".into());
            }
            "t" => o.check_config = flag_bool(&inline)?,
            "logtime_utc" => o.logtime_utc = flag_bool(&inline)?,
            "s" | "syslog" => o.syslog = flag_bool(&inline)?,
            // TLS (issue #5)
            "tls" => {
                let on = flag_bool(&inline)?;
                o.tls_flags.tls = on;
                o.tls_off = !on;
            }
            "tlsverify" => o.tls_flags.verify = flag_bool(&inline)?,
            _ if VALUE_FLAGS.contains(&name) => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let Some(v) = args.get(i) else {
                            return Err(
                                FlagError(format!("flag needs an argument: -{name}")).into()
                            );
                        };
                        i += 1;
                        v.clone()
                    }
                };
                if name == "sl" || name == "signal" {
                    signal = Some(value);
                    continue;
                }
                apply_value(&mut o, name, value)?;
            }
            _ => return Err(FlagError(format!("flag provided but not defined: -{name}")).into()),
        }
    }
    if version {
        return Ok(Command::Version);
    }
    if help {
        return Ok(Command::Help);
    }
    if let Some(first) = rest.first() {
        return match first.to_ascii_lowercase().as_str() {
            "version" => Ok(Command::Version),
            "help" => Ok(Command::Help),
            _ => Err(LoadError::Invalid(format!(
                "unrecognized command: {first:?}"
            ))),
        };
    }
    // An empty `--signal` is no signal at all (nats-server starts normally).
    if let Some(spec) = signal.filter(|s: &String| !s.is_empty()) {
        return Ok(Command::Signal {
            spec,
            opts: Box::new(o),
        });
    }
    Ok(Command::Run(Box::new(o)))
}

/// Why [`load`] failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadError {
    /// A bad flag (printed with the usage).
    Flags(FlagError),
    /// The config file could not be opened or parsed: one line.
    File(String),
    /// The command line asks for something that cannot run (an unknown command,
    /// TLS flags without a certificate, routes without a cluster): one line, as
    /// nats-server reports what its option processing refuses.
    Invalid(String),
}

impl From<FlagError> for LoadError {
    fn from(e: FlagError) -> LoadError {
        LoadError::Flags(e)
    }
}

/// The options a command line asks for: the flags, then the config file they name
/// applied onto the defaults, then every flag again on top (flags win). Used at
/// start and again on reload (SIGHUP), so both see the same merge. Option errors of
/// the file are in the report; `Help`/`Version`/`Signal` come back without loading
/// the file.
pub fn load(args: &[String]) -> Result<(Command, Report), LoadError> {
    let cmd = parse(args)?;
    let Command::Run(opts) = cmd else {
        return Ok((cmd, Report::default()));
    };
    let (mut opts, report) = match opts.config_file.clone() {
        None => (opts, Report::default()),
        Some(path) => {
            let mut base = Options::default();
            let report = file::load(&path, &mut base).map_err(LoadError::File)?;
            let digest = base.config_digest.clone();
            match parse_onto(args, base)? {
                Command::Run(mut o) => {
                    o.config_digest = digest;
                    (o, report)
                }
                other => return Ok((other, report)),
            }
        }
    };
    // `-t` checks the file alone, as nats-server's does: it stops before these.
    if !opts.check_config {
        finish(&mut opts).map_err(LoadError::Invalid)?;
    }
    Ok((Command::Run(opts), report))
}

/// What nats-server does with the merged flags and file before it starts anything:
/// `--tls*` flags replace the file's `tls {}` (`--tls=false` drops TLS altogether),
/// and `--routes` needs a cluster listener.
fn finish(o: &mut Options) -> Result<(), String> {
    if o.tls_off {
        o.tls = None;
        o.tls_flags = Default::default();
    } else if o.tls_flags.any() {
        let missing = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
        if missing(&o.tls_flags.cert_file) {
            return Err("TLS Server certificate must be present and valid".into());
        }
        if missing(&o.tls_flags.key_file) {
            return Err("TLS Server private key must be present and valid".into());
        }
        if let Some(tls) = o.tls_flags.build() {
            o.tls = Some(std::sync::Arc::new(tls?));
        }
        // Built once here: the server and reload take `tls` as it is.
        o.tls_flags = Default::default();
    }
    let flag_set = |name: &str| {
        o.cluster_flags
            .iter()
            .any(|f| f.strip_prefix(name).is_some_and(|v| !v.is_empty()))
    };
    let file_listens = o
        .section("cluster")
        .and_then(|c| c.value.as_map())
        .is_some_and(|m| ["listen", "host", "port"].iter().any(|k| m.contains_key(k)));
    if flag_set("routes=") && !flag_set("cluster=") && !flag_set("cluster_listen=") && !file_listens
    {
        return Err("solicited routes require cluster capabilities, e.g. --cluster".into());
    }
    super::cluster::apply_flags(o)
}

/// The signal a `--signal` command sends, nats-server's mapping.
pub fn signal_number(cmd: &str) -> Option<i32> {
    Some(match cmd {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        _ => return None,
    })
}

fn apply_value(o: &mut Options, name: &str, v: String) -> Result<(), FlagError> {
    match name {
        "a" | "addr" | "net" => o.host = v,
        "p" | "port" => o.port = parse_int(name, &v)?,
        "n" | "name" | "server_name" => o.server_name = Some(v),
        "P" | "pid" => o.pid_file = Some(PathBuf::from(v)),
        "ports_file_dir" => o.ports_file_dir = Some(PathBuf::from(v)),
        "l" | "log" => o.log_file = Some(PathBuf::from(v)),
        "c" | "config" => o.config_file = Some(PathBuf::from(v)),
        "sd" | "store_dir" => {}
        "cluster" | "cluster_listen" | "cluster_advertise" | "routes" | "cluster_name"
        | "connect_retries" => {
            if name == "connect_retries" {
                parse_int::<i64>(name, &v)?;
            }
            o.cluster_flags.push(format!("{name}={v}"));
        }
        "r" | "remote_syslog" => o.remote_syslog = Some(v),
        "m" | "http_port" => o.http_port = parse_int(name, &v)?,
        "ms" | "https_port" => o.https_port = parse_int(name, &v)?,
        "client_advertise" => o.client_advertise = Some(v),
        "tlscert" => o.tls_flags.cert_file = Some(PathBuf::from(v)),
        "tlskey" => o.tls_flags.key_file = Some(PathBuf::from(v)),
        "tlscacert" => o.tls_flags.ca_file = Some(PathBuf::from(v)),
        // Authentication (issue #5, auth half)
        "user" => o.auth_flags.user = Some(v),
        "pass" => o.auth_flags.pass = Some(v),
        "auth" => o.auth_flags.token = Some(v),
        "log_size_limit" => o.log_size_limit = parse_int(name, &v)?,
        "max_traced_msg_len" => o.max_traced_msg_len = parse_int(name, &v)?,
        "shards" => {
            let n: usize = parse_int(name, &v)?;
            if n == 0 {
                return Err(FlagError(
                    "invalid value \"0\" for flag -shards: must be at least 1".into(),
                ));
            }
            o.shards = Some(n);
        }
        "cores" => o.cores = Some(parse_cores(&v)?),
        "spin_us" => o.spin_us = Some(parse_int(name, &v)?),
        "max_payload" => o.max_payload = parse_int(name, &v)?,
        "ping_interval" => o.ping_interval = Duration::from_secs(parse_int(name, &v)?),
        _ => return Err(FlagError(format!("flag provided but not defined: -{name}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args).unwrap() {
            Command::Run(o) => *o,
            c => panic!("unexpected {c:?}"),
        }
    }

    #[test]
    fn go_flag_forms_are_equal() {
        for form in [
            &["-p", "5000"][..],
            &["--port", "5000"],
            &["-port=5000"],
            &["--port=5000"],
        ] {
            assert_eq!(run(form).port, 5000, "{form:?}");
        }
        assert_eq!(run(&["-p", "-1"]).port, -1);
    }

    #[test]
    fn booleans_and_combined_debug_trace() {
        let o = run(&["-DV", "-T=false"]);
        assert!(o.debug && o.trace && !o.logtime);
        let o = run(&["-D", "--trace=true"]);
        assert!(o.debug && o.trace);
        assert!(parse(&["-D=maybe".to_string()]).is_err());
    }

    #[test]
    fn cluster_flags_are_accepted_and_kept() {
        let o = run(&[
            "--cluster",
            "nats://127.0.0.1:6222",
            "--routes=nats://127.0.0.1:6223",
            "--cluster_name",
            "c1",
            "--no_advertise",
            "--connect_retries",
            "3",
        ]);
        assert_eq!(
            o.cluster_flags,
            [
                "cluster=nats://127.0.0.1:6222",
                "routes=nats://127.0.0.1:6223",
                "cluster_name=c1",
                "no_advertise",
                "connect_retries=3"
            ]
        );
        let e = parse(&["--connect_retries".to_string(), "x".to_string()]);
        assert!(e.is_err());
    }

    #[test]
    fn names_hosts_and_shards() {
        let o = run(&[
            "-a",
            "127.0.0.1",
            "--name",
            "x",
            "--shards",
            "2",
            "--cores",
            "0,2-3",
        ]);
        assert_eq!(o.host, "127.0.0.1");
        assert_eq!(o.server_name.as_deref(), Some("x"));
        assert_eq!(o.shards, Some(2));
        assert_eq!(o.cores, Some(vec![0, 2, 3]));
        assert!(run(&["-js", "-sd", "/tmp/x"]).jetstream);
    }

    #[test]
    fn errors() {
        let e = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let usage = |m: &str| LoadError::Flags(FlagError(m.into()));
        assert_eq!(
            e(&["-zz", "1"]).unwrap_err(),
            usage("flag provided but not defined: -zz")
        );
        // An unknown flag is refused before it could take a value.
        assert_eq!(
            e(&["--zz"]).unwrap_err(),
            usage("flag provided but not defined: -zz")
        );
        assert_eq!(e(&["---x"]).unwrap_err(), usage("bad flag syntax: ---x"));
        assert_eq!(e(&["-=x"]).unwrap_err(), usage("bad flag syntax: -=x"));
        assert_eq!(
            e(&["-p", "99999999999999999999"]).unwrap_err(),
            usage("invalid value \"99999999999999999999\" for flag -p: value out of range")
        );
        assert!(e(&["-p"]).is_err());
        assert!(e(&["-p", "abc"]).is_err());
        assert!(e(&["--shards", "0"]).is_err());
        assert!(e(&["--cores", "3-1"]).is_err());
        assert!(matches!(e(&["-h"]), Ok(Command::Help)));
        assert!(matches!(e(&["--version"]), Ok(Command::Version)));
        // -h and -v are booleans, looked at once the line is parsed; -v wins.
        assert!(matches!(e(&["-h=false"]), Ok(Command::Run(_))));
        assert!(matches!(e(&["-h", "-v"]), Ok(Command::Version)));
    }

    #[test]
    fn commands_after_the_flags() {
        let e = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(e(&["-D", "version"]), Ok(Command::Version)));
        assert!(matches!(e(&["HELP"]), Ok(Command::Help)));
        let unknown = |a: &str| LoadError::Invalid(format!("unrecognized command: \"{a}\""));
        assert_eq!(e(&["foo"]).unwrap_err(), unknown("foo"));
        assert_eq!(e(&["-"]).unwrap_err(), unknown("-"));
        // A boolean flag does not take the next argument; `--` ends the flags.
        assert_eq!(e(&["-T", "maybe"]).unwrap_err(), unknown("maybe"));
        assert_eq!(e(&["--", "-p"]).unwrap_err(), unknown("-p"));
        assert_eq!(run(&["-p", "5000", "--"]).port, 5000);
    }

    #[test]
    fn go_integers() {
        assert_eq!(go_int("4222"), Ok(4222));
        assert_eq!(go_int("-1"), Ok(-1));
        assert_eq!(go_int("+7"), Ok(7));
        assert_eq!(go_int("0x10"), Ok(16));
        assert_eq!(go_int("0o17"), Ok(15));
        assert_eq!(go_int("017"), Ok(15));
        assert_eq!(go_int("0b101"), Ok(5));
        assert_eq!(go_int("1_000"), Ok(1000));
        assert_eq!(go_int("0x_1"), Ok(1));
        assert_eq!(go_int("-9223372036854775808"), Ok(i64::MIN));
        for bad in ["", "-", "abc", "1_", "_1", "1__0", "08", "0x", "1.5", " 1"] {
            assert_eq!(go_int(bad), Err(IntError::Syntax), "{bad:?}");
        }
        assert_eq!(go_int("9223372036854775808"), Err(IntError::Range));
        assert_eq!(go_int("99999999999999999999"), Err(IntError::Range));
    }

    #[test]
    fn every_value_flag_is_applied() {
        for name in VALUE_FLAGS {
            if matches!(*name, "sl" | "signal") {
                continue;
            }
            let mut o = Options::default();
            let value = match *name {
                "cores" => "0",
                "p" | "port" | "m" | "http_port" | "ms" | "https_port" | "connect_retries"
                | "log_size_limit" | "max_traced_msg_len" | "shards" | "spin_us"
                | "max_payload" | "ping_interval" => "1",
                _ => "x",
            };
            assert_eq!(apply_value(&mut o, name, value.into()), Ok(()), "-{name}");
        }
    }

    #[test]
    fn tls_and_route_flags_are_checked_after_the_file() {
        let load_err = |a: &[&str]| load(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let invalid = |m: &str| LoadError::Invalid(m.into());
        assert_eq!(
            load_err(&["--tls"]).unwrap_err(),
            invalid("TLS Server certificate must be present and valid")
        );
        assert_eq!(
            load_err(&["--tlscert", "c.pem"]).unwrap_err(),
            invalid("TLS Server private key must be present and valid")
        );
        // `-t` stops before these checks.
        assert!(load_err(&["--tls", "-t"]).is_ok());
        // `--tls=false` drops TLS, whatever the other TLS flags say.
        match load_err(&["--tls=false", "--tlscert", "c.pem"]) {
            Ok((Command::Run(o), _)) => assert!(o.tls.is_none() && !o.tls_flags.any()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            load_err(&["--routes", "nats://127.0.0.1:1"]).unwrap_err(),
            invalid("solicited routes require cluster capabilities, e.g. --cluster")
        );
        assert!(load_err(&["--routes", "nats://h:1", "--cluster", "nats://127.0.0.1:1"]).is_ok());
    }

    #[test]
    fn signal_flag() {
        let e = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        match e(&["-P", "/tmp/x.pid", "--signal", "reload=12"]) {
            Ok(Command::Signal { spec, opts }) => {
                assert_eq!(spec, "reload=12");
                assert_eq!(opts.pid_file, Some(PathBuf::from("/tmp/x.pid")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(e(&["-sl=ldm"]), Ok(Command::Signal { .. })));
        assert_eq!(signal_number("ldm"), Some(libc::SIGUSR2));
        assert_eq!(signal_number("bogus"), None);
        let o = run(&["-DVV"]);
        assert!(o.debug && o.trace && o.trace_verbose);
    }
}
