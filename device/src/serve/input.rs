//! Local text input for `device serve --input`: stdin, a regular file followed as it
//! grows (like `tail -F`: a truncated or replaced file is read again from its start), or
//! a FIFO (reopened whenever its last writer closes it). Each complete line is queued
//! for inference as `Source::Local { seq }`; the queue applies back-pressure (the line
//! waits, it is never dropped). A line longer than [`MAX_LINE_BYTES`] is reported on
//! stderr and skipped without being held in memory; reading resumes at the next line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use crate::lines::{BoundedLines, Line, MAX_LINE_BYTES};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use protocol::Source;

use super::dispatch::Job;

/// Where local lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    Path(PathBuf),
}

impl InputSource {
    /// `-` means stdin, anything else a path.
    pub fn parse(s: &str) -> InputSource {
        if s == "-" {
            InputSource::Stdin
        } else {
            InputSource::Path(PathBuf::from(s))
        }
    }
}

/// How often a followed file is checked for new data.
const POLL: Duration = Duration::from_millis(100);

/// Turns lines into jobs. Returns when the job queue is closed, or (stdin) at end of input.
pub fn run(source: InputSource, jobs: SyncSender<Job>) {
    let mut seq: u32 = 0;
    let mut submit = |raw: &[u8]| -> bool {
        let mut line = raw;
        while let Some((&last, rest)) = line.split_last() {
            if last == b'\n' || last == b'\r' {
                line = rest;
            } else {
                break;
            }
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) if !t.trim().is_empty() => t.to_owned(),
            Ok(_) => return true,
            Err(e) => {
                eprintln!("device serve: local input: line is not valid UTF-8 ({e}); skipped");
                return true;
            }
        };
        let job = Job {
            id: 0,
            source: Source::Local { seq },
            text,
        };
        seq = seq.wrapping_add(1);
        jobs.send(job).is_ok()
    };
    let outcome = match &source {
        InputSource::Stdin => read_lines(io::stdin().lock(), &mut submit).map(|_| ()),
        InputSource::Path(p) => follow(p, &mut submit),
    };
    if let Err(e) = outcome {
        eprintln!("device serve: local input stopped: {e}");
    }
}

/// Reads `r` to its end, submitting each line (over-long ones reported and skipped).
/// `Ok(false)` if the queue closed.
fn read_lines(r: impl BufRead, submit: &mut impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
    let mut lines = BoundedLines::new(r, MAX_LINE_BYTES);
    while let Some(line) = lines.next_line()? {
        match line {
            Line::Text(text) => {
                if !submit(text) {
                    return Ok(false);
                }
            }
            Line::TooLong { bytes } => report_too_long(bytes),
        }
    }
    Ok(true)
}

fn report_too_long(bytes: u64) {
    eprintln!(
        "device serve: local input: line of {bytes} bytes is longer than {MAX_LINE_BYTES} bytes; skipped"
    );
}

fn follow(path: &Path, submit: &mut impl FnMut(&[u8]) -> bool) -> io::Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if meta.file_type().is_fifo() {
        loop {
            // Blocks until a writer opens the FIFO; EOF = the last writer closed it.
            let f = File::open(path)?;
            if !read_lines(BufReader::new(f), submit)? {
                return Ok(());
            }
        }
    }
    let mut file = File::open(path)?;
    let mut ino = meta.ino();
    let mut pos: u64 = 0;
    // The line read so far (at most MAX_LINE_BYTES + "\r\n"), or, once it is too long,
    // only its length: the rest is skipped up to its newline.
    let mut partial: Vec<u8> = Vec::new();
    let mut skipping: Option<u64> = None;
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = file.read(&mut chunk)?;
        if n > 0 {
            pos += n as u64;
            let mut data = &chunk[..n];
            loop {
                let nl = data.iter().position(|&b| b == b'\n');
                let piece = &data[..nl.map_or(data.len(), |i| i + 1)];
                data = &data[piece.len()..];
                match &mut skipping {
                    Some(len) => *len += piece.len() as u64,
                    None if partial.len() + piece.len() > MAX_LINE_BYTES + 2 => {
                        skipping = Some((partial.len() + piece.len()) as u64);
                        partial = Vec::new();
                    }
                    None => partial.extend_from_slice(piece),
                }
                if nl.is_none() {
                    break;
                }
                match skipping.take() {
                    Some(len) => report_too_long(len - 1),
                    None => {
                        let line = partial.strip_suffix(b"\n").unwrap_or(&partial);
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if line.len() > MAX_LINE_BYTES {
                            report_too_long(line.len() as u64);
                        } else if !submit(line) {
                            return Ok(());
                        }
                        partial.clear();
                    }
                }
            }
            continue;
        }
        std::thread::sleep(POLL);
        // Replaced (new inode) or truncated: start over from the beginning.
        if let Ok(m) = std::fs::metadata(path) {
            if m.ino() != ino || m.len() < pos {
                if let Ok(f) = File::open(path) {
                    file = f;
                    ino = m.ino();
                    pos = 0;
                    partial.clear();
                    skipping = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    fn texts(rx: &mpsc::Receiver<Job>, n: usize) -> Vec<(String, u32)> {
        (0..n)
            .map(|_| {
                let j = rx.recv_timeout(Duration::from_secs(5)).expect("a line");
                match j.source {
                    Source::Local { seq } => (j.text, seq),
                    Source::Request => panic!("local source expected"),
                }
            })
            .collect()
    }

    #[test]
    fn follows_a_growing_file_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, b"first line\n\n\xff\xfe bad\nsecond").unwrap();
        let (tx, rx) = mpsc::sync_channel(4);
        let p = path.clone();
        std::thread::spawn(move || run(InputSource::Path(p), tx));
        assert_eq!(texts(&rx, 1), [("first line".to_string(), 0)]);
        // The partial line waits for its newline.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" half\r\nthird\n").unwrap();
        assert_eq!(
            texts(&rx, 2),
            [("second half".to_string(), 1), ("third".to_string(), 2)]
        );
        // Truncated and rewritten: read again from the start.
        std::fs::write(&path, b"new\n").unwrap();
        assert_eq!(texts(&rx, 1), [("new".to_string(), 3)]);
    }

    #[test]
    fn over_long_lines_are_skipped_in_files_and_streams() {
        let mut data = vec![b'x'; 3 * MAX_LINE_BYTES];
        data.extend_from_slice(b"\nafter\n");
        // A followed file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, &data).unwrap();
        let (tx, rx) = mpsc::sync_channel(4);
        let p = path.clone();
        std::thread::spawn(move || run(InputSource::Path(p), tx));
        assert_eq!(texts(&rx, 1), [("after".to_string(), 0)]);
        // A stream (stdin, FIFO).
        let mut got = Vec::new();
        read_lines(&data[..], &mut |l: &[u8]| {
            got.push(l.to_vec());
            true
        })
        .unwrap();
        assert_eq!(got, [b"after".to_vec()]);
    }

    #[test]
    fn reads_a_fifo_across_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            println!("skipped: mkfifo is not available");
            return;
        }
        let (tx, rx) = mpsc::sync_channel(4);
        let p = path.clone();
        std::thread::spawn(move || run(InputSource::Path(p), tx));
        for word in ["one", "two"] {
            let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            writeln!(w, "{word}").unwrap();
            drop(w);
            assert_eq!(texts(&rx, 1)[0].0, word);
        }
    }
}
