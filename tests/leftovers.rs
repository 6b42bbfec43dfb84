//! Processes that outlive the command: pipes held open, escapees, zombies.

mod util;

use std::time::Duration;

use util::{alive, cleanup, eventually, read_pids, saferun, temp_dir};

#[test]
fn background_child_holding_stdout_is_named_after_linger() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 30 & echo $! > {}; echo started; exit 3",
        pids.display()
    );
    let out = saferun(["--linger", "0.5", "sh", "-c", &script]).run();
    let pids = read_pids(&pids);
    cleanup(&pids);
    out.assert_code(3)
        .assert_stdout("started\n")
        .assert_faster_than(Duration::from_secs(3));
    let holder = pids[0];
    out.assert_stderr_contains(&format!(
        "saferun: stdout still held by pid {holder} (sleep 30)"
    ))
    .assert_stderr_contains(&format!(
        "saferun: stderr still held by pid {holder} (sleep 30)"
    ))
    .assert_stderr_contains(&format!("pid {holder} (sleep 30) outlived the command"));
}

#[test]
fn output_written_by_a_lingering_child_is_delivered() {
    // Within --linger (ten times the child's delay, for a busy machine).
    let script = "(sleep 0.3; echo late) & echo early";
    let out = saferun(["--linger", "3", "sh", "-c", script]).run();
    out.assert_code(0).assert_stdout("early\nlate\n");
    assert!(out.saferun_lines().is_empty(), "{out}");
}

#[test]
fn double_forked_term_ignoring_daemon_does_not_survive_a_timeout() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let report = dir.path().join("report.json");
    // The daemon leaves the group (setsid), is orphaned (double fork), ignores TERM and
    // keeps stdout open.
    let daemon = format!(
        "(setsid sh -c 'trap \"\" TERM; echo $$ > {p}; exec sleep 100' &); sleep 100",
        p = pids.display()
    );
    let out = saferun([
        "-t",
        "0.5",
        "-k",
        "0.5",
        "--report",
        report.to_str().unwrap(),
        "sh",
        "-c",
        &daemon,
    ])
    .run();
    let pids = read_pids(&pids);
    let gone = eventually(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    cleanup(&pids);
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(5));
    assert_eq!(pids.len(), 1, "{out}");
    assert!(gone, "daemon {pids:?} survived\n{out}");
    let report = util::read_report(&report);
    let named = |list: &serde_json::Value| {
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pids[0] && p["command"] == "sleep 100")
    };
    assert!(named(&report["escaped"]), "{report:#}");
    assert!(named(&report["diagnosis"]), "{report:#}");
}

#[test]
fn kill_leftovers_stops_what_the_command_left() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 100 >/dev/null 2>&1 & echo $! > {p}; setsid sleep 100 >/dev/null 2>&1 & echo $! >> {p}",
        p = pids.display()
    );
    let out = saferun(["--kill-leftovers", "sh", "-c", &script]).run();
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 2, "both were started\n{out}");
    let gone = eventually(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    cleanup(&pids);
    out.assert_code(0)
        .assert_faster_than(Duration::from_secs(3));
    assert!(gone, "{pids:?} survived\n{out}");
}

#[test]
fn leftovers_fail_has_its_own_status() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!("sleep 100 >/dev/null 2>&1 & echo $! > {}", pids.display());
    let out = saferun(["--leftovers=fail", "sh", "-c", &script]).run();
    let pids = read_pids(&pids);
    cleanup(&pids);
    out.assert_code(122)
        .assert_stderr_contains(&format!("pid {} (sleep 100) outlived the command", pids[0]));
}

#[test]
fn leftovers_warn_leaves_them_running() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!("sleep 100 >/dev/null 2>&1 & echo $! > {}", pids.display());
    let out = saferun(["sh", "-c", &script]).run();
    let pids = read_pids(&pids);
    let still = alive(pids[0]);
    cleanup(&pids);
    out.assert_code(0)
        .assert_stderr_contains("outlived the command");
    assert!(still, "warn must not kill\n{out}");
}

#[test]
fn orphans_are_reaped_while_the_command_runs() {
    // Ten short-lived orphans are re-parented to saferun; none may stay a zombie.
    let script = "i=0; while [ $i -lt 10 ]; do sh -c 'sleep 0.05 &'; i=$((i+1)); done; \
                  sleep 0.8; ps -o stat= --ppid $PPID | grep -c Z; true";
    let out = saferun(["sh", "-c", script]).run();
    out.assert_code(0).assert_stdout("0\n");
}

