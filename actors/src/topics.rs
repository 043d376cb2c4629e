//! Topics of one shard: who subscribes, and delivery of a message framed once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use indexmap::IndexSet;
use ringsock_engine::server::{ConnId, Conns};
use ringsock_engine::ws::{
    server_frame, server_frame_rsv, CloseCode, Connection, DataKind, FrameHeader, OpCode,
};

use crate::runtime::Slot;

/// What happens to a subscriber whose unwritten output has reached the high-water mark when a
/// published message arrives for it. (Small messages published from outside the shard in a
/// quick run are delivered as one batch, and the policy then applies to the batch as a whole.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Skip this message for that subscriber (counted in [`crate::Stats`]).
    Drop,
    /// Close the subscriber with this code (1008 policy violation, or 1013 try again later).
    /// The close frame queues behind what it has not read yet.
    Close(CloseCode),
}

/// How one publish went on one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers the message was queued for.
    pub queued: usize,
    /// Subscribers that were past the high-water mark and skipped.
    pub dropped: usize,
    /// Subscribers closed by the policy.
    pub closed: usize,
}

struct Topic {
    name: Arc<str>,
    subscribers: IndexSet<ConnId>,
    policy: Option<SlowPolicy>,
}

/// The topic table of one shard. A topic exists while it has subscribers here.
#[derive(Default)]
pub(crate) struct Topics {
    topics: HashMap<Arc<str>, Topic>,
    /// Policies named at the server, applied to topics as they appear.
    policies: Arc<HashMap<String, SlowPolicy>>,
}

impl Topics {
    pub fn new(policies: Arc<HashMap<String, SlowPolicy>>) -> Self {
        Self {
            topics: HashMap::new(),
            policies,
        }
    }

    /// Adds `id` to `topic`; the shared name to remember for unsubscribing, if it was new.
    pub fn subscribe(&mut self, topic: &str, id: ConnId) -> Option<Arc<str>> {
        if let Some(t) = self.topics.get_mut(topic) {
            return t.subscribers.insert(id).then(|| t.name.clone());
        }
        let name: Arc<str> = Arc::from(topic);
        let mut t = Topic {
            name: name.clone(),
            subscribers: IndexSet::new(),
            policy: self.policies.get(topic).copied(),
        };
        t.subscribers.insert(id);
        self.topics.insert(name.clone(), t);
        Some(name)
    }

    /// Removes `id` from `topic`; a topic left empty is forgotten.
    pub fn unsubscribe(&mut self, topic: &str, id: ConnId) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let removed = t.subscribers.swap_remove(&id);
        if t.subscribers.is_empty() {
            self.topics.remove(topic);
        }
        removed
    }

    /// Subscribers of `topic` on this shard.
    pub fn count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.subscribers.len())
    }

    /// Sets the slow-subscriber policy of `topic` on this shard (while it exists).
    pub fn set_policy(&mut self, topic: &str, policy: SlowPolicy) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.policy = Some(policy);
        }
    }

    /// Queues `out` for every subscriber of `topic` except `exclude`, applying the policy to
    /// those at or past `high_water` bytes of unwritten output.
    pub fn deliver(
        &self,
        conns: &mut Conns<'_, Slot>,
        topic: &str,
        out: &mut Outgoing,
        exclude: Option<ConnId>,
        limits: DeliveryLimits,
    ) -> Delivery {
        let mut delivery = Delivery::default();
        let Some(t) = self.topics.get(topic) else {
            return delivery;
        };
        let policy = t.policy.unwrap_or(limits.policy);
        for &id in &t.subscribers {
            if Some(id) == exclude {
                continue;
            }
            if conns.buffered(id) < limits.high_water {
                if conns.get(id).is_some_and(|open| out.queue(&mut open.ws)) {
                    delivery.queued += 1;
                }
                continue;
            }
            match policy {
                SlowPolicy::Drop => delivery.dropped += 1,
                SlowPolicy::Close(code) => {
                    if let Some(open) = conns.get(id) {
                        if open
                            .ws
                            .close_as_endpoint(code, "slow consumer: too much unread", limits.now)
                            .is_ok()
                        {
                            delivery.closed += 1;
                        }
                    }
                }
            }
        }
        delivery
    }
}

/// Published messages on their way to subscribers: plain frames built once, and, for
/// subscribers whose extensions keep no context (compression without context takeover), the
/// same messages encoded once per kind of encoding among them. Subscribers whose compression
/// keeps context get each message compressed for them alone: the price of context takeover in
/// a fan-out, paid per subscriber and message.
pub(crate) struct Outgoing {
    /// One or more whole unmasked frames (a publish, or a batch of them).
    plain: Bytes,
    /// `plain` encoded, by [`Connection::stateless_key`]; made when a subscriber first needs it.
    encoded: Vec<(u64, Bytes)>,
}

