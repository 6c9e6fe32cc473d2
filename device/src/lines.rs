//! Text lines read with a bound: `device classify` (stdin) and `device serve --input`
//! never hold more than [`MAX_LINE_BYTES`] of one line in memory. A longer line is
//! consumed up to its newline without being buffered, reported as [`Line::TooLong`],
//! and reading resumes at the next line.

use std::io::{self, BufRead};

/// Longest line accepted, in bytes, newline excluded. The models read at most a few
/// hundred tokens and the serial protocol carries 256-byte texts, so 64 KiB is far above
/// any real text and far below what would strain a board's memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes without its `\n` or `\r\n`.
    Text(&'a [u8]),
    /// A line longer than the bound, skipped; `bytes` is its length (newline excluded).
    TooLong { bytes: u64 },
}

/// Reads lines of at most `max` bytes from a [`BufRead`].
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the input. A last line without a newline
    /// counts as a line.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        // Room for the text plus "\r\n".
        let keep = self.max.saturating_add(2);
        let (mut total, mut any, mut too_long, mut newline) = (0u64, false, false, false);
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (n, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            total += n as u64;
            if !too_long {
                if self.buf.len() + n > keep {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(&available[..n]);
                }
            }
            self.reader.consume(n);
            if done {
                newline = true;
                break;
            }
        }
        if too_long {
            return Ok(Some(Line::TooLong {
                bytes: total - u64::from(newline),
            }));
        }
        let mut end = self.buf.len();
        if newline {
            end -= 1;
            if self.buf[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        if end > self.max {
            return Ok(Some(Line::TooLong { bytes: end as u64 }));
        }
        Ok(Some(Line::Text(&self.buf[..end])))
    }

    /// Bytes the line buffer holds allocated (bounded by about twice the limit).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_within_the_bound_and_a_last_line_without_newline() {
        let mut r = BoundedLines::new(&b"one\r\ntwo\n\nthree"[..], 8);
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"one")));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"two")));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"")));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"three")));
        assert_eq!(r.next_line().unwrap(), None);
    }

    #[test]
    fn an_over_long_line_is_skipped_without_being_buffered() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nok\n");
        input.extend_from_slice(&[b'y'; 9]);
        // A small BufReader: the long line arrives in many chunks.
        let reader = io::BufReader::with_capacity(4096, &input[..]);
        let mut r = BoundedLines::new(reader, 8);
        assert_eq!(
            r.next_line().unwrap(),
            Some(Line::TooLong { bytes: 1 << 20 })
        );
        assert!(r.buffer_capacity() <= 64, "{}", r.buffer_capacity());
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"ok")));
        assert_eq!(r.next_line().unwrap(), Some(Line::TooLong { bytes: 9 }));
        assert_eq!(r.next_line().unwrap(), None);
        // Exactly the limit is fine, with either line ending.
        let mut r = BoundedLines::new(&b"12345678\r\n12345678"[..], 8);
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"12345678")));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"12345678")));
    }
}
