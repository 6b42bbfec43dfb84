//! Signals saferun receives: forwarded to the group, escalated, job control, terminal.

mod util;

use std::path::Path;
use std::time::Duration;

use util::{alive, cleanup, eventually, read_pids, saferun, temp_dir};

/// Waits until the command wrote its pid file (it is set up and trapping).
fn wait_ready(file: &Path) -> Vec<i32> {
    assert!(
        eventually(Duration::from_secs(10), || !read_pids(file).is_empty()),
        "command never got ready"
    );
    read_pids(file)
}

#[test]
fn forwarded_term_reaches_the_group() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo got-term; exit 5' TERM; sleep 100 & echo $! > {}; wait",
        ready.display()
    );
    let running = saferun(["sh", "-c", &script]).start();
    let pids = wait_ready(&ready);
    running.signal(libc::SIGTERM);
    let out = running.wait();
    let gone = eventually(Duration::from_secs(2), || !alive(pids[0]));
    cleanup(&pids);
    out.assert_code(5).assert_stdout("got-term\n");
    assert!(gone, "the group's sleep got TERM too\n{out}");
}

#[test]
fn forwarded_int_ends_saferun_by_int() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let script = format!("echo $$ > {}; sleep 100", ready.display());
    let running = saferun(["sh", "-c", &script]).start();
    wait_ready(&ready);
    running.signal(libc::SIGINT);
    running.wait().assert_signal(libc::SIGINT);
}

#[test]
fn escalation_after_a_forwarded_term() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let script = format!("trap '' TERM; echo $$ > {}; sleep 100", ready.display());
    let running = saferun(["-k", "0.5", "sh", "-c", &script]).start();
    wait_ready(&ready);
    running.signal(libc::SIGTERM);
    let out = running.wait();
    // The command died of the KILL that followed: so does saferun (the shell reads
    // 137), as GNU timeout does.
    out.assert_signal(libc::SIGKILL)
        .assert_faster_than(Duration::from_secs(5))
        .assert_stderr_contains("sending KILL");
}

#[test]
fn second_int_kills_at_once() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let script = format!("trap '' INT TERM; echo $$ > {}; sleep 100", ready.display());
    let running = saferun(["-k", "60", "sh", "-c", &script]).start();
    wait_ready(&ready);
    running.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    running.signal(libc::SIGINT);
    let out = running.wait();
    // Killed by the KILL the second INT sent: saferun dies of KILL too.
    out.assert_signal(libc::SIGKILL)
        .assert_faster_than(Duration::from_secs(10));
}

#[test]
fn other_signals_are_forwarded_only() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let got_usr1 = dir.path().join("usr1");
    let script = format!(
        "trap 'echo usr1; : > {}' USR1; trap 'echo usr2; exit 0' USR2; echo $$ > {}; \
         while :; do sleep 0.05; done",
        got_usr1.display(),
        ready.display()
    );
    let running = saferun(["sh", "-c", &script]).start();
    wait_ready(&ready);
    running.signal(libc::SIGUSR1);
    // USR2 only once USR1 has arrived: the order is the test's, not the scheduler's.
    assert!(eventually(Duration::from_secs(20), || got_usr1.exists()));
    running.signal(libc::SIGUSR2);
    running.wait().assert_code(0).assert_stdout("usr1\nusr2\n");
}

#[test]
fn signal_ignored_at_start_stays_ignored() {
    // As in a background job: INT is ignored before saferun starts, so the command
    // inherits it ignored and survives its own INT.
    let inner = format!(
        "trap '' INT; exec {} -- sh -c 'kill -INT $$; echo survived'",
        util::BIN
    );
    saferun(["sh", "-c", &inner])
        .run()
        .assert_code(0)
        .assert_stdout("survived\n");
}

#[test]
fn job_control_signals_ignored_at_start_stay_ignored() {
    let inner = format!(
        "trap '' TSTP TTIN TTOU; exec {} -- grep SigIgn /proc/self/status",
        util::BIN
    );
    let out = saferun(["sh", "-c", &inner]).run();
    out.assert_code(0);
    let text = out.stdout_text();
    let hex = text.trim().trim_start_matches("SigIgn:").trim();
    let ignored = u64::from_str_radix(hex, 16).unwrap();
    for signal in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        assert_ne!(ignored & (1 << (signal - 1)), 0, "signal {signal}: {text}");
    }
}

#[test]
fn killing_saferun_with_kill_kills_the_command() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let script = format!("echo $$ > {}; exec sleep 100", ready.display());
    let running = saferun(["sh", "-c", &script]).start();
    let pids = wait_ready(&ready);
    running.signal(libc::SIGKILL);
    running.wait().assert_signal(libc::SIGKILL);
    let gone = eventually(Duration::from_secs(2), || !alive(pids[0]));
    cleanup(&pids);
    assert!(gone, "the command outlived saferun's KILL");
}

#[test]
fn command_gets_default_dispositions() {
    // saferun catches TERM and friends, ignores SIGPIPE (Rust) and may ignore TTOU; the
    // command sees none of that: it is ignored what the test itself ignores (as after a
    // plain exec), and nothing is blocked.
    let status = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    let out = saferun(["sh", "-c", "cat /proc/self/status"]).run();
    out.assert_code(0);
    let child = out.stdout_text();
    // The test binary is Rust too and ignores SIGPIPE; a command starts with it default.
    // Signals 32 and 33 are glibc's own (thread cancellation, setxid), set up by whichever
    // process spawned whom; no program can use them, so they are left out.
    let sigpipe_bit = 1u64 << (libc::SIGPIPE - 1);
    let glibc_bits = (1u64 << 31) | (1u64 << 32);
    let mask = |hex: String| u64::from_str_radix(&hex, 16).unwrap() & !glibc_bits;
    let expected = mask(status(&mine, "SigIgn:")) & !sigpipe_bit;
    assert_eq!(mask(status(&child, "SigIgn:")), expected, "{out}");
    assert_eq!(status(&child, "SigBlk:"), "0000000000000000", "{out}");
}