impl Outgoing {
    /// Messages as plain frames made by [`server_frame`].
    pub fn new(plain: Bytes) -> Self {
        Self {
            plain,
            encoded: Vec::new(),
        }
    }

    /// Queues the messages on `ws` in the form its extensions need; false if it is not open.
    pub fn queue(&mut self, ws: &mut Connection) -> bool {
        match ws.stateless_key() {
            Some(0) => ws.send_raw_frames(&self.plain).is_ok(),
            Some(key) => {
                let frames = match self.encoded.iter().find(|(k, _)| *k == key) {
                    Some((_, frames)) => frames.clone(),
                    None => {
                        let frames = self.encode(ws);
                        self.encoded.push((key, frames.clone()));
                        frames
                    }
                };
                ws.send_raw_frames(&frames).is_ok()
            }
            None => self
                .messages()
                .all(|(kind, payload)| ws.send_shared(kind, payload).is_ok()),
        }
    }

    /// The messages in `plain`, as kind and payload (shared, not copied).
    fn messages(&self) -> impl Iterator<Item = (DataKind, Bytes)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (header, len) = FrameHeader::parse(&self.plain[at..]).ok()??;
            let start = at + len;
            at = start + header.payload_len as usize;
            let kind = match header.opcode {
                OpCode::Text => DataKind::Text,
                _ => DataKind::Binary,
            };
            Some((kind, self.plain.slice(start..at)))
        })
    }

    /// `plain` encoded by `ws`'s stateless extensions, each message framed with its RSV bits.
    /// A message an extension refuses goes plain: an uncompressed message is always valid.
    fn encode(&self, ws: &mut Connection) -> Bytes {
        let mut frames = BytesMut::new();
        for (kind, payload) in self.messages() {
            let opcode = match kind {
                DataKind::Text => OpCode::Text,
                DataKind::Binary => OpCode::Binary,
            };
            match ws.encode_stateless(kind, payload.clone()) {
                Some(Ok(m)) => {
                    frames.extend_from_slice(&server_frame_rsv(opcode, m.rsv.0, &m.payload))
                }
                _ => frames.extend_from_slice(&server_frame(opcode, &payload)),
            }
        }
        frames.freeze()
    }
}

/// The budget a delivery checks subscribers against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeliveryLimits {
    pub high_water: usize,
    pub policy: SlowPolicy,
    pub now: Instant,
}

/// Frames shorter than this, arriving by post, are gathered into batches. It is the engine's
/// default zero-copy threshold: a longer frame is queued shared, not copied, and gains nothing
/// from company.
pub(crate) const BATCH_FRAME_MAX: usize = 1024;

/// The most bytes of frames one batch holds.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Publishes to one topic that arrived by post back to back (a producer's burst), waiting to be
/// delivered together at the end of the shard's posts. Each subscriber then gets one buffer with
/// all of them, for one slot lookup, one high-water check and one copy (or, from
/// [`BATCH_FRAME_MAX`] bytes up, one shared reference) instead of one per message: the same
/// bytes on the wire, at a fraction of the cost of a fan-out to thousands of subscribers.
#[derive(Default)]
pub(crate) struct Batch {
    topic: Option<Arc<str>>,
    frames: BytesMut,
    messages: usize,
}

impl Batch {
    /// Adds `frame` for `topic`; false if it does not belong to this batch (another topic, or
    /// no room left), which must then be delivered first.
    pub fn add(&mut self, topic: &Arc<str>, frame: &[u8]) -> bool {
        match &self.topic {
            None => self.topic = Some(topic.clone()),
            Some(t) if **t == **topic && self.frames.len() + frame.len() <= BATCH_BYTES => {}
            Some(_) => return false,
        }
        self.frames.extend_from_slice(frame);
        self.messages += 1;
        true
    }

