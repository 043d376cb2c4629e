//! A connection's receive side: a value ([`RecvSide`]) and one transition function
//! ([`RecvSide::step`]) that takes an event ([`Input`]: a CQE of the connection's receive ops,
//! a call of the shard, the start of a wait) and returns what to do ([`Actions`]: SQEs to
//! submit, completions to report, lists to join). It touches nothing else, so every transition
//! is tested without a ring (`recv/tests.rs`); the backend only carries the actions out.
//!
//! - **Receive**: one multishot recv per connection, selecting buffers from the provided buffer
//!   ring. An idle connection holds no buffer. `-ENOBUFS` (pool empty) ends the multishot: the
//!   connection is parked and its recv re-armed, never reported, once the shard has recycled
//!   buffers (at most as many re-arms per wait as there are free buffers, oldest first). Data
//!   the kernel could not deliver stays in the socket, so nothing is lost or reordered. Each
//!   completion carries at most one buffer (`buffer_size` bytes); the shard recycles every
//!   buffer within the loop turn that received it, so one socket can hold the pool for one turn
//!   at most, and the sockets it starved are re-armed in FIFO order.
//! - **Read budget**: where the kernel allows it (6.17+, probed at start), each multishot recv
//!   is capped at [`PoolConfig::read_budget`](crate::reactor::PoolConfig::read_budget) bytes in
//!   all (the SQE's `optlen`; checked after each receive, so one buffer more at most); it then
//!   ends without `MORE` and is re-armed for the next wait. So one socket that floods gets at
//!   most that much of a loop turn, however much it has queued, instead of everything one
//!   `io_uring_enter` can receive for it.
//! - **Skip**: a multishot recv cannot be told to drop bytes, so
//!   [`Backend::skip`](crate::reactor::Backend::skip) cancels it (`AsyncCancel` by user_data).
//!   CQEs it posts before it ends still deliver their bytes as `Received`, and those count
//!   against the skip. Once its last CQE is in, a one-shot `IORING_OP_RECV` with `MSG_TRUNC` (no
//!   buffer selected, pointed at an unbacked sink: TCP copies nothing) drops what is left to
//!   drop, each completion reported as `Skipped`, repeated while bytes remain to be dropped. A
//!   connection starved of buffers starts skipping at once (no buffer is needed to drop bytes).
//!   EOF and errors end a skip as they end a recv, and `close` cancels whatever is in flight.
//! - **After a skip, a header-sized probe**: a multishot recv takes everything the socket holds
//!   (one buffer after another, in the same task-work run) before the shard has seen the next
//!   frame's header, so re-armed after a skip it would copy the very payloads the next skip
//!   was for: measured on loopback with 1 MiB messages, 78% of the bytes were still copied. So
//!   a finished skip is followed by a one-shot buffer-selected recv of at most
//!   [`PROBE_LEN`] bytes (a probe), and the connection then pauses:
//!   if the shard asks for the next skip in that loop turn, it starts at once with nothing to
//!   cancel; if not, the multishot recv is re-armed at the next wait.
//! - **Pause**: [`Backend::pause`](crate::reactor::Backend::pause) cancels the multishot recv
//!   (anything else in flight ends by itself) and marks the connection held; every re-arm goes
//!   through one function that then leaves it idle (`Held`) until
//!   [`Backend::resume`](crate::reactor::Backend::resume) arms it again.
//!
//! ## Transitions
//!
//! The state is [`RecvState`] plus four fields: the bytes a skip still owes (`skip`), whether
//! the next read is a probe (`probe`), whether the shard paused reading (`held`) and whether it
//! closed the connection (`closing`). In short:
//!
//! - a recv CQE with data is reported (`Received`) and counts against the skip; if it is the
//!   recv's last, `Armed` re-arms (the read budget was spent), `Probing` goes to `Paused` (with
//!   another probe due if this one came back short) and `Cancelling` goes on to the skip;
//! - the last CQE of a cancelled recv (data, ECANCELED or ENOBUFS) drops what the skip still
//!   owes (`Skipping`), else parks the connection (`Paused`, or `Starved` after ENOBUFS);
//! - ENOBUFS (not reported) parks the connection in `Starved`; EOF and errors are reported and
//!   end receiving (`Ended`), a skip with it;
//! - a skip CQE is reported (`Skipped`), then drops more or, the skip done, reads a probe;
//! - `skip(n)` cancels the recv or probe in flight (`Cancelling`), adds to a skip or cancel
//!   under way, drops at once where nothing is in flight (`Starved`, `Paused`, `Held`), and
//!   does nothing after the end; `skip(0)` only makes the next read a probe (cancelling a
//!   multishot recv for it);
//! - `pause` cancels a multishot recv and marks the side held; `resume` lifts the hold and
//!   re-arms a `Held` side; the start of a wait re-arms `Paused` and `Starved` sides;
//! - `close` cancels what is in flight (or ends a side with nothing in flight); after it CQEs
//!   report nothing and arm nothing (their buffers go back to the ring), and the shard's calls
//!   are ignored.
//!
//! Every re-arm goes through `arm_read`: `Held` if the shard holds reading paused, else a probe
//! if one is due, else the multishot recv.
//!
//! Inputs that cannot come in a state (a recv CQE while nothing is in flight, a skip CQE
//! outside `Skipping`, ECANCELED without a cancel, ENOBUFS with `MORE`) are handled without
//! panicking: the function trusts the kind of CQE and follows that kind's rule, as the backend
//! did before this was a function. The tests name each such pair and what it does.

