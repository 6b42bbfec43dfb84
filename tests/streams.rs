//! Moving bytes: no deadlock at any volume, every byte delivered, stdin sources, and a
//! closed reader downstream.

mod util;

use std::time::Duration;

use util::{random_bytes, saferun, sha256, temp_dir};

const MIB: usize = 1 << 20;

#[test]
fn sixty_four_mib_on_all_three_streams_at_once() {
    let dir = temp_dir();
    let out_file = dir.path().join("out.bin");
    let err_file = dir.path().join("err.bin");
    let in_hash = dir.path().join("in.sha");
    let input = random_bytes(64 * MIB, 1);
    let out_data = random_bytes(64 * MIB, 2);
    let err_data = random_bytes(64 * MIB, 3);
    std::fs::write(&out_file, &out_data).unwrap();
    std::fs::write(&err_file, &err_data).unwrap();
    // stdout and stderr are written concurrently while stdin is still being read.
    let script = "cat \"$1\" >&2 & cat \"$2\" & sha256sum > \"$3\"; wait";
    let out = saferun([
        "-t",
        "120",
        "sh",
        "-c",
        script,
        "sh",
        err_file.to_str().unwrap(),
        out_file.to_str().unwrap(),
        in_hash.to_str().unwrap(),
    ])
    .stdin_bytes(input.clone())
    .watchdog(Duration::from_secs(120))
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr.len());
    assert_eq!(out.stdout.len(), out_data.len());
    assert_eq!(sha256(&out.stdout), sha256(&out_data));
    assert_eq!(out.stderr.len(), err_data.len());
    assert_eq!(sha256(&out.stderr), sha256(&err_data));
    let fed = std::fs::read_to_string(&in_hash).unwrap();
    assert_eq!(fed.split_whitespace().next(), Some(sha256(&input).as_str()));
}

#[test]
fn binary_bytes_pass_unchanged() {
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = saferun(["cat"]).stdin_bytes(data.clone()).run();
    out.assert_code(0);
    assert_eq!(out.stdout, data);
}

#[test]
fn command_that_never_reads_a_large_stdin() {
    let out = saferun(["sh", "-c", "echo done; exit 0"])
        .stdin_bytes(random_bytes(32 * MIB, 4))
        .run();
    out.assert_code(0)
        .assert_stdout("done\n")
        .assert_faster_than(Duration::from_secs(10));
    assert!(out.saferun_lines().is_empty(), "no error expected\n{out}");
}

#[test]
fn command_that_closes_stdin_early() {
    let out = saferun(["head", "-c", "10"])
        .stdin_bytes(random_bytes(16 * MIB, 5))
        .run();
    out.assert_code(0);
    assert_eq!(out.stdout.len(), 10);
    assert!(out.saferun_lines().is_empty(), "{out}");
}

#[test]
fn closed_reader_downstream_ends_like_a_plain_pipeline() {
    let plain = "yes | head -1; echo \"${PIPESTATUS[@]}\"";
    let wrapped = format!(
        "{} -- yes | head -1; echo \"${{PIPESTATUS[@]}}\"",
        util::BIN
    );
    let expected = saferun(["bash", "-c", plain]).run();
    let out = saferun(["bash", "-c", &wrapped]).run();
    out.assert_code(0)
        .assert_faster_than(Duration::from_secs(10));
    assert_eq!(out.stdout_text(), expected.stdout_text(), "{out}");
    assert_eq!(out.stdout_text(), "y\n141 0\n");
}

#[test]
fn closed_reader_with_timeout_still_reports_sigpipe() {
    let wrapped = format!(
        "{} -t 30 -- sh -c 'yes; exit 0' | head -c 5 >/dev/null; echo \"${{PIPESTATUS[@]}}\"",
        util::BIN
    );
    // `yes` dies of SIGPIPE, the shell exits with 0 afterwards: saferun reports the shell.
    let out = saferun(["bash", "-c", &wrapped]).run();
    out.assert_code(0).assert_stdout("0 0\n");
}

