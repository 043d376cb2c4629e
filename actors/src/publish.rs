//! Topic delivery: a publish made on this shard (queued to its subscribers here, posted once to
//! every other shard) and publishes that arrived by post (small ones batched).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ringsock_engine::server::ConnId;

use crate::batch::BATCH_FRAME_MAX;
use crate::delivery::Delivery;
use crate::outgoing::Outgoing;
use crate::post::Post;
use crate::runtime::EngineCx;

/// Queues `frame` for `topic`'s subscribers on this shard (minus `exclude`) and, when
/// `forward`, posts it once to every other shard.
pub(crate) fn publish(
    cx: &mut EngineCx<'_>,
    topic: &str,
    frame: Bytes,
    exclude: Option<ConnId>,
    forward: bool,
) -> Delivery {
    let now = cx.now();
    let (local, conns) = cx.split();
    let mut out = Outgoing::new(frame.clone());
    let delivery =
        local
            .topics
            .deliver(conns, topic, &mut out, exclude, local.delivery_limits(now));
    local.stats.add(delivery);
    if forward {
        local.stats.published.fetch_add(1, Ordering::Relaxed);
        let shards = local.remote.shards();
        if shards > 1 {
            let name: Arc<str> = Arc::from(topic);
            for shard in (0..shards).filter(|&s| s != local.shard) {
                let post = Post::Publish {
                    topic: name.clone(),
                    frame: frame.clone(),
                };
                if local.remote.post(shard, post).is_err() {
                    local.stats.forward_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    delivery
}

/// A publish that arrived by post: a small one joins the batch (delivering the batch first if
/// it does not fit), a large one is delivered at once, as it gains nothing from company.
pub(crate) fn posted(cx: &mut EngineCx<'_>, topic: Arc<str>, frame: Bytes) {
    if frame.len() < BATCH_FRAME_MAX {
        if !cx.local_mut().batch.add(&topic, &frame) {
            deliver_batch(cx);
            cx.local_mut().batch.add(&topic, &frame);
        }
    } else {
        publish(cx, &topic, frame, None, false);
    }
}

/// Delivers the pending batch before any post that is not one more small publish: whatever a
/// post does (a tell that sends, an actor that publishes) must come after the publishes posted
/// before it.
pub(crate) fn deliver_batch_unless_small_publish(cx: &mut EngineCx<'_>, post: &Post) {
    if !matches!(post, Post::Publish { frame, .. } if frame.len() < BATCH_FRAME_MAX) {
        deliver_batch(cx);
    }
}

/// Delivers the batch of posted publishes, if any: each subscriber gets all its messages at once
/// (or, past the high-water mark, none of them).
pub(crate) fn deliver_batch(cx: &mut EngineCx<'_>) {
    let Some((topic, frames, messages)) = cx.local_mut().batch.take() else {
        return;
    };
    let now = cx.now();
    let (local, conns) = cx.split();
    let d = local.topics.deliver(
        conns,
        &topic,
        &mut Outgoing::new(frames),
        None,
        local.delivery_limits(now),
    );
    local.stats.add(Delivery {
        queued: d.queued * messages,
        dropped: d.dropped * messages,
        closed: d.closed,
    });
}