use crate::reactor::{PROBE_LEN, SKIP_CHUNK};

/// Where a connection's receive ops stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecvState {
    /// A multishot recv is in flight (or queued to be submitted).
    Armed,
    /// The pool ran dry (ENOBUFS); waiting in the `starved` list to be re-armed.
    Starved,
    /// A one-shot recv of at most [`PROBE_LEN`] bytes is in flight (after a skip).
    Probing,
    /// The probe delivered; waiting in the `paused` list for the next wait to read again,
    /// unless a skip comes first.
    Paused,
    /// The recv is being cancelled to make way for a skip or a pause; its last CQE is due.
    Cancelling,
    /// A one-shot truncating recv is in flight ([`Backend::skip`](crate::reactor::Backend::skip)).
    Skipping,
    /// The shard paused reading ([`Backend::pause`](crate::reactor::Backend::pause)): nothing
    /// in flight until it resumes.
    Held,
    /// Nothing in flight and nothing due: after EOF or an error, or closed.
    Ended,
}

/// The lists a connection waits in for the start of a wait: the backend keeps them, the
/// receive side says when to join one ([`Action::Park`]) and what to do when its turn comes
/// ([`Input::Rearm`]). Entries may be stale (the state moved on since); the turn of a stale
/// one does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum List {
    /// Out of buffers: re-armed oldest first, as many per wait as the ring holds buffers.
    Starved,
    /// A probe delivered: read again at the next wait unless the shard asked for a skip.
    Paused,
}

/// An event for a connection's receive side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Input {
    /// A CQE of the connection's recv (the multishot one, or a probe).
    RecvCqe {
        /// The CQE's result: bytes received, 0 for EOF, or a negated errno (`ENOBUFS`: the
        /// ring was empty; `ECANCELED`: a cancel ended it).
        res: i32,
        /// `IORING_CQE_F_MORE`: the recv goes on; without it this is its last CQE.
        more: bool,
        /// The CQE carries a buffer of the pool.
        buffer: bool,
    },
    /// The CQE of a truncating recv (always its last): bytes dropped, 0 for EOF, or a negated
    /// errno.
    SkipCqe {
        /// The CQE's result.
        res: i32,
    },
    /// The shard asks to drop the next `n` bytes ([`Backend::skip`](crate::reactor::Backend::skip));
    /// 0 asks only for the next read to be a probe.
    Skip(u64),
    /// The shard stops reading ([`Backend::pause`](crate::reactor::Backend::pause)).
    Pause,
    /// The shard reads again ([`Backend::resume`](crate::reactor::Backend::resume)).
    Resume,
    /// The shard closes the connection: cancel what is in flight, report nothing more.
    Close,
    /// A wait starts and reaches the connection's entry in the list.
    Rearm(List),
}

