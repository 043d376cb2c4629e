//! The transitions of an outgoing connection: through its proxy's tunnel, to its 101 (the
//! WebSocket opens in the client role), or to a failure that hands the session back; and the
//! dials callbacks made, registered with the reactor.

use super::*;

impl<S: Service> Shard<S> {
    /// The proxy opened the tunnel: the handshake (inside TLS for `wss://`) goes out on the same
    /// socket, and whatever followed the proxy's answer belongs to it.
    pub(super) fn tunnelled(&mut self, token: Token, used: usize, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let Phase::Proxying(mut dialing) = std::mem::replace(&mut conn.phase, Phase::Answered)
        else {
            return;
        };
        let rest = dialing.head.split_off(used);
        dialing.head.clear();
        let opened = tls::open_tunnel(conn, &dialing.handshake, &dialing.options);
        conn.phase = Phase::Dialing(dialing);
        let inner = match opened {
            Ok(inner) => inner,
            Err(e) => return self.fail_dial(token, e, now),
        };
        if rest.is_empty() {
            return;
        }
        match (inner, conn.tls.as_deref_mut()) {
            (Some(layer), Some(tls)) => {
                let mut plain = Vec::new();
                let received = tls.receive(layer, &rest, &mut plain);
                self.on_bytes(token, Input::Plain(&plain), now);
                if let Err(e) = received {
                    self.on_tls_error(token, e, now);
                }
            }
            _ => {
                self.on_bytes(token, Input::Plain(&rest), now);
            }
        }
    }

    /// An outgoing connection's 101 arrived: it becomes a WebSocket in the client role.
    pub(super) fn opened(
        &mut self,
        token: Token,
        accepted: ClientNegotiated,
        used: usize,
        now: Instant,
    ) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let Phase::Dialing(dialing) = std::mem::replace(&mut conn.phase, Phase::Answered) else {
            return;
        };
        let Dialing {
            config,
            session,
            mut head,
            ..
        } = *dialing;
        let rest = head.split_off(used).freeze();
        let mut ws = Connection::client(
            config,
            Extensions::new(accepted.extensions),
            self.world.rng.random(),
        );
        // The server closes the TCP connection first (RFC 6455 section 7.1.1); the socket stays
        // open for it, and the close is reported when it has, or when this side gives up.
        ws.wait_for_server_close(Some(self.settings.limits.server_close_timeout));
        conn.phase = Phase::Ws(Box::new(Open {
            ws,
            session,
            protocol: accepted.protocol.map(Into::into),
        }));
        self.world.mark_dirty(token);
        self.service
            .on_connected(&mut self.world.cx(now), ConnId(token), &accepted.response);
        self.world
            .feed(&self.service, token, &rest, now, &mut self.report);
    }

    /// An outgoing connection that has not opened ends: the service gets its session back and
    /// the socket closes. Nothing happens for any other kind of connection.
    pub(super) fn fail_dial(&mut self, token: Token, error: DialError, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        if !matches!(conn.phase, Phase::Dialing(_) | Phase::Proxying(_)) {
            return;
        }
        let (Phase::Dialing(dialing) | Phase::Proxying(dialing)) =
            std::mem::replace(&mut conn.phase, Phase::Answered)
        else {
            return;
        };
        conn.discard_output();
        if conn.lifecycle == Lifecycle::Live {
            conn.lifecycle = Lifecycle::CloseWhenFlushed;
        }
        self.world.mark_dirty(token);
        self.service
            .on_connect_failed(&mut self.world.cx(now), dialing.session, error);
    }

    /// Registers the outgoing connections callbacks made with the reactor.
    pub(super) fn register_dials(&mut self, now: Instant) {
        while let Some(token) = self.world.dials.pop() {
            let Some(conn) = slot(&mut self.world.conns, token) else {
                continue;
            };
            let fd = conn.fd();
            if let Err(e) = self.backend.register(token, fd) {
                self.fail_dial(token, DialError::Io(e), now);
                // Never registered: the reactor will not report its close; the socket closes
                // as its slot is dropped.
                if slot(&mut self.world.conns, token).is_some() {
                    self.world.conns.remove(token.index());
                }
                continue;
            }
            self.schedule(token);
        }
    }
}
