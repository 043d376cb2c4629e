//! The raw DEFLATE compressor, built with every zlib setting: level, window, mem level and
//! strategy. flate2 only passes the first two (memLevel stays 8, the strategy default), so
//! compression goes to the backend's own API: zlib-rs's safe Rust one by default, zlib-ng's C
//! one with the `zlib-ng` feature. Inflating has no such settings and stays on flate2.

/// How the compressor looks for matches (zlib's `strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// zlib's default: string matches and Huffman coding, for most data.
    #[default]
    Default,
    /// Fewer short matches, more Huffman coding: for data of small values with a spread-out
    /// distribution (filtered numeric data).
    Filtered,
    /// Huffman coding only, no string matches: fastest, and for data without repeats.
    HuffmanOnly,
    /// Matches at distance 1 only (runs): almost as fast as Huffman only, good on images.
    Rle,
    /// The fixed Huffman codes of the RFC, no dynamic tables: saves the table on tiny messages.
    Fixed,
}

impl Strategy {
    /// zlib's number for it (`Z_DEFAULT_STRATEGY` … `Z_FIXED`).
    fn zlib(self) -> i32 {
        match self {
            Strategy::Default => 0,
            Strategy::Filtered => 1,
            Strategy::HuffmanOnly => 2,
            Strategy::Rle => 3,
            Strategy::Fixed => 4,
        }
    }
}

/// What a compressor is built with; equal settings make equal bytes from equal input, so a
/// shard's cache hands out compressors by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Settings {
    /// 0 (stored) to 9.
    pub level: u8,
    /// The window, 9 to 15 (8 runs as 9).
    pub window_bits: u8,
    /// 1 to 9: the size of the block buffers (and, in zlib, of the hash table).
    pub mem_level: u8,
    /// How matches are looked for.
    pub strategy: Strategy,
}

/// Appends the compressed bytes of `input` with a sync flush to `out`, driving `step`, which
/// compresses from its input into its output and answers the bytes it took and wrote.
fn sync_flush(
    input: &[u8],
    out: &mut Vec<u8>,
    mut step: impl FnMut(&[u8], &mut [u8]) -> (usize, usize),
) {
    let mut done = 0;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let len = out.len();
        // Zero-filled rather than uninitialised: no unsafe for a memset that costs next to
        // nothing beside compressing.
        out.resize(out.capacity(), 0);
        let (took, wrote) = step(&input[done..], &mut out[len..]);
        done += took;
        out.truncate(len + wrote);
        // Finished once every byte is in and the flush left room unused in the output.
        if done == input.len() && out.len() < out.capacity() {
            return;
        }
    }
}

#[cfg(not(feature = "zlib-ng"))]
mod backend {
    use super::{sync_flush, Settings};
    use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method};

    /// A zlib-rs compressor.
    pub(crate) struct Compressor(Deflate);

    impl Compressor {
        pub(crate) fn new(s: Settings) -> Self {
            let strategy = zlib_rs::Strategy::try_from(s.strategy.zlib()).unwrap_or_default();
            Self(Deflate::new_with_config(DeflateConfig {
                level: i32::from(s.level.min(9)),
                method: Method::Deflated,
                // Negative: raw DEFLATE, no zlib header.
                window_bits: -i32::from(s.window_bits.clamp(9, 15)),
                mem_level: i32::from(s.mem_level.clamp(1, 9)),
                strategy,
            }))
        }

        pub(crate) fn compress_sync(&mut self, input: &[u8], out: &mut Vec<u8>) {
            let d = &mut self.0;
            sync_flush(input, out, |input, output| {
                let (before_in, before_out) = (d.total_in(), d.total_out());
                // A sync flush cannot fail on a raw stream with room to write; a buffer error
                // (no progress possible) ends in the loop's next round with more room.
                let _ = d.compress(input, output, DeflateFlush::SyncFlush);
                (
                    (d.total_in() - before_in) as usize,
                    (d.total_out() - before_out) as usize,
                )
            });
        }

        pub(crate) fn reset(&mut self) {
            self.0.reset();
        }
    }
}

