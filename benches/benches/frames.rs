//! Receive-path throughput: parse + unmask + validate of small masked text frames, through the
//! server-role `Connection` exactly as the engine drives it (one receive buffer, many frames).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsock_engine::ws::extension::Extensions;
use ringsock_engine::ws::{Config, Connection, Event};

/// `count` masked text frames of `len` bytes each, as a client would send them back to back.
fn masked_text_frames(count: usize, len: usize) -> Vec<u8> {
    let mut client = Connection::client(Config::default(), Extensions::default(), [1; 32]);
    let text: String = "abcdefghijklmnopqrstuvwxyz0123456789"
        .chars()
        .cycle()
        .take(len)
        .collect();
    let mut out = Vec::new();
    for _ in 0..count {
        client.send_text(&text).unwrap();
        while let Some(chunk) = client.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
    }
    out
}

fn bench_frames(c: &mut Criterion) {
    const FRAMES: usize = 4096;
    let mut group = c.benchmark_group("recv_masked_text");
    for len in [16usize, 125, 1024] {
        let input = masked_text_frames(FRAMES, len);
        // 64 KiB is the engine's receive-buffer size; feed in such pieces like a real socket.
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(format!("{len}B"), |b| {
            let mut server = Connection::server(Config::default(), Extensions::default());
            let now = Instant::now();
            b.iter(|| {
                let mut n = 0usize;
                for piece in input.chunks(64 * 1024) {
                    let mut data = piece;
                    while let Some(ev) = server.recv(&mut data, now) {
                        if let Event::Text(t) = ev {
                            n += t.len();
                        }
                    }
                }
                black_box(n)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_frames);
criterion_main!(benches);