/// Why receiving failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The kernel's error (a positive errno).
    Errno(i32),
    /// Bytes came without a buffer of the pool (a kernel that does not select buffers).
    NoBuffer,
}

/// Something the backend must do for a connection, as a step decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Submit the multishot recv (capped at the read budget where the kernel allows).
    ArmRecv,
    /// Submit a one-shot buffer-selected recv of at most [`PROBE_LEN`] bytes.
    ArmProbe,
    /// Submit a truncating recv (`MSG_TRUNC`, into the sink) of this many bytes, at most
    /// [`SKIP_CHUNK`].
    SubmitSkip(u32),
    /// Cancel the recv in flight (the multishot one or a probe).
    CancelRecv,
    /// Cancel the truncating recv in flight.
    CancelSkip,
    /// Report `Received` of this many bytes in the CQE's buffer, which goes to the shard. A CQE
    /// whose step does not say so gives its buffer back to the pool.
    Received(usize),
    /// Report `Skipped` of this many bytes.
    Skipped(usize),
    /// Report `Eof`.
    Eof,
    /// Report `RecvFailed`.
    Failed(Failure),
    /// Join the list, to be re-armed at the start of a wait.
    Park(List),
    /// The ring was empty (ENOBUFS): count it and keep more buffers in the ring.
    RingEmpty,
}

/// The actions of one step, in the order to carry them out (at most two: a report or the
/// ring's emptiness, then what comes next).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Actions([Option<Action>; 2]);

impl Actions {
    /// Appends `action`, to be carried out after those already there.
    fn push(&mut self, action: Action) {
        match self.0.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(action),
            // No transition takes more than two (the exhaustive test walks them all); losing a
            // third would be a bug to find in tests, not a reason to stop a server.
            None => debug_assert!(false, "a third action: {action:?} after {self:?}"),
        }
    }
}

impl IntoIterator for Actions {
    type Item = Action;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Action>, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

/// A connection's receive side: its [`RecvState`] and the fields the transitions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecvSide {
    /// Where the receive ops stand.
    state: RecvState,
    /// Bytes still to drop unread ([`Input::Skip`]), counted from the first byte not yet
    /// reported; bytes reported as received meanwhile count against it.
    skip: u64,
    /// The next read is a probe ([`PROBE_LEN`] bytes): a skip just ended, the shard asked for a
    /// skip of 0, or the last probe came back short (it may have ended inside a frame header).
    probe: bool,
    /// The shard paused reading: whatever is in flight ends, and nothing is re-armed until it
    /// resumes.
    held: bool,
    /// The shard closed the connection: nothing more is reported or armed. The backend reads it
    /// too (no send or shutdown after `close`, `Closed` once nothing is in flight).
    closing: bool,
}

impl RecvSide {
    /// The receive side of a connection just registered, and what starts it: the multishot
    /// recv.
    pub(super) fn start() -> (Self, Actions) {
        let mut side = RecvSide {
            state: RecvState::Ended,
            skip: 0,
            probe: false,
            held: false,
            closing: false,
        };
        let mut out = Actions::default();
        side.arm_read(&mut out);
        (side, out)
    }

    /// Where the receive ops stand (for tests that look inside the backend).
    #[cfg(test)]
    pub(super) fn state(&self) -> RecvState {
        self.state
    }

    /// Whether the shard closed the connection.
    pub(super) fn closing(&self) -> bool {
        self.closing
    }

