//! Shared bits of ringsock's command-line tools, the `/proc` readers the load generators
//! (`ringsock-load`, and `ws-load` in the benches) use to watch a server's CPU time and memory,
//! and the hostile-peer suite ([`hostile`]) behind `ringsock-hostile` and `tests/it/hostile.rs`.

use std::time::Duration;

pub mod hostile;

/// `s` as a JSON string literal, quoted and escaped: for the tools' `--json` lines, which are
/// written by hand rather than through a serializer.
pub fn json_string(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The grace period tools give connections to finish their close handshakes on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// CPU time (user + system, all threads) a process has used, in seconds, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// CPU time all cores have spent busy since boot (everything but idle and iowait), in seconds,
/// from the first line of `/proc/stat`.
///
/// Minus what the server and the generator used over the same window, this is what other
/// processes took: the machine is shared, and a figure measured next to a compiler is not one
/// to keep.
pub fn system_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_ascii_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| busy as f64 / hz as f64)
}

/// CPU time this process has used so far (user + system), in seconds.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into a zeroed rusage we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A process's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Raises this process's open-file limit to its hard limit and returns the new soft limit.
///
/// The idle scenario holds 10,000 sockets; the runner script raises the limit too, but doing it
/// here as well means running the generator by hand works the same way.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write an rlimit we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        lim.rlim_cur as u64
    }
}

/// TCP payload bytes this process's sockets have moved so far, summed over every TCP socket it
/// has open now: `(sent and acknowledged, received)`, from `TCP_INFO`'s `tcpi_bytes_acked` and
/// `tcpi_bytes_received` (Linux 4.1+), and how many sockets were read.
///
/// This is what crossed the wire as TCP payload: WebSocket frame headers, masks and (compressed)
/// payloads, and the handshakes of connections opened since. The difference of two readings
/// while a fixed set of connections runs is their traffic in between, which is how the load
/// generator reports bytes on the wire per message without counting inside the engine. The
/// descriptors come from `/proc/self/fd`; whatever is not a TCP socket fails `getsockopt` and is
/// skipped. Sockets closed between two readings take their counts with them.
pub fn process_tcp_bytes() -> Option<(u64, u64, usize)> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let (mut acked, mut received, mut sockets) = (0u64, 0u64, 0usize);
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info we own; on a
        // descriptor that is not a TCP socket (or was closed meanwhile) it fails and is skipped.
        let info = unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            // An older kernel fills less of the struct: the two counters must be in it.
            let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
            (rc == 0 && len as usize >= needed).then_some(info)
        };
        if let Some(info) = info {
            acked += info.tcpi_bytes_acked;
            received += info.tcpi_bytes_received;
            sockets += 1;
        }
    }
    Some((acked, received, sockets))
}

/// JSON-like text messages for the compression benchmarks: what a chat or market-data push
/// service sends. Compression ratios depend on the data, and a benchmark that compresses one
/// string over and over measures nothing real (with context takeover a repeat costs a few
/// bytes), so every message differs: a sequence number, a timestamp with jitter, a few fields
/// drawn from small fixed vocabularies (message types, rooms, names, symbols, words), numbers
/// from a seeded generator. Deterministic: the same seed gives the same messages.
pub mod json {
    use std::fmt::Write as _;

    /// The smallest message [`message`] makes: `{"seq":N,"text":"..."}` with room for any N.
    pub const MIN_SIZE: usize = 64;

