//! The receive side of a shard's loop: bytes from the reactor (through TLS when the
//! connection has it) to the connection's phase, a request head to its route, and the end of
//! a peer's side.

use super::*;

impl<S: Service> Shard<S> {
    pub(super) fn on_received(&mut self, token: Token, buf: BufId, len: usize, now: Instant) {
        if self.on_bytes(token, Input::Buffer(buf, len), now) {
            self.world.mark_dirty(token);
        }
    }

    /// Bytes a skip dropped unread: the WebSocket accounts for them as received payload.
    pub(super) fn on_skipped(&mut self, token: Token, len: usize, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        conn.skipping = conn.skipping.saturating_sub(clamp_u32(len));
        if conn.lifecycle != Lifecycle::Live {
            return;
        }
        conn.heard_from(now);
        let Phase::Ws(open) = &mut conn.phase else {
            return;
        };
        open.ws.skipped(len as u64, now);
        self.world
            .drain_events(&self.service, token, now, &mut self.report);
        self.world.mark_dirty(token);
    }

    /// Received bytes that went through TLS: their plaintext goes to the phase; a TLS failure
    /// after it.
    pub(super) fn on_tls_received(&mut self, token: Token, buf: BufId, len: usize, now: Instant) {
        let Some(tls) = slot(&mut self.world.conns, token).and_then(|c| c.tls.as_deref_mut())
        else {
            return;
        };
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let received = tls.receive(0, self.backend.buffer(buf, len), &mut plain);
        // Plaintext that came before a bad record still counts.
        self.on_bytes(token, Input::Plain(&plain), now);
        if let Err(e) = received {
            self.on_tls_error(token, e, now);
        }
        if plain.capacity() <= PLAIN_KEEP {
            self.plain = plain;
        }
    }

    /// Hands bytes to the connection's phase: from the socket (through TLS first when the
    /// connection has it), or plaintext out of TLS. False if the connection takes no more.
    pub(super) fn on_bytes(&mut self, token: Token, input: Input<'_>, now: Instant) -> bool {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return false;
        };
        let data = match input {
            Input::Buffer(buf, len) => {
                // The backend counts delivered bytes against a skip in progress; so do we.
                conn.skipping = conn.skipping.saturating_sub(clamp_u32(len));
                if conn.lifecycle != Lifecycle::Live {
                    return false;
                }
                conn.heard_from(now);
                if let Phase::Dialing(dialing) | Phase::Proxying(dialing) = &mut conn.phase {
                    dialing.connected_at.get_or_insert(now);
                }
                if conn.tls.is_some() {
                    self.on_tls_received(token, buf, len, now);
                    return true;
                }
                self.backend.buffer(buf, len)
            }
            Input::Plain([]) => return true,
            Input::Plain(plain) => plain,
        };
        match &mut conn.phase {
            Phase::Head(head) => {
                head.extend_from_slice(data);
                match parse_request(head, &self.settings.limits.head) {
                    Ok(None) => {}
                    Err(e) => answer(conn, Refusal::new(e.status(), e.to_string()).to_response()),
                    Ok(Some((request, used))) => {
                        let rest = head.split_off(used).freeze();
                        self.route(token, request, rest, now);
                    }
                }
            }
            Phase::Ws(_) => {
                self.world
                    .feed(&self.service, token, data, now, &mut self.report);
            }
            Phase::Dialing(dialing) => {
                dialing.head.extend_from_slice(data);
                match dialing.handshake.read_response(&dialing.head) {
                    Ok(None) => {}
                    Err(e) => self.fail_dial(token, DialError::Handshake(e), now),
                    Ok(Some((accepted, used))) => self.opened(token, accepted, used, now),
                }
            }
            Phase::Proxying(dialing) => {
                dialing.head.extend_from_slice(data);
                // A proxy is always set while proxying.
                let answer = match &dialing.options.proxy {
                    Some(proxy) => proxy.read_response(&dialing.head),
                    None => Ok(Some(0)),
                };
                match answer {
                    Ok(None) => {}
                    Err(e) => self.fail_dial(token, DialError::Proxy(e), now),
                    Ok(Some(used)) => self.tunnelled(token, used, now),
                }
            }
            Phase::Answered => {}
        }
        true
    }

    /// TLS failed: a dial fails with the reason (and the alert rustls prepared goes out before
    /// the socket closes); an open WebSocket has lost its transport.
    pub(super) fn on_tls_error(&mut self, token: Token, error: TlsError, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        match conn.phase {
            Phase::Dialing(_) | Phase::Proxying(_) => {
                self.fail_dial(token, DialError::Tls(error), now);
                if let Some(conn) = slot(&mut self.world.conns, token) {
                    conn.transmit_tls();
                }
            }
            _ => {
                let error = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
                self.on_transport_end(token, false, Some(error), now);
            }
        }
    }

    /// Carries out what a complete request head gets ([`route::route`] decides): its answer,
    /// or the WebSocket it opens.
    pub(super) fn route(&mut self, token: Token, request: RequestHead, rest: Bytes, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let peer = conn.socket().and_then(peer_addr);
        let decided = route::route(
            &*self.service,
            &mut self.world.local,
            &self.settings,
            &request,
            peer,
            self.world.index,
        );
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let (accepted, session) = match decided {
            Route::Answer(bytes) => return answer(conn, bytes),
            Route::WebSocket { accepted, session } => (accepted, session),
        };
        conn.push_out(Bytes::from(accepted.response));
        let ws = Connection::server(
            self.settings.ws_config.clone(),
            Extensions::new(accepted.extensions),
        );
        conn.phase = Phase::Ws(Box::new(Open {
            ws,
            session,
            protocol: accepted.protocol.map(Into::into),
        }));
        self.world.mark_dirty(token);
        self.service
            .on_open(&mut self.world.cx(now), ConnId(token), &request);
        self.world
            .feed(&self.service, token, &rest, now, &mut self.report);
    }

    /// The peer's side ended: with an EOF (`half_closed`) it may still read, otherwise the
    /// connection is broken.
    pub(super) fn on_transport_end(
        &mut self,
        token: Token,
        half_closed: bool,
        error: Option<std::io::Error>,
        now: Instant,
    ) {
        let failed = match error {
            Some(e) => DialError::Io(e),
            None => DialError::Closed,
        };
        self.fail_dial(token, failed, now);
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        if let Phase::Ws(open) = &mut conn.phase {
            open.ws.transport_closed();
        }
        // A reset or failed write leaves nothing worth writing; after a plain EOF the peer can
        // still read (a client that half-closes after its request), so its answer goes out.
        if !half_closed {
            conn.discard_output();
        }
        if conn.lifecycle == Lifecycle::Live {
            conn.lifecycle = Lifecycle::CloseWhenFlushed;
        }
        self.world
            .drain_events(&self.service, token, now, &mut self.report);
        self.world.mark_dirty(token);
    }
}
