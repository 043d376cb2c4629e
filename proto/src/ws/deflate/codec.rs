//! Raw DEFLATE for messages: compress with a sync flush and strip its `00 00 ff ff` tail;
//! inflate after putting it back, never producing more than the message size limit.
//!
//! A context that is not carried from message to message is borrowed from a per-thread cache
//! and reset after use: every connection on a shard without context takeover shares one
//! compressor (about 370 KB with zlib-rs at window 15, 240 KB at 10: the hash table and block
//! buffers are fixed) and one decompressor (about 40 KB) per window size, instead of holding
//! its own.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

use super::compressor::{Compressor, Settings};

/// What a sync flush ends with; stripped from every message sent, appended to every one read.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib cannot run a raw DEFLATE window of 256 bytes: 8 runs as 9 (as zlib itself and faye do).
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// Why inflating a message failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum InflateError {
    /// The payload is not valid DEFLATE data.
    Corrupt(String),
    /// The inflated message would be larger than the limit.
    TooBig,
}

thread_local! {
    /// Compressors borrowed by contexts without takeover, by their settings.
    static COMPRESSORS: RefCell<Vec<(Settings, Compressor)>> = const { RefCell::new(Vec::new()) };
    /// Decompressors borrowed likewise, by window bits.
    static DECOMPRESSORS: RefCell<Vec<(u8, Decompress)>> = const { RefCell::new(Vec::new()) };
}

/// One direction's compressor: its own context with takeover, the shard's shared one without.
pub(super) struct Deflater {
    settings: Settings,
    /// With context takeover: made on the first message, so idle connections cost nothing.
    own: Option<Box<Compressor>>,
    takeover: bool,
}

impl Deflater {
    /// A compressor with these settings (the window is clamped to what zlib runs, 9-15).
    pub(super) fn new(settings: Settings, takeover: bool) -> Self {
        Self {
            settings: Settings {
                window_bits: zlib_bits(settings.window_bits),
                ..settings
            },
            own: None,
            takeover,
        }
    }

    /// Compresses one message. `None` without context takeover when compression would not make
    /// it smaller (it is then sent as it is; with takeover the context has already taken it in,
    /// so the compressed form must be sent).
    pub(super) fn compress(&mut self, input: &[u8]) -> Option<Bytes> {
        let settings = self.settings;
        if self.takeover {
            let c = self
                .own
                .get_or_insert_with(|| Box::new(Compressor::new(settings)));
            return Some(run_compress(c, input));
        }
        let mut c = COMPRESSORS
            .with(|cache| {
                let mut cache = cache.borrow_mut();
                let at = cache.iter().position(|(k, _)| *k == settings)?;
                Some(cache.swap_remove(at).1)
            })
            .unwrap_or_else(|| Compressor::new(settings));
        let out = run_compress(&mut c, input);
        c.reset();
        COMPRESSORS.with(|cache| cache.borrow_mut().push((settings, c)));
        (out.len() < input.len()).then_some(out)
    }
}

/// Compresses `input` with a sync flush and returns it without the flush's tail.
fn run_compress(c: &mut Compressor, input: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    c.compress_sync(input, &mut out);
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if out.is_empty() {
        // A second flush with nothing new writes nothing, and an empty payload would make the
        // peer read the appended tail as the start of a stored block. RFC 7692 7.2.3.6: send a
        // lone empty block, one 0x00 byte, instead.
        out.push(0x00);
    }
    Bytes::from(out)
}

/// One direction's decompressor: its own context when the peer keeps its context, else the
/// shard's shared one.
pub(super) struct Inflater {
    bits: u8,
    own: Option<Box<Decompress>>,
    takeover: bool,
}

impl Inflater {
    /// A decompressor for a peer window of `bits` (8-15).
    pub(super) fn new(bits: u8, takeover: bool) -> Self {
        Self {
            bits: zlib_bits(bits),
            own: None,
            takeover,
        }
    }

