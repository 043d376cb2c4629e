//! Writing: once per loop turn each dirty connection's output goes out in one gathered send
//! (µWebSockets' cork), with read backpressure decided on the way; a send's completion brings
//! reading back and drain reports.

use super::*;

/// Emptied send lists a shard keeps for reuse: as many as sends it has in flight at once, up to
/// this; more are freed.
const SEND_LISTS: usize = 1024;

impl<S: Service> Shard<S> {
    pub(super) fn on_sent(
        &mut self,
        token: Token,
        result: std::io::Result<usize>,
        mut chunks: Vec<Bytes>,
        now: Instant,
    ) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        conn.sending = false;
        match result {
            Ok(written) => {
                if let (Phase::Dialing(d) | Phase::Proxying(d), true) =
                    (&mut conn.phase, written > 0)
                {
                    // Bytes left, so the connection is up: the handshake timeout takes over.
                    d.connected_at.get_or_insert(now);
                }
                self.reclaim.released(written);
                conn.requeue_unsent(&mut chunks, written);
                keep_send_list(&mut self.send_lists, chunks);
            }
            Err(_) => {
                keep_send_list(&mut self.send_lists, chunks);
                self.on_transport_end(token, false, None, now);
                return;
            }
        }
        if let Phase::Ws(open) = &conn.phase {
            let buffered = conn.queued + open.ws.pending_output();
            if conn.read_paused && buffered <= self.settings.limits.output.low {
                conn.read_paused = false;
                self.backend.resume(token);
            }
            if conn.drain_below != NO_DRAIN && buffered <= conn.drain_below as usize {
                conn.drain_below = NO_DRAIN;
                self.service
                    .on_drain(&mut self.world.cx(now), ConnId(token));
            }
        }
        self.world.mark_dirty(token);
    }

    /// Once per loop turn: moves each dirty connection's output into one gathered send, closes
    /// what is finished, and schedules its next deadline. Events a callback caused on another
    /// connection (an abort) are delivered first, which may dirty more connections; the loop
    /// runs until none is left.
    pub(super) fn flush(&mut self, now: Instant) {
        self.register_dials(now);
        let mut batch = Vec::new();
        while !self.world.dirty.is_empty() {
            std::mem::swap(&mut batch, &mut self.world.dirty);
            for token in batch.drain(..) {
                self.world
                    .drain_events(&self.service, token, now, &mut self.report);
                self.flush_one(token);
            }
        }
        // Keep the list's allocation for the next turn.
        if self.world.dirty.capacity() < batch.capacity() {
            self.world.dirty = batch;
        }
    }

    pub(super) fn flush_one(&mut self, token: Token) {
        let output = self.settings.limits.output;
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        conn.dirty = false;
        let fd = conn.fd();
        if let Phase::Ws(open) = &mut conn.phase {
            // Here, with every completion of the turn handled, `skippable` counts exactly the
            // bytes the backend has not reported yet. TLS bytes are records, never skipped; a
            // paused socket is not read, not even to drop bytes.
            if conn.skipping == 0
                && conn.tls.is_none()
                && !conn.read_paused
                && conn.lifecycle == Lifecycle::Live
            {
                let n = clamp_u32(open.ws.skippable(SKIP_MIN));
                if n > 0 {
                    conn.skipping = n;
                    self.backend.skip(token, fd, n.into());
                } else if open.ws.skip_next_header_only(SKIP_MIN) {
                    self.backend.skip(token, fd, 0);
                }
            }
            // Output moves out of the protocol only when the socket can take it: while a send
            // is stuck on a peer that does not read, it stays where the protocol can still
            // coalesce what it owes (pongs) and the limits see it whole. Without TLS it goes
            // straight from the protocol's queue into the send, below.
            if let (false, Some(tls)) = (conn.sending, conn.tls.as_deref_mut()) {
                while let Some(chunk) = open.ws.poll_transmit() {
                    tls.send(&chunk);
                }
            }
            // Read backpressure: past the high level, the peer's bytes stay in the kernel.
            if !conn.read_paused
                && conn.lifecycle == Lifecycle::Live
                && conn.queued + open.ws.pending_output() > output.high
            {
                conn.read_paused = true;
                self.backend.pause(token);
            }
        }
        if conn.tls.is_some() {
            conn.transmit_tls();
        }
        if !conn.sending && conn.lifecycle != Lifecycle::Closing {
            // One gathered send: what a partial write left (or what is not the protocol's: an
            // HTTP answer, TLS records) first, then the protocol's own queue, with no copy and
            // no list made per send (the send's list comes back with its completion).
            let mut chunks = self.send_lists.pop().unwrap_or_default();
            chunks.extend(conn.out.drain(..conn.out.len().min(MAX_IOVECS)));
            if let (Phase::Ws(open), None) = (&mut conn.phase, &conn.tls) {
                while chunks.len() < MAX_IOVECS {
                    let Some(chunk) = open.ws.poll_transmit() else {
                        break;
                    };
                    conn.queued += chunk.len();
                    chunks.push(chunk);
                }
            }
            if !chunks.is_empty() {
                conn.sending = true;
                self.backend.send(token, fd, chunks);
            } else {
                self.send_lists.push(chunks);
            }
        }
        if !conn.sending && conn.out.is_empty() && conn.lifecycle == Lifecycle::CloseWhenFlushed {
            conn.lifecycle = Lifecycle::Closing;
            if let Some(fd) = conn.take_fd() {
                self.backend.close(token, fd);
            }
            return;
        }
        if let Phase::Ws(open) = &mut conn.phase {
            if !conn.sending && conn.out.is_empty() {
                open.ws.release_buffers();
            }
        }
        self.schedule(token);
    }
}

/// Keeps a send's emptied list of chunks in `lists` for the next send, up to [`SEND_LISTS`].
fn keep_send_list(lists: &mut Vec<Vec<Bytes>>, mut chunks: Vec<Bytes>) {
    chunks.clear();
    if lists.len() < SEND_LISTS {
        lists.push(chunks);
    }
}
