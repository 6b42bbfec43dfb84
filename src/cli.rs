//! The command line: clap's derive, whose doc comments are the `--help` text, turned
//! once into a plain [`Config`]. Nothing past this file sees clap.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};
use nix::sys::signal::Signal;

use saferun::config::{
    CapAction, Config, Leftovers, Limits, OnTimeout, OutputConfig, ReportTarget, StdinSource,
    Timestamps,
};
use saferun::{deadline, outcome, signal, units};

/// Run a command so that it never hangs on a full pipe, never outlives its time limit,
/// never eats unbounded memory, and always says how it ended.
///
/// Exit status: the command's own; 124 if a limit fired; 137 if the command had to be
/// killed with KILL; 125 if saferun itself failed; 126 if the command cannot be
/// executed; 127 if it was not found; death by the command's signal if it was killed
/// by one. See the README for every detail.
#[derive(Debug, Parser)]
#[command(name = "saferun", version, max_term_width = 100)]
struct Cli {
    /// Wall-clock limit for the command (e.g. 5, 1.5m, 1m30s, 250ms; 0 = none).
    #[arg(short = 't', long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    timeout: Option<Limit>,

    /// Limit on silence: no byte on stdout or stderr for this long counts as a timeout.
    #[arg(long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    idle_timeout: Option<Limit>,

    /// Signal sent when a limit fires (TERM, SIGTERM, term, 15, …).
    #[arg(short = 's', long, value_name = "SIG", default_value = "TERM", value_parser = signal_arg, allow_hyphen_values = true)]
    signal: Signal,

    /// Send KILL if the command is still running this long after the first signal
    /// (0 = never).
    #[arg(short = 'k', long, value_name = "DURATION", default_value = "5s", value_parser = duration, allow_hyphen_values = true)]
    kill_after: Limit,

    /// After a timeout, exit with the command's own status instead of 124.
    #[arg(short = 'p', long)]
    preserve_status: bool,

    /// Keep the command in saferun's process group; timeouts then signal it alone.
    #[arg(short = 'f', long)]
    foreground: bool,

    /// After the command exits, keep draining output that leftover processes still hold
    /// open for this long, then stop reading and say who holds it.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration, allow_hyphen_values = true)]
    linger: Limit,

    /// When the command exits, also signal what is left of its process tree
    /// (same as --leftovers=kill).
    #[arg(long)]
    kill_leftovers: bool,

    /// What to do about processes that outlive the command: warn (name them), fail
    /// (name them and exit 122 instead of 0), kill.
    #[arg(long, value_name = "WHAT", value_enum, default_value_t = LeftoversArg::Warn)]
    leftovers: LeftoversArg,

    /// A line on stderr for each signal sent, each stream stopped, and the process tree
    /// when a limit fires.
    #[arg(short = 'v', long)]
    verbose: bool,

    /// Feed the command this file as its stdin.
    #[arg(long, value_name = "PATH", group = "input_source")]
    stdin_file: Option<PathBuf>,

    /// Feed the command these bytes as its stdin (no newline added).
    #[arg(long, value_name = "STRING", group = "input_source")]
    input: Option<OsString>,

    /// Give the command /dev/null as its stdin.
    #[arg(long, group = "input_source")]
    no_stdin: bool,

    /// Write the command's stdout to this file instead of saferun's stdout.
    #[arg(short = 'o', long, value_name = "PATH")]
    stdout_file: Option<PathBuf>,

    /// Write the command's stderr to this file instead of saferun's stderr.
    #[arg(short = 'e', long, value_name = "PATH")]
    stderr_file: Option<PathBuf>,

    /// Append to the --stdout-file/--stderr-file instead of truncating.
    #[arg(long)]
    append: bool,

    /// A stream written to a file also passes through to saferun's own stream.
    #[arg(long)]
    tee: bool,

    /// Send the command's stderr into its stdout (one pipe, the order the kernel saw).
    #[arg(long)]
    merge: bool,

    /// Per stream, keep at most SIZE bytes: the first half as it comes, the last half at
    /// the end after a "[saferun: N bytes elided]" line (e.g. 1M, 64K, 10MB).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    max_output: Option<u64>,

