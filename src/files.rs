//! The files a run names (`--stdin-file`, `-o`, `-e`, `--report`), checked together
//! before any of them is created or truncated: a refused run touches nothing.
//!
//! Two options name the same file when they reach the same inode, whatever the spelling
//! (`/dev/stdout`, a symlink, `./x` and `x`), or, for a file that does not exist yet, the
//! same name in the same directory. That is refused for regular files only: `-o
//! /dev/null -e /dev/null` or two names of one terminal harm nothing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a run is refused, and whether the report may still be written to say so (not
/// when the report itself is the problem, or would overwrite another named file).
#[derive(Debug)]
pub struct Refusal {
    pub message: String,
    pub report_writable: bool,
}

impl Refusal {
    fn new(message: String) -> Refusal {
        Refusal {
            message,
            report_writable: true,
        }
    }
}

/// One file named on the command line.
#[derive(Debug, Clone)]
pub struct Named<'a> {
    /// The option that names it, for messages: `--stdout-file`.
    pub option: &'static str,
    pub path: &'a Path,
    pub use_: Use,
}

/// What the run does with a named file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Read,
    /// Written from the start (truncated) or appended to.
    Write {
        append: bool,
    },
}

/// A named file, opened once every check passed.
#[derive(Debug)]
pub struct Opened {
    pub option: &'static str,
    pub file: File,
}

/// Where a path leads, for telling two names of one file apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An existing file; `regular` says whether writing it twice would destroy data.
    Inode {
        dev: u64,
        ino: u64,
        regular: bool,
        /// A FIFO: opening it waits for its other end.
        fifo: bool,
    },
    /// A file still to be created: its directory (resolved) and its name. A dangling
    /// symbolic link leads to the file it names.
    New(PathBuf),
}

impl Identity {
    fn of(path: &Path) -> io::Result<Identity> {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Identity::Inode {
                dev: meta.dev(),
                ino: meta.ino(),
                regular: meta.is_file(),
                fifo: meta.file_type().is_fifo(),
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Ok(Identity::New(to_be_created(path, 0)?))
            }
            Err(error) => Err(error),
        }
    }

    fn clashes_with(&self, other: &Identity) -> bool {
        self == other && !matches!(self, Identity::Inode { regular: false, .. })
    }
}

/// The file that writing to the missing `path` would create: the path itself, or, for a
/// dangling symbolic link, the file it names (followed a few levels deep).
fn to_be_created(path: &Path, depth: usize) -> io::Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    let dir = std::fs::canonicalize(parent)?;
    let link = dir.join(name);
    match std::fs::read_link(&link) {
        Ok(target) if depth < 8 => to_be_created(&dir.join(target), depth + 1),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        Err(_) => Ok(link),
    }
}

