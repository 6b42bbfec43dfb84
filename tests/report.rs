//! The JSON report for every way a run can end, and the timeout diagnosis.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::{cleanup, read_pids, saferun, temp_dir};

fn report_of(args: &[&str]) -> (util::Output, Value) {
    let dir = temp_dir();
    let path = dir.path().join("report.json");
    let mut full = vec!["--report", path.to_str().unwrap()];
    full.extend_from_slice(args);
    let out = saferun(&full).run();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no report\n{out}"));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (out, value)
}

#[test]
fn exited() {
    let (out, r) = report_of(&["sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    out.assert_code(3);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["end_reason"], "exited");
    assert_eq!(r["exit_status"], 3);
    assert_eq!(r["command"]["exit_code"], 3);
    assert_eq!(
        r["argv"],
        serde_json::json!(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    );
    assert_eq!(r["streams"]["stdout"]["bytes"], 6);
    assert_eq!(r["streams"]["stderr"]["bytes"], 5);
    assert_eq!(r["streams"]["stdout"]["end"], "eof");
    assert!(r["pid"].as_i64().unwrap() > 1);
    assert!(r["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(r["rusage"]["max_rss_kib"].as_i64().unwrap() > 0, "{r:#}");
    assert_eq!(r["signals_sent"], serde_json::json!([]));
}

#[test]
fn signaled() {
    let (out, r) = report_of(&["sh", "-c", "kill -TERM $$"]);
    out.assert_signal(libc::SIGTERM);
    assert_eq!(r["end_reason"], "signaled");
    assert_eq!(r["command"]["signal"], "TERM");
    assert_eq!(r["exit_status"], 128 + libc::SIGTERM);
}

#[test]
fn timeout_with_signals_and_times() {
    let (out, r) = report_of(&[
        "-t",
        "0.3",
        "-k",
        "0.3",
        "sh",
        "-c",
        "trap '' TERM; sleep 10",
    ]);
    out.assert_code(137);
    assert_eq!(r["end_reason"], "timeout");
    assert_eq!(r["exit_status"], 137);
    let sent: Vec<&str> = r["signals_sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signal"].as_str().unwrap())
        .collect();
    assert_eq!(sent.first(), Some(&"TERM"), "{r:#}");
    assert!(sent.contains(&"KILL"), "{r:#}");
    let first_at = r["signals_sent"][0]["at"].as_f64().unwrap();
    assert!((0.25..2.0).contains(&first_at), "{r:#}");
    assert!(!r["diagnosis"].as_array().unwrap().is_empty(), "{r:#}");
}

#[test]
fn idle() {
    let (out, r) = report_of(&["--idle-timeout", "0.3", "sleep", "10"]);
    out.assert_code(124);
    assert_eq!(r["end_reason"], "idle");
}

#[test]
fn cancelled() {
    let dir = temp_dir();
    let path = dir.path().join("report.json");
    let ready = dir.path().join("ready");
    let script = format!("echo $$ > {}; sleep 100", ready.display());
    let running = saferun(["--report", path.to_str().unwrap(), "sh", "-c", &script]).start();
    assert!(util::eventually(Duration::from_secs(10), || !read_pids(
        &ready
    )
    .is_empty()));
    running.signal(libc::SIGTERM);
    running.wait().assert_signal(libc::SIGTERM);
    let r = util::read_report(&path);
    assert_eq!(r["end_reason"], "cancelled");
    assert_eq!(r["signals_sent"][0]["why"], "cancelled");
}

#[test]
fn not_found_still_writes_a_report() {
    let (out, r) = report_of(&["no-such-command-xyz"]);
    out.assert_code(127);
    assert_eq!(r["exit_status"], 127);
    assert!(r["errors"][0].as_str().unwrap().contains("not found"));
}

#[test]
fn a_refused_run_still_writes_its_report() {
    for args in [
        &["-o", "/nonexistent/dir/out", "true"][..],
        // A usage error, and a file that would be refused too: the report still says so.
        &["-o", "/nonexistent/dir/out", "--bogus", "true"],
        &["--kill-leftovers", "--leftovers", "warn", "true"],
        &["-t", "5M", "true"],
        &["--stdin-file", "/", "true"],
    ] {
        let (out, r) = report_of(args);
        out.assert_code(125);
        assert_eq!(r["exit_status"], 125, "{r:#}");
        assert_eq!(r["end_reason"], "failed", "{r:#}");
        assert_eq!(r["pid"], Value::Null, "{r:#}");
        let error = r["errors"][0].as_str().unwrap_or_default();
        assert!(
            out.stderr_text().contains(error) && !error.is_empty(),
            "the report says what stderr says\n{out}\n{r:#}"
        );
    }
}

#[test]
fn a_report_that_would_overwrite_a_named_file_is_not_written() {
    let dir = temp_dir();
    let file = dir.path().join("out");
    std::fs::write(&file, "precious").unwrap();
    let path = file.to_str().unwrap();
    saferun(["-o", path, "--report", path, "true"])
        .run()
        .assert_code(125);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
}

#[test]
fn report_to_stderr() {
    let out = saferun(["--report", "-", "true"]).run();
    out.assert_code(0);
    let json_start = out.stderr_text().find('{').expect("json on stderr");
    let r: Value = serde_json::from_str(&out.stderr_text()[json_start..]).unwrap();
    assert_eq!(r["end_reason"], "exited");
}

#[test]
fn unwritable_report_path_is_a_usage_error() {
    let out = saferun(["--report", "/nonexistent/dir/r.json", "true"]).run();
    out.assert_code(125)
        .assert_stderr_contains("saferun: --report");
}

#[test]
fn diagnosis_shows_a_full_pipe_writer_and_a_sleeper() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    // `yes` writes into a pipe whose reader (`sleep`) never reads: it blocks on a full pipe.
    let script = format!(
        "yes | sleep 100 & sleep 100 & echo $! > {}; sleep 100",
        pids.display()
    );
    let (out, r) = report_of(&["-t", "1", "-v", "sh", "-c", &script]);
    cleanup(&read_pids(&pids));
    out.assert_code(124)
        .assert_stderr_contains("process tree at the timeout")
        .assert_stderr_contains("blocked writing a full pipe");
    let tree = r["diagnosis"].as_array().unwrap();
    let blocked = |command: &str| {
        tree.iter()
            .find(|p| p["command"] == command)
            .map(|p| p["blocked_on"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{command} not in {r:#}"))
    };
    assert!(
        blocked("yes").starts_with("blocked writing a full pipe"),
        "{r:#}"
    );
    assert_eq!(blocked("sleep 100"), "sleeping", "{r:#}");
}

#[test]
fn on_timeout_runs_before_the_signal_with_its_environment() {
    let script = "trap 'echo term-after-hook; exit 1' TERM; sleep 100 & wait";
    let hook = "echo hook pid=$SAFERUN_PID pgid=$SAFERUN_PGID reason=$SAFERUN_REASON; \
                kill -0 $SAFERUN_PID && echo command-alive";
    let (out, r) = report_of(&["-t", "0.3", "--on-timeout", hook, "sh", "-c", script]);
    out.assert_code(124).assert_stdout("term-after-hook\n");
    let pid = r["pid"].as_i64().unwrap();
    let expected = format!("hook pid={pid} pgid={pid} reason=timeout\ncommand-alive\n");
    out.assert_stderr_contains(&expected);
    assert_eq!(r["on_timeout"]["output"], expected.as_str());
    assert_eq!(r["on_timeout"]["exit_code"], 0);
}

#[test]
fn on_timeout_is_bounded() {
    let (out, r) = report_of(&[
        "-t",
        "0.2",
        "--on-timeout",
        "echo started; sleep 100",
        "--on-timeout-limit",
        "0.5",
        "sleep",
        "100",
    ]);
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(5))
        .assert_stderr_contains("--on-timeout did not finish within 500ms");
    assert_eq!(r["on_timeout"]["timed_out"], true);
    assert_eq!(r["on_timeout"]["output"], "started\n");
}
