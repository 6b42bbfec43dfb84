//! Several commands at once (`CMD ::: CMD`, `--procfile`): whole labelled lines, the
//! status rules, fail-fast, until, limits per job and for the whole set, containment
//! per job, signals, the summary and the report.

mod util;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use util::{alive, cleanup, eventually, read_pids, read_report, saferun, temp_dir};

/// The arguments for several `sh -c` scripts separated by `:::`.
fn scripts(scripts: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    for (at, script) in scripts.iter().enumerate() {
        if at > 0 {
            args.push(":::".to_string());
        }
        args.extend(["sh".to_string(), "-c".to_string(), script.to_string()]);
    }
    args
}

fn with(options: &[&str], commands: Vec<String>) -> Vec<String> {
    let mut args: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    args.push("--".into());
    args.extend(commands);
    args
}

#[test]
fn lines_of_jobs_writing_at_once_stay_whole_and_labelled() {
    // Three jobs write 3000 long lines each, on stdout and stderr, as fast as they can.
    let writer = |tag: &str| {
        format!(
            "i=0; while [ $i -lt 3000 ]; do echo \"{tag} $i $(printf '%0200d' $i)\"; \
             echo \"{tag}-err $i\" >&2; i=$((i+1)); done"
        )
    };
    let out = saferun(with(
        &["--names", "a,b,c"],
        scripts(&[&writer("A"), &writer("B"), &writer("C")]),
    ))
    .run();
    out.assert_code(0);
    let mut next: HashMap<&str, usize> = HashMap::new();
    for line in out.stdout_text().lines() {
        let (label, rest) = line.split_once("] ").expect("labelled");
        let name = &label[1..];
        let tag = name.to_uppercase();
        let n = next
            .entry(["a", "b", "c"].into_iter().find(|x| *x == name).unwrap())
            .or_default();
        assert_eq!(
            rest,
            format!("{tag} {n} {:0200}", *n),
            "line cut or out of order"
        );
        *n += 1;
    }
    assert_eq!(next.values().sum::<usize>(), 9000, "{:?}", next);
    let errs = out
        .stderr_text()
        .lines()
        .filter(|l| !l.starts_with("saferun:"))
        .count();
    assert_eq!(errs, 9000, "every stderr line whole, one per line");
}

#[test]
fn commands_run_at_once_and_names_default_to_first_words() {
    let out = saferun(with(
        &[],
        vec![
            "sh",
            "-c",
            "sleep 1; echo one",
            ":::",
            "sh",
            "-c",
            "sleep 1; echo two",
            ":::",
            "echo",
            "three",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ))
    .run();
    out.assert_code(0)
        .assert_faster_than(Duration::from_secs(8));
    let text = out.stdout_text();
    for line in ["[sh] one\n", "[sh#2] two\n", "[echo] three\n"] {
        assert!(text.contains(line), "{line:?}\n{out}");
    }
    // On the clock: two one-second sleeps at once, not one after the other.
    let report_dir = temp_dir();
    let report = report_dir.path().join("r.json");
    saferun(with(
        &["--report", report.to_str().unwrap()],
        scripts(&["sleep 1", "sleep 1"]),
    ))
    .run()
    .assert_code(0);
    let json = read_report(&report);
    let starts: Vec<f64> = json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["started_after_seconds"].as_f64().unwrap())
        .collect();
    assert!(
        starts.iter().all(|s| *s < 0.5),
        "both started at once: {starts:?}"
    );
}