    /// Whether the connection's entry in `list` is live: its [`Input::Rearm`] would act. (The
    /// backend re-arms starved connections only as far as the ring has buffers, and counts
    /// those.)
    pub(super) fn waits_in(&self, list: List) -> bool {
        let state = match list {
            List::Starved => RecvState::Starved,
            List::Paused => RecvState::Paused,
        };
        self.state == state && !self.closing
    }

    /// The transition function: moves the receive side on by `input` and returns what the
    /// backend must do about it. Touches nothing but `self`.
    pub(super) fn step(&mut self, input: Input) -> Actions {
        let mut out = Actions::default();
        match input {
            Input::RecvCqe { res, more, buffer } => self.on_recv(res, more, buffer, &mut out),
            Input::SkipCqe { res } => self.on_skip(res, &mut out),
            Input::Skip(len) => self.skip(len, &mut out),
            Input::Pause => {
                if !self.held && !self.closing {
                    self.held = true;
                    // A multishot recv would go on filling buffers: cancel it. Anything else in
                    // flight (a probe, a skip, a cancel) ends by itself, and its re-arm finds
                    // the hold.
                    if self.state == RecvState::Armed {
                        self.cancel_recv(&mut out);
                    }
                }
            }
            Input::Resume => {
                if self.held {
                    self.held = false;
                    // Elsewhere what is in flight, or the entry in a list, re-arms by itself.
                    if self.state == RecvState::Held && !self.closing {
                        self.arm_read(&mut out);
                    }
                }
            }
            Input::Close => self.close(&mut out),
            Input::Rearm(list) => {
                if self.waits_in(list) {
                    self.arm_read(&mut out);
                }
            }
        }
        out
    }

    /// Reads again: a probe if one is due, else the multishot recv; nothing while the shard
    /// holds reading paused. Every re-arm goes through here, so a pause takes effect wherever
    /// the receive side stands when it comes.
    fn arm_read(&mut self, out: &mut Actions) {
        if self.held {
            self.state = RecvState::Held;
        } else if self.probe {
            self.state = RecvState::Probing;
            out.push(Action::ArmProbe);
        } else {
            self.state = RecvState::Armed;
            out.push(Action::ArmRecv);
        }
    }

    /// Cancels the recv in flight to make way for a skip, a probe or a pause;
    /// [`RecvSide::after_cancel`] takes over once its last CQE is in.
    fn cancel_recv(&mut self, out: &mut Actions) {
        self.state = RecvState::Cancelling;
        out.push(Action::CancelRecv);
    }

    /// Drops the next bytes the skip wants, at most [`SKIP_CHUNK`] of them at a time.
    fn submit_skip(&mut self, out: &mut Actions) {
        self.state = RecvState::Skipping;
        out.push(Action::SubmitSkip(self.skip.min(SKIP_CHUNK as u64) as u32));
    }

    /// The recv has ended while cancelled (`starved`: by ENOBUFS): drop what is still to be
    /// dropped, else pause. The recv delivered all the skip wanted, and likely the next frame's
    /// start with it: the shard, seeing those bytes in this turn, may ask for a skip of that
    /// frame's rest, which then needs no cancel.
    fn after_cancel(&mut self, starved: bool, out: &mut Actions) {
        if self.skip > 0 {
            self.submit_skip(out);
        } else if starved {
            self.state = RecvState::Starved;
            out.push(Action::Park(List::Starved));
        } else {
            self.state = RecvState::Paused;
            out.push(Action::Park(List::Paused));
        }
    }

