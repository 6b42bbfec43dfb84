//! The command line: clap's builder, which also carries the `--help` text, turned once
//! into plain [`Options`], checked, and then into a [`saferun::Command`]. Nothing past
//! this file sees clap.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command, ValueHint, value_parser};
use saferun::{Leftovers, Output, Pty, Signal, Stdin, Timestamps};

use crate::units;

mod several;

/// What the command line asks for: one command, or several at once.
// Made once per process.
#[allow(clippy::large_enum_variant)]
pub enum Run {
    One(saferun::Command),
    Several(saferun::Batch),
}

/// The command line, ready to run.
pub struct Parsed {
    pub run: Run,
    /// Act as a container's init (`--init`, or saferun is PID 1).
    pub init: bool,
    /// `--remap-exit FROM=TO`, in order: the first match wins.
    pub remap_exit: Vec<(i32, i32)>,
    /// `--ci`, as given (`auto` is resolved by [`crate::ci::Ci::detect`]).
    pub ci: String,
    /// `--junit`, opened.
    pub junit: Option<crate::junit::Junit>,
}

/// What saferun's caller gave it that the command must get as from a plain exec. A
/// closed standard stream stays closed for the command (`seq 10 >&-` fails the same way
/// through saferun as without it, instead of its output vanishing), and an ignored
/// SIGPIPE stays ignored (saferun ignores it for itself either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inherited {
    pub stdin_closed: bool,
    pub stdout_closed: bool,
    pub stderr_closed: bool,
    pub sigpipe_ignored: bool,
}

