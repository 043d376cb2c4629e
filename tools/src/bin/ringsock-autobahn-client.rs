//! `ringsock-autobahn-client`: ringsock's client role as Autobahn|Testsuite's testee. Against
//! `wstest -m fuzzingserver` (see `autobahn/client.sh`) it runs the standard sequence: asks
//! `/getCaseCount` for the number of cases (one text message), opens
//! `/runCase?case=N&agent=AGENT` for each case in turn and echoes every text and binary message
//! it receives until the server closes, then asks `/updateReports?agent=AGENT` to write the
//! reports.
//!
//! It is an ordinary actors client: a client-only runtime (no listener), `ServerHandle::connect_with`
//! and a [`Handler`] that echoes; the close handshake, pings, UTF-8 checks and protocol errors
//! are the library's, at its default limits. permessage-deflate is offered by default with
//! context takeover both ways, so that the fuzzing server's 12.x and 13.x cases exercise the
//! stateful compressor and decompressor as well as the stateless ones (the 13.x cases whose
//! server asks for `client_no_context_takeover` or a smaller `client_max_window_bits` turn
//! them off); `--deflate default` offers the library's defaults (no context takeover either
//! way), `--deflate off` nothing.
//!
//! Every wait is bounded (`--case-timeout`); the exit status is 0 when every case ran (the
//! verdict on each is wstest's, read from its report by `autobahn/summary.py`).

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringsock_actors::{
    ClientOptions, Closed, Ctx, DeflateOptions, DialError, DialOptions, Handler, Message, Server,
    ServerHandle,
};

const USAGE: &str = "usage: ringsock-autobahn-client [--url ws://127.0.0.1:9001] [--agent NAME]
  --url           the fuzzing server's base URL (default ws://127.0.0.1:9001)
  --agent         the name the reports use (default ringsock)
  --cases N       run cases 1..=N only (default: all, as /getCaseCount says)
  --case-timeout  seconds one case may take before the run gives up (default 600)
  --deflate       takeover (default): permessage-deflate with context takeover both ways;
                  default: the library's DeflateOptions (no context takeover); off: none";

/// A case that takes longer than this is named as it ends (the compression cases take seconds
/// each, mostly wstest's; the report lists every duration).
const SLOW_CASE: Duration = Duration::from_secs(20);

/// How a connection ended, as the main thread hears it.
#[derive(Debug)]
enum Outcome {
    Closed(Closed),
    Failed(DialError),
}

/// Echoes every message back; remembers the last text (for `/getCaseCount`).
struct Testee {
    last_text: Option<String>,
    done: mpsc::Sender<(Outcome, Option<String>)>,
}

impl Handler for Testee {
    type Msg = ();

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        match message {
            Message::Text(text) => {
                ctx.send_text(text.as_str());
                self.last_text = Some(text.as_str().to_owned());
            }
            Message::Binary(data) => {
                ctx.send_binary(data);
            }
        }
    }

    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        let _ = self
            .done
            .send((Outcome::Closed(closed), self.last_text.take()));
    }

    fn on_connect_failed(&mut self, error: DialError) {
        let _ = self.done.send((Outcome::Failed(error), None));
    }
}

struct Args {
    url: String,
    agent: String,
    cases: Option<u32>,
    case_timeout: Duration,
    deflate: Option<DeflateOptions>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut parsed = Args {
        url: "ws://127.0.0.1:9001".into(),
        agent: "ringsock".into(),
        cases: None,
        case_timeout: Duration::from_secs(600),
        deflate: Some(DeflateOptions::new().context_takeover(true)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => parsed.url = value("--url")?.trim_end_matches('/').to_owned(),
            "--agent" => parsed.agent = value("--agent")?,
            "--cases" => {
                parsed.cases = Some(
                    value("--cases")?
                        .parse()
                        .map_err(|e| format!("--cases: {e}"))?,
                )
            }
            "--case-timeout" => {
                let secs: u64 = value("--case-timeout")?
                    .parse()
                    .map_err(|e| format!("--case-timeout: {e}"))?;
                parsed.case_timeout = Duration::from_secs(secs);
            }
            "--deflate" => {
                parsed.deflate = match value("--deflate")?.as_str() {
                    "takeover" => Some(DeflateOptions::new().context_takeover(true)),
                    "default" => Some(DeflateOptions::new()),
                    "off" => None,
                    other => return Err(format!("--deflate: unknown choice {other:?}")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    // The agent goes into a query string unescaped: keep it to characters that need none.
    if parsed.agent.is_empty()
        || !parsed
            .agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("--agent: letters, digits, '-', '_' and '.' only".into());
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(Some(args)) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringsock-autobahn-client: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsock-autobahn-client: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Opens one connection to `path` and waits, at most `limit`, for it to end.
fn visit(
    client: &ServerHandle,
    options: &ClientOptions,
    url: &str,
    limit: Duration,
) -> Result<(Closed, Option<String>), String> {
    let (done, outcome) = mpsc::channel();
    client
        .connect_with(
            url,
            options,
            &DialOptions::new(),
            Testee {
                last_text: None,
                done,
            },
        )
        .map_err(|e| format!("{url}: {e}"))?;
    match outcome.recv_timeout(limit) {
        Ok((Outcome::Closed(closed), text)) => Ok((closed, text)),
        Ok((Outcome::Failed(error), _)) => Err(format!("{url}: {error}")),
        Err(_) => Err(format!("{url}: no end within {limit:?}")),
    }
}

fn run(args: &Args) -> Result<(), String> {
    // One shard: the cases run one at a time.
    let client = Server::builder()
        .shards(1)
        .start()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    let mut options = ClientOptions::new();
    if let Some(deflate) = &args.deflate {
        options = options.deflate(deflate.clone());
    }
    let plain = ClientOptions::new();
    let short = Duration::from_secs(60);

    let count_url = format!("{}/getCaseCount", args.url);
    let (_, text) = visit(&client, &plain, &count_url, short)?;
    let count: u32 = text
        .as_deref()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("{count_url} sent no case count (got {text:?})"))?;
    let count = args.cases.map_or(count, |n| n.min(count));
    eprintln!("ringsock-autobahn-client: {count} cases");

    let started = Instant::now();
    let mut failed_to_run = 0;
    for case in 1..=count {
        let url = format!("{}/runCase?case={case}&agent={}", args.url, args.agent);
        let t = Instant::now();
        match visit(&client, &options, &url, args.case_timeout) {
            Ok((closed, _)) => {
                if t.elapsed() > SLOW_CASE {
                    eprintln!(
                        "ringsock-autobahn-client: case {case} took {:.1}s (closed {})",
                        t.elapsed().as_secs_f64(),
                        closed.code.0
                    );
                }
            }
            Err(e) => {
                // wstest records what it saw; the run goes on to the next case.
                failed_to_run += 1;
                eprintln!("ringsock-autobahn-client: case {case}: {e}");
            }
        }
        if case % 50 == 0 {
            eprintln!(
                "ringsock-autobahn-client: {case}/{count} cases, {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
    }

    let update_url = format!("{}/updateReports?agent={}", args.url, args.agent);
    visit(&client, &plain, &update_url, short)?;
    client.shutdown(Duration::from_secs(1));
    // Its own CPU time against the wall time: how much of the run was ringsock's, not wstest's.
    eprintln!(
        "ringsock-autobahn-client: {count} cases in {:.0}s, {:.1}s of CPU; reports updated",
        started.elapsed().as_secs_f64(),
        ringsock_tools::self_cpu_seconds()
    );
    if failed_to_run > 0 {
        return Err(format!("{failed_to_run} cases did not run to a close"));
    }
    Ok(())
}
