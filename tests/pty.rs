//! `--pty`: block-buffered commands seen line by line, the tail after exit, stderr kept
//! apart; `--pty-stdin`; the idle-timeout hint; `--heartbeat`.

mod util;

use std::time::Duration;

use util::{saferun, stamps};

/// A Python child that writes a line every 300 ms and ends with a partial line. Python
/// block-buffers a pipe unless told otherwise: this machine's environment sets
/// PYTHONUNBUFFERED, which the test removes, or it would test nothing.
const BUFFERED: &str = "import sys, time\n\
for i in range(3):\n    print('line', i)\n    print('err', i, file=sys.stderr)\n    time.sleep(0.3)\n\
print('tail without newline', end='')\n";

#[test]
fn a_block_buffered_python_is_seen_line_by_line() {
    let run = |pty: &str| {
        saferun([pty, "--timestamps", "--", "python3", "-c", BUFFERED])
            .env("PYTHONUNBUFFERED", "")
            .run()
    };
    // Through a pipe: everything at the end, at once.
    let piped = run("--pty=never");
    piped.assert_code(0);
    let times = stamps(&piped.stdout_text());
    assert!(
        times[3] - times[0] < 0.1,
        "a pipe gets it all at exit\n{piped}"
    );

    let out = run("--pty");
    out.assert_code(0);
    let text = out.stdout_text();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start().split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        lines,
        ["line 0", "line 1", "line 2", "tail without newline"],
        "{out}"
    );
    let times = stamps(&text);
    assert!(
        times[1] - times[0] > 0.2 && times[2] - times[1] > 0.2,
        "line by line\n{out}"
    );
    assert!(!text.contains('\r'), "no \\r\\n translation\n{out}");
    // stderr stays a stream of its own (and a pipe: Python block-buffers it unless
    // it is a terminal, but it is unbuffered by default for stderr text anyway).
    let stderr = out.stderr_text();
    let err: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim_start().split_once(' ').unwrap().1)
        .collect();
    assert_eq!(err, ["err 0", "err 1", "err 2"], "{out}");
}

#[test]
fn the_command_sees_a_terminal_on_stdout_only_and_leads_its_session() {
    let script = "[ -t 1 ] && echo stdout-tty; [ -t 2 ] || echo stderr-pipe >&2; [ -t 0 ] || echo stdin-not; \
        stty size </dev/tty; [ \"$(ps -o sid= -p $$)\" -eq $$ ] && echo session-leader";
    let out = saferun(["--pty", "--", "sh", "-c", script]).run();
    out.assert_code(0)
        .assert_stdout("stdout-tty\nstdin-not\n24 80\nsession-leader\n");
    out.assert_stderr_contains("stderr-pipe");
}

#[test]
fn every_byte_written_before_exit_arrives() {
    // 3 MiB then exit at once: Linux ends a terminal with EIO, after what is queued.
    let out = saferun([
        "--pty",
        "--",
        "python3",
        "-c",
        "import os; os.write(1, b'x' * (3 << 20)); os.write(1, b'END')",
    ])
    .run();
    out.assert_code(0);
    assert_eq!(out.stdout.len(), (3 << 20) + 3);
    assert!(out.stdout.ends_with(b"xEND"));
}

#[test]
fn a_timeout_keeps_what_was_written() {
    let out = saferun([
        "--pty",
        "-t",
        "1",
        "--",
        "python3",
        "-c",
        BUFFERED.replace("0.3", "5").as_str(),
    ])
    .env("PYTHONUNBUFFERED", "")
    .run();
    out.assert_code(124).assert_stdout("line 0\n");
}

#[test]
fn pty_stdin_feeds_the_terminal_line_by_line() {
    let out = saferun([
        "--pty-stdin",
        "--",
        "python3",
        "-c",
        "import sys; print(sys.stdin.isatty(), sys.stdin.read().split())",
    ])
    .stdin_bytes(b"one\ntwo\nno-newline".to_vec())
    .run();
    out.assert_code(0)
        .assert_stdout("True ['one', 'two', 'no-newline']\n");
}

#[test]
fn pty_options_that_contradict_are_refused() {
    let out = saferun(["--pty=never", "--pty-stdin", "--", "true"]).run();
    out.assert_code(125);
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
    let out = saferun(["--pty=sometimes", "--", "true"]).run();
    out.assert_code(125);
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
}

#[test]
fn an_idle_timeout_on_a_pipe_suggests_the_pty() {
    let out = saferun(["--idle-timeout", "0.5", "--", "sleep", "10"]).run();
    out.assert_code(124);
    out.assert_stderr_contains("its stdout is a pipe");
    out.assert_stderr_contains("--pty");
    let out = saferun(["--pty", "--idle-timeout", "0.5", "--", "sleep", "10"]).run();
    out.assert_code(124);
    assert!(!out.stderr_text().contains("--pty gives"), "{out}");
}

#[test]
fn heartbeat_speaks_only_while_the_command_is_silent() {
    let out = saferun([
        "--heartbeat",
        "0.4",
        "--",
        "sh",
        "-c",
        "sleep 1; echo hi; i=0; while [ $i -lt 10 ]; do echo tick; sleep 0.1; i=$((i+1)); done",
    ])
    .run();
    out.assert_code(0);
    let beats: Vec<String> = out
        .saferun_lines()
        .into_iter()
        .filter(|l| l.contains("still running"))
        .collect();
    assert!(
        (1..=3).contains(&beats.len()),
        "one every 0.4s of the first second's silence, none while it ticks\n{out}"
    );
    assert!(beats[0].contains("no output yet"), "{out}");
    assert_eq!(
        out.stdout_text().lines().count(),
        11,
        "output is never held back\n{out}"
    );
    out.assert_faster_than(Duration::from_secs(10));
}

#[test]
fn in_a_terminal_the_command_gets_one_by_default_and_keeps_the_callers() {
    if !util::tool("script") {
        return;
    }
    // Under script(1) saferun's stdout is a terminal: the command's stdout is a
    // pseudo-terminal of saferun's, while /dev/tty (prompts) is still the caller's.
    let inner = format!(
        "{} -- sh -c '[ -t 1 ] && echo stdout-tty; [ \"$(ps -o sid= -p $$)\" -ne $$ ] && echo same-session; \
         [ \"$(tty </dev/tty)\" != \"$(readlink /proc/$$/fd/1)\" ] && echo tty-is-the-callers'",
        util::BIN
    );
    let text = in_a_terminal(&inner);
    for line in ["stdout-tty", "same-session", "tty-is-the-callers"] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    // Reshaped output keeps the pipe.
    let inner = format!(
        "{} --prefix 'p: ' -- sh -c '[ -t 1 ] || echo pipe'",
        util::BIN
    );
    assert!(in_a_terminal(&inner).contains("p: pipe"));
}

/// What a shell command line prints when run by script(1), on a terminal of its own.
fn in_a_terminal(command: &str) -> String {
    let out = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    text
}
