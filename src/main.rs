//! The `saferun` binary: parse the command line, run, exit as the run decided.

mod cli;

use saferun::{Exit, group, outcome};

fn main() {
    let config = match cli::parse() {
        Ok(config) => config,
        Err(exit) => std::process::exit(exit),
    };
    match saferun::run(&config) {
        Ok(Exit::Code(code)) => std::process::exit(i32::from(code)),
        Ok(Exit::Raise(signal)) => group::die_of(signal),
        Err(error) => {
            // One write(2), without std's stderr lock: a writer thread stuck on a full
            // stderr may hold it.
            let line = format!("saferun: {error:#}\n");
            let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
            std::process::exit(i32::from(outcome::SAFERUN_FAILED));
        }
    }
}
