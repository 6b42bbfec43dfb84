//! The command's stdout and stderr on their way out: opening `-o`/`-e` files before
//! anything runs, assembling each stream's chain of sinks, and releasing output held by
//! `--quiet-unless-fail` once the exit status is known.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use crossbeam_channel::Sender;

use crate::config::{CapAction, OutputConfig};
use crate::event::{Event, Stream};
use crate::report::Notices;
use crate::sink::{Cap, CapStats, Destination, Fanout, Held, HeldOutput, Hold, Lines, Sink};

/// The files named with `-o` and `-e`, opened (and checked) before the command starts.
pub struct OpenFiles {
    stdout: Option<(File, String)>,
    stderr: Option<(File, String)>,
}

pub fn open_files(config: &OutputConfig) -> Result<OpenFiles> {
    if config.merge && config.stderr_file.is_some() {
        bail!("--stderr-file cannot be used with --merge (stderr goes into stdout)");
    }
    if config.tee && config.stdout_file.is_none() && config.stderr_file.is_none() {
        bail!("--tee needs --stdout-file or --stderr-file");
    }
    let stdout = open_one(
        config.stdout_file.as_deref(),
        config.append,
        "--stdout-file",
    )?;
    let stderr = open_one(
        config.stderr_file.as_deref(),
        config.append,
        "--stderr-file",
    )?;
    if let (Some((out, _)), Some((err, _))) = (&stdout, &stderr)
        && same_regular_file(out, err)
    {
        bail!(
            "--stdout-file and --stderr-file name the same file; use --merge to send both streams there"
        );
    }
    Ok(OpenFiles { stdout, stderr })
}

fn open_one(path: Option<&Path>, append: bool, option: &str) -> Result<Option<(File, String)>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let file = open_for_output(path, append)
        .with_context(|| format!("{option}: cannot open '{}'", path.display()))?;
    Ok(Some((file, format!("{option} '{}'", path.display()))))
}

fn open_for_output(path: &Path, append: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    options.open(path)
}

fn same_regular_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.is_file() && a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    }
}

/// What one stream's chain needs to know.
pub struct StreamSetup<'a> {
    pub stream: Stream,
    pub config: &'a OutputConfig,
    pub pid: i32,
    pub command: &'a str,
    pub start: Instant,
    pub notices: Notices,
    pub events: Sender<Event>,
}

/// One stream's sink chain and the handles the run keeps.
pub struct Built {
    pub sink: Box<dyn Sink>,
    pub cap: Option<Arc<CapStats>>,
    pub held: Option<HeldOutput>,
}

impl OpenFiles {
    /// Builds the chain for `setup.stream`, taking its file if it has one.
    pub fn build(&mut self, setup: StreamSetup<'_>) -> Result<Built> {
        let config = setup.config;
        let file = match setup.stream {
            Stream::Stdout => self.stdout.take(),
            Stream::Stderr => self.stderr.take(),
        };
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let to_file = file.is_some();
        if let Some((file, what)) = file {
            sinks.push(Box::new(Destination::file(file, what)));
        }
        let mut held = None;
        if !to_file || config.tee {
            if config.quiet_unless_fail {
                let output = Held::new();
                held = Some(output.clone());
                sinks.push(Box::new(Hold::new(output)));
            } else {
                let own = own_stream(setup.stream)?;
                sinks.push(Box::new(Destination::own_stream(own, setup.stream)));
            }
        }
        let mut sink: Box<dyn Sink> = if sinks.len() == 1 {
            sinks.pop().unwrap_or_else(|| unreachable!())
        } else {
            Box::new(Fanout::new(sinks))
        };
        if config.prefix.is_some() || config.timestamps.is_some() {
            // Under --merge both streams arrive on stdout: `out`.
            let label = match setup.stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            let prefix = Lines::render_prefix(
                config.prefix.as_deref().unwrap_or(""),
                label,
                setup.pid,
                setup.command,
            );
            sink = Box::new(Lines::new(sink, prefix, config.timestamps, setup.start));
        }
        let mut cap = None;
        if let Some(limit) = config.max_output {
            let stats = Arc::new(CapStats::default());
            cap = Some(stats.clone());
            let kill = (config.on_max_output == CapAction::Kill).then_some(setup.events);
            sink = Box::new(
                Cap::new(sink, limit, setup.stream, stats, setup.notices, kill)
                    .context("cannot create a temporary file for --max-output")?,
            );
        }
        Ok(Built { sink, cap, held })
    }
}

/// A duplicate of saferun's own stdout or stderr (or /dev/null if it is closed).
pub fn own_stream(stream: Stream) -> Result<File> {
    let fd = match stream {
        Stream::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
        Stream::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
    };
    match fd {
        Ok(fd) => Ok(File::from(fd)),
        Err(_) => Ok(OpenOptions::new().write(true).open("/dev/null")?),
    }
}

/// `--quiet-unless-fail`: prints what was held, stream by stream, if the run failed. The
/// copying happens on the notices writer, so a stalled reader cannot hold saferun past
/// its bound (see [`Notices::flush`]).
pub fn release_held(held: Vec<(Stream, HeldOutput)>, failed: bool, notices: &Notices) {
    for (stream, output) in held {
        if !failed {
            let bytes = output.lock().map(|o| o.len()).unwrap_or(0);
            notices.detail(&format!(
                "discarded {bytes} bytes of {} (--quiet-unless-fail, success)",
                stream.name()
            ));
            continue;
        }
        let reporter = notices.clone();
        notices.run(move || {
            let Ok(mut out) = own_stream(stream) else {
                return;
            };
            let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = output.release(&mut out) {
                reporter.say(&format!("cannot print the held {}: {error}", stream.name()));
            }
            let _ = out.flush();
        });
    }
}