#[test]
fn a_group_member_gets_its_grace_after_the_command_dies() {
    // The command dies of TERM at once; a member of its group cleans up for half a
    // second on TERM. It must be allowed to (no KILL before --kill-after), and saferun
    // waits for it.
    let script = "sh -c 'trap \"sleep 0.5; echo cleaned; exit 0\" TERM; sleep 100 & wait' & \
                  sleep 100";
    let out = saferun(["-t", "0.3", "-k", "10", "sh", "-c", script]).run();
    out.assert_code(124)
        .assert_stdout("cleaned\n")
        .assert_faster_than(Duration::from_secs(5));
    assert!(!out.stderr_text().contains("KILL"), "{out}");
}

#[test]
fn leftovers_whose_parents_exit_meanwhile_are_all_named() {
    // Sixty daemons whose parents exit at staggered moments, some while saferun is
    // looking for leftovers: each must still be found (it has become saferun's child).
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let report = dir.path().join("report.json");
    let script = format!(
        "i=0; while [ $i -lt 60 ]; do \
           ( setsid sleep 100 >/dev/null 2>&1 & echo $! >> {p}; sleep 0.0$((i % 10)); exit ) \
             >/dev/null 2>&1 & \
           i=$((i+1)); \
         done; \
         while [ $(cat {p} 2>/dev/null | wc -l) -lt 60 ]; do sleep 0.005; done",
        p = pids.display()
    );
    let out = saferun([
        "--leftovers=fail",
        "--linger",
        "0.2",
        "--report",
        report.to_str().unwrap(),
        "sh",
        "-c",
        &script,
    ])
    .run();
    let pids = read_pids(&pids);
    cleanup(&pids);
    out.assert_code(122);
    assert_eq!(pids.len(), 60, "{out}");
    let report = util::read_report(&report);
    let named: Vec<i64> = report["leftovers"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .collect();
    let missed: Vec<&i32> = pids
        .iter()
        .filter(|pid| !named.contains(&i64::from(**pid)))
        .collect();
    assert!(missed.is_empty(), "not named: {missed:?}\n{out}");
}

#[test]
fn children_saferun_had_before_the_run_are_not_the_commands() {
    // A shell that leaves a background child and then execs saferun hands that child
    // to saferun; it is not the command's, and no policy may touch or count it.
    let dir = temp_dir();
    let pid_file = dir.path().join("pid");
    for flags in [
        "--leftovers=fail -t 10 true",
        "--kill-leftovers true",
        "-t 0.3 sleep 10",
    ] {
        let script = format!(
            "setsid sleep 30 >/dev/null 2>&1 & echo $! > {}; exec {} {flags}",
            pid_file.display(),
            util::BIN
        );
        let (code, stderr, _, survived) = after_the_shell(&script, &pid_file);
        assert!(
            survived,
            "{flags}: the earlier child must be left alone\n{stderr}"
        );
        assert!(
            !stderr.contains("outlived"),
            "{flags}: not a leftover\n{stderr}"
        );
        let want = if flags.starts_with("-t 0.3") { 124 } else { 0 };
        assert_eq!(code, Some(want), "{flags}\n{stderr}");
    }
}

#[test]
fn an_orphan_of_a_child_saferun_had_before_is_not_the_commands() {
    // A background job of the shell that exec'd saferun leaves a grandchild, orphaned
    // while saferun runs: it comes to saferun (the subreaper), but it is not the
    // command's, and a timeout must not touch it.
    let dir = temp_dir();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "sh -c 'sleep 30 >/dev/null 2>&1 & echo $! > {}; sleep 0.3' & exec {} -t 1 -v sleep 3",
        pid_file.display(),
        util::BIN
    );
    let (code, stderr, pids, survived) = after_the_shell(&script, &pid_file);
    assert_eq!(code, Some(124), "{stderr}");
    assert_eq!(pids.len(), 1, "{stderr}");
    assert!(survived, "{stderr}");
    assert!(!stderr.contains("left the process group"), "{stderr}");
}

/// Runs `script` (a shell that leaves a child behind and then execs saferun), and
/// returns saferun's status, its stderr, the pids the script wrote to `pid_file`, and
/// whether they all still live (they are killed before this returns).
fn after_the_shell(
    script: &str,
    pid_file: &std::path::Path,
) -> (Option<i32>, String, Vec<i32>, bool) {
    let child = std::process::Command::new("bash")
        .args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = util::wait_bounded(child, Duration::from_secs(30)).expect("finished");
    let pids = read_pids(pid_file);
    let survived = pids.iter().all(|p| alive(*p));
    cleanup(&pids);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, pids, survived)
}
