//! The control thread: waits for signals and turns them into commands for the shards.
//! Never on the message path.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{cleanup_files, ServerShared};
use crate::shard::control::ShardCommand;
use crate::{log_info, log_warn};

/// Handles signals until the server stops: SIGINT/SIGTERM shut down in order, SIGQUIT
/// exits at once.
pub fn run(
    server: &Arc<ServerShared>,
    runtime: shards::Runtime,
    sigset: libc::sigset_t,
    ports_file: Option<PathBuf>,
) {
    let opts = &server.opts;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait on the set the caller blocked before starting the shards.
        if unsafe { libc::sigwait(&sigset, &mut sig) } != 0 {
            continue;
        }
        match sig {
            libc::SIGINT | libc::SIGTERM => {
                let name = if sig == libc::SIGINT {
                    "interrupt"
                } else {
                    "terminated"
                };
                log_info!("Trapped \"{name}\" signal");
                break;
            }
            libc::SIGQUIT => {
                log_info!("Trapped \"quit\" signal");
                cleanup_files(opts, &ports_file);
                std::process::exit(0);
            }
            libc::SIGHUP => log_warn!("Reload is not supported yet; configuration unchanged"),
            libc::SIGUSR2 => log_warn!("Lame duck mode is not supported yet"),
            _ => {}
        }
    }
    log_info!("Initiating Shutdown...");
    server.shutdown.store(true, Ordering::SeqCst);
    server.tell_shards(|_| ShardCommand::Shutdown);
    let _ = runtime.join();
    cleanup_files(opts, &ports_file);
    log_info!("Server Exiting..");
}
