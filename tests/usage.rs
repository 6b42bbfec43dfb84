//! Bad input: one `saferun:` line on stderr, status 125, and nothing run.

mod util;

use util::{saferun, temp_dir};

#[test]
fn malformed_values_are_refused_before_running() {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let cases: &[(&[&str], &str)] = &[
        (&["-t", "5M"], "--timeout"),
        (&["--timeout", "3y"], "--timeout"),
        (&["-t", "abc"], "--timeout"),
        (&["-t", "-1"], "--timeout"),
        (&["--idle-timeout", "1x"], "--idle-timeout"),
        (&["-k", "soon"], "--kill-after"),
        (&["--linger", "1m30"], "--linger"),
        (&["-s", "NOPE"], "--signal"),
        (&["-s", "99"], "--signal"),
        (&["--leftovers", "maybe"], "--leftovers"),
        (&["--bogus-flag"], "--bogus-flag"),
    ];
    for (flags, option) in cases {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["sh", "-c", &touch]);
        let out = saferun(&args).run();
        out.assert_code(125);
        let stderr = out.stderr_text();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected\n{out}");
        assert!(lines[0].starts_with("saferun: "), "{out}");
        assert!(lines[0].contains(option), "names the option\n{out}");
        assert!(!marker.exists(), "the command must not run\n{out}");
    }
}

#[test]
fn error_names_value_and_accepted_form() {
    let out = saferun(["-t", "5M", "true"]).run();
    out.assert_code(125)
        .assert_stderr_contains("'5M'")
        .assert_stderr_contains("ms, s, m, h or d");
    let out = saferun(["-s", "FOO", "true"]).run();
    out.assert_code(125)
        .assert_stderr_contains("FOO")
        .assert_stderr_contains("TERM");
}

#[test]
fn missing_command() {
    let out = saferun(["-t", "5"]).run();
    out.assert_code(125)
        .assert_stderr_contains("missing command");
    assert_eq!(out.stderr_text().lines().count(), 1, "{out}");
}

#[test]
fn conflicting_stdin_sources() {
    let out = saferun(["--no-stdin", "--input", "x", "true"]).run();
    out.assert_code(125);
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
}

#[test]
fn unopenable_stdin_file_is_125_and_nothing_runs() {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let out = saferun([
        "--stdin-file",
        "/nonexistent/file",
        "touch",
        marker.to_str().unwrap(),
    ])
    .run();
    out.assert_code(125)
        .assert_stderr_contains("saferun: --stdin-file")
        .assert_stderr_contains("/nonexistent/file");
    assert!(!marker.exists());
}

#[test]
fn help_and_version_succeed() {
    let out = saferun(["--help"]).run();
    out.assert_code(0);
    assert!(out.stdout_text().contains("--timeout"), "{out}");
    saferun(["--version"]).run().assert_code(0);
}

#[test]
fn options_after_the_command_belong_to_it() {
    saferun(["echo", "-t", "5", "--help"])
        .run()
        .assert_code(0)
        .assert_stdout("-t 5 --help\n");
    saferun(["--", "echo", "--timeout"])
        .run()
        .assert_code(0)
        .assert_stdout("--timeout\n");
}

#[test]
fn a_usage_error_with_an_unwritable_stderr_is_still_125() {
    // Not a panic (and so an abort) on the failed write.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = std::process::Command::new(util::BIN)
        .arg("--no-such-flag")
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(125));
}
