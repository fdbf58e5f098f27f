//! `natrium`: flags -> config file -> flags again (they win) -> server::run
//! (`flags::load`, which reload uses too); or `--signal` to a running server.

use natrium::config::file;
use natrium::config::flags::{self, Command, LoadError};
use natrium::logging;
use natrium::server;
use natrium::{log_info, log_warn};

/// The name messages are prefixed with, like nats-server's `nats-server: ...`:
/// the basename of argv[0], so that natrium installed as `nats-server` prints
/// exactly what the reference prints.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "natrium".into())
}

/// Prints `prog: <lines>` plus a blank line (nats-server's format for config
/// errors) and exits 1.
fn config_exit(prog: &str, lines: &[String]) -> ! {
    eprintln!("{prog}: {}\n", lines.join("\n"));
    std::process::exit(1);
}

/// The usage on stdout between blank lines, as nats-server prints it for `-h`.
fn print_usage() {
    print!("\n{}\n", flags::USAGE);
}

/// A bad flag: the error on stderr, then the usage, and exit status 0, as
/// nats-server's flag handling does (its usage function exits 0).
fn usage_exit(e: flags::FlagError) -> ! {
    eprintln!("{}", e.0);
    print_usage();
    std::process::exit(0);
}

/// `--signal CMD[=PID|=PIDFILE]`: sends the signal to a running server, like
/// `nats-server --signal`. Without a pid: the `-P` (or config `pid_file`) pid file
/// when there is one, else the only other process named like this one (pgrep).
/// As in nats-server, the pid is found before the command is checked.
fn signal_main(prog: &str, spec: &str, opts: &natrium::config::Options) -> ! {
    let parts: Vec<&str> = spec.split('=').collect();
    if parts.len() > 2 {
        eprintln!(
            "{prog}: invalid signal parameters: [{}]",
            parts[2..].join(" ")
        );
        std::process::exit(1);
    }
    let cmd = parts[0];
    let pid_expr = parts.get(1).map(|p| p.to_string());
    let pid_file = opts.pid_file.clone().or_else(|| {
        // Best effort: the pid file named by the config file given with -c.
        let path = opts.config_file.as_ref()?;
        let mut o = natrium::config::Options::default();
        file::load(path, &mut o).ok()?;
        o.pid_file
    });
    let pid_expr = match pid_expr {
        Some(p) => p,
        None => match pid_file {
            Some(p) => p.display().to_string(),
            None => match pgrep(prog) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{prog}: {e}");
                    std::process::exit(1);
                }
            },
        },
    };
    let pid: i32 = match pid_expr.parse() {
        Ok(p) => p,
        Err(_) => match std::fs::read_to_string(&pid_expr) {
            Ok(text) => match text.trim().parse() {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("{prog}: invalid pid: {text}");
                    std::process::exit(1);
                }
            },
            Err(_) => {
                eprintln!("{prog}: invalid pid: {pid_expr}");
                std::process::exit(1);
            }
        },
    };
    let Some(sig) = flags::signal_number(cmd) else {
        eprintln!("{prog}: unknown signal {cmd:?}");
        std::process::exit(1);
    };
    // SAFETY: kill(2) with a pid and a signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let why = logging::go_error_text(&std::io::Error::last_os_error());
        eprintln!("{prog}: \nsignal \"{cmd}\" {pid}: {why}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// The one other process named `prog`, as nats-server finds it with pgrep.
fn pgrep(prog: &str) -> Result<String, String> {
    let out = std::process::Command::new("pgrep")
        .arg(prog)
        .output()
        .map_err(|e| format!("unable to resolve pid, try providing one: {e}"))?;
    let me = std::process::id().to_string();
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != me)
        .map(String::from)
        .collect();
    match pids.len() {
        0 => Err(format!("no {prog} processes running")),
        1 => Ok(pids[0].clone()),
        _ => Err(format!(
            "multiple {prog} processes running:\n{}",
            pids.join("\n")
        )),
    }
}

fn main() {
    let prog = program_name();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, report) = match flags::load(&args) {
        Ok((Command::Run(opts), report)) => (opts, report),
        Ok((Command::Help, _)) => {
            print_usage();
            return;
        }
        Ok((Command::Version, _)) => {
            println!(
                "natrium: v{} (compatible with nats-server v{})",
                server::VERSION,
                server::COMPAT_VERSION
            );
            return;
        }
        Ok((Command::Signal { spec, opts }, _)) => signal_main(&prog, &spec, &opts),
        Err(LoadError::Flags(e)) => usage_exit(e),
        Err(LoadError::File(e) | LoadError::Invalid(e)) => {
            // Open and syntax errors: one line, no blank line (like nats-server).
            eprintln!("{prog}: {e}");
            std::process::exit(1);
        }
    };
    if !report.errors.is_empty() {
        let lines: Vec<String> = report
            .warnings
            .iter()
            .chain(&report.errors)
            .cloned()
            .collect();
        config_exit(&prog, &lines);
    }

    if opts.check_config {
        let Some(path) = &opts.config_file else {
            eprintln!(
                "{prog}: must specify [-c, --config] option to check configuration file syntax"
            );
            std::process::exit(1);
        };
        if !report.warnings.is_empty() {
            config_exit(&prog, &report.warnings);
        }
        eprintln!(
            "{prog}: configuration file {} is valid ({})",
            path.display(),
            opts.config_digest.as_deref().unwrap_or_default()
        );
        return;
    }

    if let Err(e) = file::validate(&opts) {
        eprintln!("{prog}: {e}");
        std::process::exit(1);
    }
    for w in &report.warnings {
        eprintln!("{w}");
    }

    if let Err(e) = logging::configure(&logging::LogConfig::from_options(&opts)) {
        // nats-server's logger is not there yet either: Go's standard logger says it.
        eprintln!("{}", logging::go_log_line(&e));
        std::process::exit(1);
    }
    if let (Some(path), Some(digest)) = (&opts.config_file, &opts.config_digest) {
        log_info!("Using configuration file: {} ({digest})", path.display());
    }
    for line in &report.unsupported {
        log_warn!("{line}");
    }
    if !report.refused.is_empty() {
        for line in &report.refused {
            log_warn!("{line}");
        }
        server::report_fatal(&server::FatalError(format!(
            "refusing to start: {} configured option(s) cannot be honoured",
            report.refused.len()
        )));
        std::process::exit(1);
    }
    if let Err(e) = server::run(*opts) {
        server::report_fatal(&e);
        std::process::exit(1);
    }
}