/// Every option, with its `--help` text. The ids are the long names.
fn command() -> Command {
    Command::new("saferun")
        .version(env!("CARGO_PKG_VERSION"))
        .max_term_width(100)
        .about(
            "Run a command so that it never hangs on a full pipe, never outlives its time \
             limit, never eats unbounded memory, and always says how it ended",
        )
        .long_about(
            "Run a command so that it never hangs on a full pipe, never outlives its time \
             limit, never eats unbounded memory, and always says how it ended.\n\n\
             Exit status: the command's own; 124 if a limit fired; 137 if the command had to \
             be killed with KILL; 122 if --leftovers=fail and something outlived a command \
             that exited 0; 125 if saferun itself failed (bad usage, a file it cannot open \
             or write); 126 if the command cannot be executed; 127 if it was not found; \
             death by the command's signal if it was killed by one. See the README for \
             every detail.",
        )
        .group(ArgGroup::new("input_source").args(["stdin-file", "input", "no-stdin"]))
        .args([
            duration_arg("timeout", None)
                .short('t')
                .help("Wall-clock limit for the command (e.g. 5, 1.5m, 1m30s, 250ms; 0 = none)"),
            duration_arg("idle-timeout", None).help(
                "Limit on silence: no byte on stdout or stderr for this long counts as a timeout",
            ),
            duration_arg("heartbeat", None).help(
                "While the command is silent, a line on stderr this often (saferun: still \
                 running after 12m, last output 5m ago)",
            ),
            Arg::new("signal")
                .short('s')
                .long("signal")
                .value_name("SIG")
                .default_value("TERM")
                .value_parser(signal_arg)
                .allow_hyphen_values(true)
                .help("Signal sent when a limit fires (TERM, SIGTERM, term, 15, …)"),
            duration_arg("kill-after", Some("5s")).short('k').help(
                "Send KILL if the command is still running this long after the first signal \
                 (0 = never)",
            ),
            flag("preserve-status")
                .short('p')
                .help("After a timeout, exit with the command's own status instead of 124"),
            flag("foreground")
                .short('f')
                .help("Keep the command in saferun's process group; timeouts then signal it alone"),
            duration_arg("linger", Some("1s")).help(
                "After the command exits, keep draining output that leftover processes still \
                 hold open for this long, then stop reading and say who holds it",
            ),
            flag("kill-leftovers").help(
                "When the command exits, also signal what is left of its process tree \
                 (same as --leftovers=kill)",
            ),
            Arg::new("leftovers")
                .long("leftovers")
                .value_name("WHAT")
                .value_parser(["warn", "fail", "kill"])
                .default_value("warn")
                .help(
                    "What to do about processes that outlive the command: warn (name them), \
                     fail (name them and exit 122 instead of 0), kill",
                ),
            flag("verbose").short('v').help(
                "A line on stderr for each signal sent, each stream stopped, and the process \
                 tree when a limit fires",
            ),
            Arg::new("stdin-file")
                .long("stdin-file")
                .value_hint(ValueHint::FilePath)
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .help("Feed the command this file as its stdin"),
            Arg::new("input")
                .long("input")
                .value_name("STRING")
                .value_parser(value_parser!(OsString))
                .help("Feed the command these bytes as its stdin (no newline added)"),
            flag("no-stdin").help("Give the command /dev/null as its stdin"),
            Arg::new("stdout-file")
                .short('o')
                .long("stdout-file")
                .value_hint(ValueHint::FilePath)
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .help("Write the command's stdout to this file instead of saferun's stdout"),
            Arg::new("stderr-file")
                .short('e')
                .long("stderr-file")
                .value_hint(ValueHint::FilePath)
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .help("Write the command's stderr to this file instead of saferun's stderr"),
            flag("append").help("Append to the --stdout-file/--stderr-file instead of truncating"),
            flag("tee")
                .help("A stream written to a file also passes through to saferun's own stream"),
            flag("merge").help(
                "Send the command's stderr into its stdout (one pipe, the order the kernel saw)",
            ),
            Arg::new("max-output")
                .long("max-output")
                .value_name("SIZE")
                .value_parser(size)
                .help(
                    "Per stream, keep at most SIZE bytes: the first half as it comes, the last \
                     half at the end after a \"[saferun: N bytes elided]\" line (e.g. 1M, 64K, \
                     10MB)",
                ),
            Arg::new("on-max-output")
                .long("on-max-output")
                .value_name("ACTION")
                .value_parser(["drop", "kill"])
                .default_value("drop")
                .help(
                    "What reaching --max-output does: drop the middle, or kill (treated like a \
                     timeout)",
                ),
            Arg::new("prefix")
                .long("prefix")
                .value_name("TEMPLATE")
                .help(
                    "Prefix every line with TEMPLATE, where {stream} is out/err, {pid} the \
                     command's pid and {command} the command word. Each line is written whole \
                     with one write",
                ),
            Arg::new("timestamps")
                .long("timestamps")
                .value_name("CLOCK")
                .value_parser(["elapsed", "utc", "local"])
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("elapsed")
                .help(
                    "Prefix every line with a time: seconds since start (elapsed, the default), \
                     utc or local",
                ),
            Arg::new("pty")
                .long("pty")
                .value_name("WHEN")
                .value_parser(["auto", "always", "never"])
                .num_args(0..=1)
                .require_equals(true)
                .default_value("auto")
                .default_missing_value("always")
                .help(
                    "Make the command's stdout a pseudo-terminal, so that it line-buffers and \
                     keeps colours: auto (when saferun's stdout is a terminal and passes \
                     through unchanged), always (--pty), never",
                ),
            flag("pty-stdin").help(
                "With --pty, the command's stdin is that terminal too, fed by saferun line by \
                 line",
            ),
            flag("quiet-unless-fail").help(
                "Hold all output and print it only if saferun exits non-zero (as chronic does)",
            ),
            Arg::new("report")
                .long("report")
                .value_hint(ValueHint::FilePath)
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .help("Write a JSON record of the run to PATH (- for stderr), however it ends"),
            Arg::new("on-timeout")
                .long("on-timeout")
                .value_name("CMD")
                .help(
                    "Before the first signal of a timeout, run this shell command (with \
                     SAFERUN_PID, SAFERUN_PGID and SAFERUN_REASON set); its output goes to \
                     stderr and the report",
                ),
            duration_arg("on-timeout-limit", Some("10s"))
                .help("How long --on-timeout may run before it is killed"),
            Arg::new("ci")
                .long("ci")
                .value_name("RUNNER")
                .value_parser(["auto", "github", "gitlab", "none"])
                .default_value("auto")
                .help_heading(CI)
                .help(
                    "Fold the command's output into a collapsible group, and annotate a failure: \
                     auto (GITHUB_ACTIONS or GITLAB_CI), github, gitlab, none",
                ),
            Arg::new("junit")
                .long("junit")
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .value_hint(ValueHint::FilePath)
                .help_heading(CI)
                .help("Write JUnit XML to PATH: one test case per command, with the head and tail of its output"),
            flag("init").help_heading(CONTAINER).help(
                "Act as a container's init (on by itself when saferun is PID 1): reap every \
                 orphan, pass on every signal, and when the command ends stop what is left \
                 (--signal, --kill-after, KILL) and name it",
            ),
            Arg::new("remap-exit")
                .long("remap-exit")
                .value_name("FROM=TO")
                .value_parser(remap)
                .action(ArgAction::Append)
                .help_heading(CONTAINER)
                .help(
                    "Exit with TO instead of FROM (e.g. 143=0: a clean stop by TERM is no \
                     failure); may be repeated",
                ),
            Arg::new("generate")
                .long("generate")
                .value_name("WHAT")
                .value_parser(["man", "complete-bash", "complete-zsh", "complete-fish"])
                .exclusive(true)
                .help("Print saferun's man page or a shell's completion script, and exit"),
            Arg::new("procfile")
                .long("procfile")
                .value_hint(ValueHint::FilePath)
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help_heading(SEVERAL)
                .help("Run the commands of FILE at once: \"NAME: COMMAND\" lines, each run with /bin/sh -c"),
            Arg::new("names")
                .long("names")
                .value_name("NAMES")
                .help_heading(SEVERAL)
                .help(
                    "Comma-separated names for the commands (default: each command's first \
                     word, made unique: make, make#2)",
                ),
            Arg::new("jobs")
                .short('j')
                .long("jobs")
                .value_name("N")
                .value_parser(value_parser!(usize))
                .help_heading(SEVERAL)
                .help("Run at most N commands at once (default: all; 0 = all); the rest start in order"),
            flag("fail-fast").help_heading(SEVERAL).help(
                "The first command that fails stops the others (signal, grace, KILL) and no \
                 more start",
            ),
            Arg::new("until")
                .long("until")
                .value_name("NAME")
                .help_heading(SEVERAL)
                .help("When command NAME ends, stop the others; exit with NAME's status"),
            duration_arg("total-timeout", None)
                .help_heading(SEVERAL)
                .help("Wall-clock limit for all the commands together"),
            Arg::new("stdin-to")
                .long("stdin-to")
                .value_name("NAME")
                .help_heading(SEVERAL)
                .help("Give saferun's stdin (or --input, --stdin-file) to command NAME; the others read /dev/null"),
            flag("group").help_heading(SEVERAL).help(
                "Print each command's output as one block when it ends, instead of line by line",
            ),
            Arg::new("color")
                .long("color")
                .value_name("WHEN")
                .value_parser(["auto", "always", "never"])
                .default_value("auto")
                .help_heading(SEVERAL)
                .help("Colour each command's [name] prefix: auto (on a terminal, unless NO_COLOR), always, never"),
            Arg::new("command")
                .value_name("COMMAND")
                .value_parser(value_parser!(OsString))
                .required_unless_present_any(["procfile", "generate"])
                .value_hint(ValueHint::CommandWithArguments)
                .trailing_var_arg(true)
                .num_args(1..)
                .help(
                    "The command and its arguments; several commands are separated by a \
                     word that is exactly :::",
                ),
        ])
}

