//! Output shaping: files, tee, merge, caps, line prefixes, timestamps, chronic mode —
//! each alone and combined, checked byte for byte.

mod util;

use std::time::Duration;

use util::{random_bytes, saferun, sha256, temp_dir};

const MIB: usize = 1 << 20;

/// A command that writes `data` to stdout (and its reverse to stderr).
fn producer(dir: &std::path::Path, data: &[u8]) -> (String, Vec<u8>) {
    let out = dir.join("out.src");
    let err = dir.join("err.src");
    let reversed: Vec<u8> = data.iter().rev().copied().collect();
    std::fs::write(&out, data).unwrap();
    std::fs::write(&err, &reversed).unwrap();
    (
        format!("cat {} & cat {} >&2; wait", out.display(), err.display()),
        reversed,
    )
}

#[test]
fn tee_and_append() {
    let dir = temp_dir();
    let data = random_bytes(4 * MIB, 12);
    let (script, _) = producer(dir.path(), &data);
    let o = dir.path().join("o");
    std::fs::write(&o, b"before\n").unwrap();
    let out = saferun([
        "-o",
        o.to_str().unwrap(),
        "--append",
        "--tee",
        "sh",
        "-c",
        &script,
    ])
    .run();
    out.assert_code(0);
    assert_eq!(sha256(&out.stdout), sha256(&data));
    let mut expected = b"before\n".to_vec();
    expected.extend_from_slice(&data);
    assert_eq!(sha256(&std::fs::read(&o).unwrap()), sha256(&expected));
}

/// Both streams to files, byte for byte; with `--tee` they also pass through (the
/// zero-copy tee path: tee(2) into saferun's own pipe, splice(2) into the file).
fn files_byte_exact(tee: bool) {
    let dir = temp_dir();
    let data = random_bytes(8 * MIB, 11 + u64::from(tee));
    let (script, reversed) = producer(dir.path(), &data);
    let o = dir.path().join("o");
    let e = dir.path().join("e");
    let mut args = vec!["-o", o.to_str().unwrap(), "-e", e.to_str().unwrap()];
    if tee {
        args.push("--tee");
    }
    args.extend(["sh", "-c", &script]);
    let out = saferun(&args).run();
    out.assert_code(0);
    if tee {
        assert_eq!(sha256(&out.stdout), sha256(&data));
        assert_eq!(sha256(&out.stderr), sha256(&reversed));
    } else {
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out}");
    }
    assert_eq!(sha256(&std::fs::read(&o).unwrap()), sha256(&data));
    assert_eq!(sha256(&std::fs::read(&e).unwrap()), sha256(&reversed));
}

#[test]
fn files_alone_byte_exact() {
    files_byte_exact(false);
}

#[test]
fn tee_without_append_is_byte_exact_on_both_streams() {
    files_byte_exact(true);
}

#[test]
fn tee_goes_on_into_the_file_when_the_reader_leaves() {
    // The reader of saferun's stdout takes 1000 bytes and goes; the file still gets
    // every byte and the command is not killed by SIGPIPE.
    let dir = temp_dir();
    let data = random_bytes(8 * MIB, 14);
    let source = dir.path().join("src");
    std::fs::write(&source, &data).unwrap();
    let o = dir.path().join("o");
    let status = dir.path().join("status");
    let script = format!(
        "({} -o {} --tee -- cat {}; echo $? > {}) | head -c 1000 | wc -c",
        util::BIN,
        o.display(),
        source.display(),
        status.display()
    );
    let out = saferun(["sh", "-c", &script]).run();
    out.assert_code(0);
    assert_eq!(out.stdout_text().trim(), "1000");
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "0\n");
    assert_eq!(sha256(&std::fs::read(&o).unwrap()), sha256(&data));
}

#[test]
fn merge_keeps_every_byte_of_both() {
    let script = "i=0; while [ $i -lt 500 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
    let out = saferun(["--merge", "sh", "-c", script]).run();
    out.assert_code(0);
    assert!(out.stderr.is_empty(), "{out}");
    let expected: String = (0..500).map(|i| format!("out{i}\nerr{i}\n")).collect();
    // Both are written by one process in this order, so the kernel saw exactly this order.
    assert_eq!(out.stdout_text(), expected);
}

#[test]
fn max_output_keeps_head_and_tail_with_one_marker() {
    let out = saferun(["--max-output", "100", "seq", "1", "10000"]).run();
    out.assert_code(0);
    let all: String = (1..=10000).map(|i| format!("{i}\n")).collect();
    let text = out.stdout_text();
    let elided = all.len() - 100;
    let marker = format!("[saferun: {elided} bytes elided]\n");
    let head = &all[..50];
    let tail = &all[all.len() - 50..];
    let newline = if head.ends_with('\n') { "" } else { "\n" };
    assert_eq!(text, format!("{head}{newline}{marker}{tail}"));
}

