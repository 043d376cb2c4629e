//! The pool's thread: paces dials, and redials lost connections after their backoff.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringsock_engine::ws::CloseCode;

use super::pooled::Pooled;
use super::shared::{bump, Event, Shared};
use super::{ClientPoolBuilder, PoolSlot};
use crate::handler::Handler;
use crate::server_handle::{ConnectError, ServerHandle};

/// The pool's thread: dials what is due as the rate and the limit on dials in flight allow,
/// and schedules redials as handlers report failures and closes.
pub(super) struct Driver<F> {
    /// What the pool was built with.
    config: ClientPoolBuilder,
    /// The runtime the pool dials on.
    runtime: Arc<ServerHandle>,
    /// The counters and the pool's inbox.
    shared: Arc<Shared>,
    /// Makes each slot's handler, again for each redial.
    factory: F,
    /// What handlers and the owner tell the driver.
    inbox: mpsc::Receiver<Event>,
    /// Slots waiting to be dialled, by when.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per slot: dials in a row since it last opened.
    attempts: Vec<u32>,
    /// Dials neither open nor failed yet.
    in_flight: usize,
    /// When the rate allows the next dial.
    next_token: Instant,
    /// The jitter's generator state.
    rng: u64,
}

/// How long the driver sleeps at most without news, parked (an event unparks it).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// While events keep coming, the driver looks at them this often instead of being woken for
/// each: a pool churning tens of thousands of connections a second would otherwise spend much
/// of its shards' time waking it (a futex wake and two context switches per event).
const TICK: Duration = Duration::from_millis(1);
/// How long to wait before retrying a dial a full shard mailbox turned away.
const FULL_RETRY: Duration = Duration::from_millis(1);