    /// What reaching --max-output does: drop the middle, or kill (treated like a timeout).
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = CapArg::Drop)]
    on_max_output: CapArg,

    /// Prefix every line with TEMPLATE, where {stream} is out/err, {pid} the command's pid
    /// and {command} the command word. Each line is written whole with one write.
    #[arg(long, value_name = "TEMPLATE")]
    prefix: Option<String>,

    /// Prefix every line with a time: seconds since start (elapsed, the default), utc or
    /// local.
    #[arg(
        long,
        value_name = "CLOCK",
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "elapsed"
    )]
    timestamps: Option<TimestampsArg>,

    /// Hold all output and print it only if saferun exits non-zero (as chronic does).
    #[arg(long)]
    quiet_unless_fail: bool,

    /// Write a JSON record of the run to PATH (- for stderr), however it ends.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,

    /// Before the first signal of a timeout, run this shell command (with SAFERUN_PID,
    /// SAFERUN_PGID and SAFERUN_REASON set); its output goes to stderr and the report.
    #[arg(long, value_name = "CMD")]
    on_timeout: Option<String>,

    /// How long --on-timeout may run before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, allow_hyphen_values = true)]
    on_timeout_limit: Limit,

    /// The command and its arguments.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        num_args = 1..
    )]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CapArg {
    Drop,
    Kill,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TimestampsArg {
    Elapsed,
    Utc,
    Local,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LeftoversArg {
    Warn,
    Fail,
    Kill,
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

fn signal_arg(text: &str) -> Result<Signal, String> {
    signal::parse_signal(text).map_err(|e| format!("{e}; expected {}", signal::SIGNAL_FORM))
}

/// Parses saferun's own arguments. `Err` carries the exit status after the message
/// (usage errors: one `saferun:` line, 125; `--help`/`--version`: 0).
pub fn parse() -> Result<Config, i32> {
    parse_from(std::env::args_os())
}

fn parse_from(args: impl IntoIterator<Item = OsString>) -> Result<Config, i32> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                return Err(0);
            }
            eprintln!("saferun: {}", one_line(&error));
            return Err(i32::from(outcome::SAFERUN_FAILED));
        }
    };
    Ok(into_config(cli))
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

fn into_config(cli: Cli) -> Config {
    let stdin = if let Some(path) = cli.stdin_file {
        StdinSource::File(path)
    } else if let Some(input) = cli.input {
        use std::os::unix::ffi::OsStringExt;
        StdinSource::Bytes(input.into_vec())
    } else if cli.no_stdin {
        StdinSource::Null
    } else {
        StdinSource::Inherit
    };
    let leftovers = match (cli.kill_leftovers, cli.leftovers) {
        (true, _) | (_, LeftoversArg::Kill) => Leftovers::Kill,
        (_, LeftoversArg::Fail) => Leftovers::Fail,
        (_, LeftoversArg::Warn) => Leftovers::Warn,
    };
    let report = cli.report.map(|path| {
        if path.as_os_str() == "-" {
            ReportTarget::Stderr
        } else {
            ReportTarget::File(path)
        }
    });
    Config {
        argv: cli.command,
        limits: Limits {
            timeout: cli.timeout.and_then(|l| l.0),
            idle_timeout: cli.idle_timeout.and_then(|l| l.0),
            signal: cli.signal,
            kill_after: cli.kill_after.0,
            preserve_status: cli.preserve_status,
            linger: cli.linger.0.unwrap_or(Duration::ZERO),
        },
        share_group: cli.foreground,
        leftovers,
        verbose: cli.verbose,
        stdin,
        output: OutputConfig {
            stdout_file: cli.stdout_file,
            stderr_file: cli.stderr_file,
            append: cli.append,
            tee: cli.tee,
            merge: cli.merge,
            max_output: cli.max_output,
            on_max_output: match cli.on_max_output {
                CapArg::Drop => CapAction::Drop,
                CapArg::Kill => CapAction::Kill,
            },
            prefix: cli.prefix,
            timestamps: cli.timestamps.map(|t| match t {
                TimestampsArg::Elapsed => Timestamps::Elapsed,
                TimestampsArg::Utc => Timestamps::Utc,
                TimestampsArg::Local => Timestamps::Local,
            }),
            quiet_unless_fail: cli.quiet_unless_fail,
        },
        report,
        on_timeout: cli.on_timeout.map(|command| OnTimeout {
            command,
            limit: cli.on_timeout_limit.0.unwrap_or(units::PRACTICALLY_NEVER),
        }),
        outer_deadline: std::env::var(deadline::ENV)
            .ok()
            .and_then(|v| deadline::parse(&v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn config(args: &[&str]) -> Config {
        let args = std::iter::once("saferun").chain(args.iter().copied());
        parse_from(args.map(OsString::from)).expect("parses")
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn first_word_starts_the_command() {
        let c = config(&["-t", "5", "ls", "-l", "--timeout", "3"]);
        assert_eq!(c.argv, ["ls", "-l", "--timeout", "3"]);
        assert_eq!(c.limits.timeout, Some(Duration::from_secs(5)));
        let c = config(&["--", "-weird", "x"]);
        assert_eq!(c.argv, ["-weird", "x"]);
    }

    #[test]
    fn defaults() {
        let c = config(&["true"]);
        assert_eq!(c.limits.timeout, None);
        assert_eq!(c.limits.kill_after, Some(Duration::from_secs(5)));
        assert_eq!(c.limits.linger, Duration::from_secs(1));
        assert_eq!(c.limits.signal, Signal::SIGTERM);
        assert_eq!(c.leftovers, Leftovers::Warn);
        assert_eq!(c.stdin, StdinSource::Inherit);
    }

    #[test]
    fn zero_disables() {
        let c = config(&["-t", "0", "-k", "0", "--linger", "0", "true"]);
        assert_eq!(c.limits.timeout, None);
        assert_eq!(c.limits.kill_after, None);
        assert_eq!(c.limits.linger, Duration::ZERO);
    }

    #[test]
    fn errors_are_one_line() {
        let args = ["saferun", "-t", "5M", "true"].map(OsString::from);
        let error = Cli::try_parse_from(args).unwrap_err();
        let line = one_line(&error);
        assert!(!line.contains('\n'));
        assert!(line.contains("--timeout") && line.contains("5M"), "{line}");
    }
}