#[test]
fn max_output_is_per_stream_and_reported() {
    let dir = temp_dir();
    let report = dir.path().join("r.json");
    let out = saferun([
        "--max-output",
        "1K",
        "--report",
        report.to_str().unwrap(),
        "-v",
        "sh",
        "-c",
        "head -c 100000 /dev/zero; echo small >&2",
    ])
    .run();
    out.assert_code(0)
        .assert_stderr_contains("small\n")
        .assert_stderr_contains("saferun: stdout passed --max-output");
    assert_eq!(
        out.stdout.len(),
        1024 + "[saferun: 98976 bytes elided]\n".len() + 1
    );
    let r = util::read_report(&report);
    assert_eq!(r["streams"]["stdout"]["bytes"], 100000);
    assert_eq!(r["streams"]["stdout"]["elided"], 98976);
    assert_eq!(r["streams"]["stdout"]["truncated"], true);
    assert_eq!(r["streams"]["stderr"]["truncated"], false);
}

#[test]
fn max_output_never_blocks_the_command() {
    // 256 MiB through a 1 KiB cap: the rest is drained and dropped, fast.
    let out = saferun(["--max-output", "1K", "head", "-c", "268435456", "/dev/zero"])
        .watchdog(Duration::from_secs(60))
        .run();
    out.assert_code(0);
    assert!(out.stdout.len() < 2048);
}

#[test]
fn max_output_kill_is_a_timeout() {
    let dir = temp_dir();
    let report = dir.path().join("r.json");
    let out = saferun([
        "--max-output",
        "10K",
        "--on-max-output=kill",
        "--report",
        report.to_str().unwrap(),
        "yes",
    ])
    .run();
    out.assert_code(124)
        .assert_stderr_contains("saferun: output reached --max-output; sending TERM");
    let r = util::read_report(&report);
    assert_eq!(r["end_reason"], "cap");
}

#[test]
fn prefix_and_timestamps() {
    let out = saferun([
        "--prefix",
        "[{stream}|{command}] ",
        "sh",
        "-c",
        "echo one; echo two >&2; printf 'no newline'",
    ])
    .run();
    out.assert_code(0)
        .assert_stdout("[out|sh] one\n[out|sh] no newline");
    assert_eq!(out.stderr_text(), "[err|sh] two\n");

    let out = saferun(["--timestamps", "sh", "-c", "echo a; echo b"]).run();
    for line in out.stdout_text().lines() {
        let (stamp, text) = line.trim_start().split_once(' ').unwrap();
        let seconds: f64 = stamp.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!((0.0..5.0).contains(&seconds), "{line}");
        assert!(text == "a" || text == "b", "{line}");
    }
    let out = saferun(["--timestamps=utc", "echo", "x"]).run();
    let text = out.stdout_text();
    assert!(
        text.starts_with("20") && text.contains('T') && text.ends_with("Z x\n"),
        "{text}"
    );
}

#[test]
fn pid_in_prefix_is_the_commands() {
    let out = saferun(["--prefix", "{pid} ", "sh", "-c", "echo $$"]).run();
    let text = out.stdout_text();
    let (prefix, pid) = text.trim().split_once(' ').unwrap();
    assert_eq!(prefix, pid);
}

#[test]
fn fifty_writers_sharing_one_pipe_never_tear_a_line() {
    // Fifty saferuns, each prefixing 2000 lines of varied length, all into one pipe.
    let script = format!(
        "for n in $(seq 1 50); do \
           {bin} --prefix \"w$n \" -- sh -c 'i=0; while [ $i -lt 2000 ]; do \
             printf \"line-%d-%0*d\\n\" $i $((i % 300 + 1)) 0; i=$((i+1)); done' & \
         done; wait",
        bin = util::BIN
    );
    let out = saferun(["sh", "-c", &script])
        .watchdog(Duration::from_secs(240))
        .run();
    out.assert_code(0);
    let text = out.stdout_text();
    let mut counts = std::collections::HashMap::new();
    for line in text.lines() {
        let (writer, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("torn: {line:?}"));
        assert!(writer.starts_with('w'), "torn line: {line:?}");
        let fields: Vec<&str> = rest.split('-').collect();
        assert_eq!(fields.len(), 3, "torn line: {line:?}");
        assert_eq!(fields[0], "line", "torn line: {line:?}");
        let n: usize = fields[1]
            .parse()
            .unwrap_or_else(|_| panic!("torn line: {line:?}"));
        let zeros = fields[2];
        assert!(zeros.bytes().all(|b| b == b'0'), "torn line: {line:?}");
        assert_eq!(zeros.len(), n % 300 + 1, "torn line: {line:?}");
        *counts.entry(writer.to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|c| *c == 2000), "{counts:?}");
}

