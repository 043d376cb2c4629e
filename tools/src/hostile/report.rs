//! The figures: a markdown table of attack × backend, or one JSON line per case.

use std::fmt::Write as _;

use super::runner::CaseResult;
use super::units::kib_to_mb;
use crate::json_string;

/// The markdown table's head.
pub fn table_head() -> String {
    concat!(
        "| attack | backend | server RSS baseline | growth at peak | growth 5 s after | control p99 (max; echoes) | server CPU during | what the attacker saw |\n",
        "|---|---|---:|---:|---:|---:|---:|---|"
    )
    .to_owned()
}

/// One case as a row of the markdown table.
pub fn table_row(r: &CaseResult) -> String {
    let mut seen = r.outcome.seen.replace('|', "/");
    if !r.control_failures.none() {
        let f = &r.control_failures;
        let _ = write!(
            seen,
            "; control: {} refused, {} wrong echoes, {} closed, {} lost",
            f.refused, f.wrong_echo, f.closed, f.lost
        );
    }
    if let Some(exit) = &r.server_exit {
        let _ = write!(seen, "; server exited: {exit}");
    }
    let backend = match r.elsewhere {
        true => format!("{}, attack on another server", r.backend.name()),
        false => r.backend.name().to_owned(),
    };
    format!(
        "| {} | {} | {:.1} MB | {:+.1} MB | {:+.1} MB | {} ({}; {}) | {:.2} s | {} |",
        r.case.title(),
        backend,
        kib_to_mb(r.rss_baseline_kib as i64),
        kib_to_mb(r.peak_growth_kib()),
        kib_to_mb(r.after_growth_kib()),
        ms(r.control.p99_us),
        ms(r.control.max_us),
        r.control.count,
        r.server_cpu_seconds,
        seen
    )
}

/// Microseconds as milliseconds ("0.25 ms").
fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// One case as one JSON line.
pub fn json_line(r: &CaseResult) -> String {
    let o = &r.outcome;
    let f = &r.control_failures;
    let mut fields: Vec<(&str, String)> = vec![
        ("case", json_string(r.case.name())),
        ("backend", json_string(r.backend.name())),
        ("attack_elsewhere", r.elsewhere.to_string()),
        ("rss_baseline_kib", r.rss_baseline_kib.to_string()),
        ("rss_peak_kib", r.rss_peak_kib.to_string()),
        ("rss_after_kib", r.rss_after_kib.to_string()),
        ("peak_growth_mb", num(kib_to_mb(r.peak_growth_kib()))),
        ("after_growth_mb", num(kib_to_mb(r.after_growth_kib()))),
        ("server_cpu_s", num(r.server_cpu_seconds)),
        ("attack_s", num(r.attack_seconds)),
        ("control_count", r.control.count.to_string()),
        ("control_p50_us", r.control.p50_us.to_string()),
        ("control_p99_us", r.control.p99_us.to_string()),
        ("control_max_us", r.control.max_us.to_string()),
        ("control_refused", f.refused.to_string()),
        ("control_wrong_echo", f.wrong_echo.to_string()),
        ("control_closed", f.closed.to_string()),
        ("control_lost", f.lost.to_string()),
        (
            "control_notes",
            format!(
                "[{}]",
                f.notes
                    .iter()
                    .map(|n| json_string(n))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        ("units", o.units.to_string()),
        ("bytes", o.bytes.to_string()),
        ("stalled", o.stalled.to_string()),
        ("close_code", opt(o.close_code)),
        ("replies", opt(o.replies)),
        ("open_failures", o.open_failures.to_string()),
        ("idle_cpu_s", o.idle_cpu_seconds.map_or("null".into(), num)),
    ];
    if let Some(w) = &o.waiting {
        fields.push(("waiting_answered", w.answered.to_string()));
        fields.push(("waiting_refused", w.refused.to_string()));
        fields.push(("waiting_hanging", w.hanging.to_string()));
    }
    if let Some(rec) = &o.recovery {
        fields.push((
            "recovery_s",
            rec.as_ref().map_or("null".into(), |d| num(d.as_secs_f64())),
        ));
    }
    if let Some(c) = &o.closed_by_server {
        fields.push(("slow_opened", c.opened.to_string()));
        fields.push(("slow_closed", c.closed.to_string()));
        fields.push(("slow_last_s", num(c.last_s)));
    }
    fields.push(("seen", json_string(&o.seen)));
    fields.push((
        "server_exit",
        r.server_exit.as_deref().map_or("null".into(), json_string),
    ));
    let body: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

/// A number for JSON: three decimals, `null` for what JSON cannot hold.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_json() {
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(1.23456), "1.235");
    }
}