impl<H, F> Driver<F>
where
    H: Handler + Send,
    F: FnMut(PoolSlot) -> H + Send + 'static,
{
    /// A driver for `config` on `runtime`, nothing dialled yet.
    pub(super) fn new(
        config: ClientPoolBuilder,
        runtime: Arc<ServerHandle>,
        shared: Arc<Shared>,
        factory: F,
        inbox: mpsc::Receiver<Event>,
    ) -> Self {
        Self {
            config,
            runtime,
            shared,
            factory,
            inbox,
            due: BinaryHeap::new(),
            attempts: Vec::new(),
            in_flight: 0,
            next_token: Instant::now(),
            rng: seed(),
        }
    }

    /// The driver thread's loop: dials every slot once, then redials as events come, until
    /// the pool stops.
    pub(super) fn run(mut self) {
        let _ = self.shared.driver_thread.set(std::thread::current());
        let now = Instant::now();
        self.attempts = vec![0; self.config.connections];
        for index in 0..self.config.connections {
            self.due.push(Reverse((now, index)));
        }
        loop {
            let mut busy = false;
            while let Ok(event) = self.inbox.try_recv() {
                self.handle(event);
                busy = true;
            }
            if self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            let wake = self.dial_due();
            let until = |limit: Duration| {
                wake.map_or(limit, |at| {
                    at.saturating_duration_since(Instant::now()).min(limit)
                })
            };
            if busy || self.in_flight > 0 {
                // Busy: come back in a tick, unasked; events meanwhile wake nobody.
                std::thread::sleep(until(TICK));
                continue;
            }
            // Idle: park until an event or the next due dial. Marked parked first, then the
            // inbox checked again, so an event sent in between is not slept through.
            self.shared.driver_parked.store(true, Ordering::SeqCst);
            match self.inbox.try_recv() {
                Ok(event) => {
                    self.shared.driver_parked.store(false, Ordering::SeqCst);
                    self.handle(event);
                }
                Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => {
                    std::thread::park_timeout(until(IDLE_WAIT));
                    self.shared.driver_parked.store(false, Ordering::SeqCst);
                }
            }
        }
    }

    /// Dials every slot that is due, as far as the rate and the in-flight limit allow; returns
    /// when to look again (`None`: only an event can change anything).
    fn dial_due(&mut self) -> Option<Instant> {
        loop {
            let Reverse((at, index)) = *self.due.peek()?;
            let now = Instant::now();
            if at > now {
                return Some(at);
            }
            if self
                .config
                .max_connecting
                .is_some_and(|max| self.in_flight >= max)
            {
                return None;
            }
            if let Some(rate) = self.config.rate {
                if self.next_token > now {
                    return Some(self.next_token);
                }
                let every = Duration::from_secs_f64(1.0 / rate);
                // A late wake-up is made up for, idle time is not: after a pause the rate is
                // still a ceiling, not an average with a burst saved up.
                if self.next_token + every < now {
                    self.next_token = now;
                }
                self.next_token += every;
            }
            self.due.pop();
            self.dial(index, now);
        }
    }

    /// Dials slot `index` now, with a handler the factory makes for it.
    fn dial(&mut self, index: usize, now: Instant) {
        let c = &self.config;
        let url_index = index % c.urls.len();
        let slot = PoolSlot {
            index,
            url: url_index,
            attempt: self.attempts[index],
        };
        let local =
            (!c.local.is_empty()).then(|| SocketAddr::new(c.local[index % c.local.len()], 0));
        let handler = Pooled {
            inner: (self.factory)(slot),
            index,
            shared: self.shared.clone(),
        };
        let result =
            self.runtime
                .connect_from(&c.urls[url_index], &c.options, &c.dial, local, handler);
        match result {
            Ok(()) => {
                self.in_flight += 1;
                bump(&self.shared.driver.dialed, 1);
            }
            Err(ConnectError::Full) => {
                // Not dialled at all: the same attempt, a moment later.
                self.due.push(Reverse((now + FULL_RETRY, index)));
            }
            Err(_) => {
                // Unresolvable or refused by the runtime: a failed dial like any other.
                bump(&self.shared.driver.dialed, 1);
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                self.in_flight += 1;
                self.handle(Event::Failed { index });
            }
        }
    }

    /// Takes in what a handler or the owner said.
    fn handle(&mut self, event: Event) {
        match event {
            Event::Stop => self.shared.stopping.store(true, Ordering::Release),
            Event::Opened { index } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.attempts[index] = 0;
            }
            Event::Failed { index } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.redial(index);
            }
            Event::Closed { index, code } => {
                let Some(policy) = &self.config.reconnect else {
                    return;
                };
                if code != CloseCode::NORMAL {
                    self.redial(index);
                } else if policy.after_clean_close && !self.shared.stopping.load(Ordering::Acquire)
                {
                    // A clean close is no failure: dialled again at once (as the rate allows).
                    bump(&self.shared.driver.reconnects, 1);
                    self.due.push(Reverse((Instant::now(), index)));
                }
            }
        }
    }

    /// Schedules slot `index` again after its backoff, unless there is no policy or the slot
    /// has used its attempts.
    fn redial(&mut self, index: usize) {
        let Some(policy) = &self.config.reconnect else {
            return;
        };
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let attempt = self.attempts[index] + 1;
        if policy.attempts.is_some_and(|max| attempt > max) {
            bump(&self.shared.driver.gave_up, 1);
            return;
        }
        self.attempts[index] = attempt;
        let mut delay = policy.delay(attempt);
        if policy.jitter && !delay.is_zero() {
            let r = next_random(&mut self.rng);
            // Uniform over [delay / 2, delay].
            let half = delay / 2;
            delay = half + half.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64);
        }
        bump(&self.shared.driver.reconnects, 1);
        self.due.push(Reverse((Instant::now() + delay, index)));
    }
}

/// A seed for the jitter: the clock is enough, as jitter needs spread, not secrecy.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ 0x9E37_79B9_7F4A_7C15
}

/// splitmix64: jitter needs spread, not secrecy.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
