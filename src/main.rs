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
            eprintln!("saferun: {error:#}");
            std::process::exit(i32::from(outcome::SAFERUN_FAILED));
        }
    }
}
