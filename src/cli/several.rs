//! Several commands on one command line (`CMD ::: CMD`, `--procfile`): split, named,
//! checked, and turned into a [`saferun::Batch`] of commands that each get the same
//! per-command options.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use saferun::{Batch, Color, Stdin};

use super::{Inherited, StdinOption, flag_set};

/// The word that separates commands.
const SEPARATOR: &str = ":::";

/// The options of several commands, as given.
#[derive(Debug, Clone, Default)]
pub(super) struct Options {
    procfile: Option<PathBuf>,
    names: Option<String>,
    jobs: Option<usize>,
    fail_fast: bool,
    until: Option<String>,
    total_timeout: Option<Duration>,
    stdin_to: Option<String>,
    pub(super) group: bool,
    color: Color,
    /// An option that only makes sense for several commands was given: even one
    /// command then runs as a batch of one (a generated list that happens to be short).
    any_given: bool,
}

impl Options {
    pub(super) fn read(matches: &ArgMatches) -> Options {
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let word = |id: &str| matches.get_one::<String>(id).cloned();
        Options {
            procfile: matches.get_one::<PathBuf>("procfile").cloned(),
            names: word("names"),
            jobs: matches.get_one::<usize>("jobs").copied(),
            fail_fast: flag_set(matches, "fail-fast"),
            until: word("until"),
            total_timeout: matches
                .get_one::<super::Limit>("total-timeout")
                .and_then(|limit| limit.0),
            stdin_to: word("stdin-to"),
            group: flag_set(matches, "group"),
            color: match word("color").as_deref() {
                Some("always") => Color::Always,
                Some("never") => Color::Never,
                _ => Color::Auto,
            },
            any_given: [
                "procfile",
                "names",
                "jobs",
                "fail-fast",
                "until",
                "total-timeout",
                "stdin-to",
                "group",
                "color",
            ]
            .into_iter()
            .any(given),
        }
    }

    /// Whether the command line asks for several commands.
    pub(super) fn wanted(&self, argv: &[OsString]) -> bool {
        self.any_given || argv.iter().any(|word| word == SEPARATOR)
    }
}

/// The commands, named: from `:::`-separated words or the procfile.
fn commands(argv: &[OsString], options: &Options) -> Result<Vec<(String, Vec<OsString>)>, String> {
    if let Some(path) = &options.procfile {
        if !argv.is_empty() {
            return Err("--procfile cannot be used with a command on the command line".into());
        }
        if options.names.is_some() {
            return Err("--names cannot be used with --procfile (it names its commands)".into());
        }
        return procfile(path);
    }
    let mut commands: Vec<Vec<OsString>> = vec![Vec::new()];
    for word in argv {
        if word == SEPARATOR {
            commands.push(Vec::new());
        } else if let Some(last) = commands.last_mut() {
            last.push(word.clone());
        }
    }
    if let Some(at) = commands.iter().position(Vec::is_empty) {
        return Err(format!(
            "command {} of {} is empty (nothing between two ::: or at either end)",
            at + 1,
            commands.len()
        ));
    }
    let names = match &options.names {
        Some(names) => {
            let names: Vec<String> = names.split(',').map(str::to_string).collect();
            if names.len() != commands.len() {
                return Err(format!(
                    "--names gives {} names for {} commands",
                    names.len(),
                    commands.len()
                ));
            }
            names
        }
        None => default_names(&commands),
    };
    Ok(names.into_iter().zip(commands).collect())
}

/// Each command's first word, made unique: `make`, `make#2`, never a name another
/// command's first word already is.
fn default_names(commands: &[Vec<OsString>]) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let words: Vec<String> = commands
        .iter()
        .map(|command| command[0].to_string_lossy().into_owned())
        .collect();
    let given: HashSet<&str> = words.iter().map(String::as_str).collect();
    let mut used: HashSet<String> = HashSet::with_capacity(words.len());
    // The next number to try for each word: a thousand `true`s take linear time.
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut names = Vec::with_capacity(words.len());
    for word in &words {
        let mut name = word.clone();
        if used.contains(&name) {
            let n = next.entry(word.as_str()).or_insert(2);
            loop {
                name = format!("{word}#{n}");
                *n += 1;
                if !used.contains(&name) && !given.contains(name.as_str()) {
                    break;
                }
            }
        }
        used.insert(name.clone());
        names.push(name);
    }
    names
}

