//! Every row of the exit-status table, against real commands.

mod util;

use std::time::Duration;

use util::{saferun, temp_dir};

#[test]
fn the_commands_own_status() {
    for code in [0, 1, 3, 42, 255] {
        saferun(["sh", "-c", &format!("exit {code}")])
            .run()
            .assert_code(code);
    }
}

#[test]
fn death_by_signal_is_passed_on_as_death_by_the_same_signal() {
    for (signal, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGKILL, "KILL"),
    ] {
        let out = saferun(["sh", "-c", &format!("kill -{name} $$")]).run();
        out.assert_signal(signal);
        assert!(
            out.saferun_lines().is_empty(),
            "the command's own death is not saferun's to explain\n{out}"
        );
    }
    // A core-dumping signal: saferun dies of it without dumping core itself.
    saferun(["sh", "-c", "kill -QUIT $$"])
        .run()
        .assert_signal(libc::SIGQUIT);
}

#[test]
fn timeout_is_124_with_one_line() {
    let out = saferun(["-t", "0.3", "sleep", "10"]).run();
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(5))
        .assert_stderr_contains("saferun: timed out after 300ms");
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
}

#[test]
fn command_that_handles_term_and_exits_zero_is_still_124() {
    let script = "trap 'exit 0' TERM; sleep 10 & wait";
    saferun(["-t", "0.3", "sh", "-c", script])
        .run()
        .assert_code(124);
}

#[test]
fn kill_needed_is_137() {
    let script = "trap '' TERM; sleep 10 & wait; sleep 10";
    let out = saferun(["-t", "0.3", "-k", "0.3", "sh", "-c", script]).run();
    out.assert_code(137)
        .assert_faster_than(Duration::from_secs(5))
        .assert_stderr_contains("sending KILL");
}

#[test]
fn preserve_status() {
    saferun(["-p", "-t", "0.2", "sleep", "10"])
        .run()
        .assert_code(128 + libc::SIGTERM);
    let script = "trap 'exit 7' TERM; sleep 10 & wait";
    saferun(["-p", "-t", "0.2", "sh", "-c", script])
        .run()
        .assert_code(7);
    saferun([
        "-p",
        "-t",
        "0.2",
        "-k",
        "0.2",
        "sh",
        "-c",
        "trap '' TERM; sleep 5",
    ])
    .run()
    .assert_code(137);
}

#[test]
fn custom_signal() {
    let out = saferun([
        "-s",
        "INT",
        "-t",
        "0.2",
        "sh",
        "-c",
        "trap 'exit 9' INT; sleep 10 & wait",
    ])
    .run();
    out.assert_code(124).assert_stderr_contains("sending INT");
    saferun(["-p", "-s", "KILL", "-t", "0.2", "sleep", "10"])
        .run()
        .assert_code(137);
}

#[test]
fn not_found_is_127() {
    let out = saferun(["no-such-command-anywhere"]).run();
    out.assert_code(127)
        .assert_stderr_contains("saferun: no-such-command-anywhere: command not found");
    saferun(["/no/such/path"]).run().assert_code(127);
}

#[test]
fn not_executable_is_126() {
    let dir = temp_dir();
    let file = dir.path().join("plain");
    std::fs::write(&file, "echo hi\n").unwrap();
    let out = saferun([file.to_str().unwrap()]).run();
    out.assert_code(126)
        .assert_stderr_contains("Permission denied");
    saferun(["/"]).run().assert_code(126);
}

#[test]
fn script_without_shebang_runs_through_sh() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let file = dir.path().join("script");
    std::fs::write(&file, "echo from-script; exit 4\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    saferun([file.to_str().unwrap()])
        .run()
        .assert_code(4)
        .assert_stdout("from-script\n");
}

#[test]
fn path_lookup_and_no_shell() {
    // `*` and `$HOME` reach the command untouched: nothing is interpreted by a shell.
    saferun(["echo", "*", "$HOME", "a b"])
        .run()
        .assert_code(0)
        .assert_stdout("* $HOME a b\n");
}