#[test]
fn the_status_is_the_first_failure_and_others_run_on() {
    let dir = temp_dir();
    let late = dir.path().join("late");
    let out = saferun(with(
        &[],
        scripts(&[
            "sleep 0.5; exit 3",
            "exit 4",
            &format!("sleep 1; touch {}", late.display()),
        ]),
    ))
    .run();
    out.assert_code(4);
    assert!(
        late.exists(),
        "without --fail-fast the others run to their end"
    );
    let lines = out.saferun_lines();
    assert!(
        lines[0].starts_with("saferun: 3 commands") && lines[0].ends_with("exit status 4"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "a line of totals and one per job\n{out}");
    assert!(
        lines[2].contains("sh#2") && lines[2].contains("exited 4"),
        "{out}"
    );

    saferun(with(&[], scripts(&["true", "exit 0"])))
        .run()
        .assert_code(0);
}

#[test]
fn a_job_killed_by_a_signal_gives_the_death_one_command_would() {
    let out = saferun(with(&[], scripts(&["kill -SEGV $$", "sleep 0.5"]))).run();
    out.assert_signal(libc::SIGSEGV);
    assert!(out.stderr_text().contains("killed by SEGV"), "{out}");
}

#[test]
fn fail_fast_stops_the_others_and_starts_no_more() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let never = dir.path().join("never");
    let out = saferun(with(
        &["--fail-fast", "-j", "2", "--names", "server,check,later"],
        scripts(&[
            &format!(
                "echo $$ >> {}; while :; do sleep 0.05; done",
                pids.display()
            ),
            "sleep 0.5; exit 2",
            &format!("touch {}", never.display()),
        ]),
    ))
    .run();
    out.assert_code(2)
        .assert_faster_than(Duration::from_secs(10));
    assert!(!never.exists(), "no job starts after a failure\n{out}");
    let server = read_pids(&pids);
    assert!(eventually(Duration::from_secs(2), || !alive(server[0])));
    let text = out.stderr_text();
    assert!(
        text.contains("stopped (--fail-fast: check failed)"),
        "{out}"
    );
    assert!(
        text.contains("not started (--fail-fast: check failed)"),
        "{out}"
    );
    assert!(
        text.contains("1 failed, 1 stopped, 1 not started"),
        "the stopped job is no failure\n{out}"
    );
}

#[test]
fn until_stops_the_rest_and_takes_that_jobs_status() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let server = format!(
        "echo $$ > {}; trap 'echo server-stopped; exit 1' TERM; echo serving; \
         while :; do sleep 0.05; done",
        pids.display()
    );
    let out = saferun(with(
        &["--until", "tests", "--names", "server,tests"],
        scripts(&[&server, "sleep 0.5; echo tests-pass"]),
    ))
    .run();
    out.assert_code(0);
    let text = out.stdout_text();
    assert!(
        text.contains("[tests] tests-pass\n") && text.contains("[server] server-stopped\n"),
        "{out}"
    );
    assert!(!alive(read_pids(&pids)[0]));

    let out = saferun(with(
        &["--until", "tests", "--names", "server,tests"],
        scripts(&["sleep 30", "sleep 0.2; exit 5"]),
    ))
    .run();
    out.assert_code(5)
        .assert_faster_than(Duration::from_secs(10));
    assert!(
        out.stderr_text().contains("stopped (--until: tests ended)"),
        "{out}"
    );
}

#[test]
fn jobs_limit_runs_at_most_n_at_once() {
    let dir = temp_dir();
    let log = dir.path().join("log");
    let job = |n: u32| {
        format!(
            "echo start >> {log}; sleep 0.3; echo end >> {log}; : {n}",
            log = log.display()
        )
    };
    let jobs: Vec<String> = (0..6).map(job).collect();
    let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
    saferun(with(&["-j", "2"], scripts(&jobs)))
        .run()
        .assert_code(0);
    let mut running = 0;
    let mut most = 0;
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        running += if line == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(most, 2, "never more than -j at once");
}

#[test]
fn total_timeout_bounds_the_whole_set() {
    let dir = temp_dir();
    let never = dir.path().join("never");
    let out = saferun(with(
        &["--total-timeout", "1", "-j", "1"],
        scripts(&["sleep 30", &format!("touch {}", never.display())]),
    ))
    .run();
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(10));
    assert!(
        !never.exists(),
        "nothing starts after the total timeout\n{out}"
    );
    let out = saferun(with(
        &["--total-timeout", "1s"],
        scripts(&["sleep 30", "sleep 30"]),
    ))
    .run();
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(10));
}

#[test]
fn per_job_limits_apply_to_each_job() {
    let out = saferun(with(&["-t", "1"], scripts(&["sleep 30", "echo quick"]))).run();
    out.assert_code(124);
    assert!(out.stdout_text().contains("[sh#2] quick"), "{out}");
    let lines = out.saferun_lines().join("\n");
    assert!(lines.contains("[sh] timed out after 1s"), "{out}");
    assert!(
        out.saferun_lines()
            .iter()
            .any(|l| l.contains(" sh#2 ") && l.ends_with("exited 0")),
        "{out}"
    );
}

