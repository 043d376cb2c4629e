//! A thread that reads a process's RSS every few milliseconds and keeps the peak: an attack's
//! memory cost is its highest point, which a reading at the end would miss.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process_rss_kib;

/// The sampling period.
pub const PERIOD: Duration = Duration::from_millis(20);

/// Samples a process's RSS until stopped (or until its lifetime bound passes).
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling process `pid`, for `lifetime` at most.
    pub fn start(pid: u32, lifetime: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(process_rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                let end = Instant::now() + lifetime;
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    match process_rss_kib(pid) {
                        Some(rss) => {
                            peak.fetch_max(rss, Ordering::Relaxed);
                        }
                        // The process is gone: nothing more to see.
                        None => return,
                    }
                    std::thread::sleep(PERIOD);
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest RSS seen so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling and returns the peak in KiB.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.peak_kib()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.halt();
    }
}
