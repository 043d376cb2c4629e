//! One case, start to end: a fresh server, the control client beside the attacker, the
//! server's memory before, at its peak during, and a while after the attack.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::attacks::{Case, Outcome, Target};
use super::control::{ControlClient, Failures, RoundTrips};
use super::sampler::RssSampler;
use super::server::{Backend, EchoServer};

/// The longest the control client and the sampler may run: far past any case's bounds, a net
/// under a runner that did not stop them.
const HELPER_LIFETIME: Duration = Duration::from_secs(600);

/// How a case is run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The `ringsock-echo` executable.
    pub echo: PathBuf,
    /// How long the control client runs before the baseline is read (connections made,
    /// buffers touched, round trips steady).
    pub warmup: Duration,
    /// How long after the attacker left the "after" RSS is read.
    pub settle: Duration,
    /// More `ringsock-echo` arguments for every case (after the case's own), to try a server
    /// setting against the attacks.
    pub server_args: Vec<String>,
    /// Aim the attack at a second server instead, while the control client talks to the
    /// first: what the attack costs the control client through the machine alone (the cores
    /// the attacker and its server take), the ceiling the shard is measured against.
    pub attack_elsewhere: bool,
}

impl RunConfig {
    /// The suite's settings: 1 s of warm-up, the after reading 5 s after the attacker left.
    pub fn new(echo: PathBuf) -> Self {
        Self {
            echo,
            warmup: Duration::from_secs(1),
            settle: Duration::from_secs(5),
            server_args: Vec::new(),
            attack_elsewhere: false,
        }
    }
}

/// What one case measured.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The attack.
    pub case: Case,
    /// The server's backend.
    pub backend: Backend,
    /// The attack went to a second server ([`RunConfig::attack_elsewhere`]).
    pub elsewhere: bool,
    /// Server RSS after the warm-up, before the attack, in KiB.
    pub rss_baseline_kib: u64,
    /// Highest server RSS during the attack, in KiB.
    pub rss_peak_kib: u64,
    /// Server RSS [`RunConfig::settle`] after the attacker left, in KiB.
    pub rss_after_kib: u64,
    /// Server CPU time used during the attack, in seconds.
    pub server_cpu_seconds: f64,
    /// How long the attack took, in seconds.
    pub attack_seconds: f64,
    /// The control client's round trips during the attack.
    pub control: RoundTrips,
    /// Everything that went wrong for the control client, from its start to its end.
    pub control_failures: Failures,
    /// What the attacker saw.
    pub outcome: Outcome,
    /// How the server exited, if it did before the end of the case (it should not).
    pub server_exit: Option<String>,
    /// The server's latest stderr lines.
    pub server_log: Vec<String>,
}

impl CaseResult {
    /// Peak RSS above the baseline, in KiB.
    pub fn peak_growth_kib(&self) -> i64 {
        self.rss_peak_kib as i64 - self.rss_baseline_kib as i64
    }

    /// RSS above the baseline after the attacker left, in KiB.
    pub fn after_growth_kib(&self) -> i64 {
        self.rss_after_kib as i64 - self.rss_baseline_kib as i64
    }
}

/// Runs `case` against a fresh `ringsock-echo --shards 1` on `backend`.
pub fn run_case(case: Case, backend: Backend, config: &RunConfig) -> io::Result<CaseResult> {
    let mut args = case.server_args();
    args.extend(config.server_args.iter().cloned());
    let mut server = EchoServer::start(&config.echo, backend, &args, case.nofile())?;
    let other = match config.attack_elsewhere {
        true => Some(EchoServer::start(
            &config.echo,
            backend,
            &args,
            case.nofile(),
        )?),
        false => None,
    };
    let attacked = other.as_ref().unwrap_or(&server);
    let target = Target {
        addr: attacked.addr(),
        pid: attacked.pid(),
    };
    let rss = |server: &EchoServer| {
        server
            .rss_kib()
            .ok_or_else(|| io::Error::other("cannot read the server's RSS"))
    };
    let cpu = |server: &EchoServer| {
        server
            .cpu_seconds()
            .ok_or_else(|| io::Error::other("cannot read the server's CPU time"))
    };

    let control = ControlClient::start(server.addr(), HELPER_LIFETIME);
    std::thread::sleep(config.warmup);
    control.take_window();
    let baseline = rss(&server)?;

    let sampler = RssSampler::start(server.pid(), HELPER_LIFETIME);
    let cpu_before = cpu(attacked)?;
    let started = Instant::now();
    let outcome = case.run(&target);
    let attack_seconds = started.elapsed().as_secs_f64();
    let server_cpu_seconds = attacked.cpu_seconds().map_or(f64::NAN, |c| c - cpu_before);
    drop(other);
    let during = control.take_window();
    let peak = sampler.stop().max(baseline);

    let left = Instant::now();
    std::thread::sleep(config.settle.saturating_sub(left.elapsed()));
    // A server that died meanwhile has no RSS: report 0 and let the exit say why.
    let after = server.rss_kib().unwrap_or(0);
    let (_, control_failures) = control.stop();

    Ok(CaseResult {
        case,
        backend,
        elsewhere: config.attack_elsewhere,
        rss_baseline_kib: baseline,
        rss_peak_kib: peak,
        rss_after_kib: after,
        server_cpu_seconds,
        attack_seconds,
        control: during,
        control_failures,
        outcome,
        server_exit: server.exited().map(|s| s.to_string()),
        server_log: server.log(),
    })
}
