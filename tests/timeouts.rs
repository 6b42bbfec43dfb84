//! Wall-clock and idle limits, escalation, and that a timeout stops the whole tree.

mod util;

use std::time::Duration;

use util::{alive, cleanup, eventually, read_pids, saferun, temp_dir};

#[test]
fn timeout_stops_the_whole_tree() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 100 & echo $! > {p}; sleep 100 & echo $! >> {p}; echo $$ >> {p}; wait",
        p = pids.display()
    );
    let out = saferun(["-t", "0.5", "sh", "-c", &script]).run();
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(5));
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 3, "{out}");
    let all_gone = eventually(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    cleanup(&pids);
    assert!(all_gone, "survivors among {pids:?}\n{out}");
}

#[test]
fn kill_reaches_the_whole_tree_too() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "trap '' TERM; sh -c 'trap \"\" TERM; sleep 100' & echo $! > {p}; sleep 100; wait",
        p = pids.display()
    );
    let out = saferun(["-t", "0.3", "-k", "0.3", "sh", "-c", &script]).run();
    out.assert_code(137)
        .assert_faster_than(Duration::from_secs(5));
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 1, "the TERM-ignoring child was started\n{out}");
    let all_gone = eventually(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    cleanup(&pids);
    assert!(all_gone, "survivors among {pids:?}\n{out}");
}

#[test]
fn stopped_command_still_times_out() {
    let out = saferun(["-t", "0.3", "sh", "-c", "kill -STOP $$; sleep 10"]).run();
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(4));
}

#[test]
fn kill_after_zero_never_escalates() {
    // The command ignores TERM for a while, then leaves on its own: no KILL was sent.
    let script = "trap 'echo got-term; sleep 1; exit 3' TERM; sleep 10 & wait";
    let out = saferun(["-t", "0.2", "-k", "0", "-p", "sh", "-c", script]).run();
    out.assert_code(3).assert_stdout("got-term\n");
}

#[test]
fn idle_timeout_fires_on_silence() {
    let out = saferun(["--idle-timeout", "0.5", "sh", "-c", "echo hello; sleep 10"]).run();
    out.assert_code(124)
        .assert_stdout("hello\n")
        .assert_stderr_contains("no output for 500ms")
        .assert_faster_than(Duration::from_secs(5));
}

#[test]
fn idle_timeout_spares_a_chatty_command() {
    // Three seconds in all, twice the limit; gaps of 0.1 s against a limit of 1.5 s,
    // which a busy machine cannot stretch that far.
    let script = "i=0; while [ $i -lt 30 ]; do echo $i; sleep 0.1; i=$((i+1)); done";
    let out = saferun(["--idle-timeout", "1.5", "sh", "-c", script]).run();
    out.assert_code(0);
    assert_eq!(out.stdout_text().lines().count(), 30, "{out}");
}

#[test]
fn stderr_counts_as_output_too() {
    // Silence on stdout for three seconds, twice the limit: only the stderr lines,
    // 0.1 s apart, keep the command alive.
    let script = "i=0; while [ $i -lt 30 ]; do echo $i >&2; sleep 0.1; i=$((i+1)); done";
    saferun(["--idle-timeout", "1.5", "sh", "-c", script])
        .run()
        .assert_code(0);
}

#[test]
fn huge_and_tiny_durations() {
    saferun(["-t", "inf", "true"]).run().assert_code(0);
    saferun(["-t", "99999999999d", "-k", "1e300", "true"])
        .run()
        .assert_code(0);
    // A tiny timeout is a timeout, not "no limit".
    saferun(["-t", "1e-9", "sleep", "10"])
        .run()
        .assert_code(124);
    saferun(["-t", "0", "sh", "-c", "sleep 0.2; exit 5"])
        .run()
        .assert_code(5);
}

#[test]
fn deadline_is_exported() {
    let out = saferun(["-t", "60", "sh", "-c", "echo $SAFERUN_DEADLINE"]).run();
    out.assert_code(0);
    let value: f64 = out.stdout_text().trim().parse().expect("a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        value > now + 50.0 && value < now + 61.0,
        "{value} vs {now}\n{out}"
    );
}