#[test]
fn input_string_is_fed_exactly() {
    saferun(["--input", "a\nb", "od", "-c"])
        .run()
        .assert_code(0)
        .assert_stdout("0000000   a  \\n   b\n0000003\n");
}

#[test]
fn no_stdin_gives_dev_null() {
    saferun(["--no-stdin", "sh", "-c", "cat; echo eof"])
        .stdin_bytes(b"ignored".to_vec())
        .run()
        .assert_code(0)
        .assert_stdout("eof\n");
}

#[test]
fn stdin_file_and_regular_file_stdin() {
    let dir = temp_dir();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, "line1\nline2\n").unwrap();
    saferun(["--stdin-file", file.to_str().unwrap(), "cat"])
        .run()
        .assert_stdout("line1\nline2\n");
    // A regular file is handed over as it is: the command can seek in it.
    saferun(["sh", "-c", "tail -n 1"])
        .stdin_file(&file)
        .run()
        .assert_stdout("line2\n");
}

#[test]
fn order_within_each_stream_is_kept() {
    let script = "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
    let out = saferun(["sh", "-c", script]).run();
    out.assert_code(0);
    let expected_out: String = (0..2000).map(|i| format!("out{i}\n")).collect();
    let expected_err: String = (0..2000).map(|i| format!("err{i}\n")).collect();
    assert_eq!(out.stdout_text(), expected_out);
    assert_eq!(out.stderr_text(), expected_err);
}

#[test]
fn a_slow_reader_gets_everything_even_after_linger() {
    // The reader starts reading two seconds after the command exited (linger is 0.2s,
    // a tenth of that, however slow the machine); nobody holds the pipe any more, so
    // saferun waits for the reader, not the clock.
    let script = format!(
        "{} --linger 0.2 -- head -c 3000000 /dev/zero | (sleep 2; wc -c); echo ${{PIPESTATUS[0]}}",
        util::BIN
    );
    let out = saferun(["bash", "-c", &script]).run();
    out.assert_code(0).assert_stdout("3000000\n0\n");
    assert!(!out.stderr_text().contains("held"), "{out}");
}

#[test]
fn a_stalled_reader_of_saferuns_own_stderr_does_not_stop_the_clock() {
    // saferun's stdout and stderr both go into a pipe nobody reads; the timeout message
    // itself cannot be written, yet saferun ends within timeout + kill-after + linger.
    let script = format!(
        "exec 3>&1; start=$(date +%s%N); ( {} -t 1 -k 1 --linger 0.5 -- yes 2>&1; \
         echo \"rc=$? ms=$(( ($(date +%s%N) - start) / 1000000 ))\" >&3 ) | sleep 8",
        util::BIN
    );
    let out = saferun(["bash", "-c", &script]).run();
    let text = out.stdout_text();
    let ms: u64 = text
        .trim()
        .rsplit("ms=")
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(text.starts_with("rc=124"), "{out}");
    assert!(ms < 5000, "saferun took {ms} ms\n{out}");
}