#[cfg(feature = "zlib-ng")]
mod backend {
    use super::{sync_flush, Settings};
    use libz_ng_sys as z;
    use std::ffi::{c_int, c_uint, c_void};

    /// A zlib-ng compressor: its C stream, boxed because zlib keeps a pointer back to it.
    pub(crate) struct Compressor(Box<z::z_stream>);

    // SAFETY: the stream's pointers lead only to the state zlib allocated for it (owned here,
    // freed in `Drop`); the input and output pointers are null between calls. zlib state has no
    // tie to a thread, so moving it to another is sound, as flate2 does for its own streams.
    unsafe impl Send for Compressor {}

    // SAFETY (both): plain C allocation functions with zlib's contract: `calloc` returns null
    // on failure, which zlib checks; `free` takes what `calloc` gave.
    unsafe extern "C" fn zalloc(_: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
        // SAFETY: see above.
        unsafe { libc::calloc(items as usize, size as usize) }
    }
    unsafe extern "C" fn zfree(_: *mut c_void, address: *mut c_void) {
        // SAFETY: see above.
        unsafe { libc::free(address) }
    }

    impl Compressor {
        pub(crate) fn new(s: Settings) -> Self {
            let mut stream = Box::new(z::z_stream {
                next_in: std::ptr::null_mut(),
                avail_in: 0,
                total_in: 0,
                next_out: std::ptr::null_mut(),
                avail_out: 0,
                total_out: 0,
                msg: std::ptr::null_mut(),
                state: std::ptr::null_mut(),
                zalloc,
                zfree,
                opaque: std::ptr::null_mut(),
                data_type: 0,
                adler: 0,
                reserved: 0,
            });
            // SAFETY: `stream` is a fully initialised z_stream that lives (boxed, never moved)
            // until `Drop` ends it; the settings are clamped to the ranges zlib accepts.
            let ret = unsafe {
                z::zng_deflateInit2(
                    &mut *stream,
                    c_int::from(s.level.min(9)),
                    8, // Z_DEFLATED
                    -c_int::from(s.window_bits.clamp(9, 15)),
                    c_int::from(s.mem_level.clamp(1, 9)),
                    s.strategy.zlib(),
                )
            };
            assert!(
                ret == 0,
                "zlib-ng refused deflateInit2 ({ret}): out of memory"
            );
            Self(stream)
        }

        pub(crate) fn compress_sync(&mut self, input: &[u8], out: &mut Vec<u8>) {
            let stream = &mut *self.0;
            sync_flush(input, out, |input, output| {
                stream.next_in = input.as_ptr().cast_mut();
                stream.avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
                stream.next_out = output.as_mut_ptr();
                stream.avail_out = output.len().min(c_uint::MAX as usize) as c_uint;
                // SAFETY: the stream was initialised by `new`; its pointers cover `input` and
                // `output`, which outlive the call, and zlib reads and writes only within the
                // lengths given. Z_SYNC_FLUSH is 2.
                unsafe { z::deflate(stream, 2) };
                let took = stream.next_in as usize - input.as_ptr() as usize;
                let wrote = stream.next_out as usize - output.as_ptr() as usize;
                stream.next_in = std::ptr::null_mut();
                stream.next_out = std::ptr::null_mut();
                (took, wrote)
            });
        }

        pub(crate) fn reset(&mut self) {
            // SAFETY: the stream was initialised by `new` and is not ended yet.
            unsafe { z::deflateReset(&mut *self.0) };
        }
    }

    impl Drop for Compressor {
        fn drop(&mut self) {
            // SAFETY: the stream was initialised by `new`; this frees what zlib allocated.
            unsafe { z::deflateEnd(&mut *self.0) };
        }
    }
}

pub(super) use backend::Compressor;
