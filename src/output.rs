//! The command's stdout and stderr on their way out: assembling each stream's chain of
//! sinks from its configuration, and releasing output held by `--quiet-unless-fail` or
//! `--group` once the exit status is known.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::config::{CapAction, Hold as HoldUntil, StreamConfig, Target};
use crate::event::{Event, Stream};
use crate::notices::Notices;
use crate::sink::{
    Cap, CapStats, Capture, Destination, Discard, Excerpt, ExcerptBytes, Fanout, Held, HeldOutput,
    Hold, LineCalls, Lines, Sink, ToSeat,
};
use crate::stdio::{own_stream, own_streams_are_one_file};

/// Whether a `--max-output` of `limit` bytes keeps its tail in a temporary file.
pub(crate) fn cap_spills(limit: u64) -> bool {
    limit - limit.div_ceil(2) > crate::sink::RING_IN_MEMORY
}

/// What one stream's chain needs to know.
pub(crate) struct StreamSetup<'a> {
    pub stream: Stream,
    /// The label `{stream}` stands for: under `--merge` both streams arrive as `out`.
    pub label: &'static str,
    pub config: &'a StreamConfig,
    /// Its file (`-o`/`-e`), opened and checked before the command started, with the
    /// words that name it in messages.
    pub file: Option<(File, String)>,
    pub pid: i32,
    pub command: &'a str,
    pub start: Instant,
    pub notices: Notices,
    pub events: Sender<Event>,
}

/// One stream's sink chain and the handles the job keeps.
pub(crate) struct Built {
    pub sink: Box<dyn Sink>,
    pub cap: Option<Arc<CapStats>>,
    pub held: Option<(HoldUntil, HeldOutput)>,
    pub captured: Option<Arc<Mutex<Vec<u8>>>>,
    pub excerpt: Option<Arc<Mutex<ExcerptBytes>>>,
}

/// Builds the chain for one stream:
///
/// ```text
/// drain ─▶ [Excerpt (--junit)] ─▶ Cap (--max-output) ─▶ Lines (--prefix/--timestamps) ─▶ Fanout ─┬▶ file, capture or callback
///                                                                          └▶ [Hold (--quiet-unless-fail, --group)] ─▶ the process's own stream
/// ```
///
/// In a batch the process's own stream is the batch's console (see [`crate::console`]).
pub(crate) fn build(setup: StreamSetup<'_>) -> Built {
    let config = setup.config;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let mut captured = None;
    match &config.to {
        Target::File { .. } => {
            if let Some((file, what)) = setup.file {
                // `-e /dev/stderr` is saferun's own stderr after all.
                let line_end = is_own_stderr(&file).then(|| setup.notices.line_end());
                let file = Destination::file(file, what, line_end);
                sinks.push(Box::new(if config.line_mode() {
                    file.whole_writes()
                } else {
                    file
                }));
            }
        }
        Target::Capture => {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            captured = Some(buffer.clone());
            sinks.push(Box::new(Capture::new(buffer)));
        }
        Target::Lines(callback) => sinks.push(Box::new(LineCalls::new(callback.clone()))),
        Target::Null => sinks.push(Box::new(Discard)),
        Target::Inherit | Target::Closed => {}
    }
    let mut held = None;
    if config.passes_through() {
        if config.hold != HoldUntil::No {
            let output = Held::new();
            held = Some((config.hold, output.clone()));
            sinks.push(Box::new(Hold::new(output)));
        } else if let Some(seat) = setup.notices.seat() {
            sinks.push(Box::new(ToSeat::new(seat.clone(), setup.stream)));
        } else {
            // saferun's notices go to its stderr: that stream, or stdout when it is the
            // same file (a terminal, `2>&1`), must tell how its last line ended.
            let shares_notices = match setup.stream {
                Stream::Stderr => true,
                Stream::Stdout => own_streams_are_one_file(),
            };
            let line_end = shares_notices.then(|| setup.notices.line_end());
            match own_stream(setup.stream) {
                Ok(own) => {
                    let own = Destination::own_stream(own, setup.stream, line_end);
                    sinks.push(Box::new(if config.line_mode() {
                        own.whole_writes()
                    } else {
                        own
                    }));
                }
                Err(_) => sinks.push(Box::new(Discard)),
            }
        }
    }
    let mut sink: Box<dyn Sink> = if sinks.len() == 1 {
        sinks.remove(0)
    } else {
        Box::new(Fanout::new(sinks))
    };
    if config.line_mode() {
        let prefix = Lines::render_prefix(
            config.prefix.as_deref().unwrap_or(""),
            setup.label,
            setup.pid,
            setup.command,
        );
        let lines = Lines::new(sink, prefix, config.timestamps, setup.start);
        sink = Box::new(match setup.notices.seat() {
            Some(_) => lines.whole_lines_only(),
            None => lines,
        });
    }
    let mut cap = None;
    if let Some(limit) = config.cap {
        let stats = Arc::new(CapStats::default());
        cap = Some(stats.clone());
        let kill = (config.on_cap == CapAction::Kill).then_some(setup.events);
        // A capture hands back the head and the tail; where the cut is, the outcome
        // says, without a marker in the bytes.
        let marker = !matches!(config.to, Target::Capture) || config.passes_through();
        sink = Box::new(Cap::new(
            sink,
            limit,
            setup.stream,
            stats,
            setup.notices,
            kill,
            marker,
        ));
    }
    let mut excerpt = None;
    if let Some(limit) = config.excerpt {
        let (excerpting, kept) = Excerpt::new(sink, limit);
        excerpt = Some(kept);
        sink = Box::new(excerpting);
    }
    Built {
        sink,
        cap,
        held,
        captured,
        excerpt,
    }
}

/// Whether `file` is the process's own stderr (the same open file's inode).
fn is_own_stderr(file: &File) -> bool {
    use std::os::fd::AsFd;
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        nix::sys::stat::fstat(fd).map(|s| (s.st_dev, s.st_ino)).ok()
    };
    let own = id(std::io::stderr().as_fd());
    own.is_some() && own == id(file.as_fd())
}

/// Prints what was held, stream by stream: always after `--group`, only if the run
/// failed after `--quiet-unless-fail`. The copying happens on the notices writer, so a
/// stalled reader cannot hold saferun past its bound (see [`Notices::flush`]).
pub(crate) fn release_held(
    held: Vec<(Stream, HoldUntil, HeldOutput)>,
    failed: bool,
    notices: &Notices,
) {
    for (stream, until, output) in held {
        if until == HoldUntil::UnlessSuccess && !failed {
            let bytes = output.lock().map(|o| o.len()).unwrap_or(0);
            notices.detail(&format!(
                "discarded {bytes} bytes of {} (--quiet-unless-fail: not a failure)",
                stream.name()
            ));
            continue;
        }
        if let Some(seat) = notices.seat().cloned() {
            let reporter = notices.clone();
            notices.run(move || {
                let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(error) = seat.write_block(stream, |out| output.release(out)) {
                    reporter.say(&format!("cannot print the held {}: {error}", stream.name()));
                }
            });
            continue;
        }
        let reporter = notices.clone();
        let line_end = notices.line_end();
        let shares_notices = stream == Stream::Stderr || own_streams_are_one_file();
        notices.run(move || {
            let Ok(mut out) = own_stream(stream) else {
                return;
            };
            let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
            match output.release(&mut out) {
                Ok(last) if shares_notices => line_end.note(&last),
                Ok(_) => {}
                Err(error) => {
                    reporter.say(&format!("cannot print the held {}: {error}", stream.name()))
                }
            }
            let _ = out.flush();
        });
    }
}