/// `NAME: COMMAND` lines (blank lines and `#` comments skipped), each command run with
/// `/bin/sh -c`.
fn procfile(path: &PathBuf) -> Result<Vec<(String, Vec<OsString>)>, String> {
    let text = std::fs::read(path).map_err(|source| {
        saferun::Error::Io {
            what: format!("cannot read the procfile {}", path.display()),
            source,
        }
        .to_string()
    })?;
    let mut commands = Vec::new();
    for (number, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        let at = format!("{}:{}", path.display(), number + 1);
        let Some(colon) = trimmed.iter().position(|b| *b == b':') else {
            return Err(format!("{at}: expected \"NAME: COMMAND\""));
        };
        let name = String::from_utf8_lossy(trimmed[..colon].trim_ascii()).into_owned();
        let command = trimmed[colon + 1..].trim_ascii();
        if name.is_empty() || command.is_empty() {
            return Err(format!("{at}: expected \"NAME: COMMAND\""));
        }
        // As foreman reads a Procfile: a name is letters, digits, `_`, `-` and `.`.
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(format!(
                "{at}: {name:?} is not a name (letters, digits, _ - . only)"
            ));
        }
        let argv = vec![
            OsString::from("/bin/sh"),
            OsString::from("-c"),
            OsStr::from_bytes(command).to_owned(),
        ];
        commands.push((name, argv));
    }
    if commands.is_empty() {
        return Err(format!("the procfile {} has no command", path.display()));
    }
    Ok(commands)
}

/// The batch the command line describes, or why it is refused.
pub(super) fn batch(options: &super::Options, inherited: Inherited) -> Result<Batch, String> {
    let several = &options.several;
    if options.stdout_file.is_some() || options.stderr_file.is_some() {
        return Err(
            "--stdout-file and --stderr-file are for one command (several commands write \
             their lines to saferun's own streams: redirect those)"
                .into(),
        );
    }
    let feeds_stdin = matches!(options.stdin, StdinOption::File(_) | StdinOption::Bytes(_));
    if feeds_stdin && several.stdin_to.is_none() {
        return Err("--input and --stdin-file need --stdin-to NAME with several commands".into());
    }
    let mut batch = Batch::new();
    for (name, argv) in commands(&options.argv, several)? {
        let mut command = options.command_for(&argv, inherited);
        if several.stdin_to.as_deref() != Some(name.as_str()) {
            command.stdin(Stdin::null());
        }
        batch.add(name, command);
    }
    batch
        .parallel(several.jobs.unwrap_or(0))
        .fail_fast(several.fail_fast)
        .color(several.color)
        .print_summary(true);
    if let Some(name) = &several.until {
        batch.until(name);
    }
    if let Some(name) = &several.stdin_to {
        batch.stdin_to(name);
    }
    if let Some(limit) = several.total_timeout {
        batch.total_timeout(limit);
    }
    match &options.report {
        Some(path) if path.as_os_str() == "-" => drop(batch.report_to_stderr()),
        Some(path) => drop(batch.report(path)),
        None => {}
    }
    batch.check().map_err(|error| error.to_string())?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<OsString> {
        text.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn separators_split_and_names_default_to_first_words() {
        let got = commands(&words("make a ::: make b ::: ls"), &Options::default()).unwrap();
        let names: Vec<_> = got.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["make", "make#2", "ls"]);
        assert_eq!(got[1].1, words("make b"));
    }

    #[test]
    fn made_up_names_never_meet_given_words() {
        let got = commands(&words("a ::: a ::: a#2"), &Options::default()).unwrap();
        let names: Vec<_> = got.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "a#3", "a#2"]);
    }

    #[test]
    fn empty_commands_are_refused() {
        for argv in [":::", "a :::", "::: a", "a ::: ::: b"] {
            let error = commands(&words(argv), &Options::default()).unwrap_err();
            assert!(error.contains("is empty"), "{argv}: {error}");
        }
    }

    #[test]
    fn names_must_match_the_commands() {
        let options = Options {
            names: Some("x,y,z".into()),
            ..Options::default()
        };
        let error = commands(&words("a ::: b"), &options).unwrap_err();
        assert_eq!(error, "--names gives 3 names for 2 commands");
    }
}