/// The `--help` section of the options for CI runners.
const CI: &str = "CI runners";

/// The `--help` section of the options for containers.
const CONTAINER: &str = "Containers";

/// The `--help` section of the options for several commands.
const SEVERAL: &str = "Several commands (COMMAND ::: COMMAND ...)";

/// An option taking a DURATION (`0` turns the limit off).
fn duration_arg(long: &'static str, default: Option<&'static str>) -> Arg {
    let arg = Arg::new(long)
        .long(long)
        .value_name("DURATION")
        .value_parser(duration)
        .allow_hyphen_values(true);
    match default {
        Some(value) => arg.default_value(value),
        None => arg,
    }
}

fn flag(long: &'static str) -> Arg {
    Arg::new(long).long(long).action(ArgAction::SetTrue)
}

/// A parsed DURATION; `None` is `0`, the limit turned off.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<Duration>);

fn duration(text: &str) -> Result<Limit, String> {
    units::parse_duration(text)
        .map(Limit)
        .map_err(|e| format!("{e}; expected {}", units::DURATION_FORM))
}

fn size(text: &str) -> Result<u64, String> {
    units::parse_size(text).map_err(|e| format!("{e}; expected {}", units::SIZE_FORM))
}

/// `FROM=TO`, two exit statuses.
fn remap(text: &str) -> Result<(i32, i32), String> {
    let status = |part: &str| part.trim().parse::<u8>().ok().map(i32::from);
    text.split_once('=')
        .and_then(|(from, to)| Some((status(from)?, status(to)?)))
        .ok_or_else(|| format!("{text:?} is not FROM=TO with two exit statuses (0-255)"))
}

