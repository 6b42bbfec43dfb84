//! Where a stream's bytes go. A drain writes every chunk into one [`Sink`]; options that
//! shape output are sinks wrapping sinks, so they compose without special cases.

use std::fs::File;
use std::io::{self, Write};

/// Why a sink refused bytes.
#[derive(Debug)]
pub enum SinkError {
    /// saferun's own output was closed by its reader (EPIPE): stop draining this stream.
    ReaderGone,
    /// Writing failed (disk full, …). `what` names the destination.
    Failed { what: String, error: io::Error },
}

pub trait Sink: Send {
    /// Takes the next chunk of the command's output.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError>;
    /// The stream ended: write whatever was held back.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// saferun's own stdout or stderr, written with plain `write(2)` calls (no buffering, so
/// output appears as soon as the command wrote it).
pub struct Passthrough {
    out: File,
    what: &'static str,
}

impl Passthrough {
    /// `out` is a duplicate of saferun's stdout or stderr; `what` names it in errors.
    pub fn new(out: File, what: &'static str) -> Passthrough {
        Passthrough { out, what }
    }
}

impl Sink for Passthrough {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.out
            .write_all(bytes)
            .map_err(|error| match error.kind() {
                io::ErrorKind::BrokenPipe => SinkError::ReaderGone,
                _ => SinkError::Failed {
                    what: self.what.to_string(),
                    error,
                },
            })
    }
}
