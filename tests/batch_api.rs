//! The library's `Batch`, on its own in this test binary so that counting the process's
//! descriptors and children is not disturbed by other tests running beside it.

use std::fs;
use std::time::{Duration, Instant};

use saferun::{Batch, Command, Ending, Output};

fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn children() -> Vec<String> {
    let mut all = Vec::new();
    for task in fs::read_dir("/proc/self/task").unwrap().flatten() {
        let text = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(text.split_whitespace().map(str::to_string));
    }
    all
}

#[test]
fn many_jobs_leave_no_descriptor_and_no_child_behind() {
    let before = open_descriptors();
    let started = Instant::now();
    let mut batch = Batch::new();
    for n in 0..400 {
        let mut command = Command::new("sh");
        command
            .args(["-c", &format!("echo {n}; echo e{n} >&2")])
            .timeout(Duration::from_secs(60))
            .stdout(Output::capture())
            .stderr(Output::capture());
        batch.add(format!("job{n}"), command);
    }
    let outcome = batch.parallel(16).run().expect("runs");
    assert!(outcome.success(), "{:?}", outcome.code());
    for (n, job) in outcome.jobs().iter().enumerate() {
        let ran = job.outcome().expect("every job ran");
        assert_eq!(ran.ending(), &Ending::Exited(0));
        assert_eq!(ran.stdout().text(), format!("{n}\n"));
        assert_eq!(ran.stderr().text(), format!("e{n}\n"));
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(open_descriptors(), before, "no descriptor leaked");
    assert_eq!(
        children(),
        Vec::<String>::new(),
        "no child left, zombie or not"
    );
}