#[test]
fn stdin_goes_to_the_named_job_only() {
    let out = saferun(with(
        &["--stdin-to", "b", "--names", "a,b"],
        vec!["cat", ":::", "cat"]
            .into_iter()
            .map(String::from)
            .collect(),
    ))
    .stdin_bytes(b"for b\n".to_vec())
    .run();
    out.assert_code(0).assert_stdout("[b] for b\n");
    let out = saferun(with(&[], vec!["cat".into(), ":::".into(), "cat".into()]))
        .stdin_bytes(b"for nobody\n".to_vec())
        .run();
    out.assert_code(0).assert_stdout("");
    let out = saferun(with(
        &["--input", "given", "--stdin-to", "b", "--names", "a,b"],
        vec!["cat", ":::", "cat"]
            .into_iter()
            .map(String::from)
            .collect(),
    ))
    .run();
    // A last line without its newline stays so.
    out.assert_code(0).assert_stdout("[b] given");
}

#[test]
fn a_timeout_of_one_job_touches_only_its_own_tree() {
    let dir = temp_dir();
    let (a_pids, b_pids) = (dir.path().join("a"), dir.path().join("b"));
    // Each job leaves a setsid'd escapee; job a goes silent and hits its idle limit
    // while job b is still busy.
    let a = format!(
        "setsid sleep 300 & echo $! > {}; sleep 60",
        a_pids.display()
    );
    let b = format!(
        "setsid sleep 300 & echo $! > {}; i=0; while [ $i -lt 10 ]; do echo tick; sleep 0.2; i=$((i+1)); done",
        b_pids.display()
    );
    let out = saferun(with(
        &["--idle-timeout", "1", "--linger", "0.2", "--names", "a,b"],
        scripts(&[&a, &b]),
    ))
    .run();
    let (a_escapee, b_escapee) = (read_pids(&a_pids)[0], read_pids(&b_pids)[0]);
    let a_gone = eventually(Duration::from_secs(2), || !alive(a_escapee));
    let b_alive = alive(b_escapee);
    cleanup(&[a_escapee, b_escapee]);
    out.assert_code(124);
    assert!(a_gone, "job a's escapee went with it\n{out}");
    assert!(
        b_alive,
        "job b's escapee was not touched by a's timeout\n{out}"
    );
    let text = out.stderr_text();
    assert!(
        text.contains(&format!(
            "saferun: [b] pid {b_escapee} (sleep 300) outlived the command"
        )),
        "b's leftover named under b\n{out}"
    );
    assert!(!text.contains(&format!("[a] pid {b_escapee}")), "{out}");
}

#[test]
fn ctrl_c_reaches_every_job_and_starts_no_more() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let never = dir.path().join("never");
    let job = |tag: &str| {
        format!(
            "trap 'echo {tag}-got-int; exit 0' INT; echo $$ >> {}; while :; do sleep 0.05; done",
            ready.display()
        )
    };
    let running = saferun(with(
        &["-j", "2"],
        scripts(&[&job("a"), &job("b"), &format!("touch {}", never.display())]),
    ))
    .start();
    assert!(eventually(Duration::from_secs(10), || read_pids(&ready)
        .len()
        == 2));
    running.signal(libc::SIGINT);
    let out = running.wait();
    out.assert_signal(libc::SIGINT);
    let text = out.stdout_text();
    assert!(
        text.contains("a-got-int") && text.contains("b-got-int"),
        "{out}"
    );
    assert!(!never.exists(), "{out}");
    for pid in read_pids(&ready) {
        assert!(!alive(pid));
    }
}

#[test]
fn group_prints_each_jobs_output_as_one_block() {
    let out = saferun(with(
        &["--group", "--names", "slow,fast"],
        scripts(&[
            "echo s1; sleep 0.6; echo s2",
            "echo f1; echo f-err >&2; sleep 0.1; echo f2",
        ]),
    ))
    .run();
    out.assert_code(0)
        .assert_stdout("[fast] f1\n[fast] f2\n[slow] s1\n[slow] s2\n");
    out.assert_stderr_contains("[fast] f-err\n");
}

#[test]
fn quiet_unless_fail_prints_only_failed_jobs() {
    let out = saferun(with(
        &[
            "--quiet-unless-fail",
            "--until",
            "check",
            "--names",
            "server,ok,check",
        ],
        scripts(&[
            "echo server-noise; sleep 30",
            "echo fine",
            "sleep 0.3; echo broken; exit 1",
        ]),
    ))
    .run();
    out.assert_code(1).assert_stdout("[check] broken\n");
}