fn signal_arg(text: &str) -> Result<Signal, String> {
    units::parse_signal(text).map_err(|e| format!("{e}; expected {}", units::SIGNAL_FORM))
}

/// The command line, read: every option as the user gave it, typed.
#[derive(Debug, Clone)]
struct Options {
    argv: Vec<OsString>,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    heartbeat: Option<Duration>,
    signal: Signal,
    kill_after: Option<Duration>,
    preserve_status: bool,
    foreground: bool,
    linger: Duration,
    leftovers: Leftovers,
    verbose: bool,
    stdin: StdinOption,
    stdout_file: Option<PathBuf>,
    stderr_file: Option<PathBuf>,
    append: bool,
    tee: bool,
    merge: bool,
    max_output: Option<u64>,
    kill_at_max_output: bool,
    prefix: Option<String>,
    timestamps: Option<Timestamps>,
    quiet_unless_fail: bool,
    pty: PtyOption,
    pty_stdin: bool,
    junit: Option<PathBuf>,
    report: Option<PathBuf>,
    on_timeout: Option<(String, Duration)>,
    several: several::Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PtyOption {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StdinOption {
    Inherit,
    File(PathBuf),
    Bytes(Vec<u8>),
    Null,
}

/// Parses saferun's own arguments (the program name first) into the command to run.
/// `Err` carries the exit status after the refusal was said (one `saferun:` line, 125,
/// and the report if one is asked for; `--help`/`--version`: 0).
pub fn parse(args: Vec<OsString>, inherited: Inherited) -> Result<Parsed, i32> {
    let matches = match command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => {
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                // Help that cannot be written (a full disk) is saferun's failure.
                return Err(match error.print() {
                    Ok(()) => 0,
                    Err(_) => 125,
                });
            }
            // What could be read of the command line still says where the report goes.
            let partial = command()
                .ignore_errors(true)
                .try_get_matches_from(&args)
                .ok()
                .map(|m| options(&m).command(inherited));
            return Err(refuse(partial.as_ref(), one_line(&error)));
        }
    };
    if let Some(what) = word(&matches, "generate") {
        return Err(generate(what));
    }
    let init = flag_set(&matches, "init") || std::process::id() == 1;
    let remap_exit: Vec<(i32, i32)> = matches
        .get_many::<(i32, i32)>("remap-exit")
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let mut options = options(&matches);
    let leftovers_given = flag_set(&matches, "kill-leftovers")
        || matches.value_source("leftovers") == Some(ValueSource::CommandLine);
    if init && !leftovers_given {
        // What outlives the command would die with the namespace, by KILL: stop it
        // gracefully first.
        options.leftovers = Leftovers::Kill;
    }
    // The JUnit file is opened last, once nothing else can refuse the run.
    let junit = |options: &Options| {
        options
            .junit
            .clone()
            .map(crate::junit::Junit::open)
            .transpose()
    };
    let parsed = |run, junit| Parsed {
        run,
        init,
        remap_exit,
        ci: word(&matches, "ci").unwrap_or("auto").to_string(),
        junit,
    };
    if options.several.wanted(&options.argv) {
        return match check(&matches, &options)
            .and_then(|()| several::batch(&options, inherited))
            .and_then(|batch| Ok((batch, junit(&options)?)))
        {
            Ok((batch, junit)) => Ok(parsed(Run::Several(batch), junit)),
            Err(message) => Err(refuse_batch(&options, message)),
        };
    }
    let command = options.command(inherited);
    match check(&matches, &options).and_then(|()| junit(&options)) {
        Ok(junit) => {
            if inherited.stdout_closed && options.tee && options.stdout_file.is_some() {
                crate::say(
                    "saferun's stdout is closed: the command's stdout goes to the file only",
                );
            }
            if inherited.stderr_closed && options.tee && options.stderr_file.is_some() {
                crate::say(
                    "saferun's stderr is closed: the command's stderr goes to the file only",
                );
            }
            Ok(parsed(Run::One(command), junit))
        }
        Err(message) => Err(refuse(Some(&command), message)),
    }
}

