//! permessage-deflate: compressing and inflating JSON-like messages through the engine's
//! extension API (`PerMessageDeflate` negotiated for a server and a client, then the sessions'
//! `encode` and `decode`, as `Connection` calls them), with and without context takeover.
//!
//! The flate2 backend is zlib-rs by default and zlib-ng with `--features zlib-ng`; every
//! benchmark id carries the backend's name, so both runs land side by side in one criterion
//! directory (`benches/run-deflate.sh` runs both and writes the table).
//!
//! Each iteration compresses (or inflates) a whole set of distinct messages in order: 512 of
//! 200 B, 256 of 1 KiB, 8 of 64 KiB. Every set is several times the 32 KiB window, so with
//! context takeover a message never finds its own earlier copy in the window when the set comes
//! round again: the compressor sees what a stream of fresh messages would show it.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsock_engine::ws::deflate::{DeflateOptions, PerMessageDeflate};
use ringsock_engine::ws::extension::{
    DataKind, ExtMessage, Extension, ExtensionParams, ExtensionSession, Rsv,
};
use ringsock_tools::json;

/// Which zlib the engine was built with (the benches crate forwards its `zlib-ng` feature).
const BACKEND: &str = if cfg!(feature = "zlib-ng") {
    "zlib-ng"
} else {
    "zlib-rs"
};

/// The message size limit given to `decode`: far above any message here.
const MAX_LENGTH: usize = 1 << 20;

/// One connection's sessions: the server's (the compressing side here) and the client's (the
/// inflating side).
type Pair = (Box<dyn ExtensionSession>, Box<dyn ExtensionSession>);

/// A server and a client session negotiated by the real extension with the same options on
/// both ends.
fn sessions(opts: &DeflateOptions) -> Pair {
    let server = PerMessageDeflate::new(opts.clone());
    let client = PerMessageDeflate::new(opts.clone());
    let offers = client.client_offers();
    let refs: Vec<&ExtensionParams> = offers.iter().collect();
    let (response, server_session) = server
        .accept_offer(&refs)
        .expect("a valid offer")
        .expect("permessage-deflate accepted");
    let client_session = client
        .accept_response(&response)
        .expect("the response is accepted");
    (server_session, client_session)
}

fn text(payload: &Bytes) -> ExtMessage {
    ExtMessage {
        kind: DataKind::Text,
        rsv: Rsv::NONE,
        payload: payload.clone(),
    }
}

struct Set {
    name: &'static str,
    messages: Vec<Bytes>,
}

impl Set {
    fn new(name: &'static str, count: usize, size: usize, seed: u64) -> Self {
        let messages = json::messages(count, size, seed)
            .into_iter()
            .map(Bytes::from)
            .collect();
        Self { name, messages }
    }

    fn bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.len() as u64).sum()
    }
}

/// One benchmark case: a set of messages spread round robin over `conns` connections (each
/// its own pair of sessions), with or without context takeover, at a compression level.
struct Case<'a> {
    set: &'a Set,
    conns: usize,
    takeover: bool,
    level: u32,
}

impl Case<'_> {
    fn options(&self) -> DeflateOptions {
        DeflateOptions::new()
            .context_takeover(self.takeover)
            .level(self.level)
            // Every message compressed: the sets are all above the default threshold anyway.
            .threshold(0)
    }

    fn id(&self, op: &str) -> String {
        format!(
            "{op}/{}/{}{}/l{}/{BACKEND}",
            self.set.name,
            if self.takeover {
                "takeover"
            } else {
                "no-takeover"
            },
            if self.conns > 1 {
                format!("-x{}", self.conns)
            } else {
                String::new()
            },
            self.level
        )
    }

    /// The compressing and the inflating sessions of every connection.
    fn sessions(&self) -> Vec<Pair> {
        (0..self.conns).map(|_| sessions(&self.options())).collect()
    }
}

/// Compresses the set in order, message `i` on connection `i % conns`.
fn compress_all(set: &Set, conns: &mut [Pair]) -> Vec<ExtMessage> {
    let n = conns.len();
    set.messages
        .iter()
        .enumerate()
        .map(|(i, m)| conns[i % n].0.encode(text(m)).expect("compresses"))
        .collect()
}

