//! Ctrl-Z in a real terminal (tmux): the whole command stops, every timer pauses, and
//! `fg` resumes both.

mod util;

use std::process::Command;
use std::time::Duration;

use util::eventually;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start() -> Option<Tmux> {
        let socket = format!("saferun-test-{}", std::process::id());
        let started = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "150", "-y", "40"])
            .args(["env", "PS1=$ ", "bash", "--norc", "--noprofile", "-i"])
            .status()
            .is_ok_and(|s| s.success());
        started.then_some(Tmux { socket })
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str, limit: Duration) -> bool {
        eventually(limit, || self.screen().contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn ctrl_z_stops_the_command_and_pauses_the_timeout() {
    let Some(tmux) = Tmux::start() else {
        assert!(
            std::env::var_os("SAFERUN_REQUIRE_TOOLS").is_none(),
            "tmux is required here but could not start"
        );
        eprintln!("skipped: tmux is not available");
        return;
    };
    assert!(
        tmux.wait_for("$", Duration::from_secs(10)),
        "{}",
        tmux.screen()
    );
    let line = format!(
        "{} -t 2 -- sh -c 'sleep 1.5; echo fini''shed'; echo status=$?",
        util::BIN
    );
    tmux.keys(&[&line, "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["C-z"]);
    assert!(
        tmux.wait_for("Stopped", Duration::from_secs(5)),
        "{}",
        tmux.screen()
    );
    // Stopped for longer than the whole timeout: the clock must not run meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!tmux.screen().contains("finished"), "{}", tmux.screen());
    tmux.keys(&["fg; echo fg-status=$?", "Enter"]);
    assert!(
        tmux.wait_for("fg-status=", Duration::from_secs(10)),
        "{}",
        tmux.screen()
    );
    let screen = tmux.screen();
    assert!(screen.contains("finished"), "{screen}");
    assert!(screen.contains("fg-status=0"), "{screen}");
    assert!(!screen.contains("timed out"), "{screen}");
}
