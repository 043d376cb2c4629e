//! Graceful shutdown: stop accepting, close every WebSocket with 1001, and at the deadline cut
//! what remains.

use super::*;

impl<S: Service> Shard<S> {
    pub(super) fn on_message(&mut self, msg: ShardMsg, now: Instant) {
        match msg {
            ShardMsg::Shutdown { deadline } => {
                if self.shutdown.is_some() {
                    return;
                }
                // What was posted before the shutdown was asked for (a last publish) goes out
                // before the 1001s: every post queued now, whatever the per-turn budget.
                let queued = self.world.remote.queued(self.world.index);
                self.take_posts(now, queued);
                self.shutdown = Some(deadline);
                self.report.shutting_down = true;
                self.backend.stop_accepting();
                let tokens: Vec<Token> = self
                    .world
                    .conns
                    .iter()
                    .map(|(i, c)| Token::new(i, c.generation))
                    .collect();
                for token in tokens {
                    let Some(conn) = slot(&mut self.world.conns, token) else {
                        continue;
                    };
                    if conn.lifecycle != Lifecycle::Live {
                        continue;
                    }
                    match &mut conn.phase {
                        Phase::Ws(open) => {
                            if open
                                .ws
                                .close_as_endpoint(
                                    CloseCode::GOING_AWAY,
                                    "server shutting down",
                                    now,
                                )
                                .is_ok()
                            {
                                self.report.report.closing += 1;
                            }
                        }
                        _ => conn.lifecycle = Lifecycle::CloseWhenFlushed,
                    }
                    self.world.mark_dirty(token);
                }
            }
        }
    }

    /// At the shutdown deadline: every connection still open is cut.
    pub(super) fn cut_remaining(&mut self) {
        let tokens: Vec<Token> = self
            .world
            .conns
            .iter()
            .filter(|(_, c)| c.lifecycle != Lifecycle::Closing)
            .map(|(i, c)| Token::new(i, c.generation))
            .collect();
        for token in tokens {
            if let Some(conn) = slot(&mut self.world.conns, token) {
                conn.lifecycle = Lifecycle::Closing;
                if let Some(fd) = conn.take_fd() {
                    self.backend.close(token, fd);
                }
            }
        }
    }
}
