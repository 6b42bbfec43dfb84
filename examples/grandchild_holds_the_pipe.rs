//! `std::process::Command::output()` waits for the end of the command's output, so a
//! background grandchild that keeps the pipe open hangs it for as long as the grandchild
//! lives. saferun drains for a short linger after the command exits, then closes the
//! pipe and names who still held it (or, with `Leftovers::Kill`, stops it).
//!
//!     cargo run --example grandchild_holds_the_pipe

use std::time::{Duration, Instant};

use saferun::{Command, Output};

fn main() -> Result<(), saferun::Error> {
    let started = Instant::now();
    let outcome = Command::new("sh")
        .args(["-c", "sleep 300 & echo the command is done"])
        .linger(Duration::from_millis(500))
        .stdout(Output::capture())
        .run()?;
    print!("{}", outcome.stdout().text());
    println!("returned after {:?}, not 300 s", started.elapsed());
    for holder in outcome.pipe_holders() {
        println!(
            "{} was still held by pid {} ({})",
            holder.stream.unwrap_or("a stream"),
            holder.pid,
            holder.command
        );
    }
    for leftover in outcome.leftovers() {
        println!(
            "pid {} ({}) outlived the command; stopping it",
            leftover.pid, leftover.command
        );
        let _ = std::process::Command::new("kill")
            .arg(leftover.pid.to_string())
            .status();
    }
    Ok(())
}
