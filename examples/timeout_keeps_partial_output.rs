//! A command that runs past its time limit: it is stopped (TERM, then KILL if it ignores
//! TERM), and what it wrote until then is kept.
//!
//!     cargo run --example timeout_keeps_partial_output

use std::time::Duration;

use saferun::{Command, Ending, Output};

fn main() -> Result<(), saferun::Error> {
    let outcome = Command::new("sh")
        .args([
            "-c",
            "for i in 1 2 3; do echo step $i; sleep 0.2; done; sleep 60",
        ])
        .timeout(Duration::from_secs(1))
        .kill_after(Some(Duration::from_secs(2)))
        .stdout(Output::capture())
        .run()?;
    match outcome.ending() {
        Ending::TimedOut { killed, .. } => {
            println!(
                "timed out (KILL needed: {killed}) after {:?}",
                outcome.duration()
            )
        }
        other => println!("ended: {other:?}"),
    }
    print!("what it wrote:\n{}", outcome.stdout().text());
    println!("exit code as GNU timeout gives it: {}", outcome.code());
    Ok(())
}