    /// Inflates one message of at most `max` bytes.
    pub(super) fn inflate(&mut self, input: &[u8], max: usize) -> Result<Bytes, InflateError> {
        if input.is_empty() {
            // Nothing compressed: feeding the tail alone would leave the context inside a
            // stored block header and garble the peer's next message.
            return Ok(Bytes::new());
        }
        if self.takeover {
            let bits = self.bits;
            let d = self
                .own
                .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
            return run_inflate(d, input, max);
        }
        let bits = self.bits;
        let mut d = DECOMPRESSORS
            .with(|cache| {
                let mut cache = cache.borrow_mut();
                let at = cache.iter().position(|(k, _)| *k == bits)?;
                Some(cache.swap_remove(at).1)
            })
            .unwrap_or_else(|| Decompress::new_with_window_bits(false, bits));
        let out = run_inflate(&mut d, input, max);
        d.reset(false);
        DECOMPRESSORS.with(|cache| cache.borrow_mut().push((bits, d)));
        out
    }
}

/// Inflates `input` followed by the stripped tail into at most `max` bytes.
fn run_inflate(d: &mut Decompress, input: &[u8], max: usize) -> Result<Bytes, InflateError> {
    let mut out: Vec<u8> = Vec::with_capacity((input.len() * 2).clamp(64, max.max(1)));
    for part in [input, &TAIL[..]] {
        let start = d.total_in();
        loop {
            let done = (d.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                // Grow by doubling, never past one byte over the limit: that byte is enough to
                // know the message is too big, and a bomb never gets a larger buffer.
                let room = out.capacity().max(64).min(max + 1 - out.len());
                out.reserve_exact(room);
            }
            let before_out = d.total_out();
            let status = d
                .decompress_vec(&part[done..], &mut out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            let consumed = (d.total_in() - start) as usize;
            if status == Status::StreamEnd {
                // The peer closed its DEFLATE stream (a final block): what follows is ignored,
                // and its next message starts a new stream.
                d.reset(false);
                return Ok(Bytes::from(out));
            }
            let progressed = d.total_out() != before_out || consumed != done;
            if consumed == part.len() && out.len() < out.capacity() {
                break;
            }
            if !progressed && out.len() < out.capacity() {
                break;
            }
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::super::compressor::Strategy;
    use super::*;

    /// Settings of `level` and `bits`, zlib's defaults otherwise.
    fn at(level: u8, bits: u8) -> Settings {
        Settings {
            level,
            window_bits: bits,
            mem_level: 8,
            strategy: Strategy::Default,
        }
    }

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"text\":\"hello there\",\"ok\":true}},",
                i % 7
            ));
            i += 1;
        }
        s.truncate(n);
        s.into_bytes()
    }

    #[test]
    fn round_trips_with_and_without_takeover_at_every_window() {
        for bits in 8..=15 {
            for takeover in [false, true] {
                let mut d = Deflater::new(at(6, bits), takeover);
                let mut i = Inflater::new(bits, takeover);
                for n in [0, 1, 100, 5000, 70_000] {
                    let msg = json(n);
                    match d.compress(&msg) {
                        Some(z) => {
                            assert!(!z.ends_with(&TAIL));
                            assert_eq!(i.inflate(&z, 1 << 20).unwrap(), msg, "{bits} {n}");
                        }
                        None => assert!(!takeover, "takeover always compresses"),
                    }
                }
            }
        }
    }

    #[test]
    fn empty_messages_keep_a_kept_context_in_step() {
        let mut d = Deflater::new(at(6, 15), true);
        let mut i = Inflater::new(15, true);
        for body in [
            &b""[..],
            b"",
            b"after two empties",
            b"",
            b"after two empties",
        ] {
            let z = d.compress(body).unwrap();
            assert!(
                !z.is_empty(),
                "an empty message is one empty block, not nothing"
            );
            assert_eq!(i.inflate(&z, 100).unwrap(), body);
        }
        // A peer that sends an empty compressed payload anyway does not derail the context.
        assert_eq!(i.inflate(&[], 100).unwrap(), &b""[..]);
        let z = d.compress(b"still in step").unwrap();
        assert_eq!(i.inflate(&z, 100).unwrap(), &b"still in step"[..]);
    }

    #[test]
    fn takeover_makes_repeats_smaller() {
        let msg = json(300);
        let mut with = Deflater::new(at(6, 15), true);
        let mut without = Deflater::new(at(6, 15), false);
        let first = with.compress(&msg).unwrap().len();
        let second = with.compress(&msg).unwrap().len();
        let shared = without.compress(&msg).unwrap().len();
        assert!(second < first / 4, "{second} vs {first}");
        assert_eq!(shared, first, "no takeover: every message as if first");
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let huge = vec![b'a'; 8 << 20];
        let z = Deflater::new(at(9, 15), false).compress(&huge).unwrap();
        assert!(z.len() < 40_000);
        let mut i = Inflater::new(15, false);
        assert_eq!(i.inflate(&z, 1 << 20), Err(InflateError::TooBig));
        // The shared context is usable again afterwards.
        let ok = Deflater::new(at(6, 15), false)
            .compress(&json(2000))
            .unwrap();
        assert_eq!(i.inflate(&ok, 1 << 20).unwrap(), json(2000));
        assert_eq!(i.inflate(&z, 8 << 20).unwrap().len(), 8 << 20);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut i = Inflater::new(15, true);
        assert!(matches!(
            i.inflate(&[0xff, 0xff, 0xff, 0xff, 0x00], 1000),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn a_final_block_from_the_peer_is_accepted() {
        // Compressed with Z_FINISH (BFINAL set), as some peers do.
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(256);
        c.compress_vec(
            b"hello hello hello",
            &mut out,
            flate2::FlushCompress::Finish,
        )
        .unwrap();
        let mut i = Inflater::new(15, true);
        assert_eq!(i.inflate(&out, 100).unwrap(), &b"hello hello hello"[..]);
        assert_eq!(i.inflate(&out, 100).unwrap(), &b"hello hello hello"[..]);
    }

    #[test]
    fn every_mem_level_and_strategy_round_trips_at_every_window() {
        let strategies = [
            Strategy::Default,
            Strategy::Filtered,
            Strategy::HuffmanOnly,
            Strategy::Rle,
            Strategy::Fixed,
        ];
        for bits in 8..=15 {
            for mem_level in [1, 4, 8, 9] {
                for strategy in strategies {
                    for takeover in [false, true] {
                        let settings = Settings {
                            mem_level,
                            strategy,
                            ..at(6, bits)
                        };
                        let mut d = Deflater::new(settings, takeover);
                        let mut i = Inflater::new(bits, takeover);
                        for n in [1, 300, 70_000] {
                            let msg = json(n);
                            if let Some(z) = d.compress(&msg) {
                                let back = i.inflate(&z, 1 << 20).unwrap();
                                assert_eq!(back, msg, "{settings:?} {takeover} {n}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strategy_and_mem_level_change_the_bytes() {
        let msg = json(5000);
        let bytes = |settings| Deflater::new(settings, false).compress(&msg).unwrap();
        let default = bytes(at(6, 15));
        // Huffman coding alone finds no repeats: JSON compresses far less.
        let huffman = bytes(Settings {
            strategy: Strategy::HuffmanOnly,
            ..at(6, 15)
        });
        assert!(
            huffman.len() > default.len() * 2,
            "{} vs {}",
            huffman.len(),
            default.len()
        );
        // Fixed codes carry no tables, so their bytes differ from the dynamic ones.
        let fixed = bytes(Settings {
            strategy: Strategy::Fixed,
            ..at(6, 15)
        });
        assert_ne!(fixed, default);
        // Mem level 1 cuts the blocks short (128 symbols): more block headers, more bytes.
        let small = bytes(Settings {
            mem_level: 1,
            ..at(6, 15)
        });
        assert!(
            small.len() > default.len(),
            "{} vs {}",
            small.len(),
            default.len()
        );
    }
}