#[test]
fn command_is_the_terminals_foreground_group() {
    if !util::tool("script") {
        return;
    }
    // `script` gives the run a real pseudo-terminal. Inside it, the command's group must
    // own the terminal; afterwards the shell's group owns it again.
    let inner = format!(
        "{} -- sh -c 'ps -o pgid=,tpgid= -p $$'; ps -o pgid=,tpgid= -p $$",
        util::BIN
    );
    let out = saferun(["script", "-qec", &inner, "/dev/null"]).run();
    out.assert_code(0);
    let text = out.stdout_text();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| r.len() == 2)
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0][0], rows[0][1], "command is foreground\n{out}");
    assert_eq!(rows[1][0], rows[1][1], "shell is foreground again\n{out}");
    assert_ne!(rows[0][0], rows[1][0], "command had its own group\n{out}");
}

#[test]
fn in_a_terminal_the_command_gets_ttin_ttou_as_the_caller_had_them() {
    if !util::tool("script") {
        return;
    }
    // saferun ignores TTIN and TTOU while it holds the terminal. The command gets them
    // back at their default, except what saferun's caller ignored itself (TTOU here).
    let run = |caller: &str| {
        let inner = format!(
            "sh -c \"{caller} exec {} -- grep SigIgn /proc/self/status\"",
            util::BIN
        );
        let out = saferun(["script", "-qec", &inner, "/dev/null"]).run();
        out.assert_code(0);
        let text = out.stdout_text();
        let hex = text.trim().trim_start_matches("SigIgn:").trim().to_string();
        u64::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("{out}"))
    };
    let bit = |signal: i32| 1u64 << (signal - 1);
    let plain = run("");
    assert_eq!(plain & (bit(libc::SIGTTIN) | bit(libc::SIGTTOU)), 0);
    let ignoring = run("trap '' TTOU;");
    assert_eq!(ignoring & bit(libc::SIGTTIN), 0);
    assert_ne!(ignoring & bit(libc::SIGTTOU), 0);
}

#[test]
fn cancelling_during_a_timeout_kills_at_once_and_keeps_the_timeout_status() {
    // The command notes the timeout's TERM and goes on; only then does INT come, so the
    // test cannot pass with an INT that arrived before the timeout.
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let termed = dir.path().join("termed");
    let script = format!(
        "trap 'echo t > {}' TERM; echo $$ > {}; while :; do sleep 1; done",
        termed.display(),
        ready.display()
    );
    let running = saferun(["-t", "0.3", "-k", "60", "sh", "-c", &script]).start();
    wait_ready(&ready);
    assert!(
        util::eventually(Duration::from_secs(20), || termed.exists()),
        "the timeout never fired"
    );
    running.signal(libc::SIGINT);
    // As GNU timeout: once the limit fired, the status says so (KILL was needed: 137).
    running
        .wait()
        .assert_code(137)
        .assert_stderr_contains("timed out")
        .assert_faster_than(Duration::from_secs(30));
}

#[test]
fn stop_then_continue_at_once_never_leaves_saferun_stopped() {
    for _ in 0..10 {
        let running = saferun(["sleep", "0.3"])
            .watchdog(Duration::from_secs(10))
            .start();
        std::thread::sleep(Duration::from_millis(50));
        running.signal(libc::SIGTSTP);
        running.signal(libc::SIGCONT);
        running.wait().assert_code(0);
    }
}

#[test]
fn signals_blocked_by_the_caller_are_unblocked_for_the_command() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut command = Command::new(util::BIN);
    command
        .args(["--", "sh", "-c", "grep SigBlk /proc/self/status"])
        .stdout(Stdio::piped());
    // SAFETY: sigemptyset, sigaddset and pthread_sigmask are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGCHLD] {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    // A blocked SIGCHLD that stuck would hang saferun: bounded.
    let out = util::wait_bounded(command.spawn().unwrap(), Duration::from_secs(20))
        .expect("saferun did not end");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SigBlk:\t0000000000000000\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn term_while_waiting_to_open_a_fifo_ends_saferun() {
    // Nothing has started yet: saferun must die of the signal like any program, not
    // hold it until the FIFO's reader turns up.
    use std::os::unix::process::ExitStatusExt;
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let child = std::process::Command::new(util::BIN)
        .args(["-o", fifo.to_str().unwrap(), "--", "echo", "hi"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = util::wait_bounded(child, Duration::from_secs(10)).expect("saferun did not end");
    assert_eq!(out.status.signal(), Some(libc::SIGTERM));
}

#[test]
fn an_ignored_sigpipe_stays_ignored_for_the_command() {
    // As after a plain exec: `yes` then gets EPIPE, says so and exits 1, instead of
    // dying of SIGPIPE.
    let status = |command: &str| {
        let script =
            format!("trap '' PIPE; {command} yes | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}");
        let child = std::process::Command::new("bash")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = util::wait_bounded(child, Duration::from_secs(30)).expect("finished");
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (direct, _) = status("");
    let (through, stderr) = status(util::BIN);
    assert_eq!(direct, "1");
    assert_eq!(through, direct, "{stderr}");
    assert!(stderr.contains("Broken pipe"), "{stderr}");
}
