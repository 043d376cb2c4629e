//! Automatic pings: one every `ping` interval per connection, and the connection cut when its
//! pong has not come by the deadline. They run on engine service timers with keys from the
//! runtime's own half of the key space ([`INTERNAL`](crate::timer::INTERNAL)).

use ringsock_engine::server::ConnId;
use ringsock_engine::ws::PingId;

use crate::runtime::EngineCx;
use crate::settings::Settings;
use crate::timer::{PING_TICK, PONG_DUE};

/// A connection opened: its first ping is due one interval from now.
pub(crate) fn start(cx: &mut EngineCx<'_>, settings: &Settings, id: ConnId) {
    if let Some(interval) = settings.ping {
        let at = cx.now() + interval;
        cx.set_timer(Some(id), at, PING_TICK);
    }
}

/// Whether a pong answers the automatic ping, which the handler does not hear of; if so, the
/// ping is settled.
pub(crate) fn answered(cx: &mut EngineCx<'_>, id: ConnId, ping: Option<PingId>) -> bool {
    let Some(slot) = cx.conns_mut().session_mut(id) else {
        return false;
    };
    if ping.is_some() && ping == slot.auto_ping.map(|(p, _)| p) {
        slot.auto_ping = None;
        return true;
    }
    false
}

/// Runs the runtime's own timer `key` (one with [`INTERNAL`](crate::timer::INTERNAL) set) for
/// connection `id`.
pub(crate) fn on_timer(cx: &mut EngineCx<'_>, settings: &Settings, id: ConnId, key: u64) {
    if key == PING_TICK {
        tick(cx, settings, id);
    } else if key & PONG_DUE == PONG_DUE {
        pong_due(cx, id, PingId(key & !PONG_DUE));
    }
}

/// Time to ping `id` again, unless its last automatic ping is still unanswered; the next tick
/// is set either way.
fn tick(cx: &mut EngineCx<'_>, settings: &Settings, id: ConnId) {
    let now = cx.now();
    let Some(interval) = settings.ping else {
        return;
    };
    let Some(open) = cx.conn(id) else { return };
    // One automatic ping at a time: while one is unanswered its deadline stands. A new
    // ping would take its place in `auto_ping`, and the older deadline would then find
    // it "answered" — so with a deadline at or past the interval (the default is equal)
    // a silent peer was never dropped.
    if open.session.auto_ping.is_none() {
        let Ok(ping) = open.ws.ping(b"") else { return };
        open.session.auto_ping = Some((ping, now));
        if let Some(due) = now.checked_add(settings.pong_timeout) {
            cx.set_timer(Some(id), due, PONG_DUE | ping.0);
        }
    }
    cx.set_timer(Some(id), now + interval, PING_TICK);
}

/// The deadline of automatic ping `ping` has come: the connection is cut unless it was answered
/// or anything arrived since.
fn pong_due(cx: &mut EngineCx<'_>, id: ConnId, ping: PingId) {
    let last = cx.conns_mut().last_received(id);
    let Some(slot) = cx.conns_mut().session_mut(id) else {
        return;
    };
    let Some((outstanding, sent)) = slot.auto_ping else {
        return;
    };
    if outstanding != ping {
        return;
    }
    // Any bytes since the ping went out prove the peer alive, even if its pong was lost
    // to the protocol's bounded ping memory (a handler's own pings can push ours out).
    if last.is_some_and(|last| last > sent) {
        slot.auto_ping = None;
    } else {
        // The peer is gone or wedged: a close frame would wait behind the same silence.
        cx.conns_mut().abort(id);
    }
}