/// `--generate`: the man page or a completion script on stdout. Returns the exit status.
fn generate(what: &str) -> i32 {
    let mut text = Vec::new();
    let mut cli = command();
    let written = match what {
        "man" => clap_mangen::Man::new(cli).render(&mut text),
        shell => {
            let shell = match shell {
                "complete-zsh" => clap_complete::Shell::Zsh,
                "complete-fish" => clap_complete::Shell::Fish,
                _ => clap_complete::Shell::Bash,
            };
            clap_complete::generate(shell, &mut cli, "saferun", &mut text);
            Ok(())
        }
    };
    let printed = written.and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &text));
    match printed {
        Ok(()) => 0,
        Err(error) => {
            crate::say(&format!("cannot write the {what}: {error}"));
            125
        }
    }
}

/// Says why several commands are refused (and reports it, when a report is asked for).
fn refuse_batch(options: &Options, message: String) -> i32 {
    let mut batch = saferun::Batch::new();
    match &options.report {
        Some(path) if path.as_os_str() == "-" => drop(batch.report_to_stderr()),
        Some(path) => drop(batch.report(path)),
        None => {}
    }
    let error = batch.refuse(message);
    crate::say(&error.to_string());
    error.code()
}

/// Says why the run is refused (and reports it, when a report is asked for).
fn refuse(command: Option<&saferun::Command>, message: String) -> i32 {
    let error = match command {
        Some(command) => command.refuse(message),
        None => saferun::Error::Refused { message },
    };
    crate::say(&error.to_string());
    error.code()
}