    /// A CQE of the recv (multishot or probe).
    fn on_recv(&mut self, res: i32, more: bool, buffer: bool, out: &mut Actions) {
        let was = self.state;
        let cancelling = was == RecvState::Cancelling;
        if !more {
            self.state = RecvState::Ended;
        }
        if self.closing {
            // The shard is done with this connection: nothing more to report.
            return;
        }
        if res > 0 {
            if !buffer {
                out.push(Action::Failed(Failure::NoBuffer));
                return;
            }
            // Delivered bytes are bytes a skip asked for after them need not drop.
            self.skip = self.skip.saturating_sub(res as u64);
            out.push(Action::Received(res as usize));
            if more {
                return;
            }
            if cancelling {
                self.after_cancel(false, out);
            } else if was == RecvState::Probing {
                // A short probe may have ended inside a header: probe again. A full one that
                // no skip follows ends probing (at the next wait's re-arm).
                self.probe = (res as usize) < PROBE_LEN;
                self.state = RecvState::Paused;
                out.push(Action::Park(List::Paused));
            } else {
                // Ended without error: the read budget is spent (or the CQ overflowed).
                // Re-armed now, it is submitted with the next wait: the next turn's.
                self.arm_read(out);
            }
        } else if res == 0 {
            out.push(Action::Eof);
        } else if res == -libc::ENOBUFS {
            out.push(Action::RingEmpty);
            if !more && cancelling {
                self.after_cancel(true, out);
            } else if !more {
                self.state = RecvState::Starved;
                out.push(Action::Park(List::Starved));
            }
        } else if res == -libc::ECANCELED && cancelling {
            self.after_cancel(false, out);
        } else {
            out.push(Action::Failed(Failure::Errno(-res)));
        }
    }

    /// The end of a truncating recv: report what it dropped, then drop more or read again.
    fn on_skip(&mut self, res: i32, out: &mut Actions) {
        self.state = RecvState::Ended;
        if self.closing {
            return;
        }
        if res > 0 {
            self.skip = self.skip.saturating_sub(res as u64);
            out.push(Action::Skipped(res as usize));
            if self.skip > 0 {
                self.submit_skip(out);
            } else {
                self.probe = true;
                self.arm_read(out);
            }
        } else if res == 0 {
            out.push(Action::Eof);
        } else {
            out.push(Action::Failed(Failure::Errno(-res)));
        }
    }

    /// The shard asks to drop the next `len` bytes.
    fn skip(&mut self, len: u64, out: &mut Actions) {
        if self.closing {
            return;
        }
        if len == 0 {
            // Only the next read is to be short. A probe or paused receive reads that way
            // already; a skip or cancel under way ends in one.
            self.probe = true;
            if self.state == RecvState::Armed {
                self.cancel_recv(out);
            }
            return;
        }
        match self.state {
            // After EOF or an error nothing more is read, so there is nothing to drop either.
            RecvState::Ended => {}
            RecvState::Cancelling | RecvState::Skipping => {
                self.skip = self.skip.saturating_add(len);
            }
            // Nothing in flight. No buffer is needed to drop bytes; the entry in `starved` or
            // `paused` is passed over when its turn comes. (Held: the shard asked for the drop
            // itself; reading stays paused after it.)
            RecvState::Starved | RecvState::Paused | RecvState::Held => {
                self.skip = self.skip.saturating_add(len);
                self.submit_skip(out);
            }
            RecvState::Armed | RecvState::Probing => {
                self.skip = self.skip.saturating_add(len);
                self.cancel_recv(out);
            }
        }
    }

    /// The shard closes the connection: cancel whatever receive op is in flight.
    fn close(&mut self, out: &mut Actions) {
        if self.closing {
            return;
        }
        self.closing = true;
        match self.state {
            // The state stays: the op's last CQE ends it.
            RecvState::Armed | RecvState::Probing => out.push(Action::CancelRecv),
            RecvState::Skipping => out.push(Action::CancelSkip),
            // Its entry in `starved` or `paused` is passed over when its turn comes.
            RecvState::Starved | RecvState::Paused | RecvState::Held => {
                self.state = RecvState::Ended;
            }
            // Cancelling already: the recv's last CQE is on its way.
            RecvState::Cancelling | RecvState::Ended => {}
        }
    }
}

#[cfg(test)]
mod tests;
