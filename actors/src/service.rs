//! The runtime as the engine's [`Service`]: each engine event goes to the behaviour it names
//! (a handler callback, an actor, topic delivery, the automatic pings).

use std::sync::atomic::Ordering;

use ringsock_engine::http::{RequestHead, ResponseHead};
use ringsock_engine::server::{
    Accept as Admit, ConnId, Dial, DialError, HttpResponse, Remote, Service, Upgrade,
};
use ringsock_engine::ws::{CloseFrame, Event};

use crate::actor;
use crate::dispatch::call;
use crate::keepalive;
use crate::local::Local;
use crate::message::{Closed, Message};
use crate::post::{DialPost, Post};
use crate::publish;
use crate::runtime::{Dispatch, EngineCx, Runtime};
use crate::slot::{ConnInfo, Slot};
use crate::timer::{TimerId, INTERNAL};
use crate::upgrade::UpgradeRequest;

impl Runtime {
    /// A connection opened, either way: start its pings, then its handler.
    fn opened(&self, cx: &mut EngineCx<'_>, id: ConnId) {
        keepalive::start(cx, &self.settings, id);
        call(cx, id, Dispatch::Open);
    }
}

impl Service for Runtime {
    type Session = Slot;
    type Local = Local;
    type Post = Post;

    fn local(&self, shard: usize, remote: &Remote<Post>) -> Local {
        Local::new(
            shard,
            remote.clone(),
            self.settings.clone(),
            self.stats.clone(),
            self.registry.clone(),
        )
    }

    fn upgrade(&self, _: &mut Local, upgrade: &Upgrade<'_>) -> Result<Admit<Slot>, HttpResponse> {
        let path = upgrade.request.path();
        let Some((_, hook)) = self.routes.iter().find(|(p, _)| p == path) else {
            return Err(HttpResponse::not_found());
        };
        let accepted = hook(&UpgradeRequest::new(upgrade))?;
        let request = upgrade.request;
        let info = ConnInfo {
            target: request.target().into(),
            peer: upgrade.peer,
            request: self
                .settings
                .keep_request
                .then(|| Box::new(request.clone())),
            response: None,
        };
        Ok(Admit {
            session: Slot::new(accepted.handler, info),
            protocol: accepted.protocol,
            headers: accepted.headers,
        })
    }

    fn on_open(&self, cx: &mut EngineCx<'_>, id: ConnId, request: &RequestHead) {
        let _ = request;
        self.opened(cx, id);
    }

    fn on_connected(&self, cx: &mut EngineCx<'_>, id: ConnId, response: &ResponseHead) {
        if let Some(slot) = cx.conns_mut().session_mut(id) {
            slot.info.response = Some(Box::new(response.clone()));
        }
        self.opened(cx, id);
    }

    fn on_connect_failed(&self, _cx: &mut EngineCx<'_>, session: Slot, error: DialError) {
        if let Some(mut handler) = session.handler {
            handler.connect_failed(error);
        }
    }

    fn on_event(&self, cx: &mut EngineCx<'_>, id: ConnId, event: Event) {
        match event {
            Event::Text(t) => call(cx, id, Dispatch::Message(Message::Text(t))),
            Event::Binary(b) => call(cx, id, Dispatch::Message(Message::Binary(b))),
            Event::Ping(_) => {}
            // A pong that answers the automatic ping is the keepalive's; only others reach
            // the handler.
            Event::Pong { payload, id: ping } if !keepalive::answered(cx, id, ping) => {
                call(cx, id, Dispatch::Pong(payload));
            }
            Event::Error(e) => call(cx, id, Dispatch::Error(e)),
            Event::Close(CloseFrame { code, reason }) => {
                leave(cx, id);
                call(cx, id, Dispatch::Close(Closed { code, reason }));
            }
            // An event the protocol learns later means nothing to handlers yet.
            _ => {}
        }
    }

    fn on_drain(&self, cx: &mut EngineCx<'_>, id: ConnId) {
        call(cx, id, Dispatch::Drain);
    }

    fn on_timer(&self, cx: &mut EngineCx<'_>, id: Option<ConnId>, key: u64) {
        let Some(id) = id else {
            return actor::on_shard_timer(cx, key);
        };
        if key & INTERNAL != 0 {
            return keepalive::on_timer(cx, &self.settings, id, key);
        }
        let Some(slot) = cx.conns_mut().session_mut(id) else {
            return;
        };
        let Some(i) = slot.timers.iter().position(|&t| t == key) else {
            return; // cancelled
        };
        slot.timers.swap_remove(i);
        call(cx, id, Dispatch::Timer(TimerId(key)));
    }

    fn on_post(&self, cx: &mut EngineCx<'_>, post: Post) {
        publish::deliver_batch_unless_small_publish(cx, &post);
        match post {
            Post::Publish { topic, frame } => publish::posted(cx, topic, frame),
            Post::Tell { id, msg } => call(cx, id, Dispatch::Tell(msg)),
            Post::ActorTell { actor, msg } => actor::tell(cx, actor, msg),
            Post::Dial(dial) => {
                let DialPost {
                    addr,
                    local,
                    handshake,
                    options,
                    config,
                    info,
                    handler,
                } = *dial;
                let dial = Dial {
                    addr,
                    local,
                    handshake,
                    options,
                    config,
                    session: Slot::new(handler, info),
                };
                if let Err((error, slot)) = cx.connect(dial) {
                    self.on_connect_failed(cx, slot, error);
                }
            }
            Post::Spawn {
                actor,
                entry,
                alive,
            } => actor::start(cx, actor, entry, alive),
        }
    }

    fn on_posts_done(&self, cx: &mut EngineCx<'_>) {
        publish::deliver_batch(cx);
    }

    fn on_http(&self, request: &RequestHead) -> HttpResponse {
        match &self.http {
            Some(respond) => respond(request),
            None => HttpResponse::not_found(),
        }
    }
}

/// A connection is closing for good: it leaves its topics, its timers stop, its addresses see
/// it gone.
fn leave(cx: &mut EngineCx<'_>, id: ConnId) {
    let (local, conns) = cx.split();
    let Some(slot) = conns.session_mut(id) else {
        return;
    };
    for topic in slot.topics.drain(..) {
        local.topics.unsubscribe(&topic, id);
    }
    slot.timers.clear();
    slot.auto_ping = None;
    slot.closed = true;
    if let Some(alive) = slot.alive.take() {
        alive.store(false, Ordering::Release);
    }
}
