//! Parsing `wrk --latency` output into the figures the report needs.

use anyhow::{Context, Result, bail};

/// One wrk run, as reported by wrk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Total requests completed.
    pub requests: u64,
    /// Responses whose status was not 2xx/3xx.
    pub non_2xx: u64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
}

impl WrkResult {
    /// Any failed request or socket error makes the run's throughput meaningless.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// Parses wrk's text report (`--latency` is required for the p99 line).
pub fn parse(output: &str) -> Result<WrkResult> {
    let mut rps = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in output.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(
                v.trim()
                    .parse::<f64>()
                    .with_context(|| format!("bad Requests/sec line: {line}"))?,
            );
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 =
                Some(parse_duration_us(v.trim()).with_context(|| format!("bad 99% line: {line}"))?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v
                .trim()
                .parse()
                .with_context(|| format!("bad Non-2xx line: {line}"))?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            socket_errors = parse_socket_errors(v)
                .with_context(|| format!("bad Socket errors line: {line}"))?;
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests = Some(
                n.trim()
                    .parse()
                    .with_context(|| format!("bad requests line: {line}"))?,
            );
        }
    }
    match (rps, p99, requests) {
        (Some(requests_per_sec), Some(p99_us), Some(requests)) => Ok(WrkResult {
            requests_per_sec,
            p99_us,
            requests,
            non_2xx,
            socket_errors,
        }),
        _ => bail!(
            "wrk output lacks Requests/sec, the 99% latency line or the request count:\n{output}"
        ),
    }
}

/// `connect 0, read 1, write 0, timeout 2` → 3.
fn parse_socket_errors(text: &str) -> Result<u64> {
    text.split(',')
        .map(|part| {
            let n = part.split_whitespace().nth(1).context("missing count")?;
            Ok(n.parse::<u64>()?)
        })
        .sum()
}

/// wrk prints latencies as `812.00us`, `2.31ms`, `1.02s`, `1.50m`, `2.00h`.
fn parse_duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("no unit")?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown unit {unit:?}"),
    };
    Ok(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 5s test @ http://127.0.0.1:40001/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.11ms  300.00us   8.00ms   90.00%
    Req/Sec    30.12k     1.00k   32.00k    80.00%
  Latency Distribution
     50%    2.05ms
     75%    2.20ms
     90%    2.40ms
     99%  812.50us
  150617 requests in 5.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  30120.45
Transfer/sec:      4.00MB
";

    #[test]
    fn parses_a_full_report() {
        let r = parse(SAMPLE).expect("parses");
        assert_eq!(
            r,
            WrkResult {
                requests_per_sec: 30120.45,
                p99_us: 812.5,
                requests: 150617,
                non_2xx: 12,
                socket_errors: 3
            }
        );
        assert_eq!(r.errors(), 15);
    }

    #[test]
    fn clean_report_has_no_errors_and_units_scale() {
        let clean = SAMPLE
            .replace("     99%  812.50us", "     99%    1.50s")
            .replace(
                "  Socket errors: connect 0, read 2, write 0, timeout 1\n",
                "",
            )
            .replace("  Non-2xx or 3xx responses: 12\n", "");
        let r = parse(&clean).expect("parses");
        assert_eq!(r.errors(), 0);
        assert_eq!(r.p99_us, 1.5e6);
    }

    #[test]
    fn missing_latency_is_an_error() {
        assert!(parse(&SAMPLE.replace("99%", "98%")).is_err());
    }
}
