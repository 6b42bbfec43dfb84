//! Capture a command's output with a cap: the first and the last half of at most 4 KiB
//! are kept, the middle is dropped and counted, and the command is never blocked
//! however much it writes.
//!
//!     cargo run --example capture_with_a_cap

use saferun::{Command, Output};

fn main() -> Result<(), saferun::Error> {
    let outcome = Command::new("seq")
        .arg("1000000")
        .stdout(Output::capture().cap(4096))
        .run()?;
    let stdout = outcome.stdout();
    println!("first lines: {:?}", first_lines(stdout.head(), 3));
    println!("{} bytes left out of the middle", stdout.elided());
    println!("last line: {:?}", last_line(stdout.tail()));
    println!("exit code {}", outcome.code());
    Ok(())
}

fn first_lines(bytes: &[u8], n: usize) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .take(n)
        .map(str::to_string)
        .collect()
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}
