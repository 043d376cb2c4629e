//! `ringsock-hostile`: the hostile-peer figures of issue 13. Runs each attack against a fresh
//! `ringsock-echo --shards 1` (found next to this executable) on each backend, with a control
//! client echoing beside the attacker, and prints a markdown table: server RSS growth at the
//! peak and 5 s after the attacker left, the control client's p99 and max round trip during
//! the attack, the server's CPU time, and what the attacker saw. `--json` prints one JSON line
//! per case instead. Cases run one after another, so they do not disturb each other.

use std::path::PathBuf;
use std::process::ExitCode;

use ringsock_tools::hostile::server::echo_beside_current_exe;
use ringsock_tools::hostile::{report, run_case, Backend, Case, RunConfig};

const USAGE: &str =
    "usage: ringsock-hostile [--case NAME]... [--backend io_uring|epoll|both] [--json]
  --case     run only this attack (repeatable; default: all): non-reader, ping-flood,
             fragment-flood, control-flood, fd-exhaustion, slowloris, reset-mid-message,
             connect-reset, reading-flood
  --backend  the server's reactor backend (default: both)
  --json     one JSON line per case on stdout instead of the markdown table
  --echo     the ringsock-echo to attack (default: the one next to this executable)
  --server-arg ARG
             pass ARG to every ringsock-echo (repeatable; e.g. --server-arg --buffers
             --server-arg 64), after the case's own arguments
  --ceiling  also run each case with the attack aimed at a second server: the control
             client's round trips then show what the attack costs through the machine alone
             (its cores), the ceiling for the shard's own figure
Build with --release for figures: a debug server is several times slower.";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsock-hostile: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut cases: Vec<Case> = Vec::new();
    let mut backends: Vec<Backend> = Backend::BOTH.to_vec();
    let mut json = false;
    let mut echo: Option<PathBuf> = None;
    let mut server_args: Vec<String> = Vec::new();
    let mut ceiling = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--case" => {
                let name = value("--case")?;
                cases.push(Case::from_name(&name).ok_or(format!("--case: unknown case {name:?}"))?);
            }
            "--backend" => {
                backends = match value("--backend")?.as_str() {
                    "io_uring" | "uring" => vec![Backend::IoUring],
                    "epoll" => vec![Backend::Epoll],
                    "both" => Backend::BOTH.to_vec(),
                    other => return Err(format!("--backend: unknown backend {other:?}")),
                };
            }
            "--json" => json = true,
            "--echo" => echo = Some(PathBuf::from(value("--echo")?)),
            "--server-arg" => server_args.push(value("--server-arg")?),
            "--ceiling" => ceiling = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if cases.is_empty() {
        cases = Case::ALL.to_vec();
    }
    let echo = match echo {
        Some(path) => path,
        None => echo_beside_current_exe().map_err(|e| e.to_string())?,
    };
    let config = RunConfig {
        server_args,
        ..RunConfig::new(echo)
    };
    if !json {
        println!("{}", report::table_head());
    }
    let placements: &[bool] = if ceiling { &[false, true] } else { &[false] };
    for case in &cases {
        for backend in &backends {
            for &elsewhere in placements {
                eprintln!("ringsock-hostile: {} on {}…", case.name(), backend.name());
                let config = RunConfig {
                    attack_elsewhere: elsewhere,
                    ..config.clone()
                };
                let result = run_case(*case, *backend, &config)
                    .map_err(|e| format!("{} on {}: {e}", case.name(), backend.name()))?;
                if json {
                    println!("{}", report::json_line(&result));
                } else {
                    println!("{}", report::table_row(&result));
                }
            }
        }
    }
    Ok(())
}
