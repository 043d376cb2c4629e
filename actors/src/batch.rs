//! Small publishes that arrived by post back to back, gathered to be delivered together.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

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
    /// The topic of the frames gathered; `None` while empty.
    topic: Option<Arc<str>>,
    /// The frames, back to back, as they go on the wire.
    frames: BytesMut,
    /// How many messages `frames` holds, for the counters.
    messages: usize,
}

impl Batch {
    /// Adds `frame` for `topic`; false if it does not belong to this batch (another topic, or
    /// no room left), which must then be delivered first.
    pub(crate) fn add(&mut self, topic: &Arc<str>, frame: &[u8]) -> bool {
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
    pub(crate) fn take(&mut self) -> Option<(Arc<str>, Bytes, usize)> {
        let topic = self.topic.take()?;
        let messages = std::mem::take(&mut self.messages);
        Some((topic, self.frames.split().freeze(), messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
