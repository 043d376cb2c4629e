//! Deadlines: each connection's one timer entry (handshake, dial, close, idle, keepalive), and
//! the service's own timers.

use super::*;

impl<S: Service> Shard<S> {
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some((at, token)) = self.world.timers.pop_due(now) {
            let limits = &self.settings.limits;
            let Some(conn) = slot(&mut self.world.conns, token) else {
                continue;
            };
            if conn.timer != Some(at) {
                continue;
            }
            conn.timer = None;
            if conn.lifecycle != Lifecycle::Live {
                // Writing the last bytes took too long: give up on them, and on the send in
                // flight too (a peer that stopped reading never lets it finish), so close now.
                if conn.lifecycle == Lifecycle::CloseWhenFlushed
                    && now >= conn.last_activity + limits.handshake_timeout
                {
                    conn.discard_output();
                    conn.lifecycle = Lifecycle::Closing;
                    if let Some(fd) = conn.take_fd() {
                        self.backend.close(token, fd);
                    }
                }
            } else {
                match &mut conn.phase {
                    Phase::Head(_) | Phase::Answered => {
                        if now >= conn.accepted_at + limits.handshake_timeout {
                            conn.discard_output();
                            conn.lifecycle = Lifecycle::CloseWhenFlushed;
                        }
                    }
                    Phase::Dialing(dialing) | Phase::Proxying(dialing) => {
                        if now >= dialing.deadline(conn.accepted_at, limits.handshake_timeout) {
                            self.fail_dial(token, DialError::Timeout, now);
                        }
                    }
                    Phase::Ws(open) => {
                        open.ws.handle_timeout(now);
                        let silent = now.saturating_duration_since(conn.last_activity);
                        let mut dead = false;
                        if let Some(keepalive) = limits.keepalive {
                            if conn.pinged && silent >= 2 * keepalive {
                                dead = true;
                            } else if !conn.pinged && silent >= keepalive {
                                conn.pinged = open.ws.ping(b"").is_ok();
                            }
                        }
                        if dead {
                            conn.abort();
                        } else if let Some(idle) = limits.idle_timeout {
                            if silent >= idle {
                                let _ = open.ws.close_as_endpoint(
                                    CloseCode::GOING_AWAY,
                                    "idle timeout",
                                    now,
                                );
                            }
                        }
                        self.world
                            .drain_events(&self.service, token, now, &mut self.report);
                    }
                }
            }
            self.world.mark_dirty(token);
        }
        let mark = self.world.timers.user_mark();
        while let Some((token, key)) = self.world.timers.pop_user_due(now, mark) {
            let id = match token {
                None => None,
                Some(token) => {
                    let open = slot(&mut self.world.conns, token).is_some_and(
                        |c| matches!(&c.phase, Phase::Ws(open) if !open.ws.is_closed()),
                    );
                    if !open {
                        continue;
                    }
                    Some(ConnId(token))
                }
            };
            self.service.on_timer(&mut self.world.cx(now), id, key);
        }
    }

    /// Makes sure a timer entry exists for the connection's earliest deadline.
    pub(super) fn schedule(&mut self, token: Token) {
        let limits = &self.settings.limits;
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let deadline = match (&conn.phase, conn.lifecycle) {
            (_, Lifecycle::Closing) => None,
            (_, Lifecycle::CloseWhenFlushed) => Some(conn.last_activity + limits.handshake_timeout),
            (Phase::Head(_) | Phase::Answered, _) => {
                Some(conn.accepted_at + limits.handshake_timeout)
            }
            (Phase::Dialing(dialing) | Phase::Proxying(dialing), _) => {
                Some(dialing.deadline(conn.accepted_at, limits.handshake_timeout))
            }
            (Phase::Ws(open), _) => {
                // Idle time and keepalive count only while open: once our close is out, the
                // close timeout governs, and a past deadline would fire on every loop turn.
                let open_since = |d: Duration| {
                    (open.ws.state() == State::Open).then_some(conn.last_activity + d)
                };
                let idle = limits.idle_timeout.and_then(open_since);
                let keepalive = limits
                    .keepalive
                    .and_then(|k| open_since(if conn.pinged { 2 * k } else { k }));
                [open.ws.poll_timeout(), idle, keepalive]
                    .into_iter()
                    .flatten()
                    .min()
            }
        };
        if let Some(at) = deadline {
            if conn.timer.is_none_or(|t| at < t) {
                conn.timer = Some(at);
                self.world.timers.schedule(at, token);
            }
        }
    }
}
