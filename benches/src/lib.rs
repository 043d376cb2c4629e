//! Shared bits of the load scenarios (`src/bin/`): argument parsing for the peer echo servers and
//! the `/proc` readers the load generators use to watch a server's CPU time and memory.
//!
//! The criterion micro-benchmarks live in `benches/` and use none of this.

use std::net::SocketAddr;

/// Parses the only flag the peer echo servers take, `--addr IP:PORT`, falling back to `default`.
///
/// Exits with status 2 and a usage line on anything else, so a typo in the runner script fails
/// loudly instead of benchmarking the wrong port.
pub fn addr_from_args(name: &str, default: &str) -> SocketAddr {
    let usage = format!("usage: {name} [--addr IP:PORT] (default {default})");
    let mut addr = default.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => match args.next() {
                Some(v) => addr = v,
                None => fail(&usage, "--addr needs a value"),
            },
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => fail(&usage, &format!("unknown argument {other:?}")),
        }
    }
    addr.parse()
        .unwrap_or_else(|e| fail(&usage, &format!("--addr {addr:?}: {e}")))
}

fn fail(usage: &str, why: &str) -> ! {
    eprintln!("{why}\n{usage}");
    std::process::exit(2)
}

// The `/proc` readers moved to `ringsock-tools`, which `ringsock-load` is part of; they stay
// reachable here for `ws-load`.
pub use ringsock_tools::{
    process_cpu_seconds, process_rss_kib, raise_nofile_limit, self_cpu_seconds, system_busy_seconds,
};
