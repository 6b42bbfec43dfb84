//! Bad input: one `saferun:` line on stderr, status 125, and nothing run.

mod util;

use std::path::Path;

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

/// Runs saferun with `args` and checks the refusal: status 125, one `saferun:` line
/// naming `needle`, and the marker command never ran.
#[track_caller]
fn refused(args: &[&str], needle: &str) -> util::Output {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend(["sh", "-c", &touch]);
    let out = saferun(&argv).run();
    out.assert_code(125).assert_stderr_contains(needle);
    assert_eq!(out.stderr_text().lines().count(), 1, "one line\n{out}");
    assert!(
        out.stderr_text().starts_with("saferun: "),
        "a saferun line\n{out}"
    );
    assert!(!marker.exists(), "the command must not run\n{out}");
    out
}

#[test]
fn options_that_contradict_each_other_or_do_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--leftovers", "warn", "--kill-leftovers"],
            "--kill-leftovers",
        ),
        (
            &["--leftovers=fail", "--kill-leftovers"],
            "--kill-leftovers",
        ),
        (&["--on-max-output", "kill"], "--on-max-output"),
        (&["--on-max-output=drop"], "--on-max-output"),
        (&["--append"], "--append"),
        (&["--tee"], "--tee"),
        (&["--merge", "-e", "/dev/null"], "--merge"),
        (&["--on-timeout-limit", "3s"], "--on-timeout-limit"),
        (&["-p"], "--preserve-status"),
        (&["--on-timeout", "true"], "--on-timeout"),
        (&["-s", "KILL"], "--signal"),
        (
            &["--quiet-unless-fail", "-o", "/dev/null", "-e", "/dev/null"],
            "--quiet-unless-fail",
        ),
        (&["--no-stdin", "--input", "x"], "--no-stdin"),
    ];
    for (flags, needle) in cases {
        refused(flags, needle);
    }
    // The same options where they do something are accepted.
    for flags in [
        &["--leftovers", "kill", "--kill-leftovers"][..],
        &["-t", "0", "-p"],
        &["-s", "KILL", "--kill-leftovers"],
        &["--idle-timeout", "5", "-s", "INT", "--on-timeout", "true"],
        &["--max-output", "1K", "--on-max-output", "kill"],
    ] {
        let mut args = flags.to_vec();
        args.push("true");
        saferun(&args).run().assert_code(0);
    }
}

#[test]
fn a_refused_run_touches_no_file() {
    let dir = temp_dir();
    let kept = dir.path().join("kept");
    let path = kept.to_str().unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    let link = link.to_str().unwrap();
    let fresh = dir.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink("/nonexistent/d/e", &dangling).unwrap();
    let dangling = dangling.to_str().unwrap();
    let to_fresh = dir.path().join("to-fresh");
    std::os::unix::fs::symlink(fresh, &to_fresh).unwrap();
    let to_fresh = to_fresh.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["-o", path, "-e", dangling],
        &["-o", path, "--report", dangling],
        &["-o", fresh, "-e", to_fresh],
        &["-o", path, "-e", path],
        &["-o", path, "-e", link],
        &["-o", path, "--report", link],
        &["--report", path, "-e", path],
        &["--stdin-file", path, "-o", link],
        &["-o", fresh, "-e", "/nonexistent/dir/x"],
        &["-e", fresh, "--report", "/nonexistent/dir/x"],
        &["-o", fresh, "--stdin-file", "/nonexistent/x"],
        &["-o", fresh, "--kill-leftovers", "--leftovers", "warn"],
        &["-o", fresh, "-t", "5M"],
    ];
    for flags in cases {
        std::fs::write(&kept, "precious").unwrap();
        let out = refused(flags, "saferun: ");
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            "precious",
            "truncated\n{out}"
        );
        assert!(!Path::new(fresh).exists(), "created\n{out}");
    }
    // /dev/stdout is the same file as -o when saferun's stdout is that file.
    std::fs::write(&kept, "precious").unwrap();
    let status = std::process::Command::new(util::BIN)
        .args(["-o", "/dev/stdout", "-e", path, "echo", "x"])
        .stdout(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&kept)
                .unwrap(),
        )
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(125));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
}

#[test]
fn devices_may_be_named_by_several_options() {
    saferun([
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
        "sh",
        "-c",
        "echo a; echo b >&2",
    ])
    .run()
    .assert_code(0)
    .assert_stdout("");
}

#[test]
fn stdin_file_that_is_a_directory() {
    let dir = temp_dir();
    refused(
        &["--stdin-file", dir.path().to_str().unwrap()],
        "is a directory",
    );
}

#[test]
fn an_unusable_tmpdir_is_refused_before_running() {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let out = saferun(["--quiet-unless-fail", "touch", marker.to_str().unwrap()])
        .env("TMPDIR", "/nonexistent/tmp")
        .run();
    out.assert_code(125).assert_stderr_contains("TMPDIR");
    assert!(!marker.exists());
}

#[test]
fn a_script_whose_interpreter_is_missing_says_so() {
    let dir = temp_dir();
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/nonexistent/interpreter -x\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = saferun([script.to_str().unwrap()]).run();
    out.assert_code(126)
        .assert_stderr_contains("'/nonexistent/interpreter'")
        .assert_stderr_contains("#!");
    assert!(!out.stderr_text().contains("not found: "), "{out}");
    // Found through PATH too.
    let out = saferun(["script"])
        .env("PATH", dir.path().to_str().unwrap())
        .run();
    out.assert_code(126)
        .assert_stderr_contains("'/nonexistent/interpreter'");
}

#[test]
fn a_directory_as_the_command_says_so() {
    let dir = temp_dir();
    saferun([dir.path().to_str().unwrap()])
        .run()
        .assert_code(126)
        .assert_stderr_contains("is a directory");
}

#[test]
fn a_fifo_is_not_waited_for_when_the_run_is_refused_anyway() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = saferun([
        "-o",
        fifo.to_str().unwrap(),
        "-e",
        dir.path().to_str().unwrap(),
        "true",
    ])
    .watchdog(std::time::Duration::from_secs(10))
    .run();
    out.assert_code(125);
}

#[test]
fn a_script_with_windows_line_endings_says_so() {
    let dir = temp_dir();
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/bin/sh\r\necho hi\r\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    saferun([script.to_str().unwrap()])
        .run()
        .assert_code(126)
        .assert_stderr_contains("carriage return");
}