    /// The batch's topic, frames and number of messages, leaving it empty.
    pub fn take(&mut self) -> Option<(Arc<str>, Bytes, usize)> {
        let topic = self.topic.take()?;
        let messages = std::mem::take(&mut self.messages);
        Some((topic, self.frames.split().freeze(), messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringsock_engine::server::ConnId;
    use ringsock_engine::ws::extension::{
        parse_extensions, Extension, ExtensionParams, Extensions,
    };
    use ringsock_engine::ws::{Config, DeflateOptions, PerMessageDeflate};

    fn ids() -> (ConnId, ConnId) {
        (ConnId::from_u64(1), ConnId::from_u64(2))
    }

    #[test]
    fn a_topic_exists_while_it_has_subscribers() {
        let (a, b) = ids();
        let mut topics = Topics::default();
        let name = topics.subscribe("t", a).expect("first subscription is new");
        assert_eq!(&*name, "t");
        assert_eq!(
            topics.subscribe("t", a),
            None,
            "subscribing twice is a no-op"
        );
        assert!(topics.subscribe("t", b).is_some());
        assert_eq!(topics.count("t"), 2);
        assert!(topics.unsubscribe("t", a));
        assert!(!topics.unsubscribe("t", a));
        assert_eq!(topics.count("t"), 1);
        assert!(topics.unsubscribe("t", b));
        assert!(topics.topics.is_empty(), "an empty topic is forgotten");
    }

    #[test]
    fn a_named_policy_applies_to_its_topic_when_it_appears() {
        let (a, _) = ids();
        let policies = HashMap::from([(
            "ticker".to_owned(),
            SlowPolicy::Close(CloseCode::POLICY_VIOLATION),
        )]);
        let mut topics = Topics::new(Arc::new(policies));
        topics.subscribe("ticker", a);
        topics.subscribe("other", a);
        assert_eq!(
            topics.topics["ticker"].policy,
            Some(SlowPolicy::Close(CloseCode::POLICY_VIOLATION))
        );
        assert_eq!(topics.topics["other"].policy, None);
    }

    /// A server connection that negotiated permessage-deflate from `offer` under `server`.
    fn deflate_conn(server: DeflateOptions, offer: &str) -> Connection {
        let ext = PerMessageDeflate::new(server);
        let offers = parse_extensions(offer).unwrap();
        let refs: Vec<&ExtensionParams> = offers.iter().collect();
        let (_, session) = ext.accept_offer(&refs).unwrap().unwrap();
        Connection::server(Config::default(), Extensions::new(vec![session]))
    }

    fn drain(ws: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = ws.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn a_burst_is_compressed_once_per_encoding_and_per_subscriber_with_takeover() {
        let text = "{\"symbol\":\"ACME\",\"bid\":101.25,\"ask\":101.5}".repeat(8);
        let mut plain = BytesMut::new();
        for _ in 0..3 {
            plain.extend_from_slice(&server_frame(OpCode::Text, text.as_bytes()));
        }
        let mut out = Outgoing::new(plain.freeze());
        let takeover = DeflateOptions::new().context_takeover(true);
        let mut shared_a = deflate_conn(DeflateOptions::new(), "permessage-deflate");
        let mut shared_b = deflate_conn(DeflateOptions::new(), "permessage-deflate");
        let mut own = deflate_conn(takeover, "permessage-deflate");
        let mut bare = Connection::server(Config::default(), Extensions::default());
        for ws in [&mut shared_a, &mut shared_b, &mut own, &mut bare] {
            assert!(out.queue(ws));
        }
        assert_eq!(
            out.encoded.len(),
            1,
            "one encoding shared by both stateless subscribers"
        );
        let (a, b, o, p) = (
            drain(&mut shared_a),
            drain(&mut shared_b),
            drain(&mut own),
            drain(&mut bare),
        );
        assert_eq!(a, b);
        assert_eq!(p, out.plain[..]);
        assert_eq!(a[0] & 0x40, 0x40, "RSV1: compressed");
        assert!(a.len() < p.len() / 2, "{} vs {}", a.len(), p.len());
        // With takeover the 2nd and 3rd copies refer back to the 1st: smaller again.
        assert!(o.len() < a.len(), "{} vs {}", o.len(), a.len());
    }

    #[test]
    fn a_batch_holds_one_topic_up_to_its_size_and_empties_when_taken() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut batch = Batch::default();
        assert!(batch.take().is_none());
        assert!(batch.add(&a, b"one"));
        assert!(batch.add(&a, b"two"));
        assert!(!batch.add(&b, b"other topic"));
        assert!(!batch.add(&a, &vec![0; BATCH_BYTES]));
        let (topic, frames, messages) = batch.take().unwrap();
        assert_eq!((&*topic, &frames[..], messages), ("a", &b"onetwo"[..], 2));
        assert!(batch.take().is_none());
        assert!(batch.add(&b, b"fresh"));
        assert_eq!(batch.take().unwrap().2, 1);
    }
}
