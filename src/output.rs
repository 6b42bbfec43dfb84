//! The command's stdout and stderr on their way out: opening `-o`/`-e` files before
//! anything runs, assembling each stream's chain of sinks, and releasing output held by
//! `--quiet-unless-fail` once the exit status is known.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::Sender;

use crate::config::{CapAction, Inherited, OutputConfig};
use crate::event::{Event, Stream};
use crate::notices::Notices;
use crate::sink::{Cap, CapStats, Destination, Fanout, Held, HeldOutput, Hold, Lines, Sink};
use crate::stdio::{own_stream, own_streams_are_one_file};

/// The files named with `-o` and `-e`, opened (and checked) before the command starts
/// (see [`crate::files`]), each with the words that name it in messages.
pub struct OpenFiles {
    stdout: Option<(File, String)>,
    stderr: Option<(File, String)>,
}

impl OpenFiles {
    pub fn new(stdout: Option<(File, String)>, stderr: Option<(File, String)>) -> OpenFiles {
        OpenFiles { stdout, stderr }
    }
}

/// Whether a `--max-output` of `limit` bytes keeps its tail in a temporary file.
pub fn cap_spills(limit: u64) -> bool {
    limit - limit.div_ceil(2) > crate::sink::RING_IN_MEMORY
}

/// What one stream's chain needs to know.
pub struct StreamSetup<'a> {
    pub stream: Stream,
    pub config: &'a OutputConfig,
    /// saferun's own streams that were closed at start: nothing passes through to them.
    pub inherited: &'a Inherited,
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
        let own_closed = match setup.stream {
            Stream::Stdout => setup.inherited.stdout_closed,
            Stream::Stderr => setup.inherited.stderr_closed,
        };
        if to_file && config.tee && own_closed {
            setup.notices.say(&format!(
                "saferun's {} is closed: the command's {} goes to the file only",
                setup.stream.name(),
                setup.stream.name()
            ));
        } else if !to_file || config.tee {
            if config.quiet_unless_fail {
                let output = Held::new();
                held = Some(output.clone());
                sinks.push(Box::new(Hold::new(output)));
            } else {
                let own = own_stream(setup.stream)?;
                // saferun's notices go to its stderr: that stream, or stdout when it is
                // the same file (a terminal, `2>&1`), must tell how its last line ended.
                let shares_notices = match setup.stream {
                    Stream::Stderr => true,
                    Stream::Stdout => own_streams_are_one_file(),
                };
                let line_end = shares_notices.then(|| setup.notices.line_end());
                sinks.push(Box::new(Destination::own_stream(
                    own,
                    setup.stream,
                    line_end,
                )));
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
            sink = Box::new(Cap::new(
                sink,
                limit,
                setup.stream,
                stats,
                setup.notices,
                kill,
            ));
        }
        Ok(Built { sink, cap, held })
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
