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

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
";

fn parse_bool(name: &str, v: &str) -> Result<bool, FlagError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError(format!(
            "invalid boolean value \"{v}\" for -{name}: parse error"
        ))),
    }
}

fn parse_int<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, FlagError> {
    v.parse().map_err(|_| {
        FlagError(format!(
            "invalid value \"{v}\" for flag -{name}: parse error"
        ))
    })
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

/// Parses argv (without the program name) onto the defaults.
pub fn parse(args: &[String]) -> Result<Command, FlagError> {
    parse_onto(args, Options::default())
}

/// Parses argv onto `base` (e.g. options loaded from a config file): every flag
/// given overrides the same option in `base`, wherever it stands on the line.
pub fn parse_onto(args: &[String], base: Options) -> Result<Command, FlagError> {
    let mut o = base;
    let mut signal = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" || arg == "--" {
            return Err(FlagError(format!("unexpected argument: {arg}")));
        }
        let body = arg.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        // Boolean flags: present means true; `=value` sets it explicitly.
        let flag_bool = |inline: &Option<String>| -> Result<bool, FlagError> {
            inline.as_deref().map_or(Ok(true), |v| parse_bool(name, v))
        };
        match name {
            "h" | "help" => return Ok(Command::Help),
            "v" | "version" => return Ok(Command::Version),
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
            "tls" => o.tls_flags.tls = flag_bool(&inline)?,
            "tlsverify" => o.tls_flags.verify = flag_bool(&inline)?,
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let Some(v) = args.get(i) else {
                            return Err(FlagError(format!("flag needs an argument: -{name}")));
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
        }
    }
    if let Some(spec) = signal {
        return Ok(Command::Signal {
            spec,
            opts: Box::new(o),
        });
    }
    Ok(Command::Run(Box::new(o)))
}

/// Why [`load`] failed.
#[derive(Debug)]
pub enum LoadError {
    /// A bad flag (printed with the usage).
    Flags(FlagError),
    /// The config file could not be opened or parsed: one line.
    File(String),
}

/// The options a command line asks for: the flags, then the config file they name
/// applied onto the defaults, then every flag again on top (flags win). Used at
/// start and again on reload (SIGHUP), so both see the same merge. Option errors of
/// the file are in the report; `Help`/`Version`/`Signal` come back without loading
/// the file.
pub fn load(args: &[String]) -> Result<(Command, Report), LoadError> {
    let cmd = parse(args).map_err(LoadError::Flags)?;
    let Command::Run(opts) = cmd else {
        return Ok((cmd, Report::default()));
    };
    let Some(path) = opts.config_file.clone() else {
        return Ok((Command::Run(opts), Report::default()));
    };
    let mut base = Options::default();
    let report = file::load(&path, &mut base).map_err(LoadError::File)?;
    let digest = base.config_digest.clone();
    match parse_onto(args, base).map_err(LoadError::Flags)? {
        Command::Run(mut o) => {
            o.config_digest = digest;
            Ok((Command::Run(o), report))
        }
        other => Ok((other, report)),
    }
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
        "cluster" | "cluster_listen" | "routes" | "cluster_name" | "connect_retries" => {
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
        "spin_us" => o.spin_us = parse_int(name, &v)?,
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
        assert_eq!(
            e(&["-zz", "1"]).unwrap_err(),
            FlagError("flag provided but not defined: -zz".into())
        );
        assert!(e(&["-p"]).is_err());
        assert!(e(&["-p", "abc"]).is_err());
        assert!(e(&["--shards", "0"]).is_err());
        assert!(e(&["--cores", "3-1"]).is_err());
        assert!(matches!(e(&["-h"]), Ok(Command::Help)));
        assert!(matches!(e(&["--version"]), Ok(Command::Version)));
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
