//! `natrium`: flags -> config file -> flags again (they win) -> server::run.

use natrium::config::file;
use natrium::config::flags::{self, Command};
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

fn usage_exit(e: flags::FlagError) -> ! {
    eprintln!("{}", e.0);
    eprint!("{}", flags::USAGE);
    std::process::exit(2);
}

fn main() {
    let prog = program_name();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = match flags::parse(&args) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", flags::USAGE);
            return;
        }
        Ok(Command::Version) => {
            println!(
                "natrium: v{} (compatible with nats-server v{})",
                server::VERSION,
                server::COMPAT_VERSION
            );
            return;
        }
        Err(e) => usage_exit(e),
    };

    let mut report = file::Report::default();
    if let Some(path) = opts.config_file.clone() {
        // The file goes onto the defaults; then every flag is applied again on top.
        let mut base = natrium::config::Options::default();
        report = match file::load(&path, &mut base) {
            Ok(r) => r,
            Err(e) => {
                // Open and syntax errors: one line, no blank line (like nats-server).
                eprintln!("{prog}: {e}");
                std::process::exit(1);
            }
        };
        let digest = base.config_digest.clone();
        opts = match flags::parse_onto(&args, base) {
            Ok(Command::Run(o)) => o,
            Ok(_) => unreachable!("help/version were handled above"),
            Err(e) => usage_exit(e),
        };
        opts.config_digest = digest;
        if !report.errors.is_empty() {
            let lines: Vec<String> = report
                .warnings
                .iter()
                .chain(&report.errors)
                .cloned()
                .collect();
            config_exit(&prog, &lines);
        }
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

    let sink: Box<dyn std::io::Write + Send> = match &opts.log_file {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error opening log file {}: {e}", path.display());
                std::process::exit(1);
            }
        },
        None => Box::new(std::io::stderr()),
    };
    natrium::logging::init(sink, opts.logtime, opts.debug, opts.trace);
    if let (Some(path), Some(digest)) = (&opts.config_file, &opts.config_digest) {
        log_info!("Using configuration file: {} ({digest})", path.display());
    }
    for line in &report.unsupported {
        log_warn!("{line}");
    }
    if opts.http_port != 0 || opts.https_port != 0 {
        log_warn!("Monitoring (http/https) is not available in natrium yet; not listening for it");
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
