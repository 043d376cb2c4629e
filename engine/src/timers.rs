//! A shard's timers: one min-heap of (deadline, token), no syscall per timer.
//!
//! Connections never cancel or move an entry. Each keeps the deadline it is scheduled for; a
//! later deadline (idle time pushed back by traffic) leaves the early entry in place, and when it
//! fires the shard re-checks and schedules the next one. So a busy connection costs at most one
//! heap operation per timeout period, not one per message.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::reactor::Token;

/// Deadlines of a shard's connections, and the service's own timers.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// (deadline, order of setting, connection token or `NO_TOKEN`, key): the order keeps
    /// timers set for the same instant firing in the order they were set.
    user: BinaryHeap<Reverse<(Instant, u64, u64, u64)>>,
    user_seq: u64,
}

const NO_TOKEN: u64 = u64::MAX;

impl Timers {
    /// An empty timer set.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Schedules a check of `token` at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, token: Token) {
        self.heap.push(Reverse((at, token.0)));
    }

    /// Schedules a service timer: `key` for connection `token` (or the shard) at `at`.
    pub(crate) fn schedule_user(&mut self, at: Instant, token: Option<Token>, key: u64) {
        self.user_seq += 1;
        let token = token.map_or(NO_TOKEN, |t| t.0);
        self.user.push(Reverse((at, self.user_seq, token, key)));
    }

    /// Marks the service timers set so far, for [`Timers::pop_user_due`].
    pub(crate) fn user_mark(&self) -> u64 {
        self.user_seq
    }

    /// Removes and returns one service timer due at `now` and set no later than `mark` (from
    /// [`Timers::user_mark`]), if any. A timer set while due ones are being fired (a callback
    /// re-arming itself for `now`) waits for the next loop turn, so the sockets are served in
    /// between instead of the shard firing it forever.
    pub(crate) fn pop_user_due(&mut self, now: Instant, mark: u64) -> Option<(Option<Token>, u64)> {
        // Entries come out by (deadline, order of setting), and a timer set during the pass is
        // due no earlier than `now`, so an older one still due would come out before it. (One
        // set for a past instant could hide older due ones: they then fire next turn.)
        match self.user.peek() {
            Some(Reverse((at, seq, ..))) if *at <= now && *seq <= mark => {
                let Reverse((_, _, token, key)) = self.user.pop()?;
                Some(((token != NO_TOKEN).then_some(Token(token)), key))
            }
            _ => None,
        }
    }

    /// The earliest scheduled deadline of either kind, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let conn = self.heap.peek().map(|Reverse((at, _))| *at);
        let user = self.user.peek().map(|Reverse((at, ..))| *at);
        match (conn, user) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes and returns one entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((at, token)) = self.heap.pop()?;
                Some((at, Token(token)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_out_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.schedule(t0 + Duration::from_secs(3), Token(3));
        timers.schedule(t0 + Duration::from_secs(1), Token(1));
        timers.schedule(t0 + Duration::from_secs(2), Token(2));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let due: Vec<u64> = std::iter::from_fn(|| timers.pop_due(t0 + Duration::from_secs(2)))
            .map(|(_, t)| t.0)
            .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn service_timers_fire_in_deadline_then_setting_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.schedule_user(t0 + Duration::from_secs(2), None, 7);
        timers.schedule_user(t0 + Duration::from_secs(1), Some(Token(5)), 1);
        timers.schedule_user(t0 + Duration::from_secs(1), None, 2);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let mark = timers.user_mark();
        assert_eq!(timers.pop_user_due(t0, mark), None);
        let due: Vec<_> =
            std::iter::from_fn(|| timers.pop_user_due(t0 + Duration::from_secs(1), mark)).collect();
        assert_eq!(due, [(Some(Token(5)), 1), (None, 2)]);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_service_timer_set_while_firing_waits_for_the_next_pass() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.schedule_user(t0, None, 1);
        timers.schedule_user(t0 + Duration::from_secs(1), None, 2);
        let now = t0 + Duration::from_secs(1);
        let mark = timers.user_mark();
        assert_eq!(timers.pop_user_due(now, mark), Some((None, 1)));
        // Key 1's callback re-arms itself for now: not in this pass, and it does not hide
        // key 2, which was set before the pass and is due.
        timers.schedule_user(now, None, 3);
        assert_eq!(timers.pop_user_due(now, mark), Some((None, 2)));
        assert_eq!(timers.pop_user_due(now, mark), None);
        assert_eq!(timers.next_deadline(), Some(now));
        assert_eq!(
            timers.pop_user_due(now, timers.user_mark()),
            Some((None, 3))
        );
    }
}
