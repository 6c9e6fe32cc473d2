//! Counters for `Response::Stats`: lock-free counters plus a window of recent inference
//! latencies for the percentiles.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use protocol::{FrameError, Response};

/// How many recent inference latencies the percentiles are computed over.
pub const LATENCY_WINDOW: usize = 4096;

/// Service counters since start. Every counter wraps at 2³² like the wire fields.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    frames_in: AtomicU32,
    frames_out: AtomicU32,
    crc_failures: AtomicU32,
    decode_errors: AtomicU32,
    queue_drops: AtomicU32,
    inferences: AtomicU32,
    /// Frames that could not be written (port closed or write timed out); not on the wire.
    frames_dropped: AtomicU32,
    latency: Mutex<Latency>,
}

#[derive(Debug, Default)]
struct Latency {
    recent: VecDeque<u32>,
    max: u32,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            frames_in: AtomicU32::new(0),
            frames_out: AtomicU32::new(0),
            crc_failures: AtomicU32::new(0),
            decode_errors: AtomicU32::new(0),
            queue_drops: AtomicU32::new(0),
            inferences: AtomicU32::new(0),
            frames_dropped: AtomicU32::new(0),
            latency: Mutex::new(Latency::default()),
        }
    }

    fn bump(c: &AtomicU32) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One non-empty frame arrived (good or bad).
    pub fn frame_in(&self) {
        Self::bump(&self.frames_in);
    }

    /// One frame was written to the port.
    pub fn frame_out(&self) {
        Self::bump(&self.frames_out);
    }

    /// One frame could not be written.
    pub fn frame_dropped(&self) {
        Self::bump(&self.frames_dropped);
    }

    /// A request was refused with `Busy`, or an answer to a bad frame was dropped
    /// because the outbox was full.
    pub fn queue_drop(&self) {
        Self::bump(&self.queue_drops);
    }

    /// Counts a bad frame in the right bucket (`BadCrc` → crc_failures, the rest → decode_errors).
    pub fn frame_error(&self, e: &FrameError) {
        match e {
            FrameError::BadCrc => Self::bump(&self.crc_failures),
            _ => Self::bump(&self.decode_errors),
        }
    }

    /// One classification took `us` microseconds.
    pub fn inference(&self, us: u32) {
        Self::bump(&self.inferences);
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if l.recent.len() == LATENCY_WINDOW {
            l.recent.pop_front();
        }
        l.recent.push_back(us);
        l.max = l.max.max(us);
    }

    pub fn frames_dropped(&self) -> u32 {
        self.frames_dropped.load(Ordering::Relaxed)
    }

    /// `(p50, p99, max)` of the inference latency in µs (0 before the first inference).
    pub fn latency(&self) -> (u32, u32, u32) {
        let l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<u32> = l.recent.iter().copied().collect();
        v.sort_unstable();
        (percentile(&v, 50.0), percentile(&v, 99.0), l.max)
    }

    /// The `Stats` answer for request `id`.
    pub fn to_response(&self, id: u32) -> Response {
        let (p50, p99, max) = self.latency();
        let get = |c: &AtomicU32| c.load(Ordering::Relaxed);
        Response::Stats {
            id,
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            crc_failures: get(&self.crc_failures),
            decode_errors: get(&self.decode_errors),
            queue_drops: get(&self.queue_drops),
            inferences: get(&self.inferences),
            latency_p50_us: p50,
            latency_p99_us: p99,
            latency_max_us: max,
            uptime_s: self.started.elapsed().as_secs().min(u64::from(u32::MAX)) as u32,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
    }

    #[test]
    fn counts_land_in_their_buckets() {
        let s = Stats::new();
        s.frame_in();
        s.frame_in();
        s.frame_error(&FrameError::BadCrc);
        s.frame_error(&FrameError::BadFrame);
        s.frame_error(&FrameError::InvalidUtf8 { id: Some(1) });
        s.queue_drop();
        for us in [10, 30, 20] {
            s.inference(us);
        }
        match s.to_response(9) {
            Response::Stats {
                id,
                frames_in,
                crc_failures,
                decode_errors,
                queue_drops,
                inferences,
                latency_p50_us,
                latency_max_us,
                ..
            } => {
                assert_eq!((id, frames_in, crc_failures, decode_errors), (9, 2, 1, 2));
                assert_eq!((queue_drops, inferences), (1, 3));
                assert_eq!((latency_p50_us, latency_max_us), (20, 30));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn latency_window_is_bounded() {
        let s = Stats::new();
        for i in 0..(LATENCY_WINDOW as u32 + 10) {
            s.inference(i);
        }
        let l = s.latency.lock().unwrap();
        assert_eq!(l.recent.len(), LATENCY_WINDOW);
        assert_eq!(l.max, LATENCY_WINDOW as u32 + 9);
    }
}
