//! Per-round samples, medians and ratios, rendered as plain-text tables.

use std::fmt::Write as _;

use crate::wrk::WrkResult;

/// One wrk run of one contender in one round.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub round: usize,
    pub contender: usize,
    pub wrk: WrkResult,
    /// Wall time of the run, seconds.
    pub wall_secs: f64,
    /// User + system CPU seconds the proxy's process group used during the run.
    pub proxy_cpu_secs: f64,
    /// Busy share of the proxy core (any process), percent.
    pub proxy_core_percent: f64,
    /// CPU seconds wrk and the upstream used during the run.
    pub client_cpu_secs: f64,
}

impl Sample {
    /// The proxy's CPU as a share of one core over the run, percent.
    pub fn proxy_cpu_percent(&self) -> f64 {
        100.0 * self.proxy_cpu_secs / self.wall_secs
    }

    /// Proxy CPU per completed request, microseconds: the figure least moved by other
    /// work on the machine (it does not depend on getting the core to oneself).
    pub fn cpu_us_per_request(&self) -> f64 {
        1e6 * self.proxy_cpu_secs / self.wrk.requests.max(1) as f64
    }

    /// wrk + upstream CPU as a share of one core, percent: near 100 → the client side,
    /// not the proxy, set the pace.
    pub fn client_cpu_percent(&self) -> f64 {
        100.0 * self.client_cpu_secs / self.wall_secs
    }

    /// Busy time on the proxy core not charged to the proxy: other processes, and
    /// interrupt work the kernel charges to no one. High → the run was disturbed.
    pub fn other_on_proxy_core(&self) -> f64 {
        (self.proxy_core_percent - self.proxy_cpu_percent()).max(0.0)
    }
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

/// Header of the raw table (one line per run, see [`row`]).
pub fn rounds_header() -> String {
    format!(
        "{:>5}  {:<26} {:>9} {:>8} {:>6} {:>11} {:>9} {:>11} {:>11}",
        "round",
        "contender",
        "req/s",
        "p99 ms",
        "errors",
        "CPU µs/req",
        "proxy CPU",
        "other load",
        "client CPU"
    )
}

/// One line of the raw table, printed live as each run finishes.
pub fn row(name: &str, s: &Sample) -> String {
    format!(
        "{:>5}  {:<26} {:>9.0} {:>8.2} {:>6} {:>11.1} {:>8.0}% {:>10.0}% {:>10.0}%",
        s.round,
        name,
        s.wrk.requests_per_sec,
        s.wrk.p99_us / 1000.0,
        s.wrk.errors(),
        s.cpu_us_per_request(),
        s.proxy_cpu_percent(),
        s.other_on_proxy_core(),
        s.client_cpu_percent()
    )
}

/// Medians per contender and ratios to `baseline`, each ratio the median of the
/// per-round ratios (runs of one round are neighbours in time, so drift cancels).
pub fn summary_table(names: &[&str], baseline: usize, samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:>9} {:>13} {:>8} {:>11} {:>13} {:>11} {:>14}",
        "contender",
        "req/s",
        "req/s min–max",
        "p99 ms",
        "CPU µs/req",
        "req/s ratio",
        "p99 ratio",
        "CPU/req ratio"
    );
    for (c, name) in names.iter().enumerate() {
        let of = |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> {
            samples.iter().filter(|s| s.contender == c).map(f).collect()
        };
        let rps = of(&|s| s.wrk.requests_per_sec);
        let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ratio = |f: &dyn Fn(&Sample) -> f64| median(&per_round_ratio(samples, c, baseline, f));
        let _ = writeln!(
            out,
            "{:<26} {:>9.0} {:>13} {:>8.2} {:>11.1} {:>13.2} {:>11.2} {:>14.2}",
            name,
            median(&rps),
            format!("{lo:.0}–{hi:.0}"),
            median(&of(&|s| s.wrk.p99_us / 1000.0)),
            median(&of(&|s| s.cpu_us_per_request())),
            ratio(&|s| s.wrk.requests_per_sec),
            ratio(&|s| s.wrk.p99_us),
            ratio(&|s| s.cpu_us_per_request()),
        );
    }
    let _ = writeln!(
        out,
        "(medians of rounds; ratios are to {}, medians of per-round ratios)",
        names[baseline]
    );
    out
}

