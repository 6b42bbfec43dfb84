//! A container's init: saferun as PID 1 of a new PID namespace (`unshare --pid --fork
//! --mount-proc`, as root), and `--init` anywhere.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{BIN, can_unshare, eventually, saferun, temp_dir, wait_bounded};

/// saferun as PID 1 of a new PID namespace with its own /proc.
fn in_namespace(args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", BIN])
        .args(args)
        .env_remove("SAFERUN_DEADLINE")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The pid (outside) of `unshare`'s child: saferun, PID 1 inside.
fn init_pid(unshare: u32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap_or_default();
    children.split_whitespace().next()?.parse().ok()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn as_pid_1_orphans_are_reaped_and_what_is_left_is_stopped_gracefully() {
    if !can_unshare() {
        return;
    }
    // Orphans that exit (zombies unless PID 1 reaps them), a setsid'd escapee that
    // stops on TERM, and one that ignores TERM.
    let script = "for i in 1 2 3; do (sleep 0.1 &); done; \
        setsid sh -c 'trap \"echo escapee-got-term; exit 0\" TERM; while :; do sleep 0.05; done' & \
        sh -c 'trap \"\" TERM; exec sleep 300' & \
        sleep 0.6; echo zombies: $(cut -d' ' -f3 /proc/[0-9]*/stat | grep -c Z); echo main-done";
    let started = Instant::now();
    let child = in_namespace(&["-k", "1", "--", "sh", "-c", script])
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(60)).expect("ends");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("zombies: 0\n"),
        "every orphan reaped\n{stdout}"
    );
    assert!(
        stdout.contains("escapee-got-term"),
        "a graceful stop first\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("saferun: pid") && stderr.contains("(sleep 300) outlived the command"),
        "what is left is named\n{stderr}"
    );
    assert!(
        stderr.contains("sending KILL to pid") && stderr.contains("(sleep 300)"),
        "what ignored TERM is KILLed by name\n{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_term_from_outside_reaches_every_process_as_docker_stop_sends_it() {
    if !can_unshare() {
        return;
    }
    let dir = temp_dir();
    let (ready, marker) = (dir.path().join("ready"), dir.path().join("marker"));
    let script = format!(
        "trap 'echo command-got-term; exit 0' TERM; \
         setsid sh -c 'trap \"echo escapee-got-term >> {marker}; exit 0\" TERM; while :; do sleep 0.05; done' & \
         echo ready > {ready}; while :; do sleep 0.05; done",
        marker = marker.display(),
        ready = ready.display()
    );
    let child = in_namespace(&["--", "sh", "-c", &script]).spawn().unwrap();
    assert!(eventually(Duration::from_secs(10), || ready.exists()));
    let init = init_pid(child.id()).expect("saferun runs in the namespace");
    // SAFETY: kill(2) on the process this test started (through unshare).
    unsafe {
        libc::kill(init, libc::SIGTERM);
    }
    let out = wait_bounded(child, Duration::from_secs(30)).expect("ends after TERM");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the command's own status\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("command-got-term"), "{stdout}\n{stderr}");
    assert!(
        eventually(Duration::from_secs(2), || marker.exists()),
        "the setsid'd escapee got TERM too\n{stderr}"
    );
}

#[test]
fn remap_exit_turns_a_clean_term_stop_into_success() {
    if !can_unshare() {
        return;
    }
    for (args, expected) in [
        (vec!["--", "sleep", "100"], 143),
        (
            vec![
                "--remap-exit",
                "143=0",
                "--remap-exit",
                "1=2",
                "--",
                "sleep",
                "100",
            ],
            0,
        ),
    ] {
        let child = in_namespace(&args).spawn().unwrap();
        let pid = child.id();
        assert!(eventually(Duration::from_secs(10), || {
            init_pid(pid).is_some_and(|init| {
                std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
                    .is_ok_and(|c| !c.trim().is_empty())
            })
        }));
        // SAFETY: as above.
        unsafe {
            libc::kill(init_pid(pid).unwrap(), libc::SIGTERM);
        }
        let out = wait_bounded(child, Duration::from_secs(30)).expect("ends after TERM");
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: PID 1 cannot die of a signal; it exits 128+N\n{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn limits_and_the_report_work_as_pid_1() {
    if !can_unshare() {
        return;
    }
    let dir = temp_dir();
    let report = dir.path().join("r.json");
    let child = in_namespace(&[
        "-t",
        "0.5",
        "--report",
        report.to_str().unwrap(),
        "--",
        "sleep",
        "10",
    ])
    .spawn()
    .unwrap();
    let out = wait_bounded(child, Duration::from_secs(30)).expect("ends");
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    let json = util::read_report(Path::new(&report));
    assert_eq!(json["end_reason"], "timeout");
}

#[test]
fn init_anywhere_stops_what_outlives_the_command() {
    let out = saferun([
        "--init",
        "-k",
        "2",
        "--",
        "sh",
        "-c",
        "sleep 301 & echo started",
    ])
    .run();
    out.assert_code(0).assert_stdout("started\n");
    out.assert_stderr_contains("(sleep 301) outlived the command; stopping it");
    out.assert_faster_than(Duration::from_secs(10));
    let left = Command::new("pgrep")
        .args(["-f", "sleep 301"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "nothing left running");
}

#[test]
fn bad_remap_is_refused() {
    let out = saferun(["--remap-exit", "143", "--", "true"]).run();
    out.assert_code(125);
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
    out.assert_stderr_contains("FROM=TO");
}
