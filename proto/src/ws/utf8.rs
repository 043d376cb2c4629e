//! Streaming UTF-8 validation of text messages.
//!
//! A text message arrives in pieces (fragments, and reads that end anywhere), and RFC 6455 8.1
//! wants the connection failed as soon as the bytes cannot be UTF-8, not at the end of the
//! message. So the validator checks each piece as it comes and carries the bytes of a code point
//! cut by the piece boundary (at most 3) in a fixed array.
//!
//! Each piece is split, by looking at its last three bytes only, into a head that ends on a code
//! point boundary and an incomplete tail. The head goes to `simdutf8::basic` in one pass; the
//! tail, and the completion of a carried code point, are checked here against the well-formed
//! byte sequences of Unicode Table 3-7. Checking the tail's second byte against its lead's range
//! is what makes the validator fail fast on `F4 90` (above U+10FFFF), `ED A0` (surrogate) or
//! `E0 80` (overlong) before the rest of the code point arrives.
//!
//! Splitting first means a valid piece is scanned once, whether or not it ends inside a code
//! point (which is the common case for non-ASCII text cut at arbitrary read sizes); trying the
//! whole piece first and re-scanning with `simdutf8::compat` after a failure would read such
//! pieces twice.

use std::fmt;

/// The error of [`Utf8Validator`]: the bytes of a text message are not UTF-8. The connection
/// answers it with close code 1007.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Could not decode a text frame as UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a text message piece by piece, carrying an incomplete code point across pieces.
///
/// Never allocates. [`feed`](Self::feed) fails on the piece that makes the message impossible to
/// complete as UTF-8; [`finish`](Self::finish) fails if the message ends inside a code point.
/// After an error the message is invalid; [`reset`](Self::reset) (or `finish`) before reusing
/// the validator for another message.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The start of a code point cut by a piece boundary; always a valid, incomplete prefix of
    /// one code point. Only `pending[..pending_len]` is meaningful.
    pending: [u8; 4],
    /// Number of carried bytes, 0..=3.
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Validates the next piece of the message.
    ///
    /// Fails as soon as the bytes seen so far cannot be the start of valid UTF-8, including when
    /// the offending bytes are the beginning of a code point that is not complete yet.
    #[inline]
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let rest = if self.pending_len == 0 {
            bytes
        } else {
            match self.complete_pending(bytes)? {
                Some(rest) => rest,
                None => return Ok(()),
            }
        };
        let cut = incomplete_tail_start(rest);
        let (head, tail) = rest.split_at(cut);
        if simdutf8::basic::from_utf8(head).is_err() {
            return Err(Utf8Error);
        }
        if !tail.is_empty() {
            if !is_valid_prefix(tail) {
                return Err(Utf8Error);
            }
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Ends the message: fails if a code point was left incomplete. Resets for the next message
    /// either way.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// Forgets any carried bytes, to start a new message (for example after an error).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Adds bytes from the start of `bytes` to the carried code point. Returns the bytes after
    /// it once it is complete, or `None` if `bytes` ran out first (they are then carried too).
    #[cold]
    fn complete_pending<'a>(&mut self, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, Utf8Error> {
        let have = usize::from(self.pending_len);
        let width = sequence_width(self.pending[0]);
        let mut used = 0;
        for (pos, &b) in (have..width).zip(bytes) {
            if !continuation_ok(self.pending[0], pos, b) {
                return Err(Utf8Error);
            }
            used += 1;
        }
        let now = have + used;
        if now < width {
            // `now < width <= 4` keeps this in bounds.
            self.pending[have..now].copy_from_slice(&bytes[..used]);
            self.pending_len = now as u8;
            return Ok(None);
        }
        self.pending_len = 0;
        Ok(Some(&bytes[used..]))
    }
}

/// Where a trailing incomplete code point starts, or `bytes.len()` if there is none.
///
/// Only the last three bytes can belong to an incomplete code point. If the last lead byte among
/// them announces more bytes than follow it, the piece is cut there; everything else (including
/// invalid bytes) is left in the head for `simdutf8` to judge.
#[inline(always)]
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // ASCII last byte is by far the most common ending; answer it without a loop.
    match bytes.last() {
        None => return 0,
        Some(&b) if b < 0x80 => return len,
        _ => {}
    }
    for back in 1..=3.min(len) {
        let i = len - back;
        let b = bytes[i];
        if !is_continuation(b) {
            return if sequence_width(b) > back { i } else { len };
        }
    }
    len
}

