//! `natrium`: flags -> options -> server::run.

use natrium::config::flags::{self, Command};
use natrium::server;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match flags::parse(&args) {
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
        Err(e) => {
            eprintln!("{}", e.0);
            eprint!("{}", flags::USAGE);
            std::process::exit(2);
        }
    };
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
    if let Err(e) = server::run(*opts) {
        server::report_fatal(&e);
        std::process::exit(1);
    }
}
