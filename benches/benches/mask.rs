//! Masking throughput against a plain copy: the fused unmask should cost about what moving the
//! bytes costs, since that is the copy it replaces.

use std::hint::black_box;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsock_engine::ws::mask::{apply_mask, extend_masked, unmask_into};

const SIZES: [(&str, usize); 5] = [
    ("16B", 16),
    ("125B", 125),
    ("1KiB", 1024),
    ("64KiB", 64 * 1024),
    ("1MiB", 1024 * 1024),
];

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn bench(c: &mut Criterion) {
    for (name, len) in SIZES {
        let src = payload(len);
        let mut group = c.benchmark_group(format!("mask/{name}"));
        group.throughput(Throughput::Bytes(len as u64));

        let mut dst = vec![0u8; len];
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            })
        });

        let mut uninit = vec![MaybeUninit::<u8>::uninit(); len];
        group.bench_function("unmask_into", |b| {
            b.iter(|| {
                let phase = unmask_into(&mut uninit, black_box(&src), black_box(KEY), 1);
                black_box((&mut uninit, phase));
            })
        });

        let mut buf = src.clone();
        group.bench_function("apply_mask", |b| {
            b.iter(|| {
                let phase = apply_mask(black_box(&mut buf), black_box(KEY), 1);
                black_box(phase);
            })
        });

        let mut out = BytesMut::with_capacity(len);
        group.bench_function("extend_masked", |b| {
            b.iter(|| {
                out.clear();
                let phase = extend_masked(&mut out, black_box(&src), black_box(KEY), 1);
                black_box((&mut out, phase));
            })
        });

        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
