//! `--generate`: the man page renders, and every completion script knows every visible
//! option.

mod util;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use util::{BIN, saferun, temp_dir, tool};

/// The long options `--help` shows.
fn visible_options() -> BTreeSet<String> {
    let help = saferun(["--help"]).run();
    help.assert_code(0);
    help.stdout_text()
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | '=' | '/'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| {
            word.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        })
        .collect()
}

fn generated(what: &str) -> String {
    let out = saferun(["--generate", what]).run();
    out.assert_code(0);
    assert!(out.stderr.is_empty(), "{out}");
    out.stdout_text()
}

#[test]
fn the_man_page_renders() {
    let dir = temp_dir();
    let page = dir.path().join("saferun.1");
    std::fs::write(&page, generated("man")).unwrap();
    if !tool("man") {
        return;
    }
    let mut man = Command::new("man");
    man.arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100");
    let text = printed(man);
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "VERSION"] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    // The page's own markup must not leak into what a reader sees.
    assert!(!text.contains("\\-") && !text.contains(".TP"), "{text}");
    for option in visible_options() {
        assert!(text.contains(&option), "{option} missing from the man page");
    }
}

#[test]
fn every_completion_script_knows_every_visible_option() {
    let options = visible_options();
    assert!(options.len() > 30, "{options:?}");
    for (what, form) in [
        ("complete-bash", "{}"),
        ("complete-zsh", "{}"),
        ("complete-fish", "-l {}"),
    ] {
        let script = generated(what);
        for option in &options {
            let needle = form.replace(
                "{}",
                option.trim_start_matches(if what == "complete-fish" { "--" } else { "" }),
            );
            assert!(script.contains(&needle), "{what} lacks {option}");
        }
    }
}

#[test]
fn bash_loads_the_completion_and_completes_options() {
    if !tool("bash") {
        return;
    }
    let script = format!(
        "source <({BIN} --generate complete-bash) && \
         COMP_WORDS=(saferun --fail); COMP_CWORD=1; _saferun saferun --fail saferun; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let mut bash = Command::new("bash");
    bash.args(["-c", &script]);
    assert_eq!(printed(bash), "--fail-fast\n");
}

/// What a tool prints on stdout; it must succeed.
fn printed(mut command: Command) -> String {
    let out = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_names_the_version() {
    let out = saferun(["--version"]).run();
    out.assert_code(0)
        .assert_stdout(&format!("saferun {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn generate_refuses_anything_else() {
    let out = saferun(["--generate", "complete-powershell"]).run();
    out.assert_code(125);
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
}
