//! The library leaves a program's signal dispositions as they were. A test binary of
//! its own: these tests change process-wide dispositions, which every command started
//! meanwhile by another test would inherit.

use std::sync::Mutex;
use std::time::Duration;

use saferun::{Command, Ending, Output};

/// One test at a time changes the process's dispositions.
static DISPOSITIONS: Mutex<()> = Mutex::new(());

#[test]
fn signal_dispositions_are_as_the_program_left_them() {
    let _one = DISPOSITIONS.lock().unwrap();
    let disposition = |signal: i32| unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current);
        current.sa_sigaction
    };
    extern "C" fn on_usr1(_: libc::c_int) {}
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
    let before: Vec<_> = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGCHLD]
        .iter()
        .map(|s| disposition(*s))
        .collect();
    // A run that times out (so signals go out) and one that is cancelled.
    // (The commands ignore TERM, as the program does: KILL follows soon.)
    Command::new("sleep")
        .arg("10")
        .timeout(Duration::from_millis(100))
        .kill_after(Some(Duration::from_millis(100)))
        .run()
        .unwrap();
    let handle = Command::new("sleep")
        .arg("10")
        .kill_after(Some(Duration::from_millis(100)))
        .spawn()
        .unwrap();
    handle.cancel();
    handle.wait();
    let after: Vec<_> = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGCHLD]
        .iter()
        .map(|s| disposition(*s))
        .collect();
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGUSR1, libc::SIG_DFL);
    }
    assert_eq!(before, after);
}

#[test]
fn the_command_does_not_inherit_the_programs_handlers_but_its_ignored_signals() {
    let _one = DISPOSITIONS.lock().unwrap();
    // A signal the program ignores stays ignored in the command, as after a plain exec;
    // one the program handles is at its default there.
    extern "C" fn on_usr2(_: libc::c_int) {}
    unsafe {
        libc::signal(libc::SIGUSR2, on_usr2 as *const () as libc::sighandler_t);
    }
    let outcome = Command::new("sh")
        .args(["-c", "kill -USR2 $$; echo survived"])
        .stdout(Output::capture())
        .run()
        .unwrap();
    unsafe {
        libc::signal(libc::SIGUSR2, libc::SIG_DFL);
    }
    assert_eq!(outcome.ending(), &Ending::Signaled(libc::SIGUSR2));
    assert_eq!(outcome.stdout().text(), "");
}
