//! Many commands at once, from many threads: each job has its own limit, its own
//! process group and its own outcome; none touches another's processes.
//!
//!     cargo run --example many_commands_from_many_threads

use std::time::Duration;

use saferun::{Command, Output, Stdin};

fn main() {
    let hosts = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let threads: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = host.to_string();
            std::thread::spawn(move || {
                // A stand-in for `ssh $host uptime`: some answer, one hangs.
                let script = if i == 3 {
                    "sleep 60".to_string()
                } else {
                    format!("sleep 0.{i}; echo {host} is up")
                };
                let outcome = Command::new("sh")
                    .args(["-c", &script])
                    .timeout(Duration::from_secs(2))
                    .stdin(Stdin::null())
                    .stdout(Output::capture())
                    .run();
                (host, outcome)
            })
        })
        .collect();
    for thread in threads {
        let (host, outcome) = thread.join().expect("a job's thread");
        match outcome {
            Ok(outcome) if outcome.success() => print!("{}", outcome.stdout().text()),
            Ok(outcome) => println!(
                "{host}: {:?} (exit code {})",
                outcome.ending(),
                outcome.code()
            ),
            Err(error) => println!("{host}: {error}"),
        }
    }
}