#[test]
fn quiet_unless_fail() {
    let out = saferun([
        "--quiet-unless-fail",
        "sh",
        "-c",
        "echo hidden; echo hidden >&2",
    ])
    .run();
    out.assert_code(0);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out}");

    let out = saferun([
        "--quiet-unless-fail",
        "sh",
        "-c",
        "echo shown; echo also >&2; exit 3",
    ])
    .run();
    out.assert_code(3).assert_stdout("shown\n");
    assert_eq!(out.stderr_text(), "also\n");

    let out = saferun([
        "--quiet-unless-fail",
        "-t",
        "0.3",
        "sh",
        "-c",
        "echo before; sleep 10",
    ])
    .run();
    out.assert_code(124).assert_stdout("before\n");
}

#[test]
fn quiet_unless_fail_spills_big_output_exactly() {
    let dir = temp_dir();
    let data = random_bytes(24 * MIB, 13);
    let (script, reversed) = producer(dir.path(), &data);
    let failing = format!("{script}; exit 1");
    let out = saferun(["--quiet-unless-fail", "sh", "-c", &failing]).run();
    out.assert_code(1);
    assert_eq!(sha256(&out.stdout), sha256(&data));
    assert_eq!(sha256(&out.stderr), sha256(&reversed));
}

#[test]
fn quiet_unless_fail_files_get_everything() {
    let dir = temp_dir();
    let o = dir.path().join("o");
    let out = saferun([
        "--quiet-unless-fail",
        "-o",
        o.to_str().unwrap(),
        "echo",
        "kept",
    ])
    .run();
    out.assert_code(0);
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(o).unwrap(), "kept\n");
}

#[test]
fn everything_combined() {
    // Capped, prefixed, teed to a file, counted in the report.
    let dir = temp_dir();
    let o = dir.path().join("o");
    let report = dir.path().join("r.json");
    let out = saferun([
        "-o",
        o.to_str().unwrap(),
        "--tee",
        "--max-output",
        "64",
        "--prefix",
        "> ",
        "--report",
        report.to_str().unwrap(),
        "seq",
        "1",
        "1000",
    ])
    .run();
    out.assert_code(0);
    let file = std::fs::read_to_string(&o).unwrap();
    assert_eq!(out.stdout_text(), file);
    let all: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    let elided = all.len() - 64;
    let expected_lines: Vec<String> = format!(
        "{}\n[saferun: {elided} bytes elided]\n{}",
        &all[..32].trim_end_matches('\n'),
        &all[all.len() - 32..]
    )
    .split_inclusive('\n')
    .map(|l| format!("> {l}"))
    .collect();
    assert_eq!(file, expected_lines.concat());
    let r = util::read_report(&report);
    assert_eq!(r["streams"]["stdout"]["bytes"], all.len());
}

#[test]
fn write_failure_is_125_with_report_and_the_command_stopped() {
    let dir = temp_dir();
    let report = dir.path().join("r.json");
    let out = saferun([
        "-o",
        "/dev/full",
        "--report",
        report.to_str().unwrap(),
        "yes",
    ])
    .run();
    out.assert_code(125)
        .assert_stderr_contains("saferun: cannot write --stdout-file '/dev/full'")
        .assert_faster_than(Duration::from_secs(10));
    let r = util::read_report(&report);
    assert_eq!(r["end_reason"], "failed");
    assert_eq!(r["exit_status"], 125);
    assert_eq!(r["streams"]["stdout"]["end"], "write_failed");
    assert_eq!(r["command"]["signal"], "TERM", "{r:#}");
}

#[test]
fn output_files_are_checked_before_running() {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let same = dir.path().join("same");
    let same = same.to_str().unwrap();
    for args in [
        vec!["-o", "/nonexistent/dir/out"],
        vec!["-o", same, "-e", same],
        vec!["--merge", "-e", same],
        vec!["--tee"],
        vec!["--max-output", "5X"],
        vec!["--timestamps=moon"],
    ] {
        let mut full = args.clone();
        full.extend(["sh", "-c", &touch]);
        let out = saferun(&full).run();
        out.assert_code(125);
        assert_eq!(out.saferun_lines().len(), 1, "{out}");
        assert!(!marker.exists(), "{out}");
    }
    let out = saferun(["-o", same, "-e", same, "true"]).run();
    out.assert_stderr_contains("--merge");
}