#[test]
fn the_report_holds_every_job_and_the_totals() {
    let dir = temp_dir();
    let report = dir.path().join("report.json");
    let out = saferun(with(
        &[
            "--fail-fast",
            "-j",
            "2",
            "--report",
            report.to_str().unwrap(),
            "--names",
            "a,b,c",
        ],
        scripts(&["sleep 30", "exit 7", "true"]),
    ))
    .run();
    out.assert_code(7);
    let json = read_report(&report);
    assert_eq!(json["exit_status"], 7);
    assert_eq!(
        json["totals"],
        serde_json::json!({"jobs": 3, "succeeded": 0, "failed": 1, "stopped": 1, "not_started": 1})
    );
    let jobs = json["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["name"], "a");
    assert_eq!(jobs[0]["stopped_by"], "fail-fast");
    assert_eq!(jobs[0]["end_reason"], "stopped");
    assert_eq!(jobs[1]["exit_status"], 7);
    assert_eq!(jobs[1]["failed"], true);
    assert_eq!(jobs[1]["argv"], serde_json::json!(["sh", "-c", "exit 7"]));
    assert_eq!(jobs[2]["end_reason"], "not_started");
}

#[test]
fn names_are_coloured_only_when_asked_or_on_a_terminal() {
    let out = saferun(with(
        &["--color", "always"],
        scripts(&["echo hi", "sleep 0.2; echo yo"]),
    ))
    .run();
    out.assert_code(0)
        .assert_stdout("\x1b[36m[sh] \x1b[0mhi\n\x1b[33m[sh#2] \x1b[0myo\n");
    let out = saferun(with(&[], scripts(&["echo hi", "sleep 0.2; echo yo"]))).run();
    out.assert_stdout("[sh] hi\n[sh#2] yo\n");
}

#[test]
fn a_prefix_can_use_the_name() {
    let out = saferun(with(
        &["--prefix", "{name}/{stream}: ", "--names", "x,y"],
        scripts(&["echo out", "sleep 0.2; echo err >&2"]),
    ))
    .run();
    out.assert_code(0).assert_stdout("x/out: out\n");
    out.assert_stderr_contains("y/err: err\n");
}

#[test]
fn a_procfile_names_its_commands() {
    let dir = temp_dir();
    let procfile = dir.path().join("Procfile");
    std::fs::write(
        &procfile,
        "# the app\nweb: echo serving on $((8000 + 80))\n\nworker:   echo 'working' ; exit 3\n",
    )
    .unwrap();
    let out = saferun(["--procfile", procfile.to_str().unwrap()]).run();
    out.assert_code(3);
    let text = out.stdout_text();
    assert!(
        text.contains("[web] serving on 8080\n") && text.contains("[worker] working\n"),
        "{out}"
    );
}

/// Refused: one `saferun:` line, 125, and nothing started (the marker file stays absent).
#[track_caller]
fn assert_refused(options: &[&str], commands: Vec<String>, dir: &Path, message: &str) {
    let out = saferun(with(options, commands)).run();
    out.assert_code(125);
    let lines = out.saferun_lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains(message), "{message:?}\n{out}");
    assert!(!dir.join("started").exists(), "nothing may start\n{out}");
}

#[test]
fn bad_input_is_refused_before_anything_starts() {
    let dir = temp_dir();
    let touch = format!("touch {}", dir.path().join("started").display());
    let two = || scripts(&[&touch, &touch]);
    let mut empty = scripts(&[&touch]);
    empty.extend([":::".to_string(), ":::".to_string()]);
    empty.extend(scripts(&[&touch]));
    assert_refused(&[], empty, dir.path(), "command 2 of 3 is empty");
    let mut trailing = scripts(&[&touch]);
    trailing.push(":::".into());
    assert_refused(&[], trailing, dir.path(), "command 2 of 2 is empty");
    assert_refused(
        &["--names", "a,a"],
        two(),
        dir.path(),
        "two commands are named \"a\"",
    );
    assert_refused(
        &["--names", "a"],
        two(),
        dir.path(),
        "--names gives 1 names for 2 commands",
    );
    assert_refused(
        &["--until", "nope"],
        two(),
        dir.path(),
        "--until \"nope\" names no command",
    );
    assert_refused(
        &["--stdin-to", "nope"],
        two(),
        dir.path(),
        "--stdin-to \"nope\" names no command",
    );
    assert_refused(
        &["-o", "/dev/null"],
        two(),
        dir.path(),
        "--stdout-file and --stderr-file are for one command",
    );
    assert_refused(&["--input", "x"], two(), dir.path(), "need --stdin-to");

    let procfile = dir.path().join("Procfile");
    std::fs::write(&procfile, format!("ok: {touch}\nno colon here\n")).unwrap();
    let out = saferun(["--procfile", procfile.to_str().unwrap()]).run();
    out.assert_code(125);
    out.assert_stderr_contains("Procfile:2: expected \"NAME: COMMAND\"");
    assert!(!dir.path().join("started").exists());
}

