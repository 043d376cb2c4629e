//! Every transition of the receive side, without a ring: each (state, input) pair that can
//! happen, with what it must do; then the pairs that cannot happen, with what they do instead
//! of panicking; then an exhaustive walk of every state and input that checks the rules all
//! transitions share.
//!
//! Each test builds the value it starts from ([`at`] and the modifiers below), feeds one input
//! and compares the whole value after, and the actions in order, with what is expected.

use super::*;

const ECONNRESET: i32 = libc::ECONNRESET;

/// A receive side in `state`, owing nothing, not probing, not held, open.
fn at(state: RecvState) -> RecvSide {
    RecvSide {
        state,
        skip: 0,
        probe: false,
        held: false,
        closing: false,
    }
}

impl RecvSide {
    /// With `n` bytes still to drop.
    fn owing(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// With a probe due as the next read.
    fn probing_next(mut self) -> Self {
        self.probe = true;
        self
    }

    /// With reading paused by the shard.
    fn held(mut self) -> Self {
        self.held = true;
        self
    }

    /// After `close`.
    fn closed(mut self) -> Self {
        self.closing = true;
        self
    }
}

/// Feeds `input` to `before` and checks the value after and the actions, in order.
#[track_caller]
fn check(before: RecvSide, input: Input, after: RecvSide, actions: &[Action]) {
    let mut side = before;
    let got: Vec<Action> = side.step(input).into_iter().collect();
    assert_eq!(
        (side, got.as_slice()),
        (after, actions),
        "{before:?} + {input:?}"
    );
}

/// A recv CQE with `n` bytes in a buffer.
fn data(n: i32, more: bool) -> Input {
    Input::RecvCqe {
        res: n,
        more,
        buffer: true,
    }
}

/// A recv CQE that failed with `errno` (no buffer).
fn recv_err(errno: i32, more: bool) -> Input {
    Input::RecvCqe {
        res: -errno,
        more,
        buffer: false,
    }
}

/// The recv's EOF (its last CQE).
const RECV_EOF: Input = Input::RecvCqe {
    res: 0,
    more: false,
    buffer: false,
};

/// A truncating recv's CQE.
fn skipped(res: i32) -> Input {
    Input::SkipCqe { res }
}

use Action::*;
use RecvState::*;

const PROBE: i32 = PROBE_LEN as i32;

// ----- Start -----

#[test]
fn start_arms_the_multishot_recv() {
    let (side, actions) = RecvSide::start();
    assert_eq!(side, at(Armed));
    assert_eq!(actions.into_iter().collect::<Vec<_>>(), [ArmRecv]);
}

// ----- Armed: the multishot recv's CQEs -----

#[test]
fn armed_data_with_more_is_received_and_stays_armed() {
    check(at(Armed), data(1000, true), at(Armed), &[Received(1000)]);
}

#[test]
fn armed_data_without_more_is_a_spent_budget_and_rearms_for_the_next_wait() {
    check(
        at(Armed),
        data(4096, false),
        at(Armed),
        &[Received(4096), ArmRecv],
    );
}

#[test]
fn armed_eof_ends_receiving() {
    check(at(Armed), RECV_EOF, at(Ended), &[Eof]);
}

#[test]
fn armed_enobufs_starves_unreported() {
    check(
        at(Armed),
        recv_err(libc::ENOBUFS, false),
        at(Starved),
        &[RingEmpty, Park(List::Starved)],
    );
}

#[test]
fn armed_error_is_reported_and_ends_receiving() {
    check(
        at(Armed),
        recv_err(ECONNRESET, false),
        at(Ended),
        &[Failed(Failure::Errno(ECONNRESET))],
    );
}

// ----- Probing: the probe's CQE (one-shot, never MORE) -----

#[test]
fn probing_full_probe_pauses_with_probing_done() {
    check(
        at(Probing).probing_next(),
        data(PROBE, false),
        at(Paused),
        &[Received(PROBE_LEN), Park(List::Paused)],
    );
}

#[test]
fn probing_short_probe_pauses_with_another_probe_due() {
    // It may have ended inside a frame header.
    check(
        at(Probing).probing_next(),
        data(3, false),
        at(Paused).probing_next(),
        &[Received(3), Park(List::Paused)],
    );
}

#[test]
fn probing_held_probe_still_pauses_the_hold_waits_for_the_rearm() {
    check(
        at(Probing).probing_next().held(),
        data(PROBE, false),
        at(Paused).held(),
        &[Received(PROBE_LEN), Park(List::Paused)],
    );
}

#[test]
fn probing_enobufs_starves_and_keeps_the_probe_due() {
    check(
        at(Probing).probing_next(),
        recv_err(libc::ENOBUFS, false),
        at(Starved).probing_next(),
        &[RingEmpty, Park(List::Starved)],
    );
}

#[test]
fn probing_eof_and_error_end_receiving() {
    check(
        at(Probing).probing_next(),
        RECV_EOF,
        at(Ended).probing_next(),
        &[Eof],
    );
    check(
        at(Probing),
        recv_err(ECONNRESET, false),
        at(Ended),
        &[Failed(Failure::Errno(ECONNRESET))],
    );
}

// ----- Cancelling: the recv's CQEs after a skip or pause asked for its cancel -----

#[test]
fn cancelling_data_with_more_is_received_and_counts_against_the_skip() {
    check(
        at(Cancelling).owing(10_000),
        data(4096, true),
        at(Cancelling).owing(5904),
        &[Received(4096)],
    );
}

#[test]
fn cancelling_final_data_is_received_then_the_rest_is_dropped() {
    check(
        at(Cancelling).owing(10_000),
        data(4096, false),
        at(Skipping).owing(5904),
        &[Received(4096), SubmitSkip(5904)],
    );
}

#[test]
fn cancelling_final_data_covering_the_skip_pauses() {
    // The recv delivered all the skip wanted (and the next frame's start, likely): the shard
    // may ask for the next skip this turn, with nothing to cancel.
    check(
        at(Cancelling).owing(100),
        data(4096, false),
        at(Paused),
        &[Received(4096), Park(List::Paused)],
    );
}

#[test]
fn cancelling_ecanceled_starts_dropping() {
    check(
        at(Cancelling).owing(10_000),
        recv_err(libc::ECANCELED, false),
        at(Skipping).owing(10_000),
        &[SubmitSkip(10_000)],
    );
}

#[test]
fn cancelling_ecanceled_with_nothing_owed_pauses() {
    // A pause, or a skip of 0: the next wait reads again (or finds the hold).
    check(
        at(Cancelling).held(),
        recv_err(libc::ECANCELED, false),
        at(Paused).held(),
        &[Park(List::Paused)],
    );
    check(
        at(Cancelling).probing_next(),
        recv_err(libc::ECANCELED, false),
        at(Paused).probing_next(),
        &[Park(List::Paused)],
    );
}

#[test]
fn cancelling_enobufs_drops_without_a_buffer() {
    check(
        at(Cancelling).owing(10_000),
        recv_err(libc::ENOBUFS, false),
        at(Skipping).owing(10_000),
        &[RingEmpty, SubmitSkip(10_000)],
    );
}

#[test]
fn cancelling_enobufs_with_nothing_owed_starves() {
    check(
        at(Cancelling).held(),
        recv_err(libc::ENOBUFS, false),
        at(Starved).held(),
        &[RingEmpty, Park(List::Starved)],
    );
}

#[test]
fn cancelling_eof_and_error_end_receiving_and_the_skip_with_them() {
    check(
        at(Cancelling).owing(10_000),
        RECV_EOF,
        at(Ended).owing(10_000),
        &[Eof],
    );
    check(
        at(Cancelling).owing(10_000),
        recv_err(ECONNRESET, false),
        at(Ended).owing(10_000),
        &[Failed(Failure::Errno(ECONNRESET))],
    );
}

#[test]
fn a_skip_drops_at_most_a_chunk_at_a_time() {
    let owed = 3 * SKIP_CHUNK as u64;
    check(
        at(Cancelling).owing(owed),
        recv_err(libc::ECANCELED, false),
        at(Skipping).owing(owed),
        &[SubmitSkip(SKIP_CHUNK as u32)],
    );
}

// ----- Skipping: the truncating recv's CQE -----

#[test]
fn skipping_short_drop_reports_it_and_drops_the_rest() {
    check(
        at(Skipping).owing(10_000),
        skipped(3000),
        at(Skipping).owing(7000),
        &[Skipped(3000), SubmitSkip(7000)],
    );
}

#[test]
fn skipping_done_probes_the_next_header() {
    check(
        at(Skipping).owing(7000),
        skipped(7000),
        at(Probing).probing_next(),
        &[Skipped(7000), ArmProbe],
    );
}

#[test]
fn skipping_done_while_held_stays_held() {
    check(
        at(Skipping).owing(7000).held(),
        skipped(7000),
        at(Held).probing_next().held(),
        &[Skipped(7000)],
    );
}

#[test]
fn skipping_eof_and_error_end_receiving() {
    check(
        at(Skipping).owing(7000),
        skipped(0),
        at(Ended).owing(7000),
        &[Eof],
    );
    check(
        at(Skipping).owing(7000),
        skipped(-ECONNRESET),
        at(Ended).owing(7000),
        &[Failed(Failure::Errno(ECONNRESET))],
    );
}

// ----- The shard asks: skip(n) -----

#[test]
fn skip_while_armed_cancels_the_multishot_recv() {
    check(
        at(Armed),
        Input::Skip(10_000),
        at(Cancelling).owing(10_000),
        &[CancelRecv],
    );
}

#[test]
fn skip_while_probing_cancels_the_probe() {
    check(
        at(Probing).probing_next(),
        Input::Skip(10_000),
        at(Cancelling).owing(10_000).probing_next(),
        &[CancelRecv],
    );
}

#[test]
fn skip_while_cancelling_or_skipping_adds_up() {
    for state in [Cancelling, Skipping] {
        check(
            at(state).owing(5),
            Input::Skip(10_000),
            at(state).owing(10_005),
            &[],
        );
    }
}

#[test]
fn skip_with_nothing_in_flight_drops_at_once() {
    // Starved: no buffer is needed to drop bytes; its entry in `starved` goes stale.
    // Paused: the next skip after a probe needs no cancel.
    for state in [Starved, Paused] {
        check(
            at(state),
            Input::Skip(10_000),
            at(Skipping).owing(10_000),
            &[SubmitSkip(10_000)],
        );
    }
    // Held: the shard asked for the drop itself; reading stays paused after it.
    check(
        at(Held).held(),
        Input::Skip(10_000),
        at(Skipping).owing(10_000).held(),
        &[SubmitSkip(10_000)],
    );
}

#[test]
fn skip_after_the_end_drops_nothing() {
    check(at(Ended), Input::Skip(10_000), at(Ended), &[]);
}

#[test]
fn skip_of_zero_while_armed_cancels_for_a_probe() {
    check(
        at(Armed),
        Input::Skip(0),
        at(Cancelling).probing_next(),
        &[CancelRecv],
    );
}

#[test]
fn skip_of_zero_elsewhere_only_makes_the_next_read_a_probe() {
    for state in [Starved, Probing, Paused, Cancelling, Skipping, Ended] {
        check(at(state), Input::Skip(0), at(state).probing_next(), &[]);
    }
    check(
        at(Held).held(),
        Input::Skip(0),
        at(Held).held().probing_next(),
        &[],
    );
}

// ----- The shard asks: pause and resume -----

#[test]
fn pause_while_armed_cancels_the_multishot_recv() {
    check(
        at(Armed),
        Input::Pause,
        at(Cancelling).held(),
        &[CancelRecv],
    );
}

#[test]
fn pause_elsewhere_waits_for_what_is_in_flight_or_the_rearm() {
    for state in [Starved, Probing, Paused, Cancelling, Skipping, Ended] {
        check(at(state), Input::Pause, at(state).held(), &[]);
    }
}

#[test]
fn pause_twice_is_one_pause() {
    check(at(Held).held(), Input::Pause, at(Held).held(), &[]);
    check(
        at(Cancelling).held(),
        Input::Pause,
        at(Cancelling).held(),
        &[],
    );
}

#[test]
fn resume_of_a_held_side_rearms_it() {
    check(at(Held).held(), Input::Resume, at(Armed), &[ArmRecv]);
    check(
        at(Held).held().probing_next(),
        Input::Resume,
        at(Probing).probing_next(),
        &[ArmProbe],
    );
}

#[test]
fn resume_before_the_hold_took_effect_only_lifts_it() {
    // What is in flight, or the entry in a list, re-arms by itself.
    for state in [Starved, Probing, Paused, Cancelling, Skipping, Ended] {
        check(at(state).held(), Input::Resume, at(state), &[]);
    }
}

#[test]
fn resume_without_a_pause_does_nothing() {
    for state in [Armed, Paused, Ended] {
        check(at(state), Input::Resume, at(state), &[]);
    }
}

// ----- The start of a wait: the lists' turns -----

#[test]
fn paused_at_the_next_wait_rearms_the_multishot_recv() {
    check(
        at(Paused),
        Input::Rearm(List::Paused),
        at(Armed),
        &[ArmRecv],
    );
}

#[test]
fn paused_after_a_short_probe_probes_again() {
    check(
        at(Paused).probing_next(),
        Input::Rearm(List::Paused),
        at(Probing).probing_next(),
        &[ArmProbe],
    );
}

#[test]
fn starved_at_the_next_wait_reads_again() {
    check(
        at(Starved),
        Input::Rearm(List::Starved),
        at(Armed),
        &[ArmRecv],
    );
    check(
        at(Starved).probing_next(),
        Input::Rearm(List::Starved),
        at(Probing).probing_next(),
        &[ArmProbe],
    );
}

#[test]
fn a_held_side_is_rearmed_into_held() {
    for (state, list) in [(Paused, List::Paused), (Starved, List::Starved)] {
        check(at(state).held(), Input::Rearm(list), at(Held).held(), &[]);
    }
}

#[test]
fn a_stale_list_entry_does_nothing() {
    // The state moved on since the entry was made (a skip, a close, another list).
    for state in [Armed, Probing, Cancelling, Skipping, Held, Ended, Starved] {
        check(at(state), Input::Rearm(List::Paused), at(state), &[]);
    }
    for state in [Armed, Probing, Cancelling, Skipping, Held, Ended, Paused] {
        check(at(state), Input::Rearm(List::Starved), at(state), &[]);
    }
    for (state, list) in [(Paused, List::Paused), (Starved, List::Starved)] {
        check(
            at(state).closed(),
            Input::Rearm(list),
            at(state).closed(),
            &[],
        );
    }
}

#[test]
fn waits_in_says_which_entries_are_live() {
    assert!(at(Starved).waits_in(List::Starved));
    assert!(!at(Starved).waits_in(List::Paused));
    assert!(at(Paused).waits_in(List::Paused));
    assert!(!at(Paused).closed().waits_in(List::Paused));
    // A held side's entry is live: its turn moves it to `Held` (and, in `starved`, takes one
    // of the wait's re-arms).
    assert!(at(Starved).held().waits_in(List::Starved));
}

// ----- The shard asks: close -----

#[test]
fn close_cancels_the_recv_or_probe_in_flight() {
    for state in [Armed, Probing] {
        check(at(state), Input::Close, at(state).closed(), &[CancelRecv]);
    }
}

#[test]
fn close_cancels_the_skip_in_flight() {
    check(
        at(Skipping).owing(10),
        Input::Close,
        at(Skipping).owing(10).closed(),
        &[CancelSkip],
    );
}

#[test]
fn close_with_nothing_in_flight_ends_at_once() {
    // Their list entries go stale.
    for state in [Starved, Paused] {
        check(at(state), Input::Close, at(Ended).closed(), &[]);
    }
    check(
        at(Held).held(),
        Input::Close,
        at(Ended).held().closed(),
        &[],
    );
}

#[test]
fn close_while_cancelling_or_ended_has_nothing_more_to_cancel() {
    // Cancelling: the recv's last CQE is on its way.
    for state in [Cancelling, Ended] {
        check(at(state), Input::Close, at(state).closed(), &[]);
    }
}

#[test]
fn after_close_cqes_report_nothing_and_arm_nothing() {
    // Data goes back to the ring (no `Received`); only the last CQE changes the state.
    check(at(Armed).closed(), data(100, true), at(Armed).closed(), &[]);
    check(
        at(Armed).closed(),
        data(100, false),
        at(Ended).closed(),
        &[],
    );
    check(
        at(Cancelling).owing(50).closed(),
        recv_err(libc::ECANCELED, false),
        at(Ended).owing(50).closed(),
        &[],
    );
    check(
        at(Probing).closed(),
        recv_err(libc::ENOBUFS, false),
        at(Ended).closed(),
        &[],
    );
    check(
        at(Skipping).owing(50).closed(),
        skipped(-libc::ECANCELED),
        at(Ended).owing(50).closed(),
        &[],
    );
    check(
        at(Skipping).owing(50).closed(),
        skipped(20),
        at(Ended).owing(50).closed(),
        &[],
    );
}

#[test]
fn after_close_the_shards_asks_are_ignored() {
    let closed = at(Armed).closed();
    for input in [Input::Skip(10), Input::Skip(0), Input::Pause, Input::Close] {
        check(closed, input, closed, &[]);
    }
    // A resume lifts a hold still, but re-arms nothing.
    check(
        at(Ended).held().closed(),
        Input::Resume,
        at(Ended).closed(),
        &[],
    );
}

// ----- Pairs that cannot happen, and what they do instead of panicking -----

/// A recv that is not cancelled does not end with ECANCELED (only `close` cancels it then,
/// and after `close` nothing is reported): it would be reported as the error it is.
#[test]
fn unreachable_ecanceled_without_a_cancel_is_a_failure() {
    check(
        at(Armed),
        recv_err(libc::ECANCELED, false),
        at(Ended),
        &[Failed(Failure::Errno(libc::ECANCELED))],
    );
}

/// ENOBUFS always ends a multishot recv; one with `MORE` would only count the empty ring.
#[test]
fn unreachable_enobufs_with_more_only_counts() {
    check(
        at(Armed),
        recv_err(libc::ENOBUFS, true),
        at(Armed),
        &[RingEmpty],
    );
}

/// Every receive selects a buffer (the start-up probe proves it); bytes without one are
/// reported as a failure, and a recv that goes on is left to go on.
#[test]
fn unreachable_data_without_a_buffer_is_a_failure() {
    let no_buffer = |more| Input::RecvCqe {
        res: 100,
        more,
        buffer: false,
    };
    check(
        at(Armed),
        no_buffer(true),
        at(Armed),
        &[Failed(Failure::NoBuffer)],
    );
    check(
        at(Armed),
        no_buffer(false),
        at(Ended),
        &[Failed(Failure::NoBuffer)],
    );
}

/// A recv CQE with nothing in flight follows the rule for its kind as if the recv were the
/// multishot one: data that ends it re-arms, ENOBUFS starves, EOF ends.
#[test]
fn unreachable_recv_cqe_with_nothing_in_flight_follows_its_rule() {
    for state in [Starved, Paused, Skipping, Ended] {
        check(
            at(state),
            data(10, false),
            at(Armed),
            &[Received(10), ArmRecv],
        );
        check(at(state), RECV_EOF, at(Ended), &[Eof]);
    }
    check(
        at(Held).held(),
        data(10, false),
        at(Held).held(),
        &[Received(10)],
    );
}

/// A skip CQE outside `Skipping` follows its rule too: what it dropped is reported, and
/// reading resumes with a probe.
#[test]
fn unreachable_skip_cqe_outside_skipping_follows_its_rule() {
    check(
        at(Paused),
        skipped(10),
        at(Probing).probing_next(),
        &[Skipped(10), ArmProbe],
    );
}

/// A CQE reporting more bytes than the skip owed cannot drop past it (the truncating recv asks
/// for no more); the count stops at zero.
#[test]
fn unreachable_more_dropped_than_owed_stops_the_count_at_zero() {
    check(
        at(Skipping).owing(5),
        skipped(10),
        at(Probing).probing_next(),
        &[Skipped(10), ArmProbe],
    );
}

/// Asks adding up past `u64::MAX` saturate instead of overflowing.
#[test]
fn unreachable_skip_overflow_saturates() {
    check(
        at(Cancelling).owing(u64::MAX - 1),
        Input::Skip(10),
        at(Cancelling).owing(u64::MAX),
        &[],
    );
}

// ----- A whole cycle, step by step -----

/// A skip from the multishot recv to the next one: cancel, bytes delivered meanwhile, the
/// drop in two pieces, the probe, the next wait.
#[test]
fn a_skip_cycle_from_multishot_to_multishot() {
    let (mut side, _) = RecvSide::start();
    let mut run = |input, expect: &[Action]| {
        let got: Vec<Action> = side.step(input).into_iter().collect();
        assert_eq!(got, expect, "{input:?}");
        side
    };
    assert_eq!(
        run(Input::Skip(10_000), &[CancelRecv]),
        at(Cancelling).owing(10_000)
    );
    run(data(1000, true), &[Received(1000)]);
    assert_eq!(
        run(recv_err(libc::ECANCELED, false), &[SubmitSkip(9000)]),
        at(Skipping).owing(9000)
    );
    run(skipped(4000), &[Skipped(4000), SubmitSkip(5000)]);
    assert_eq!(
        run(skipped(5000), &[Skipped(5000), ArmProbe]),
        at(Probing).probing_next()
    );
    assert_eq!(
        run(
            data(PROBE, false),
            &[Received(PROBE_LEN), Park(List::Paused)]
        ),
        at(Paused)
    );
    assert_eq!(run(Input::Rearm(List::Paused), &[ArmRecv]), at(Armed));
}

// ----- Every state and input: the rules all transitions share -----

/// Every combination of state, fields and input: none panics (nor overflows the two action
/// slots), and each obeys the rules the backend relies on.
#[test]
fn every_transition_keeps_the_shared_rules() {
    let states = [
        Armed, Starved, Probing, Paused, Cancelling, Skipping, Held, Ended,
    ];
    let mut inputs = vec![
        Input::Skip(0),
        Input::Skip(1),
        Input::Skip(1 << 40),
        Input::Pause,
        Input::Resume,
        Input::Close,
        Input::Rearm(List::Starved),
        Input::Rearm(List::Paused),
    ];
    for res in [
        1,
        PROBE - 1,
        PROBE,
        65_536,
        0,
        -libc::ENOBUFS,
        -libc::ECANCELED,
        -ECONNRESET,
    ] {
        for more in [false, true] {
            for buffer in [false, true] {
                inputs.push(Input::RecvCqe { res, more, buffer });
            }
        }
        inputs.push(Input::SkipCqe { res });
    }
    let mut walked = 0;
    for state in states {
        for skip in [0, 5, 3 * SKIP_CHUNK as u64] {
            for bits in 0..8 {
                let before = RecvSide {
                    state,
                    skip,
                    probe: bits & 1 != 0,
                    held: bits & 2 != 0,
                    closing: bits & 4 != 0,
                };
                for &input in &inputs {
                    let mut side = before;
                    let actions: Vec<Action> = side.step(input).into_iter().collect();
                    walked += 1;
                    let case = format!("{before:?} + {input:?} → {side:?}, {actions:?}");
                    if before.closing {
                        assert!(actions.is_empty(), "closed, yet acts: {case}");
                    }
                    assert!(side.closing >= before.closing, "reopened: {case}");
                    assert!(
                        side.skip <= before.skip || matches!(input, Input::Skip(_)),
                        "{case}"
                    );
                    let submits = actions
                        .iter()
                        .filter(|a| {
                            matches!(
                                a,
                                ArmRecv | ArmProbe | SubmitSkip(_) | CancelRecv | CancelSkip
                            )
                        })
                        .count();
                    assert!(submits <= 1, "more than one op at once: {case}");
                    for action in &actions {
                        match *action {
                            ArmRecv => assert_eq!(side.state, Armed, "{case}"),
                            ArmProbe => assert_eq!(side.state, Probing, "{case}"),
                            SubmitSkip(len) => {
                                assert_eq!(side.state, Skipping, "{case}");
                                assert!(len > 0 && len as usize <= SKIP_CHUNK, "{case}");
                                assert!(u64::from(len) <= side.skip, "{case}");
                            }
                            // From a skip or a pause; `close` cancels without a state of its own.
                            CancelRecv => {
                                assert!(side.state == Cancelling || side.closing, "{case}")
                            }
                            CancelSkip => assert!(side.closing, "{case}"),
                            Park(List::Starved) => assert_eq!(side.state, Starved, "{case}"),
                            Park(List::Paused) => assert_eq!(side.state, Paused, "{case}"),
                            Received(len) => assert!(
                                matches!(input, Input::RecvCqe { res, buffer: true, .. } if res as usize == len),
                                "{case}"
                            ),
                            Skipped(len) => assert!(
                                matches!(input, Input::SkipCqe { res } if res as usize == len),
                                "{case}"
                            ),
                            Eof | Failed(_) | RingEmpty => assert!(
                                matches!(input, Input::RecvCqe { .. } | Input::SkipCqe { .. }),
                                "a report without a CQE: {case}"
                            ),
                        }
                    }
                    // A held side is never armed.
                    if side.held {
                        assert!(
                            !actions.iter().any(|a| matches!(a, ArmRecv | ArmProbe)),
                            "armed while held: {case}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(walked, 8 * 3 * 8 * inputs.len());
}