/// Where each named file leads; refused when one cannot be looked at, or when two name
/// the same file and one of them would be written.
pub fn check_identities(named: &[Named<'_>]) -> Result<Vec<Identity>, Refusal> {
    let mut identities = Vec::with_capacity(named.len());
    for entry in named {
        let identity = Identity::of(entry.path).map_err(|error| Refusal {
            report_writable: entry.option != "--report",
            ..Refusal::new(cannot_open(entry, &error))
        })?;
        identities.push(identity);
    }
    for (i, (a, id_a)) in named.iter().zip(&identities).enumerate() {
        for (b, id_b) in named.iter().zip(&identities).skip(i + 1) {
            if id_a.clashes_with(id_b) && (a.use_ != Use::Read || b.use_ != Use::Read) {
                return Err(Refusal {
                    report_writable: a.option != "--report" && b.option != "--report",
                    ..Refusal::new(same_file(a, b))
                });
            }
        }
    }
    Ok(identities)
}

/// Checks every named file, then opens them all: files to write are created or
/// truncated only after every check passed (and `extra_check`, for whatever else can
/// refuse the run). A FIFO is opened last of all, once nothing can refuse the run any
/// more: opening it waits for its other end. Returns the opened files in the order
/// given.
pub fn open_all(
    named: &[Named<'_>],
    extra_check: impl FnOnce() -> Result<(), String>,
) -> Result<Vec<Opened>, Refusal> {
    let identities = check_identities(named)?;
    let refuse = |entry: &Named<'_>, error: io::Error| Refusal {
        report_writable: entry.option != "--report",
        ..Refusal::new(cannot_open(entry, &error))
    };
    // Open what exists without creating or truncating anything (and without waiting:
    // not a FIFO); for a new file, only check that its directory takes it.
    let mut opened: Vec<Option<File>> = Vec::with_capacity(named.len());
    for (entry, identity) in named.iter().zip(&identities) {
        let file = match (entry.use_, identity) {
            (_, Identity::Inode { fifo: true, .. }) => None,
            (Use::Read, _) => {
                let file = File::open(entry.path).map_err(|e| refuse(entry, e))?;
                if file.metadata().map_err(|e| refuse(entry, e))?.is_dir() {
                    return Err(refuse(entry, io::ErrorKind::IsADirectory.into()));
                }
                Some(file)
            }
            (Use::Write { append }, Identity::Inode { .. }) => {
                Some(open_existing(entry.path, append).map_err(|e| refuse(entry, e))?)
            }
            (Use::Write { .. }, Identity::New(full)) => {
                directory_takes(full).map_err(|e| refuse(entry, e))?;
                None
            }
        };
        opened.push(file);
    }
    extra_check().map_err(Refusal::new)?;
    for ((entry, identity), file) in named.iter().zip(&identities).zip(&mut opened) {
        if let Identity::Inode { fifo: true, .. } = identity {
            let fifo = match entry.use_ {
                Use::Read => File::open(entry.path),
                Use::Write { append } => open_existing(entry.path, append),
            };
            *file = Some(fifo.map_err(|e| refuse(entry, e))?);
        }
    }
    // Every check passed: only now create, then truncate; a file that cannot be
    // created after all takes the ones created before it with it.
    let mut created: Vec<&Path> = Vec::new();
    for ((entry, identity), file) in named.iter().zip(&identities).zip(&mut opened) {
        if let (None, Use::Write { append }, Identity::New(full)) = (&file, entry.use_, identity) {
            match create(full, append) {
                Ok(new) => {
                    created.push(full);
                    *file = Some(new);
                }
                Err(error) => {
                    for path in created {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(refuse(entry, error));
                }
            }
        }
    }
    for (entry, file) in named.iter().zip(&opened) {
        if let (Some(file), Use::Write { append: false }) = (file, entry.use_) {
            truncate_if_regular(file).map_err(|error| {
                Refusal::new(format!(
                    "{}: cannot truncate '{}': {}",
                    entry.option,
                    entry.path.display(),
                    describe(&error)
                ))
            })?;
        }
    }
    Ok(named
        .iter()
        .zip(opened)
        .filter_map(|(entry, file)| {
            file.map(|file| Opened {
                option: entry.option,
                file,
            })
        })
        .collect())
}

fn cannot_open(entry: &Named<'_>, error: &io::Error) -> String {
    format!(
        "{}: cannot open '{}': {}",
        entry.option,
        entry.path.display(),
        describe(error)
    )
}

/// An I/O error without Rust's "(os error N)" suffix.
pub fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => match error.kind() {
            io::ErrorKind::IsADirectory => "it is a directory".into(),
            _ => error.to_string(),
        },
    }
}

fn same_file(a: &Named<'_>, b: &Named<'_>) -> String {
    let pair = [a.option, b.option];
    if pair.contains(&"--stdout-file") && pair.contains(&"--stderr-file") {
        return "--stdout-file and --stderr-file name the same file; use --merge to send both \
                streams there"
            .into();
    }
    format!(
        "{} '{}' and {} '{}' name the same file",
        a.option,
        a.path.display(),
        b.option,
        b.path.display()
    )
}

/// Opens an existing file for writing, neither creating nor truncating it. A FIFO waits
/// here for its reader, as `> fifo` in a shell does.
fn open_existing(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if append {
        options.append(true);
    }
    options.open(path)
}

fn create(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    if append {
        options.append(true);
    }
    options.open(path)
}

/// Whether a file can be created at `full` (its directory exists and is writable).
fn directory_takes(full: &Path) -> io::Result<()> {
    use nix::unistd::{AccessFlags, access};
    let dir = full.parent().unwrap_or(Path::new("/"));
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::ErrorKind::NotADirectory.into());
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(io::Error::from)
}

