//! The library API, used as a Rust program would: many jobs at once, a program's own
//! children and signal dispositions left alone, handles that stop what they started.

mod util;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use saferun::{Command, Ending, Error, Limit, Output, Stdin};
use util::{alive, cleanup, eventually, read_pids, temp_dir};

#[test]
fn sixteen_jobs_from_sixteen_threads_each_with_its_own_limit() {
    // Half of them time out (each at its own limit), half finish; every outcome is its
    // own, and no job touches another's command.
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let times_out = i % 2 == 0;
                let limit = Duration::from_millis(300 + 50 * i);
                let script = if times_out {
                    format!("echo job {i}; sleep 30")
                } else {
                    format!("echo job {i}; sleep 0.2; exit {i}")
                };
                let began = Instant::now();
                let outcome = Command::new("sh")
                    .args(["-c", &script])
                    .timeout(limit)
                    .stdin(Stdin::null())
                    .stdout(Output::capture())
                    .run()
                    .unwrap();
                (i, times_out, limit, began.elapsed(), outcome)
            })
        })
        .collect();
    for thread in threads {
        let (i, times_out, limit, took, outcome) = thread.join().unwrap();
        assert_eq!(outcome.stdout().text(), format!("job {i}\n"), "job {i}");
        if times_out {
            assert_eq!(
                outcome.ending(),
                &Ending::TimedOut {
                    limit: Limit::Timeout,
                    killed: false
                },
                "job {i}"
            );
            assert_eq!(outcome.code(), 124);
            assert!(
                took >= limit,
                "job {i} stopped before its own limit: {took:?}"
            );
            assert!(took < limit + Duration::from_secs(10), "job {i}: {took:?}");
        } else {
            assert_eq!(outcome.ending(), &Ending::Exited(i as i32), "job {i}");
            assert_eq!(outcome.code(), i as i32);
        }
    }
}

#[test]
fn a_programs_own_children_keep_their_exit_statuses() {
    // The program runs a child of its own while jobs come and go: nothing of saferun
    // may reap it (its exit status is the program's to read).
    let mut own = std::process::Command::new("sh")
        .args(["-c", "sleep 1; exit 7"])
        .spawn()
        .unwrap();
    for _ in 0..3 {
        let outcome = Command::new("sh")
            .args(["-c", "sleep 0.1 & true"])
            .linger(Duration::from_millis(500))
            .run()
            .unwrap();
        assert!(outcome.success());
    }
    let handle = Command::new("sleep").arg("0.2").spawn().unwrap();
    handle.wait();
    assert_eq!(own.wait().unwrap().code(), Some(7));
}

#[test]
fn dropping_a_handle_stops_the_whole_tree() {
    let dir = temp_dir();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 100 & echo $! >> {p}; sh -c 'trap \"\" TERM; sleep 100' & echo $! >> {p}; wait",
        p = pids.display()
    );
    let handle = Command::new("sh")
        .args(["-c", &script])
        .stdout(Output::null())
        .spawn()
        .unwrap();
    let command = handle.pid() as i32;
    assert!(eventually(Duration::from_secs(10), || read_pids(&pids)
        .len()
        == 2));
    let began = Instant::now();
    drop(handle);
    let pids = read_pids(&pids);
    let gone = eventually(Duration::from_secs(5), || {
        pids.iter().chain([&command]).all(|p| !alive(*p))
    });
    cleanup(&pids);
    assert!(gone, "survivors among {pids:?}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn a_handle_waits_with_a_deadline_and_can_be_signalled() {
    let mut handle = Command::new("sh")
        .args(["-c", "trap 'echo usr1' USR1; while :; do sleep 0.05; done"])
        .stdout(Output::capture())
        .stderr(Output::null())
        .spawn()
        .unwrap();
    assert!(handle.wait_timeout(Duration::from_millis(200)).is_none());
    assert!(handle.try_wait().is_none());
    handle.signal(saferun::Signal::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    handle.signal(saferun::Signal::SIGTERM);
    let outcome = handle.wait();
    assert_eq!(outcome.stdout().text(), "usr1\n");
    assert!(matches!(
        outcome.ending(),
        Ending::Cancelled {
            signal: saferun::Signal::SIGTERM,
            ..
        }
    ));
}

#[test]
fn errors_are_typed_and_nothing_starts() {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let refused = Command::new("touch")
        .arg(&marker)
        .stdout(Output::file("/nonexistent/dir/out"))
        .run();
    assert!(matches!(refused, Err(Error::Refused { .. })), "{refused:?}");
    assert!(!marker.exists());
    let missing = Command::new("/nonexistent/program").run();
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(missing.unwrap_err().code(), 127);
    let not_executable = Command::new(dir.path()).run();
    assert!(
        matches!(not_executable, Err(Error::NotExecutable { .. })),
        "{not_executable:?}"
    );
    let no_dir = Command::new("true").current_dir("/nonexistent").run();
    assert!(
        matches!(no_dir, Err(Error::CannotStart { .. })),
        "{no_dir:?}"
    );
}

#[test]
fn environment_directory_and_stdin_reader() {
    let dir = temp_dir();
    let outcome = Command::new("sh")
        .args(["-c", "echo \"$GREETING $(pwd)\"; cat"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("GREETING", "hello")
        .current_dir(dir.path())
        .stdin(Stdin::reader(std::io::Cursor::new(
            b"from a reader".to_vec(),
        )))
        .stdout(Output::capture())
        .run()
        .unwrap();
    let canonical = dir.path().canonicalize().unwrap();
    assert_eq!(
        outcome.stdout().text(),
        format!("hello {}\nfrom a reader", canonical.display())
    );
}

#[test]
fn a_failing_stdin_reader_stops_the_command() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the source broke"))
        }
    }
    let outcome = Command::new("cat")
        .stdin(Stdin::reader(Broken))
        .stdout(Output::capture())
        .kill_after(Some(Duration::from_millis(200)))
        .run()
        .unwrap();
    assert_eq!(outcome.ending(), &Ending::Failed);
    assert_eq!(outcome.code(), 125);
    assert!(
        outcome.errors()[0].contains("the source broke"),
        "{outcome:?}"
    );
}

#[test]
fn the_report_is_there_for_a_library_too() {
    let outcome = Command::new("sh")
        .args(["-c", "echo out; exit 3"])
        .stdout(Output::null())
        .run()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&outcome.report()).unwrap();
    assert_eq!(report["exit_status"], 3);
    assert_eq!(report["end_reason"], "exited");
    assert_eq!(report["streams"]["stdout"]["bytes"], 4);
}
