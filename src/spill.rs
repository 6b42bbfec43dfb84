//! Bytes kept aside: in memory up to a bound, then in an unnamed temporary file, so that
//! holding output never makes saferun a large process. Output held for
//! `--quiet-unless-fail` appends to one; the tail ring of `--max-output` writes around
//! in one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A store of bytes addressed by offset.
#[derive(Debug)]
pub(crate) struct Spill {
    memory: Vec<u8>,
    file: Option<File>,
    /// Past this many bytes the store moves to a temporary file.
    bound: usize,
}

impl Spill {
    pub(crate) fn new(bound: usize) -> Spill {
        Spill {
            memory: Vec::new(),
            file: None,
            bound,
        }
    }

    /// Writes `bytes` at offset `at`.
    pub(crate) fn write_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let end = at as usize + bytes.len();
        if self.file.is_none() && end <= self.bound {
            if self.memory.len() < end {
                self.memory.resize(end, 0);
            }
            self.memory[at as usize..end].copy_from_slice(bytes);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = tempfile::tempfile()?;
                file.write_all_at(&self.memory, 0)?;
                self.memory = Vec::new();
                self.file.insert(file)
            }
        };
        file.write_all_at(bytes, at)
    }

    /// Hands the bytes from `from` to `to`, in chunks, to `out`.
    pub(crate) fn read_range<E: From<io::Error>>(
        &self,
        from: u64,
        to: u64,
        mut out: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.file {
            None => out(&self.memory[from as usize..to as usize]),
            Some(file) => {
                let mut buffer = vec![0u8; (to - from).min(64 * 1024) as usize];
                let mut at = from;
                while at < to {
                    let n = (to - at).min(buffer.len() as u64) as usize;
                    file.read_exact_at(&mut buffer[..n], at)?;
                    out(&buffer[..n])?;
                    at += n as u64;
                }
                Ok(())
            }
        }
    }

    /// Whether the bytes have moved to a temporary file.
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> bool {
        self.file.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(spill: &Spill, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        spill
            .read_range::<io::Error>(0, len, |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn memory_then_file_reads_back_the_same() {
        let mut spill = Spill::new(1000);
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        for chunk in data.chunks(333) {
            spill.write_at(at, chunk).unwrap();
            at += chunk.len() as u64;
            assert_eq!(spill.spilled(), at > 1000);
        }
        assert_eq!(all(&spill, at), data);
        // Writing over earlier bytes (a ring) works in the file too.
        spill.write_at(10, b"xyz").unwrap();
        assert_eq!(&all(&spill, 20)[10..13], b"xyz");
    }
}