/// What AI Stack's filters cost: every other contender against `baseline` (AI Stack on
/// a route without filters), as ratios and as CPU time added per request, each the
/// median of per-round figures.
pub fn versus_table(names: &[&str], baseline: usize, samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:>13} {:>11} {:>14} {:>18}",
        format!("vs {}", names[baseline]),
        "req/s ratio",
        "p99 ratio",
        "CPU/req ratio",
        "CPU µs/req added"
    );
    for (c, name) in names.iter().enumerate().filter(|&(c, _)| c != baseline) {
        let added = per_round(samples, c, baseline, &|s, b| {
            s.cpu_us_per_request() - b.cpu_us_per_request()
        });
        let _ = writeln!(
            out,
            "{:<26} {:>13.3} {:>11.2} {:>14.2} {:>18.2}",
            name,
            median_ratio(samples, c, baseline, |s| s.wrk.requests_per_sec),
            median_ratio(samples, c, baseline, |s| s.wrk.p99_us),
            median_ratio(samples, c, baseline, Sample::cpu_us_per_request),
            median(&added),
        );
    }
    let _ = write!(out, "(medians of per-round figures)");
    out
}

/// The median over rounds of `f(c) / f(baseline)`.
pub fn median_ratio(samples: &[Sample], c: usize, baseline: usize, f: fn(&Sample) -> f64) -> f64 {
    median(&per_round_ratio(samples, c, baseline, &f))
}

fn per_round_ratio(
    samples: &[Sample],
    c: usize,
    baseline: usize,
    f: &dyn Fn(&Sample) -> f64,
) -> Vec<f64> {
    per_round(samples, c, baseline, &|s, b| f(s) / f(b))
}

/// `combine(sample of c, sample of baseline)` for each round both ran in.
fn per_round(
    samples: &[Sample],
    c: usize,
    baseline: usize,
    combine: &dyn Fn(&Sample, &Sample) -> f64,
) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.contender == c)
        .filter_map(|s| {
            let b = samples
                .iter()
                .find(|b| b.contender == baseline && b.round == s.round)?;
            Some(combine(s, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: usize, contender: usize, rps: f64, p99_us: f64) -> Sample {
        let requests = (rps * 10.0) as u64;
        let wrk = WrkResult {
            requests_per_sec: rps,
            p99_us,
            requests,
            non_2xx: 0,
            socket_errors: 0,
        };
        Sample {
            round,
            contender,
            wrk,
            wall_secs: 10.0,
            proxy_cpu_secs: 9.0,
            proxy_core_percent: 95.0,
            client_cpu_secs: 5.0,
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
        let rps = |s: &Sample| s.wrk.requests_per_sec;
        assert_eq!(median(&per_round_ratio(&s, 0, 1, &rps)), 0.75);
        // Same CPU for half the requests in round 1: twice the CPU per request.
        let cpu = |s: &Sample| s.cpu_us_per_request();
        assert_eq!(median(&per_round_ratio(&s, 0, 1, &cpu)), 1.5);
        let table = summary_table(&["a", "nginx"], 1, &s);
        assert!(table.contains("0.75") && table.contains("1.50"), "{table}");
        // Round 1: 9 CPU s over 100 requests vs 200: 45000 µs added; round 2: none.
        let versus = versus_table(&["a", "aistack"], 1, &s);
        assert!(
            versus.contains("vs aistack") && versus.contains("22500.00"),
            "{versus}"
        );
        assert_eq!(median_ratio(&s, 0, 1, |s| s.wrk.requests_per_sec), 0.75);
    }

    #[test]
    fn derived_figures() {
        let s = sample(1, 0, 1000.0, 1.0);
        assert_eq!(s.proxy_cpu_percent(), 90.0);
        assert_eq!(s.cpu_us_per_request(), 900.0);
        assert_eq!(s.other_on_proxy_core(), 5.0);
    }
}