#[test]
fn nested_saferun_stops_the_inner_command_first() {
    let inner = format!("{} -t 60 sleep 100; echo inner-status=$?", util::BIN);
    let out = saferun(["-t", "2", "sh", "-c", &inner]).run();
    out.assert_code(0)
        .assert_stdout("inner-status=124\n")
        .assert_stderr_contains("enclosing saferun's deadline")
        .assert_faster_than(Duration::from_secs(5));
    assert!(
        !out.stderr_text().contains("timed out after 2s"),
        "the outer limit must not fire\n{out}"
    );
}

#[test]
fn an_outer_deadline_already_past_still_signals_and_kills() {
    // Every stage is due at once: the command must still get TERM and KILL, not be
    // left running while saferun reports it gave up. (It is killed before it can start
    // anything of its own: the whole tree is the next test's.)
    let dir = temp_dir();
    let report = dir.path().join("report.json");
    let out = saferun([
        "-t",
        "5",
        "--report",
        report.to_str().unwrap(),
        "sleep",
        "100",
    ])
    .env("SAFERUN_DEADLINE", "1000000000")
    .run();
    let code = out.code();
    assert!(code == Some(124) || code == Some(137), "{out}");
    let report = util::read_report(&report);
    let sent: Vec<&str> = report["signals_sent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["signal"].as_str())
        .collect();
    assert!(
        sent.contains(&"TERM") && sent.contains(&"KILL"),
        "{report:#}"
    );
    assert_eq!(report["unkillable"], serde_json::json!([]), "{report:#}");
}

#[test]
fn an_outer_deadline_close_ahead_stops_the_whole_tree_in_time() {
    // Two seconds left to an enclosing deadline: timeout, grace and linger are fitted
    // into them, and a TERM-ignoring tree is still stopped, KILL included, before it.
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "trap '' TERM; sh -c 'trap \"\" TERM; sleep 100' & echo $! > {}; wait",
        pids.display()
    );
    let deadline = std::time::SystemTime::now() + Duration::from_secs(2);
    let since = deadline.duration_since(std::time::UNIX_EPOCH).unwrap();
    let out = saferun(["-t", "60", "sh", "-c", &script])
        .env(
            "SAFERUN_DEADLINE",
            &format!("{}.{:06}", since.as_secs(), since.subsec_micros()),
        )
        .run();
    let pids = read_pids(&pids);
    let all_gone = eventually(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    cleanup(&pids);
    out.assert_code(137)
        .assert_stderr_contains("enclosing saferun's deadline")
        .assert_faster_than(Duration::from_secs(4));
    assert_eq!(pids.len(), 1, "the child was started\n{out}");
    assert!(all_gone, "survivors among {pids:?}\n{out}");
}

#[test]
fn foreground_times_out_the_command_alone() {
    // GNU timeout --foreground: "children of COMMAND will not be timed out". What
    // outlives the command is then the leftovers policy's: named by default...
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 30 >/dev/null 2>&1 & echo $! > {}; exec sleep 100",
        pids.display()
    );
    let out = saferun(["-f", "-t", "0.5", "sh", "-c", &script]).run();
    let child = read_pids(&pids);
    let survived = child.iter().all(|p| alive(*p));
    cleanup(&child);
    out.assert_code(124)
        .assert_stderr_contains("outlived the command")
        .assert_faster_than(Duration::from_secs(5));
    assert_eq!(child.len(), 1, "{out}");
    assert!(survived, "the child must not be timed out\n{out}");

    // ... and killed with --kill-leftovers.
    let out = saferun(["-f", "-t", "0.5", "--kill-leftovers", "sh", "-c", &script]).run();
    let child = read_pids(&pids);
    let gone = eventually(Duration::from_secs(2), || child.iter().all(|p| !alive(*p)));
    cleanup(&child);
    out.assert_code(124);
    assert!(gone, "--kill-leftovers stops it\n{out}");
}

#[test]
fn in_a_new_pid_namespace_with_the_old_proc_nothing_else_is_taken_for_the_commands() {
    // Without --mount-proc, /proc shows the parent namespace: its pids are not saferun's
    // (saferun is pid 1 here), so nothing there may be counted, waited for or named.
    if !util::can_unshare() {
        return;
    }
    let child = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            util::BIN,
            "-t",
            "0.3",
            "-v",
            "sleep",
            "10",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let out = util::wait_bounded(child, Duration::from_secs(30)).expect("finished");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for processes that are not its own: {:?}\n{stderr}",
        started.elapsed()
    );
    assert!(!stderr.contains("KILL"), "{stderr}");
}