/// Options that contradict each other, or that would do nothing: refused rather than
/// silently ignored, since the user meant something by them.
fn check(matches: &ArgMatches, options: &Options) -> Result<(), String> {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let files = options.stdout_file.is_some() || options.stderr_file.is_some();
    if options.merge && options.stderr_file.is_some() {
        return Err("--stderr-file cannot be used with --merge (stderr goes into stdout)".into());
    }
    if options.tee && !files {
        return Err("--tee needs --stdout-file or --stderr-file".into());
    }
    if options.append && !files {
        return Err("--append does nothing without --stdout-file or --stderr-file".into());
    }
    if options.pty_stdin && options.pty == PtyOption::Never {
        return Err("--pty-stdin needs a pseudo-terminal: it contradicts --pty=never".into());
    }
    if given("on-max-output") && options.max_output.is_none() {
        return Err("--on-max-output does nothing without --max-output".into());
    }
    if given("on-timeout-limit") && options.on_timeout.is_none() {
        return Err("--on-timeout-limit does nothing without --on-timeout".into());
    }
    if flag_set(matches, "kill-leftovers")
        && given("leftovers")
        && word(matches, "leftovers") != Some("kill")
    {
        return Err(format!(
            "--kill-leftovers contradicts --leftovers={}",
            word(matches, "leftovers").unwrap_or_default()
        ));
    }
    let everything_to_files =
        options.stdout_file.is_some() && (options.stderr_file.is_some() || options.merge);
    if options.quiet_unless_fail && everything_to_files && !options.tee {
        return Err(
            "--quiet-unless-fail does nothing when every stream goes to a file \
                    (add --tee to hold a copy for the terminal)"
                .into(),
        );
    }
    let limited = given("timeout")
        || given("idle-timeout")
        || given("total-timeout")
        || options.kill_at_max_output
        || std::env::var_os("SAFERUN_DEADLINE").is_some();
    if !limited {
        let limits = "a limit (--timeout, --idle-timeout or --on-max-output=kill)";
        if options.preserve_status {
            return Err(format!("--preserve-status does nothing without {limits}"));
        }
        if options.on_timeout.is_some() {
            return Err(format!("--on-timeout does nothing without {limits}"));
        }
        if given("signal") && options.leftovers != Leftovers::Kill {
            return Err(format!(
                "--signal does nothing without {limits} or --leftovers=kill"
            ));
        }
    }
    Ok(())
}

/// clap's message, folded into the one line the contract promises.
fn one_line(error: &clap::Error) -> String {
    if error.kind() == ErrorKind::MissingRequiredArgument {
        return "missing command; usage: saferun [OPTIONS] [--] COMMAND [ARG]... \
                (try 'saferun --help')"
            .into();
    }
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (try 'saferun --help')")
}

/// Whether a flag was given; false also where a command line that failed to parse has
/// no value for it (clap panics on `get_flag` there).
fn flag_set(matches: &ArgMatches, id: &str) -> bool {
    matches
        .try_get_one::<bool>(id)
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false)
}

fn word<'a>(matches: &'a ArgMatches, id: &str) -> Option<&'a str> {
    matches.get_one::<String>(id).map(String::as_str)
}

