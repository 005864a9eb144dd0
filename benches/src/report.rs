//! Per-round samples, medians and ratios, rendered as plain-text tables.

use std::fmt::Write as _;

use crate::wrk::WrkResult;

/// One wrk run of one contender in one round.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub round: usize,
    pub contender: usize,
    pub wrk: WrkResult,
    /// CPU the proxy's process group used, as a share of one core over the run.
    pub proxy_cpu_percent: f64,
    /// Busy share of the proxy core and of the client (wrk + upstream) core.
    pub proxy_core_percent: f64,
    pub client_core_percent: f64,
}

/// Median of `values` (mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The raw table: one line per run.
pub fn rounds_table(names: &[&str], samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<26} {:>11} {:>10} {:>7} {:>9} {:>10} {:>11}",
        "round", "contender", "req/s", "p99 ms", "errors", "proxy CPU", "proxy core", "client core"
    );
    for s in samples {
        let _ = writeln!(out, "{}", row(names[s.contender], s));
    }
    out
}

/// One line of the raw table (also printed live as each run finishes).
pub fn row(name: &str, s: &Sample) -> String {
    format!(
        "{:>5}  {:<26} {:>11.0} {:>10.2} {:>7} {:>8.0}% {:>9.0}% {:>10.0}%",
        s.round,
        name,
        s.wrk.requests_per_sec,
        s.wrk.p99_us / 1000.0,
        s.wrk.errors(),
        s.proxy_cpu_percent,
        s.proxy_core_percent,
        s.client_core_percent
    )
}

/// Medians per contender and ratios to `baseline`, each ratio the median of the
/// per-round ratios (runs of one round are neighbours in time, so drift cancels).
pub fn summary_table(names: &[&str], baseline: usize, samples: &[Sample]) -> String {
    let mut out = String::new();
    let base = names[baseline];
    let _ = writeln!(
        out,
        "{:<26} {:>13} {:>22} {:>12} {:>15} {:>13}",
        "contender",
        "req/s median",
        "req/s min–max",
        "p99 median",
        format!("req/s ÷ {base}"),
        format!("p99 ÷ {base}")
    );
    for (c, name) in names.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.contender == c).collect();
        let rps: Vec<f64> = mine.iter().map(|s| s.wrk.requests_per_sec).collect();
        let p99: Vec<f64> = mine.iter().map(|s| s.wrk.p99_us / 1000.0).collect();
        let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let rps_ratio = median(&per_round_ratio(samples, c, baseline, |w| {
            w.requests_per_sec
        }));
        let p99_ratio = median(&per_round_ratio(samples, c, baseline, |w| w.p99_us));
        let _ = writeln!(
            out,
            "{:<26} {:>13.0} {:>22} {:>9.2} ms {:>15.2} {:>13.2}",
            name,
            median(&rps),
            format!("{lo:.0}–{hi:.0}"),
            median(&p99),
            rps_ratio,
            p99_ratio
        );
    }
    out
}

fn per_round_ratio(
    samples: &[Sample],
    c: usize,
    baseline: usize,
    f: impl Fn(&WrkResult) -> f64,
) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.contender == c)
        .filter_map(|s| {
            let b = samples
                .iter()
                .find(|b| b.contender == baseline && b.round == s.round)?;
            Some(f(&s.wrk) / f(&b.wrk))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: usize, contender: usize, rps: f64, p99_us: f64) -> Sample {
        let wrk = WrkResult {
            requests_per_sec: rps,
            p99_us,
            requests: 1,
            non_2xx: 0,
            socket_errors: 0,
        };
        Sample {
            round,
            contender,
            wrk,
            proxy_cpu_percent: 0.0,
            proxy_core_percent: 0.0,
            client_core_percent: 0.0,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_pair_runs_by_round() {
        let s = [
            sample(1, 0, 10.0, 1.0),
            sample(1, 1, 20.0, 2.0),
            sample(2, 0, 30.0, 1.0),
            sample(2, 1, 30.0, 4.0),
        ];
        assert_eq!(
            median(&per_round_ratio(&s, 0, 1, |w| w.requests_per_sec)),
            0.75
        );
        let table = summary_table(&["a", "nginx"], 1, &s);
        assert!(table.contains("0.75"), "{table}");
    }
}
