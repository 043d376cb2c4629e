//! The pool's reconnect policy: when and how often a lost connection is dialled again.

use std::time::Duration;

/// When and how often a lost connection is dialled again.
///
/// A connection is lost when its dial fails (refused, timed out, a handshake refused) or when
/// it closes with any code but 1000: 1001 (a server going away), 1006 (dropped without a close
/// handshake), 1011, an application's 4000s. A clean close (1000) is redialled only with
/// [`Reconnect::after_clean_close`].
///
/// The n-th attempt in a row waits `initial × 2^(n-1)`, at most `max` (with jitter: a random
/// time between half that and that). A connection that opens resets the count.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconnect {
    /// The first redial's delay.
    initial: Duration,
    /// The longest delay.
    max: Duration,
    /// Redials in a row before giving up; `None`: never give up.
    pub(super) attempts: Option<u32>,
    /// Whether a clean close (1000) is redialled too.
    pub(super) after_clean_close: bool,
    /// Whether delays are spread over their upper half.
    pub(super) jitter: bool,
}

impl Reconnect {
    /// Exponential backoff from `initial` (the first redial's delay) doubling up to `max`, with
    /// no limit on attempts, after failures and abnormal closes only.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempts: None,
            after_clean_close: false,
            jitter: false,
        }
    }

    /// Gives a connection up after `n` redials in a row that did not open (counted in
    /// [`PoolStats::gave_up`](crate::PoolStats::gave_up)).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = Some(n);
        self
    }

    /// Also redials after a clean close (code 1000), at once (a clean close is no failure), so
    /// the pool keeps its N connections whatever ends them: handlers that close as soon as they
    /// open churn connections as fast as the server takes them.
    pub fn after_clean_close(mut self, yes: bool) -> Self {
        self.after_clean_close = yes;
        self
    }

    /// Spreads each delay randomly over its upper half, so connections dropped together do not
    /// come back together.
    pub fn jitter(mut self, yes: bool) -> Self {
        self.jitter = yes;
        self
    }

    /// The delay before attempt `n` (1 for the first redial), without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Reconnect::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
        let zero = Reconnect::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay(7), Duration::ZERO);
    }
}