fn options(matches: &ArgMatches) -> Options {
    let path = |id: &str| matches.get_one::<PathBuf>(id).cloned();
    let limit = |id: &str| matches.get_one::<Limit>(id).and_then(|limit| limit.0);
    let word = |id: &str| word(matches, id);
    let stdin = if let Some(path) = path("stdin-file") {
        StdinOption::File(path)
    } else if let Some(input) = matches.get_one::<OsString>("input") {
        StdinOption::Bytes(input.as_bytes().to_vec())
    } else if flag_set(matches, "no-stdin") {
        StdinOption::Null
    } else {
        StdinOption::Inherit
    };
    Options {
        argv: matches
            .get_many::<OsString>("command")
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        timeout: limit("timeout"),
        idle_timeout: limit("idle-timeout"),
        heartbeat: limit("heartbeat"),
        // Missing only from what is left of a command line that failed to parse.
        signal: matches
            .get_one::<Signal>("signal")
            .copied()
            .unwrap_or(Signal::SIGTERM),
        kill_after: limit("kill-after"),
        preserve_status: flag_set(matches, "preserve-status"),
        foreground: flag_set(matches, "foreground"),
        linger: limit("linger").unwrap_or(Duration::ZERO),
        leftovers: match (flag_set(matches, "kill-leftovers"), word("leftovers")) {
            (true, _) | (_, Some("kill")) => Leftovers::Kill,
            (_, Some("fail")) => Leftovers::Fail,
            _ => Leftovers::Warn,
        },
        verbose: flag_set(matches, "verbose"),
        stdin,
        stdout_file: path("stdout-file"),
        stderr_file: path("stderr-file"),
        append: flag_set(matches, "append"),
        tee: flag_set(matches, "tee"),
        merge: flag_set(matches, "merge"),
        max_output: matches.get_one::<u64>("max-output").copied(),
        kill_at_max_output: word("on-max-output") == Some("kill"),
        prefix: matches.get_one::<String>("prefix").cloned(),
        timestamps: word("timestamps").map(|clock| match clock {
            "utc" => Timestamps::Utc,
            "local" => Timestamps::Local,
            _ => Timestamps::Elapsed,
        }),
        quiet_unless_fail: flag_set(matches, "quiet-unless-fail"),
        pty: match word("pty") {
            Some("always") => PtyOption::Always,
            Some("never") => PtyOption::Never,
            _ => PtyOption::Auto,
        },
        pty_stdin: flag_set(matches, "pty-stdin"),
        junit: path("junit"),
        report: path("report"),
        on_timeout: matches.get_one::<String>("on-timeout").map(|command| {
            let limit = limit("on-timeout-limit").unwrap_or(units::PRACTICALLY_NEVER);
            (command.clone(), limit)
        }),
        several: several::Options::read(matches),
    }
}

impl Options {
    /// The command these options describe.
    fn command(&self, inherited: Inherited) -> saferun::Command {
        let mut command = self.command_for(&self.argv, inherited);
        match &self.report {
            Some(path) if path.as_os_str() == "-" => command.report_to_stderr(),
            Some(path) => command.report(path),
            None => &mut command,
        };
        command
    }

    /// `argv` with these options (but the report, which is the whole run's).
    fn command_for(&self, argv: &[OsString], inherited: Inherited) -> saferun::Command {
        let mut command = saferun::Command::from_argv(argv);
        if let Some(timeout) = self.timeout {
            command.timeout(timeout);
        }
        if let Some(idle) = self.idle_timeout {
            command.idle_timeout(idle);
        }
        if let Some(every) = self.heartbeat {
            command.heartbeat(every);
        }
        command
            .signal(self.signal)
            .kill_after(self.kill_after)
            .preserve_status(self.preserve_status)
            .own_group(!self.foreground)
            .take_terminal(!self.foreground)
            .linger(self.linger)
            .leftovers(self.leftovers)
            .print_notices(true, self.verbose)
            .keep_sigpipe_ignored(inherited.sigpipe_ignored)
            .pty(self.pty_for(inherited))
            .pty_stdin(self.pty_stdin)
            .stdin(match &self.stdin {
                _ if inherited.stdin_closed && self.stdin == StdinOption::Inherit => {
                    Stdin::closed()
                }
                StdinOption::Inherit => Stdin::inherit(),
                StdinOption::File(path) => Stdin::file(path),
                StdinOption::Bytes(bytes) => Stdin::bytes(bytes.clone()),
                StdinOption::Null => Stdin::null(),
            })
            .stdout(self.output(self.stdout_file.as_ref(), inherited.stdout_closed));
        if self.merge {
            command.merge_stderr();
        } else {
            command.stderr(self.output(self.stderr_file.as_ref(), inherited.stderr_closed));
        }
        if let Some((hook, limit)) = &self.on_timeout {
            command.on_timeout(hook.clone(), *limit);
        }
        command
    }