#[test]
fn a_stop_cuts_teed_output_short_but_never_leaves_a_hole() {
    // -o is a FIFO (so it is the tee(2) side) read quickly; saferun's stdout is read
    // slowly, so it is full when the timeout stops the drains. Each destination may end
    // early, but what each got must be the start of the command's output, unbroken.
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    let fast = dir.path().join("fast");
    let slow = dir.path().join("slow");
    let script = format!(
        "mkfifo {fifo}; cat {fifo} > {fast} & \
         {bin} --tee -o {fifo} -t 1 -k 0.3 --linger 0.3 -- \
           sh -c 'trap \"\" TERM; seq 1 3000000' | \
         while :; do \
           n=$(dd bs=65536 count=1 2>/dev/null | tee -a {slow} | wc -c); \
           [ \"$n\" -eq 0 ] && break; sleep 0.02; \
         done; wait",
        fifo = fifo.display(),
        fast = fast.display(),
        slow = slow.display(),
        bin = util::BIN,
    );
    let out = saferun(["sh", "-c", &script])
        .watchdog(Duration::from_secs(60))
        .run();
    out.assert_code(0);
    let expected: String = (1..=3_000_000).map(|i| format!("{i}\n")).collect();
    for file in [&fast, &slow] {
        let got = std::fs::read(file).unwrap();
        assert!(!got.is_empty(), "{}: empty\n{out}", file.display());
        assert!(
            expected.as_bytes().starts_with(&got),
            "{}: {} bytes, not a prefix of the output\n{out}",
            file.display(),
            got.len()
        );
    }
}

#[test]
fn saferuns_own_lines_start_a_line() {
    // A progress bar or a prompt leaves its line open; saferun's notice after it must
    // still start a line, so that `grep '^saferun:'` finds it.
    let out = saferun([
        "-t",
        "0.3",
        "sh",
        "-c",
        "printf 'working 50%%' >&2; sleep 10",
    ])
    .run();
    out.assert_code(124);
    assert!(
        out.stderr_text()
            .starts_with("working 50%\nsaferun: timed out"),
        "{out}"
    );
    // Also when stdout and stderr are one file (a terminal, `2>&1`), and the partial
    // line came on stdout.
    let script = format!(
        "{} -t 0.3 sh -c 'printf \"Password: \"; sleep 10' 2>&1",
        util::BIN
    );
    let out = saferun(["sh", "-c", &script]).run();
    assert!(
        out.stdout_text()
            .starts_with("Password: \nsaferun: timed out"),
        "{out}"
    );
    // A line that ended needs nothing more.
    let out = saferun(["-t", "0.3", "sh", "-c", "echo done >&2; sleep 10"]).run();
    assert!(
        out.stderr_text().starts_with("done\nsaferun: timed out"),
        "{out}"
    );
}

#[test]
fn into_a_log_file_notices_start_a_line_without_an_empty_one() {
    // `>log 2>&1`, the usual CI setup: the command's stderr is spliced into a regular
    // file; saferun reads its last byte back rather than guessing.
    let dir = util::temp_dir();
    let log = dir.path().join("log");
    let script = format!(
        "{} -t 0.3 sh -c 'echo full; printf half >&2; sleep 5' >{} 2>&1",
        util::BIN,
        log.display()
    );
    saferun(["sh", "-c", &script]).run();
    let text = std::fs::read_to_string(&log).unwrap();
    // (The two streams' order against each other is the scheduler's.)
    let notice = text.find("saferun: timed out").expect("the notice");
    assert_eq!(&text[notice - 1..notice], "\n", "{text:?}");
    assert!(!text.contains("\n\nsaferun"), "{text:?}");
    assert!(text.contains("full") && text.contains("half"), "{text:?}");
    let script = format!(
        "{} -t 0.3 sh -c 'echo full >&2; sleep 5' 2>{}",
        util::BIN,
        log.display()
    );
    saferun(["sh", "-c", &script]).run();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("full\nsaferun: timed out"), "{text:?}");
}

#[test]
fn notices_start_a_line_after_held_output_and_on_stderr_named_as_a_file() {
    let out = saferun([
        "--quiet-unless-fail",
        "--report",
        "-",
        "sh",
        "-c",
        "printf partial >&2; exit 1",
    ])
    .run();
    assert!(out.stderr_text().starts_with("partial\n{"), "{out}");
    let out = saferun([
        "-t",
        "0.3",
        "-e",
        "/dev/stderr",
        "sh",
        "-c",
        "printf half >&2; sleep 5",
    ])
    .run();
    assert!(
        out.stderr_text().starts_with("half\nsaferun: timed out"),
        "{out}"
    );
}