#[test]
fn one_command_behaves_as_before() {
    let out = saferun(["sh", "-c", "echo plain"]).run();
    out.assert_code(0).assert_stdout("plain\n");
    assert!(
        out.saferun_lines().is_empty(),
        "no summary for one command\n{out}"
    );
}

#[test]
fn many_short_commands_with_a_limit() {
    let mut args = vec!["-j".to_string(), "16".to_string(), "--".to_string()];
    for n in 0..300 {
        if n > 0 {
            args.push(":::".into());
        }
        args.extend(["echo".to_string(), format!("n{n}")]);
    }
    let out = saferun(args).watchdog(Duration::from_secs(120)).run();
    out.assert_code(0);
    let mut seen: Vec<String> = out
        .stdout_text()
        .lines()
        .map(|l| l.split_once("] ").unwrap().1.to_string())
        .collect();
    seen.sort();
    let mut expected: Vec<String> = (0..300).map(|n| format!("n{n}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(out.stderr_text().contains("300 commands"), "{out}");
}

#[test]
fn an_orphan_is_named_under_its_own_job_only() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let a = format!(
        "(sleep 300 >/dev/null 2>&1 & echo $! > {}); sleep 0.3",
        pids.display()
    );
    let out = saferun(with(
        &["--leftovers", "fail", "--linger", "0.1", "--names", "a,b"],
        scripts(&[&a, "sleep 1.5"]),
    ))
    .run();
    let orphan = read_pids(&pids)[0];
    cleanup(&[orphan]);
    out.assert_code(122);
    let text = out.stderr_text();
    assert!(
        text.contains(&format!("[a] pid {orphan} (sleep 300) outlived")),
        "{out}"
    );
    assert!(
        !text.contains(&format!("[b] pid {orphan}")),
        "not b's\n{out}"
    );
    assert!(
        out.saferun_lines()
            .iter()
            .any(|l| l.contains(" b ") && l.ends_with("exited 0")),
        "{out}"
    );
}

#[test]
fn a_signal_stopping_the_until_job_leaves_the_first_failure_deciding() {
    let dir = temp_dir();
    let ready = dir.path().join("ready");
    let running = saferun(with(
        &["--until", "a", "--names", "a,b"],
        scripts(&[&format!("echo > {}; sleep 30", ready.display()), "exit 3"]),
    ))
    .start();
    assert!(eventually(Duration::from_secs(10), || ready.exists()));
    std::thread::sleep(Duration::from_millis(200));
    running.signal(libc::SIGINT);
    running.wait().assert_code(3);
}

#[test]
fn timestamps_share_one_clock() {
    let out = saferun(with(
        &["--timestamps", "-j", "1", "--names", "x,y"],
        scripts(&["sleep 0.5; echo x1", "sleep 0.2; echo y1"]),
    ))
    .run();
    out.assert_code(0);
    let stamps = util::stamps(&out.stdout_text());
    assert!(
        stamps[1] > stamps[0] + 0.1,
        "y's line came after x's\n{out}"
    );
}

#[test]
fn every_piece_of_an_overlong_line_is_labelled() {
    let out = saferun(with(
        &["--names", "a,b"],
        scripts(&[
            "head -c 200000 /dev/zero | tr '\\0' A; sleep 0.5; echo Z",
            "sleep 0.2; echo b-line",
        ]),
    ))
    .run();
    out.assert_code(0);
    let text = out.stdout_text();
    for line in text.lines() {
        assert!(
            line.starts_with("[a] ") || line.starts_with("[b] "),
            "{:.60}",
            line
        );
    }
    let a: usize = text
        .lines()
        .filter_map(|l| l.strip_prefix("[a] "))
        .map(|l| l.matches('A').count())
        .sum();
    assert_eq!(a, 200000);
}

#[test]
fn many_jobs_at_once_under_a_low_open_file_limit() {
    let mut args = String::new();
    for n in 0..200 {
        if n > 0 {
            args.push_str(" ::: ");
        }
        args.push_str("sh -c 'sleep 1; ulimit -n'");
    }
    let out = saferun([
        "sh",
        "-c",
        &format!("ulimit -Sn 256; exec {} -- {args}", util::BIN),
    ])
    .watchdog(Duration::from_secs(120))
    .run();
    out.assert_code(0);
    let limits: Vec<String> = out
        .stdout_text()
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(limits.len(), 200, "{out}");
    assert!(
        limits.iter().all(|l| l == "256"),
        "the commands get the old limit back"
    );
}