    /// Whether the command's stdout is a pseudo-terminal. `auto`: when saferun's own
    /// stdout is a terminal and the command's passes through to it unchanged (one
    /// command, no file, no prefix, no cap, nothing held), so the command sees much
    /// what it would see without saferun; `--pty-stdin` asks for one.
    fn pty_for(&self, inherited: Inherited) -> Pty {
        match self.pty {
            PtyOption::Always => Pty::Always,
            PtyOption::Never => Pty::Never,
            PtyOption::Auto if self.pty_stdin => Pty::Always,
            PtyOption::Auto => {
                let plain = self.stdout_file.is_none()
                    && self.prefix.is_none()
                    && self.timestamps.is_none()
                    && self.max_output.is_none()
                    && !self.quiet_unless_fail
                    && !inherited.stdout_closed;
                // Several commands never get one by default: their lines are labelled.
                if plain
                    && nix::unistd::isatty(std::io::stdout()).unwrap_or(false)
                    && !self.several.wanted(&self.argv)
                {
                    Pty::IfAvailable
                } else {
                    Pty::Never
                }
            }
        }
    }

    /// One output stream: to its file (also passed through with `--tee`), or to
    /// saferun's own stream (closed for the command when saferun's is closed), shaped
    /// as the options say.
    fn output(&self, file: Option<&PathBuf>, own_closed: bool) -> Output {
        let mut output = match file {
            Some(path) if self.append => Output::append(path),
            Some(path) => Output::file(path),
            None if own_closed => return Output::closed(),
            None => Output::inherit(),
        };
        if file.is_some() && self.tee && !own_closed {
            output = output.tee();
        }
        if self.quiet_unless_fail {
            output = output.hold_unless_failure();
        } else if self.several.group {
            output = output.hold_until_end();
        }
        if let Some(limit) = self.max_output {
            output = output.cap(limit);
            if self.kill_at_max_output {
                output = output.kill_at_cap();
            }
        }
        if let Some(prefix) = &self.prefix {
            output = output.prefix(prefix.clone());
        }
        if let Some(clock) = self.timestamps {
            output = output.timestamps(clock);
        }
        if self.junit.is_some() {
            output = output.keep_excerpt(crate::junit::EXCERPT);
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_of(args: &[&str]) -> Options {
        let args = std::iter::once("saferun").chain(args.iter().copied());
        let matches = command()
            .try_get_matches_from(args.map(OsString::from))
            .expect("parses");
        options(&matches)
    }

    #[test]
    fn clap_definition_is_valid() {
        command().debug_assert();
    }

    #[test]
    fn first_word_starts_the_command() {
        let o = options_of(&["-t", "5", "ls", "-l", "--timeout", "3"]);
        assert_eq!(o.argv, ["ls", "-l", "--timeout", "3"]);
        assert_eq!(o.timeout, Some(Duration::from_secs(5)));
        let o = options_of(&["--", "-weird", "x"]);
        assert_eq!(o.argv, ["-weird", "x"]);
    }

    #[test]
    fn defaults() {
        let o = options_of(&["true"]);
        assert_eq!(o.timeout, None);
        assert_eq!(o.kill_after, Some(Duration::from_secs(5)));
        assert_eq!(o.linger, Duration::from_secs(1));
        assert_eq!(o.signal, Signal::SIGTERM);
        assert_eq!(o.leftovers, Leftovers::Warn);
        assert_eq!(o.stdin, StdinOption::Inherit);
    }

    #[test]
    fn zero_disables() {
        let o = options_of(&["-t", "0", "-k", "0", "--linger", "0", "true"]);
        assert_eq!(o.timeout, None);
        assert_eq!(o.kill_after, None);
        assert_eq!(o.linger, Duration::ZERO);
    }

    #[test]
    fn errors_are_one_line() {
        let args = ["saferun", "-t", "5M", "true"].map(OsString::from);
        let error = command().try_get_matches_from(args).unwrap_err();
        let line = one_line(&error);
        assert!(!line.contains('\n'));
        assert!(line.contains("--timeout") && line.contains("5M"), "{line}");
    }
}