    const TYPES: [&str; 6] = ["message", "trade", "quote", "presence", "typing", "receipt"];
    const ROOMS: [&str; 8] = [
        "general",
        "random",
        "support",
        "eng-core",
        "eng-infra",
        "sales",
        "ops",
        "lobby",
    ];
    const NAMES: [&str; 16] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj", "olivia", "peggy", "rupert", "trent",
    ];
    const SYMBOLS: [&str; 12] = [
        "ACME", "GLOBX", "INITECH", "UMBRL", "HOOLI", "STARK", "WAYNE", "TYRELL", "CYBDN", "SOYL",
        "VANDL", "WONKA",
    ];
    const SIDES: [&str; 2] = ["buy", "sell"];
    const WORDS: [&str; 32] = [
        "the",
        "deploy",
        "is",
        "green",
        "again",
        "after",
        "rollback",
        "of",
        "build",
        "on",
        "staging",
        "please",
        "check",
        "latency",
        "dashboard",
        "before",
        "lunch",
        "we",
        "ship",
        "tomorrow",
        "ok",
        "thanks",
        "merged",
        "review",
        "queue",
        "looks",
        "fine",
        "to",
        "me",
        "ticket",
        "closed",
        "now",
    ];

    /// A small, fast, seeded generator (splitmix64): enough to vary fields, no dependency.
    #[derive(Clone, Debug)]
    pub struct Rng(u64);

    impl Rng {
        /// A generator from a seed.
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        /// The next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// A number below `n` (n > 0).
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len() as u64) as usize]
        }
    }

    /// Message number `seq`, exactly `size` bytes of ASCII (`size` at least [`MIN_SIZE`]).
    ///
    /// Fields are added while they fit: the envelope (`seq`, `ts`, `type`, `room`, `user`),
    /// then as many `items` (symbol, price, quantity, side) as leave room, then a `text` of
    /// words cut to make up the exact size.
    pub fn message(seq: u64, size: usize, rng: &mut Rng) -> String {
        assert!(
            size >= MIN_SIZE,
            "JSON messages are at least {MIN_SIZE} bytes"
        );
        // What closing the message takes at least: `,"text":""}`.
        const TAIL: usize = 11;
        let mut s = String::with_capacity(size);
        let _ = write!(s, "{{\"seq\":{seq}");
        let ts = 1_764_150_000_000 + seq * 37 + rng.below(1000);
        let fields = [
            format!(",\"ts\":{ts}"),
            format!(",\"type\":\"{}\"", rng.pick(&TYPES)),
            format!(",\"room\":\"{}\"", rng.pick(&ROOMS)),
            format!(
                ",\"user\":{{\"id\":{},\"name\":\"{}\"}}",
                10_000 + rng.below(90_000),
                rng.pick(&NAMES)
            ),
        ];
        for f in &fields {
            if s.len() + f.len() + TAIL <= size {
                s.push_str(f);
            }
        }
        let mut items = 0;
        loop {
            let item = format!(
                "{}{{\"sym\":\"{}\",\"px\":{}.{:02},\"qty\":{},\"side\":\"{}\"}}",
                if items == 0 { ",\"items\":[" } else { "," },
                rng.pick(&SYMBOLS),
                20 + rng.below(400),
                rng.below(100),
                1 + rng.below(2000),
                rng.pick(&SIDES),
            );
            // The item, the `]` that closes the list, and room for some text after it.
            if s.len() + item.len() + 1 + TAIL + 24 > size {
                break;
            }
            s.push_str(&item);
            items += 1;
        }
        if items > 0 {
            s.push(']');
        }
        s.push_str(",\"text\":\"");
        let text_len = size - s.len() - 2;
        let start = s.len();
        while s.len() - start < text_len {
            if s.len() > start {
                s.push(' ');
            }
            s.push_str(rng.pick(&WORDS));
        }
        s.truncate(start + text_len);
        s.push_str("\"}");
        debug_assert_eq!(s.len(), size);
        s
    }

    /// `count` consecutive messages of `size` bytes, numbered from 0, from `seed`.
    pub fn messages(count: usize, size: usize, seed: u64) -> Vec<String> {
        let mut rng = Rng::new(seed);
        (0..count as u64)
            .map(|seq| message(seq, size, &mut rng))
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn messages_have_the_exact_size_and_differ() {
            for size in [MIN_SIZE, 65, 100, 200, 1024, 4096, 65536] {
                let m = messages(20, size, 7);
                for (i, msg) in m.iter().enumerate() {
                    assert_eq!(msg.len(), size, "{msg}");
                    assert!(msg.starts_with(&format!("{{\"seq\":{i},")), "{msg}");
                    assert!(msg.ends_with("\"}"), "{msg}");
                }
                let mut sorted = m.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), m.len());
            }
            assert_eq!(messages(3, 300, 1), messages(3, 300, 1));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(super::json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
