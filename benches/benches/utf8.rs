//! Streaming UTF-8 validation against one `simdutf8::basic` pass over the whole message: the
//! streaming validator should add next to nothing, even when pieces split code points.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsock_engine::ws::utf8::Utf8Validator;

const SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)];

/// Repeats `unit` up to about `len` bytes, cut on a char boundary so the text stays valid.
fn text(unit: &str, len: usize) -> Vec<u8> {
    let mut s = unit.repeat(len / unit.len() + 1);
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let ascii = "The quick brown fox jumps over the lazy dog; {\"id\": 42, \"ok\": true}\n";
    let mixed =
        "Grüße, Jürgen! Καλημέρα κόσμε. 你好，世界。日本語テキスト 🦀🚀✨ plain ascii too. ";
    for (kind, unit) in [("ascii", ascii), ("mixed", mixed)] {
        for (name, len) in SIZES {
            let data = text(unit, len);
            assert!(std::str::from_utf8(&data).is_ok());
            let mut group = c.benchmark_group(format!("utf8/{kind}/{name}"));
            group.throughput(Throughput::Bytes(data.len() as u64));

            group.bench_function("simdutf8_basic_whole", |b| {
                b.iter(|| simdutf8::basic::from_utf8(black_box(&data)).is_ok())
            });

            group.bench_function("streaming_whole", |b| {
                let mut v = Utf8Validator::new();
                b.iter(|| {
                    let fed = v.feed(black_box(&data));
                    (fed, v.finish())
                })
            });

            group.bench_function("streaming_4k_pieces", |b| {
                let mut v = Utf8Validator::new();
                b.iter(|| {
                    for piece in black_box(&data).chunks(4096) {
                        if v.feed(piece).is_err() {
                            v.reset();
                            return false;
                        }
                    }
                    v.finish().is_ok()
                })
            });

            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
