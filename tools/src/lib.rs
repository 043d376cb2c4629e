//! Shared bits of ringsock's command-line tools, and the `/proc` readers the load generators
//! (`ringsock-load`, and `ws-load` in the benches) use to watch a server's CPU time and memory.

use std::time::Duration;

/// Tunes glibc's malloc for a server that allocates and frees large messages at a high rate:
/// by default it hands a freed 1 MiB message back to the kernel and faults it in again for the
/// next, which made the 1 MiB echo swing between 1.0 and 2.6 GB/s from run to run. glibc stays
/// the allocator (mimalloc was tried) because its small blocks are tighter than mimalloc's size
/// classes and huge pages: 10,000 idle connections cost 1.0 KB each instead of 1.7 KB.
/// Call first thing in `main`, before any thread starts.
pub fn keep_large_blocks() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Blocks SIGINT and SIGTERM on this thread (threads started later inherit the mask), so that
/// [`wait_for_signal`] can take them synchronously instead of a handler interrupting a shard.
pub fn block_termination_signals() {
    // SAFETY: builds a signal set in a zeroed sigset_t and changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGINT or SIGTERM (blocked beforehand with [`block_termination_signals`]).
pub fn wait_for_signal() -> i32 {
    // SAFETY: sigwait reads the set and writes the signal number into a live c_int.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig: libc::c_int = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
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
