//! Bounded waits for events: a message on a channel, a condition that comes to hold, a counter
//! that keeps moving. The bounds are upper bounds for a stuck test, far above how long the event
//! takes on a loaded machine; none of these waits for time to pass as a way to synchronise.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often the polling waits look again.
pub const POLL: Duration = Duration::from_millis(2);

/// Receives from `rx` within `limit`, failing the test (naming `what`) otherwise.
pub fn recv_within<T>(rx: &mpsc::Receiver<T>, limit: Duration, what: &str) -> T {
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: nothing within {limit:?} ({e})"))
}

/// Polls `cond` every [`POLL`] until it holds, failing the test (naming `what`) after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        std::thread::sleep(POLL);
    }
}

/// As [`recv_within`], from async code: polls the channel without blocking a runtime worker.
#[cfg(feature = "tokio")]
pub async fn recv_async<T>(rx: &mpsc::Receiver<T>, limit: Duration, what: &str) -> T {
    let until = Instant::now() + limit;
    loop {
        match rx.try_recv() {
            Ok(v) => return v,
            Err(mpsc::TryRecvError::Disconnected) => panic!("{what}: the channel closed"),
            Err(mpsc::TryRecvError::Empty) if Instant::now() >= until => {
                panic!("{what}: nothing within {limit:?}")
            }
            Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Polls `count` until it reaches `target`, failing the test only if it stands still for
/// `stall`: for work whose length grows with the machine's load (millions of deliveries), where
/// a bound on the whole would be a bet on the machine, but a bound on no progress at all is not.
#[cfg(feature = "tokio")]
pub async fn wait_progress_async(
    stall: Duration,
    what: &str,
    target: u64,
    mut count: impl FnMut() -> u64,
) {
    let mut last = count();
    let mut moved = Instant::now();
    while last < target {
        tokio::time::sleep(POLL).await;
        let now = count();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
        assert!(
            moved.elapsed() < stall,
            "{what}: stuck at {last} of {target} for {stall:?}"
        );
    }
}

/// Runs `test` on a fresh two-worker tokio runtime and returns its output, failing the test if
/// it takes longer than `limit`. The runtime is shut down (waiting up to 2 s for its blocking
/// tasks) before this returns.
#[cfg(feature = "tokio")]
pub fn run<F: std::future::Future>(limit: Duration, test: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let out = rt.block_on(async {
        tokio::time::timeout(limit, test)
            .await
            .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    out
}