fn bench_deflate(c: &mut Criterion) {
    let sets = [
        Set::new("json-200B", 512, 200, 1),
        Set::new("json-1KiB", 256, 1024, 2),
        Set::new("json-64KiB", 8, 65536, 3),
        // 64 connections with 32 messages each per pass: every connection's window full of its
        // own history, and 64 contexts (about 19 MB with takeover) instead of one in cache.
        Set::new("json-1KiB", 2048, 1024, 4),
    ];
    let mut cases = Vec::new();
    for set in &sets[..3] {
        for takeover in [false, true] {
            cases.push(Case {
                set,
                conns: 1,
                takeover,
                level: 6,
            });
        }
    }
    for takeover in [false, true] {
        // Level 1, the cheap end, at the size push services mostly send.
        cases.push(Case {
            set: &sets[1],
            conns: 1,
            takeover,
            level: 1,
        });
        cases.push(Case {
            set: &sets[3],
            conns: 64,
            takeover,
            level: 6,
        });
    }
    // Takeover at level 1 across many connections: where the level lever matters most.
    cases.push(Case {
        set: &sets[3],
        conns: 64,
        takeover: true,
        level: 1,
    });

    let mut group = c.benchmark_group("deflate");
    // Whole sets per iteration (up to tens of milliseconds): few samples keep a run short.
    group.sample_size(10);
    for case in &cases {
        let set = case.set;
        group.throughput(Throughput::Bytes(set.bytes()));

        // The compressed sizes, for the table's ratio column (criterion keeps only times): the
        // second pass, so that with takeover it is the steady state.
        let mut conns = case.sessions();
        compress_all(set, &mut conns);
        let compressed = compress_all(set, &mut conns);
        let wire: usize = compressed.iter().map(|m| m.payload.len()).sum();
        let sent_raw = compressed.iter().filter(|m| m.rsv == Rsv::NONE).count();
        println!(
            "ratio {} {wire} {} {sent_raw}",
            case.id("size"),
            set.bytes()
        );

        group.bench_function(case.id("compress"), |b| {
            b.iter(|| {
                let n = conns.len();
                let mut out = 0usize;
                for (i, m) in set.messages.iter().enumerate() {
                    out += conns[i % n]
                        .0
                        .encode(text(m))
                        .expect("compresses")
                        .payload
                        .len();
                }
                black_box(out)
            })
        });

        // Inflate what fresh compressors made. With takeover a decompressor may replay its
        // stream from the start over and over: every back-reference points into the current
        // pass.
        let mut conns = case.sessions();
        let stream = compress_all(set, &mut conns);
        let n = conns.len();
        for (i, (z, m)) in stream.iter().zip(&set.messages).enumerate() {
            let out = conns[i % n]
                .1
                .decode(z.clone(), MAX_LENGTH)
                .expect("inflates");
            assert_eq!(&out.payload, m);
        }
        group.bench_function(case.id("inflate"), |b| {
            b.iter(|| {
                let mut out = 0usize;
                for (i, z) in stream.iter().enumerate() {
                    out += conns[i % n]
                        .1
                        .decode(z.clone(), MAX_LENGTH)
                        .expect("inflates")
                        .payload
                        .len();
                }
                black_box(out)
            })
        });
    }
    group.finish();

    // What compression without takeover saves by message size, around DEFAULT_THRESHOLD (the
    // engine's default is to send shorter messages as they are): sizes only, nothing timed.
    for size in [64, 96, 128, 160, 200, 256, 512] {
        let set = Set::new("sweep", 256, size, 5);
        let case = Case {
            set: &set,
            conns: 1,
            takeover: false,
            level: 6,
        };
        let mut conns = case.sessions();
        let z = compress_all(&set, &mut conns);
        let wire: usize = z.iter().map(|m| m.payload.len()).sum();
        let sent_raw = z.iter().filter(|m| m.rsv == Rsv::NONE).count();
        println!(
            "ratio threshold/json-{size}B/no-takeover/l6/{BACKEND} {wire} {} {sent_raw}",
            set.bytes()
        );
    }
}

criterion_group!(benches, bench_deflate);
criterion_main!(benches);