fn truncate_if_regular(file: &File) -> io::Result<()> {
    if file.metadata()?.is_file() {
        file.set_len(0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<'a>(option: &'static str, path: &'a Path) -> Named<'a> {
        Named {
            option,
            path,
            use_: Use::Write { append: false },
        }
    }

    #[test]
    fn a_refusal_truncates_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        std::fs::write(&kept, "precious").unwrap();
        let new = dir.path().join("new");
        let nowhere = dir.path().join("missing-dir/r.json");
        let named = [
            write("--stdout-file", &kept),
            write("--stderr-file", &new),
            write("--report", &nowhere),
        ];
        let refusal = open_all(&named, || Ok(())).unwrap_err();
        assert!(refusal.message.contains("--report"), "{}", refusal.message);
        assert!(!refusal.report_writable);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
        assert!(!new.exists());
        // The same, when a later check refuses.
        let named = [write("--stdout-file", &kept), write("--stderr-file", &new)];
        let refusal = open_all(&named, || Err("no".into())).unwrap_err();
        assert_eq!(refusal.message, "no");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
        assert!(!new.exists());
    }

    #[test]
    fn same_file_whatever_the_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let dotted = dir.path().join(".").join("f");
        for (a, b) in [(&file, &link), (&file, &dotted)] {
            let refusal = open_all(
                &[write("--stdout-file", a), write("--report", b)],
                || Ok(()),
            )
            .unwrap_err();
            assert!(refusal.message.contains("name the same file"));
            assert!(!refusal.report_writable);
        }
        // Not created yet: the same name in the same directory.
        let new = dir.path().join("new");
        let new_dotted = dir.path().join(".").join("new");
        let refusal = open_all(
            &[
                write("--stdout-file", &new),
                write("--stderr-file", &new_dotted),
            ],
            || Ok(()),
        )
        .unwrap_err();
        assert!(refusal.message.contains("--merge"), "{}", refusal.message);
        assert!(!new.exists());
        // Reading the file the run would truncate.
        let read = Named {
            option: "--stdin-file",
            path: &link,
            use_: Use::Read,
        };
        assert!(open_all(&[read, write("--stdout-file", &file)], || Ok(())).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }

    #[test]
    fn a_dangling_link_is_the_file_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        std::fs::write(&kept, "precious").unwrap();
        // Its target's directory is missing: refused before anything is truncated.
        let nowhere = dir.path().join("nowhere");
        std::os::unix::fs::symlink("/nonexistent/d/e", &nowhere).unwrap();
        assert!(
            open_all(
                &[
                    write("--stdout-file", &kept),
                    write("--stderr-file", &nowhere)
                ],
                || Ok(())
            )
            .is_err()
        );
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
        // Two dangling links to one new file, or one and the file's own name: the same.
        let target = dir.path().join("target");
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        std::os::unix::fs::symlink(&target, &one).unwrap();
        std::os::unix::fs::symlink("target", &two).unwrap();
        for (a, b) in [(&one, &two), (&one, &target)] {
            let refusal = open_all(
                &[write("--stdout-file", a), write("--stderr-file", b)],
                || Ok(()),
            )
            .unwrap_err();
            assert!(refusal.message.contains("--merge"), "{}", refusal.message);
        }
        assert!(!target.exists());
    }

    #[test]
    fn devices_may_be_named_twice() {
        let null = Path::new("/dev/null");
        let opened = open_all(
            &[write("--stdout-file", null), write("--stderr-file", null)],
            || Ok(()),
        )
        .unwrap();
        assert_eq!(opened.len(), 2);
    }

    #[test]
    fn a_directory_is_not_a_stdin_file() {
        let dir = tempfile::tempdir().unwrap();
        let read = Named {
            option: "--stdin-file",
            path: dir.path(),
            use_: Use::Read,
        };
        let refusal = open_all(&[read], || Ok(())).unwrap_err();
        assert!(
            refusal.message.contains("is a directory"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn checks_pass_then_files_are_created_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        std::fs::write(&old, "old").unwrap();
        let appended = dir.path().join("appended");
        std::fs::write(&appended, "keep").unwrap();
        let new = dir.path().join("new");
        let named = [
            write("--stdout-file", &old),
            write("--report", &new),
            Named {
                option: "--stderr-file",
                path: &appended,
                use_: Use::Write { append: true },
            },
        ];
        open_all(&named, || Ok(())).unwrap();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "");
        assert!(new.exists());
        assert_eq!(std::fs::read_to_string(&appended).unwrap(), "keep");
    }
}
