//! `--ci` markers checked against golden files (GitHub Actions' and GitLab's documented
//! formats), and `--junit` XML read back by an XML parser.

mod util;

use std::path::Path;

use util::{saferun, temp_dir};

/// The golden file's text; `SAFERUN_BLESS=1` rewrites it from `actual` instead.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("SAFERUN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        actual, expected,
        "{name} differs (SAFERUN_BLESS=1 rewrites it)"
    );
}

/// What varies from run to run: the stop-commands token, timestamps, pids, durations.
fn normalized(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line.to_string();
        if let Some(token) = line.strip_prefix("::stop-commands::") {
            let token = token.trim_end();
            assert_eq!(token.len(), 32, "a 128-bit token: {token}");
            line = line.replace(token, "TOKEN");
        }
        if line.starts_with("::") && line.trim_end().ends_with("::") && line.len() == 37 {
            line = "::TOKEN::\n".into();
        }
        for marker in ["section_start:", "section_end:"] {
            if let Some(at) = line.find(marker) {
                let rest = &line[at + marker.len()..];
                let stamp_end = rest.find(':').unwrap();
                let name_end = rest.find(['[', '\r']).unwrap();
                line = format!(
                    "{}{marker}STAMP:saferun_PID{}",
                    &line[..at],
                    &rest[name_end..]
                );
                let _ = stamp_end;
            }
        }
        if let Some(at) = line.find(" after ") {
            line = format!("{} after SECONDS\n", &line[..at]);
        }
        if line.starts_with("- ")
            && let Some(at) = line.rfind(", ")
        {
            line = format!("{}, SECONDS)\n", &line[..at]);
        }
        out.push_str(&line);
    }
    out
}

#[test]
fn github_group_stop_commands_annotation_and_summary() {
    let dir = temp_dir();
    let summary = dir.path().join("summary.md");
    let out = saferun([
        "-t",
        "0.5",
        "--",
        "sh",
        "-c",
        "echo '::error::injected by the command'; echo 'out, 100%'; sleep 5",
    ])
    .env("GITHUB_ACTIONS", "true")
    .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
    .run();
    out.assert_code(124)
        .assert_stdout("::error::injected by the command\nout, 100%\n");
    golden("ci-github.stderr", &normalized(&out.stderr_text()));
    let summary = std::fs::read_to_string(&summary).unwrap();
    golden("ci-github.summary.md", &normalized(&summary));
}

#[test]
fn github_success_has_no_annotation() {
    let dir = temp_dir();
    let summary = dir.path().join("summary.md");
    let out = saferun(["--ci", "github", "--", "echo", "fine"])
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .run();
    out.assert_code(0).assert_stdout("fine\n");
    let stderr = out.stderr_text();
    assert!(
        stderr.starts_with("::group::echo fine\n::stop-commands::"),
        "{out}"
    );
    assert!(
        stderr.ends_with("::endgroup::\n") && !stderr.contains("::error"),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .starts_with("- ✅ `echo fine`: exited 0")
    );
}

#[test]
fn gitlab_section_and_red_line() {
    let out = saferun(["--", "sh", "-c", "echo building; exit 3"])
        .env("GITLAB_CI", "true")
        .run();
    out.assert_code(3).assert_stdout("building\n");
    golden("ci-gitlab.stderr", &normalized(&out.stderr_text()));
}

#[test]
fn several_commands_annotate_each_failure() {
    let out = saferun([
        "--ci",
        "github",
        "--fail-fast",
        "--names",
        "lint,test",
        "--",
        "sh",
        "-c",
        "sleep 5",
        ":::",
        "sh",
        "-c",
        "exit 2",
    ])
    .run();
    out.assert_code(2);
    let stderr = out.stderr_text();
    assert!(
        stderr.starts_with("::group::2 commands: lint, test\n"),
        "{out}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert_eq!(
        errors,
        ["::error title=saferun%3A test::test: exited 2 after 0.0s"],
        "{out}"
    );
}

#[test]
fn no_markers_unless_a_runner_is_there() {
    let out = saferun(["--", "echo", "plain"]).run();
    out.assert_code(0).assert_stdout("plain\n");
    assert!(out.stderr.is_empty(), "{out}");
    let out = saferun(["--ci", "none", "--", "echo", "plain"])
        .env("GITHUB_ACTIONS", "true")
        .run();
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn junit_is_valid_xml_with_one_case_per_job() {
    let dir = temp_dir();
    let junit = dir.path().join("junit.xml");
    let out = saferun([
        "--junit",
        junit.to_str().unwrap(),
        "--fail-fast",
        "-j",
        "2",
        "--names",
        "build,lint,docs",
        "--",
        "sh",
        "-c",
        "printf '\\033[32mok\\033[0m <b> & done\\n'; yes line | head -c 300000; sleep 5",
        ":::",
        "sh",
        "-c",
        "sleep 0.3; echo 'lint failed' >&2; exit 1",
        ":::",
        "echo",
        "never",
    ])
    .run();
    out.assert_code(1);
    let text = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    let suite = suites.first_element_child().unwrap();
    assert_eq!(suite.tag_name().name(), "testsuite");
    for (attribute, value) in [
        ("tests", "3"),
        ("failures", "1"),
        ("errors", "0"),
        ("skipped", "2"),
    ] {
        assert_eq!(
            suite.attribute(attribute),
            Some(value),
            "{attribute}\n{text}"
        );
    }
    let cases: Vec<roxmltree::Node> = suite.children().filter(|n| n.is_element()).collect();
    let names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(names, ["build", "lint", "docs"]);
    fn child<'a, 'input>(
        case: &roxmltree::Node<'a, 'input>,
        tag: &str,
    ) -> roxmltree::Node<'a, 'input> {
        case.children()
            .find(|n| n.tag_name().name() == tag)
            .unwrap_or_else(|| panic!("no {tag} in {case:?}"))
    }
    let build_out = child(&cases[0], "system-out").text().unwrap();
    assert!(
        build_out.starts_with("\\x1b[32mok\\x1b[0m <b> & done\n"),
        "{build_out:.100}"
    );
    assert!(build_out.contains("bytes elided]"), "head and tail only");
    assert!(build_out.len() < 70_000);
    assert!(
        child(&cases[0], "skipped")
            .attribute("message")
            .unwrap()
            .contains("--fail-fast: lint failed")
    );
    let failure = child(&cases[1], "failure");
    assert_eq!(failure.attribute("message"), Some("exited 1"));
    assert_eq!(failure.attribute("type"), Some("exit-status"));
    assert_eq!(child(&cases[1], "system-err").text(), Some("lint failed\n"));
    assert!(
        child(&cases[2], "skipped")
            .attribute("message")
            .unwrap()
            .starts_with("not started")
    );
}

#[test]
fn junit_to_an_unwritable_path_runs_nothing() {
    let dir = temp_dir();
    let marker = dir.path().join("ran");
    let out = saferun([
        "--junit",
        "/nonexistent/dir/junit.xml",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ])
    .run();
    out.assert_code(125);
    assert_eq!(out.saferun_lines().len(), 1, "{out}");
    assert!(!marker.exists());
}