#[test]
fn a_non_blocking_stdin_is_fed_to_the_end() {
    // Callers such as Node.js may leave their pipe to saferun non-blocking: "nothing
    // yet" then reads as EAGAIN, which is not the end of the input.
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut command = Command::new(util::BIN);
    command
        .args(["--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: fcntl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let flags = libc::fcntl(0, libc::F_GETFL);
            libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"second\n").unwrap();
    drop(stdin);
    let out = util::wait_bounded(child, Duration::from_secs(20)).expect("saferun did not end");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
    assert_eq!(out.status.code(), Some(0));
}

/// Runs `sh -c SCRIPT` with `$SAFERUN` set, bounded, and returns its status and stderr.
fn shell(script: &str) -> (Option<i32>, String) {
    let child = std::process::Command::new("sh")
        .args(["-c", script])
        .env("SAFERUN", util::BIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = util::wait_bounded(child, Duration::from_secs(30)).expect("finished");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_or_stderr_is_closed_for_the_command_too() {
    // Without saferun `seq` fails writing to a closed stdout; through saferun it must
    // fail the same way, not write into nothing and succeed.
    let (direct, _) = shell("seq 3 >&-");
    let (through, stderr) = shell("\"$SAFERUN\" seq 3 >&-");
    assert_eq!(direct, Some(1));
    assert_eq!(through, direct, "{stderr}");
    assert!(stderr.contains("write error"), "{stderr}");
    let (direct, _) = shell("sh -c 'echo x >&2' 2>&-");
    let (through, _) = shell("\"$SAFERUN\" sh -c 'echo x >&2' 2>&-");
    assert_ne!(direct, Some(0));
    assert_eq!(through, direct, "the command's stderr is closed too");
    // A stream that goes to a file does not care.
    let dir = temp_dir();
    let file = dir.path().join("out");
    let (status, stderr) = shell(&format!("\"$SAFERUN\" -o {} seq 3 >&-", file.display()));
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n2\n3\n");
    // And a closed stdin is closed for the command.
    let (direct, _) = shell("sh -c 'read x' <&-");
    let (through, _) = shell("\"$SAFERUN\" sh -c 'read x' <&-");
    assert_ne!(direct, Some(0));
    assert_eq!(through, direct);
}

#[test]
fn a_parent_that_reads_only_after_saferun_ended_gets_64_kib_of_small_writes() {
    // A plain pipe holds 64 KiB of small writes: a parent may wait for the command
    // before reading that much (seed 004). Through saferun, on every output option, it
    // must not hang either: saferun must end with everything delivered into the pipe.
    let lines = 4096; // 16 bytes each: 64 KiB exactly
    let script =
        format!("i=0; while [ $i -lt {lines} ]; do printf '%015d\\n' $i; i=$((i+1)); done");
    let to_stderr = format!("{{ {script}; }} >&2");
    let cases: &[(&[&str], &str, usize)] = &[
        (&[], &script, 1),
        (&["--merge"], &to_stderr, 1),
        (&["-o", "/dev/stdout", "--tee"], &script, 2),
        (&["--prefix", "[{stream}] "], &script, 1),
        (&["--timestamps"], &script, 1),
        (&["--max-output", "1M"], &script, 1),
        (&[], &to_stderr, 1),
        (&["-e", "/dev/stderr", "--tee"], &to_stderr, 2),
    ];
    // One-byte lines, shaped: the output is many times what the command wrote.
    let empty_lines = "syswrite(STDOUT, \"\\n\") for 1..65536";
    let shaped: &[(&[&str], &str, usize)] = &[
        (&["--prefix", "[{stream}] "], empty_lines, 1),
        (&["--timestamps"], empty_lines, 1),
    ];
    for (flags, script, copies) in cases.iter().chain(shaped) {
        let lines = if script.starts_with("syswrite") {
            65536
        } else {
            lines
        };
        let shell = if script.starts_with("syswrite") {
            "perl"
        } else {
            "sh"
        };
        let mut command = std::process::Command::new(util::BIN);
        command
            .args(*flags)
            .args([shell, if shell == "perl" { "-e" } else { "-c" }, script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        // Nothing is read until saferun has ended.
        let ended = util::eventually(Duration::from_secs(20), || {
            child.try_wait().unwrap().is_some()
        });
        if !ended {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            ended,
            "{flags:?} {script}: saferun hung with the parent not reading"
        );
        assert_eq!(out.status.code(), Some(0), "{flags:?}");
        let written = if script.ends_with(">&2") && !flags.contains(&"--merge") {
            &out.stderr
        } else {
            &out.stdout
        };
        let text = String::from_utf8_lossy(written);
        assert_eq!(text.lines().count(), lines * copies, "{flags:?}");
        if shell == "sh" {
            let last = format!("{:015}", lines - 1);
            assert!(text.trim_end().ends_with(&last), "{flags:?}");
        }
    }
}

/// The quota test's helper, run as an unprivileged user: uses up that user's pipe
/// quota, then runs saferun with a command writing `count` lines of `size` bytes (one
/// write each) into a pipe that nobody reads until saferun has ended. Prints `ended
/// BYTES` or `hung BYTES`.
#[cfg(target_os = "linux")]
fn quota_helper(saferun: &str, size: usize, count: usize, flags: &[String]) {
    use std::os::fd::AsRawFd;
    let (mut reader, writer) = std::io::pipe().unwrap();
    // Use up the quota: pipes grown as far as the kernel allows, then plain ones until
    // a new pipe gets the least the kernel gives (2 pages) and none can grow.
    let mut hold = Vec::new();
    loop {
        let (r, w) = std::io::pipe().unwrap();
        let grown = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        hold.push((r, w));
        if grown < 0 || hold.len() > 4096 {
            break;
        }
    }
    // Then plain pipes, until new ones are made small.
    for _ in 0..4096 {
        let (r, w) = std::io::pipe().unwrap();
        let size = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_GETPIPE_SZ) };
        hold.push((r, w));
        if size < 65536 {
            break;
        }
    }
    // As fast as it can: lines pile up in the pipe, and saferun moves several at once.
    let script = format!(
        "$l = 'x' x {} . \"\\n\"; syswrite(STDOUT, $l) for 1..{count}",
        size - 1
    );
    let mut child = std::process::Command::new(saferun)
        .args(flags)
        .args(["perl", "-e", &script])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ended = util::eventually(Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let _ = child.wait();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut reader, &mut got);
    println!("{} {}", if ended { "ended" } else { "hung" }, got.len());
}

#[test]
#[cfg(target_os = "linux")]
fn a_parent_that_reads_late_gets_64_kib_even_when_the_pipe_quota_is_used_up() {
    // As an unprivileged user whose pipe quota is used up, no pipe can grow: saferun
    // must still pack what it writes into the parent's plain 64 KiB pipe as tightly as
    // the command's own writes would have been.
    if let Ok(task) = std::env::var("SAFERUN_QUOTA_HELPER") {
        let words: Vec<String> = task.split_whitespace().map(str::to_string).collect();
        let number = |i: usize| words[i].parse().unwrap();
        let bin = std::env::var("SAFERUN_BIN").unwrap();
        return quota_helper(&bin, number(0), number(1), &words[2..]);
    }
    if !util::tool("setpriv") || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root and setpriv to run as an unprivileged user");
        return;
    }
    // Both binaries where the unprivileged user can run them.
    let dir = temp_dir();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let me = dir.path().join("streams-test");
    let saferun = dir.path().join("saferun");
    std::fs::copy(std::env::current_exe().unwrap(), &me).unwrap();
    std::fs::copy(util::BIN, &saferun).unwrap();
    // What a plain 64 KiB pipe holds of writes of each size (a write goes into a page
    // only when it fits there whole).
    let cases = [
        (16, 4096, ""),
        (7, 9360, ""),
        (100, 640, ""),
        (1000, 64, ""),
        (100, 640, "--merge"),
    ];
    for (size, count, flags) in cases {
        let child = std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&me)
            .args([
                "--exact",
                "a_parent_that_reads_late_gets_64_kib_even_when_the_pipe_quota_is_used_up",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SAFERUN_QUOTA_HELPER", format!("{size} {count} {flags}"))
            .env("SAFERUN_BIN", &saferun)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = util::wait_bounded(child, Duration::from_secs(60)).expect("helper ended");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("ended {}", size * count)),
            "{size}-byte lines, {flags:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_directory_as_stdin_is_given_as_it_is() {
    // Without saferun `echo hi < /tmp` prints hi: a command that does not read never
    // notices. Through saferun the same.
    let (status, stderr) = shell("\"$SAFERUN\" echo hi < /");
    assert_eq!(status, Some(0), "{stderr}");
}
