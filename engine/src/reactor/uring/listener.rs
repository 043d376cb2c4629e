//! A listener's multishot accept and its rests: when to arm it, and what its CQEs report.
//!
//! One multishot accept per listener. A CQE without `MORE` (an error, a CQ overflow) ends it.
//! After a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM: [`is_resource_error`], the rule
//! epoll shares) the listener rests: reported once as [`Completion::AcceptFailed`], re-armed
//! only after [`ACCEPT_RETRY`] or as soon as the shard closes a connection (which frees a
//! descriptor). This matters because io_uring's accept takes a descriptor *before* looking at
//! the backlog: at the fd limit a re-armed accept fails at once even with nobody waiting, and
//! re-arming it every wait kept a shard at 100% of a core for as long as the limit lasted.
//! `wait` wakes by itself at the retry instant, never later. Any other ending is re-armed at the
//! start of the next wait: once per loop turn at most, never inside one wait.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::reactor::{is_resource_error, Completion, ACCEPT_RETRY};

/// A listener and the state of its multishot accept (the backend submits the SQEs).
pub(super) struct Listener {
    /// The listening socket (the shard's).
    pub(super) fd: RawFd,
    /// The multishot accept is in flight.
    armed: bool,
    /// Accepting is wanted (cleared by `stop_accepting`).
    active: bool,
    /// After a resource error: not re-armed before this instant, unless a `close` ends the rest.
    retry_at: Option<Instant>,
}

/// Whether a listener's accept should be armed at a wait's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Now (the backend arms it and calls [`Listener::armed`]).
    Now,
    /// Not before this instant: it rests after a resource error.
    At(Instant),
    /// Not at all: armed already, or no longer accepting.
    Never,
}

impl Listener {
    /// A listener about to be armed for the first time.
    pub(super) fn new(fd: RawFd) -> Self {
        Listener {
            fd,
            armed: false,
            active: true,
            retry_at: None,
        }
    }

    /// Its accept was submitted.
    pub(super) fn armed(&mut self) {
        self.armed = true;
    }

    /// Whether to arm its accept at `now`; a rest that has passed ends here.
    pub(super) fn due(&mut self, now: Instant) -> Due {
        if !self.active || self.armed {
            return Due::Never;
        }
        match self.retry_at {
            Some(at) if now < at => Due::At(at),
            _ => {
                self.retry_at = None;
                Due::Now
            }
        }
    }

    /// A descriptor was just freed: a rest after a resource error ends (the accept is armed at
    /// the next wait, whose submission carries the close before it).
    pub(super) fn end_rest(&mut self) {
        self.retry_at = None;
    }

    /// Stops accepting (graceful shutdown). Returns whether an accept is in flight, for the
    /// backend to cancel.
    pub(super) fn stop(&mut self) -> bool {
        if !self.active {
            return false;
        }
        self.active = false;
        self.armed
    }

    /// A CQE of its accept: the completion to report, if any. A resource error starts a rest.
    pub(super) fn on_cqe(&mut self, res: i32, more: bool, now: Instant) -> Option<Completion> {
        if !more {
            // Re-armed at the start of the next wait (if still active): once per wait at most.
            self.armed = false;
        }
        if res >= 0 {
            // SAFETY: the accept's CQE hands over a descriptor the kernel just made; nothing
            // else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            Some(Completion::Accepted { fd })
        } else if res != -libc::ECANCELED || self.active {
            // (A cancelled accept after `stop_accepting` is expected and not reported.)
            let error = io::Error::from_raw_os_error(-res);
            if is_resource_error(&error) {
                self.retry_at = Some(now + ACCEPT_RETRY);
            }
            Some(Completion::AcceptFailed(error))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_error_rests_the_listener_until_the_retry_or_a_close() {
        let now = Instant::now();
        let mut l = Listener::new(3);
        assert_eq!(l.due(now), Due::Now);
        l.armed();
        assert_eq!(l.due(now), Due::Never, "armed already");
        let failed = l.on_cqe(-libc::EMFILE, false, now);
        assert!(matches!(failed, Some(Completion::AcceptFailed(_))));
        assert_eq!(l.due(now), Due::At(now + ACCEPT_RETRY));
        assert_eq!(l.due(now + ACCEPT_RETRY), Due::Now, "the rest ran out");
        l.on_cqe(-libc::EMFILE, false, now);
        l.end_rest();
        assert_eq!(l.due(now), Due::Now, "a close ended the rest");
        // Any other error is re-armed at the next wait, without a rest.
        l.armed();
        l.on_cqe(-libc::EINVAL, false, now);
        assert_eq!(l.due(now), Due::Now);
    }

    #[test]
    fn a_stopped_listener_is_not_armed_and_its_cancel_is_not_reported() {
        let now = Instant::now();
        let mut l = Listener::new(3);
        l.armed();
        assert!(l.stop(), "an accept in flight, to cancel");
        assert!(!l.stop(), "stopped once");
        assert!(l.on_cqe(-libc::ECANCELED, false, now).is_none());
        assert_eq!(l.due(now), Due::Never);
        // An accept that completed before the cancel is still reported.
        // A real descriptor, as the completion takes ownership of it and closes it.
        let fd = std::os::fd::IntoRawFd::into_raw_fd(std::fs::File::open("/dev/null").unwrap());
        assert!(matches!(
            l.on_cqe(fd, true, now),
            Some(Completion::Accepted { fd: owned }) if std::os::fd::AsRawFd::as_raw_fd(&owned) == fd
        ));
    }
}
