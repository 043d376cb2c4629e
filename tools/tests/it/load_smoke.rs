//! `ringsock-load`, briefly, in each scenario: against `ringsock-echo` (echo, idle, connect) and
//! `ringsock-fanout` (fanout), each started on an ephemeral port; the JSON report is checked.
//! Every child is waited for with a deadline and killed past it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any child may run.
const LIMIT: Duration = Duration::from_secs(60);

/// A server child, killed (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `bin` on 127.0.0.1:0 and reads the address it listens on from its stderr.
    fn start(bin: &str, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split([' ', ',']).next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{bin} did not say where it listens"));
        Server { child, addr }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ringsock-load` with `args` and returns its JSON line.
fn load(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringsock-load"))
        .args(args)
        .args(["--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringsock-load");
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                status.success(),
                "ringsock-load {args:?}: {status}\n{stderr}\n{stdout}"
            );
            let json = stdout.lines().last().unwrap_or("").to_owned();
            assert!(
                json.starts_with('{') && json.ends_with('}'),
                "not one JSON line: {stdout:?}"
            );
            return json;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringsock-load {args:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value after `"key":` in a flat JSON line (quotes stripped).
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |i| i + 1)
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    rest[..end].trim_matches('"')
}

fn num(json: &str, key: &str) -> f64 {
    let v = field(json, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} = {v:?} is not a number in {json}"))
}

#[test]
fn every_scenario_runs_and_reports_json() {
    let _one = crate::one_at_a_time();
    let echo = Server::start(
        env!("CARGO_BIN_EXE_ringsock-echo"),
        &["--shards", "1", "--backend", "epoll"],
    );
    let addr = echo.addr.as_str();
    let url = format!("ws://{addr}/");

    let j = load(&[
        "echo",
        "--url",
        &url,
        "--conns",
        "4",
        "--size",
        "32",
        "--depth",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--shards",
        "2",
        "--src",
        "127.0.0.1,127.0.0.2",
        "--label",
        "smoke \"A\"",
        "--server-pid",
        &echo.pid(),
    ]);
    assert_eq!(field(&j, "mode"), "echo");
    assert!(j.contains(r#""label":"smoke \"A\"""#), "{j}");
    assert!(num(&j, "msgs") > 0.0 && num(&j, "msgs_per_s") > 0.0, "{j}");
    assert!(
        num(&j, "p50_us") > 0.0 && num(&j, "p99_us") >= num(&j, "p50_us"),
        "{j}"
    );
    assert!(num(&j, "max_us") >= num(&j, "p999_us"), "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    assert_eq!(num(&j, "closed_cleanly"), 4.0, "{j}");
    assert!(field(&j, "server_cpu_pct") != "null", "{j}");

    let j = load(&[
        "echo",
        "--addr",
        addr,
        "--conns",
        "2",
        "--size",
        "70000",
        "--depth",
        "1",
        "--binary",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(field(&j, "binary"), "true");
    assert!(num(&j, "mb_per_s") > 0.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");

    let j = load(&[
        "idle",
        "--url",
        &url,
        "--conns",
        "50",
        "--hold",
        "0.3",
        "--server-pid",
        &echo.pid(),
    ]);
    assert_eq!(field(&j, "mode"), "idle");
    assert_eq!(num(&j, "open"), 50.0, "{j}");
    assert_eq!(num(&j, "still_open"), 50.0, "{j}");
    assert!(field(&j, "rss_per_conn_bytes") != "null", "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");

    let j = load(&[
        "connect",
        "--url",
        &url,
        "--concurrency",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(field(&j, "mode"), "connect");
    assert!(num(&j, "handshakes") > 10.0, "{j}");
    assert!(num(&j, "p50_us") > 0.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    drop(echo);

    let fanout = Server::start(
        env!("CARGO_BIN_EXE_ringsock-fanout"),
        &[
            "--subscribers",
            "8",
            "--rate",
            "2000",
            "--burst",
            "10",
            "--size",
            "24",
        ],
    );
    let j = load(&[
        "fanout",
        "--addr",
        &fanout.addr,
        "--conns",
        "8",
        "--size",
        "24",
        "--duration",
        "1",
        "--warmup",
        "0.3",
    ]);
    assert_eq!(field(&j, "mode"), "fanout");
    assert!(num(&j, "deliveries_per_s") > 0.0, "{j}");
    assert_eq!(num(&j, "bad_frames"), 0.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    assert!(field(&j, "per_second").starts_with('['), "{j}");
}

/// permessage-deflate end to end: negotiated on every connection, every echo inflated and equal
/// to what was sent, fewer bytes on the wire than payload bytes; and the idle exchange against
/// the actors server with takeover.
#[test]
fn deflate_echo_and_exchange() {
    let _one = crate::one_at_a_time();
    let echo = Server::start(
        env!("CARGO_BIN_EXE_ringsock-echo"),
        &["--shards", "1", "--backend", "epoll"],
    );
    for flag in ["--deflate", "--deflate-takeover"] {
        let j = load(&[
            "echo",
            "--addr",
            &echo.addr,
            "--conns",
            "3",
            "--size",
            "1024",
            "--depth",
            "2",
            "--payload",
            "json",
            flag,
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
        ]);
        assert_eq!(num(&j, "deflate_conns"), 3.0, "{j}");
        assert_eq!(num(&j, "errors"), 0.0, "{j}");
        assert_eq!(num(&j, "bad_frames"), 0.0, "{j}");
        assert!(num(&j, "msgs") > 0.0, "{j}");
        // JSON text compresses well below its size either way; the frames' headers are in it.
        assert!(num(&j, "wire_ratio") < 0.7, "{j}");
        assert_eq!(num(&j, "payload_out_per_msg"), 1024.0, "{j}");
    }
    // Without the extension the same traffic is the payload plus the frame headers.
    let j = load(&[
        "echo",
        "--addr",
        &echo.addr,
        "--conns",
        "2",
        "--size",
        "1024",
        "--payload",
        "json",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(num(&j, "deflate_conns"), 0.0, "{j}");
    assert!(num(&j, "wire_ratio") > 1.0, "{j}");
    drop(echo);

    let actors = Server::start(
        env!("CARGO_BIN_EXE_ringsock-fanout"),
        &["--idle", "--deflate-takeover", "--deflate-window", "10"],
    );
    let j = load(&[
        "idle",
        "--addr",
        &actors.addr,
        "--conns",
        "20",
        "--hold",
        "0.2",
        "--exchange",
        "3",
        "--size",
        "500",
        "--payload",
        "json",
        "--deflate-takeover",
        "--server-pid",
        &actors.pid(),
    ]);
    assert_eq!(num(&j, "deflate_conns"), 20.0, "{j}");
    assert_eq!(num(&j, "exchanged"), 20.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
}

#[test]
fn bad_arguments_fail_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringsock-load"))
        .args(["echo", "--conns", "3"])
        .output()
        .expect("ringsock-load");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
