//! saferun: run a command so that it never hangs on a full pipe, never outlives its time
//! limit, never eats unbounded memory, and always says how it ended.
//!
//! The data flow, argv to exit status:
//! [`config`] (what to do) → [`run`] wires [`spawn`], [`feed`], [`drain`] into [`sink`]s (built by [`output`]),
//! and [`forward`] (signals, SIGCHLD for [`group`]), all sending [`event`]s to one loop that asks
//! [`policy`] what to do → [`outcome`] picks the exit status → [`report`] says what
//! happened.

pub mod config;
pub mod deadline;
pub mod diagnose;
pub mod drain;
pub mod event;
pub mod feed;
pub mod files;
pub mod forward;
pub mod group;
pub mod notices;
pub mod outcome;
pub mod output;
pub mod pipes;
pub mod policy;
pub mod procfs;
pub mod record;
pub mod report;
pub mod run;
pub mod signal;
pub mod sink;
pub mod spawn;
pub mod spill;
pub mod splice;
pub mod stdio;
pub mod units;

pub use config::Config;
pub use outcome::Exit;
pub use run::{refuse, run};