#[inline(always)]
fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Length of the code point a lead byte starts, or 0 if it cannot start one (continuation
/// bytes, `C0`, `C1`, `F5..=FF`).
#[inline(always)]
fn sequence_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// Whether `b` may follow `lead` at byte `pos` (1..=3) of a code point (Unicode Table 3-7).
///
/// The second byte's range depends on the lead: that is where overlongs (`E0`, `F0`), surrogates
/// (`ED`) and code points above U+10FFFF (`F4`) are excluded.
#[inline(always)]
fn continuation_ok(lead: u8, pos: usize, b: u8) -> bool {
    let (lo, hi) = match (lead, pos) {
        (0xE0, 1) => (0xA0, 0xBF),
        (0xED, 1) => (0x80, 0x9F),
        (0xF0, 1) => (0x90, 0xBF),
        (0xF4, 1) => (0x80, 0x8F),
        _ => (0x80, 0xBF),
    };
    (lo..=hi).contains(&b)
}

/// Whether `tail` (1..=3 bytes, shorter than its lead announces) can start a valid code point.
fn is_valid_prefix(tail: &[u8]) -> bool {
    let Some((&lead, rest)) = tail.split_first() else {
        return false;
    };
    sequence_width(lead) > tail.len()
        && rest
            .iter()
            .enumerate()
            .all(|(i, &b)| continuation_ok(lead, i + 1, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Valid and invalid inputs in the spirit of Autobahn 6.x.
    fn corpus() -> Vec<Vec<u8>> {
        let strs: &[&str] = &[
            "",
            "a",
            "Hello-µ@ßöäüàá-UTF-8!!",
            "κόσμε",
            "\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}",
            "\u{D7FF}\u{E000}\u{FFFD}",
            "\u{FFFE}\u{FFFF}\u{1FFFE}\u{10FFFE}", // noncharacters are valid UTF-8
            "日本語のテキスト, 😀🎉 mixed with ASCII",
            "\0\u{7F}",
        ];
        let mut v: Vec<Vec<u8>> = strs.iter().map(|s| s.as_bytes().to_vec()).collect();
        let long = "Ελληνικά 中文 🦀 ascii ".repeat(20);
        v.push(long.as_bytes().to_vec());
        let raw: &[&[u8]] = &[
            // lone and stray continuation bytes
            b"\x80",
            b"\xBF",
            b"a\x80b",
            b"\x80\x80\x80\x80",
            // bytes that never appear
            b"\xC0",
            b"\xC1",
            b"\xF5",
            b"\xF8",
            b"\xFC",
            b"\xFE",
            b"\xFF",
            b"\xFE\xFE\xFF\xFF",
            // overlong forms
            b"\xC0\xAF",
            b"\xC1\xBF",
            b"\xE0\x80\xAF",
            b"\xE0\x9F\xBF",
            b"\xF0\x80\x80\xAF",
            b"\xF0\x8F\xBF\xBF",
            b"\xF8\x80\x80\x80\xAF",
            b"\xFC\x80\x80\x80\x80\xAF",
            b"\xC0\x80",
            b"\xE0\x80\x80",
            // above U+10FFFF, including 5- and 6-byte forms
            b"\xF4\x90\x80\x80",
            b"\xF7\xBF\xBF\xBF",
            b"\xFB\xBF\xBF\xBF\xBF",
            b"\xFD\xBF\xBF\xBF\xBF\xBF",
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
            // surrogates, single and paired
            b"\xED\xA0\x80",
            b"\xED\xAD\xBF",
            b"\xED\xBF\xBF",
            b"\xED\xA0\x80\xED\xB0\x80",
            b"\xED\xAF\xBF\xED\xBF\xBF",
            // truncated sequences, alone and followed by more text
            b"\xC2",
            b"\xDF",
            b"\xE0\xA0",
            b"\xEF\xBF",
            b"\xF0\x90\x80",
            b"\xF4\x8F\xBF",
            b"\xC2a",
            b"\xE0\xA0a",
            b"\xF0\x90\x80a",
            b"\xC2\xE0\xA0\x80",
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64",
            // a last continuation byte missing in a row of sequences
            b"\xC0\xE0\x80\xF0\x80\x80\xF8\x80\x80\x80\xDF\xEF\xBF\xF7\xBF\xBF",
        ];
        v.extend(raw.iter().map(|b| b.to_vec()));
        // Each valid string with an invalid byte inserted, so failures also occur mid-piece
        // after a long valid run.
        for s in strs.iter().filter(|s| !s.is_empty()) {
            let mut b = s.as_bytes().to_vec();
            b.extend_from_slice(b"\xF4\x90");
            b.extend_from_slice(s.as_bytes());
            v.push(b);
        }
        v
    }

    /// The smallest `n` such that `bytes[..n]` cannot be the start of any valid UTF-8, computed
    /// with std only. `None` if every prefix can be extended (the input is valid or truncated).
    fn shortest_invalid_prefix(bytes: &[u8]) -> Option<usize> {
        (1..=bytes.len()).find(|&n| match std::str::from_utf8(&bytes[..n]) {
            Ok(_) => false,
            Err(e) => e.error_len().is_some(),
        })
    }

    /// Feeds `bytes` cut at `cuts` (sorted offsets) and checks verdict and fail-fast timing.
    fn check_split(bytes: &[u8], cuts: &[usize]) -> Result<(), String> {
        let whole_ok = std::str::from_utf8(bytes).is_ok();
        let fail_at = shortest_invalid_prefix(bytes);
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain([bytes.len()]) {
            let end = end.clamp(start, bytes.len());
            let got = v.feed(&bytes[start..end]);
            // Does this piece deliver byte `n - 1`, the one that proves invalidity?
            let must_fail = fail_at.is_some_and(|n| n - 1 < end);
            match (got, must_fail) {
                (Err(_), true) => return Ok(()),
                (Ok(()), false) => {}
                (got, _) => {
                    return Err(format!(
                        "{bytes:02X?} cut {cuts:?}: piece {start}..{end} gave {got:?}, \
                         first invalid prefix {fail_at:?}"
                    ))
                }
            }
            start = end;
        }
        if fail_at.is_some() {
            return Err(format!("{bytes:02X?} cut {cuts:?}: never failed"));
        }
        let fin = v.finish();
        if fin.is_ok() != whole_ok {
            return Err(format!("{bytes:02X?} cut {cuts:?}: finish gave {fin:?}"));
        }
        // `finish` resets: the validator is ready for a fresh message.
        if v.feed(b"ok").is_err() || v.finish().is_err() {
            return Err("not reset after finish".into());
        }
        Ok(())
    }

    #[test]
    fn corpus_whole() {
        for bytes in corpus() {
            check_split(&bytes, &[]).unwrap();
        }
    }

    #[test]
    fn corpus_split_at_every_position() {
        for bytes in corpus() {
            for at in 0..=bytes.len() {
                check_split(&bytes, &[at]).unwrap();
            }
            for a in 0..=bytes.len().min(40) {
                for b in a..=bytes.len().min(40) {
                    check_split(&bytes, &[a, b]).unwrap();
                }
            }
        }
    }

    #[test]
    fn corpus_single_bytes() {
        for bytes in corpus() {
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            check_split(&bytes, &cuts).unwrap();
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefixes() {
        for bad in [
            &b"\xF4\x90"[..],
            b"\xED\xA0",
            b"\xE0\x80",
            b"\xF0\x80",
            b"\xC0",
            b"\xC1",
            b"\xF5",
            b"\xFF",
        ] {
            assert_eq!(Utf8Validator::new().feed(bad), Err(Utf8Error), "{bad:02X?}");
            // Delivered one byte at a time, the last byte is the one that fails.
            let mut v = Utf8Validator::new();
            let (last, init) = bad.split_last().unwrap();
            for b in init {
                assert_eq!(v.feed(&[*b]), Ok(()), "{bad:02X?}");
            }
            assert_eq!(v.feed(&[*last]), Err(Utf8Error), "{bad:02X?}");
        }
        // Valid prefixes are accepted and only `finish` complains.
        for ok in [
            &b"\xF4\x8F"[..],
            b"\xED\x9F",
            b"\xE0\xA0",
            b"\xF0\x90\x80",
            b"\xC2",
        ] {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(ok), Ok(()), "{ok:02X?}");
            assert_eq!(v.finish(), Err(Utf8Error), "{ok:02X?}");
        }
    }

    #[test]
    fn reset_forgets_pending_bytes() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xE2\x82").unwrap();
        v.reset();
        assert_eq!(v.feed(b"abc"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
        assert_eq!(
            Utf8Error.to_string(),
            "Could not decode a text frame as UTF-8"
        );
    }

    #[test]
    fn empty_pieces_keep_state() {
        let mut v = Utf8Validator::default();
        v.feed(b"\xF0").unwrap();
        v.feed(b"").unwrap();
        v.feed(b"\x9F").unwrap();
        v.feed(b"").unwrap();
        v.feed(b"\x98\x80").unwrap();
        v.finish().unwrap();
    }

    proptest! {
        #[test]
        fn valid_strings_in_arbitrary_pieces(
            s in any::<String>(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        ) {
            let bytes = s.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut v = Utf8Validator::new();
            let mut start = 0;
            for end in cuts.iter().copied().chain([bytes.len()]) {
                prop_assert!(v.feed(&bytes[start..end]).is_ok());
                start = end;
            }
            prop_assert!(v.finish().is_ok());
        }

        #[test]
        fn arbitrary_bytes_agree_with_std(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), 0x80u8..0xC0, 0xC2u8..0xF5],
                0..64,
            ),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(check_split(&bytes, &cuts), Ok(()));
        }

        #[test]
        fn mostly_valid_bytes_agree_with_std(
            s in "\\PC{0,40}",
            at in any::<proptest::sample::Index>(),
            junk in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            // A valid string with one arbitrary byte replaced: errors deep inside long input.
            let mut bytes = s.into_bytes();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = junk;
            }
            let c = cut.index(bytes.len() + 1);
            prop_assert_eq!(check_split(&bytes, &[c]), Ok(()));
        }
    }
}
