//! `wasm-cost`: what a Proxy-Wasm filter adds to a request, in process. It loads the
//! benchmark filters (`benches/filters/`) and the built-in `request-id` into a
//! [`WasmRuntime`], drives simulated requests through each route chain exactly as the
//! proxy's phases do ([`exchange`]), and compares them with the same requests through an
//! empty chain. No sockets, no Pingora: this is the WASM boundary alone, and the figure
//! the target is about (an empty filter adds under 5 µs per request at the
//! median). `loadbench` gives the end-to-end figures.
//!
//! Method: each case first serves one request whose result is checked (the filter did
//! its work), then a warm-up; then rounds, each timing one batch of every case in turn,
//! so drift on a shared machine hits every case alike. Reported: median and p99 of the
//! batch means, and the median of the per-round differences to "no filter".

pub mod exchange;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aistack_gateway::wasm::{FilterInstance, RuntimeOptions, WasmRuntime, builtin_module_bytes};
use anyhow::{Context, Result, ensure};
use clap::Parser;

use crate::filters;
use crate::report::median;
use exchange::{Exchange, Fixture, PATH, REQUEST_ID, header};

/// Command-line options of `wasm-cost`.
#[derive(Debug, Parser)]
#[command(
    name = "wasm-cost",
    about = "Per-request cost of Proxy-Wasm filters, in process, against an empty chain"
)]
pub struct Args {
    /// Timed requests per case, after the warm-up.
    #[arg(long, default_value_t = 200_000)]
    pub iterations: usize,
    /// Requests per timed batch; the figures are over batch means.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Untimed requests per case before the first round.
    #[arg(long, default_value_t = 20_000)]
    pub warmup: usize,
    /// Size of the upstream's response body, bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Chunks the response body arrives in.
    #[arg(long, default_value_t = 2)]
    pub body_chunks: usize,
}

impl Args {
    fn validate(&self) -> Result<()> {
        ensure!(self.batch >= 1, "--batch must be at least 1");
        ensure!(
            self.iterations >= self.batch,
            "--iterations must be at least --batch ({})",
            self.batch
        );
        ensure!(
            self.body_bytes <= 1 << 20,
            "--body-bytes must be at most 1 MiB"
        );
        Ok(())
    }
}

/// One row of the table: a route's filter chain, and what a request through it must show.
pub struct Case {
    pub name: &'static str,
    pub chain: Vec<Arc<FilterInstance>>,
    pub check: fn(&Exchange, &Fixture) -> Result<()>,
}

/// The cases, "no filter" first (the baseline of every difference).
///
/// # Errors
/// When a module is missing, does not load or refuses its (empty) configuration.
pub fn cases(runtime: &WasmRuntime) -> Result<Vec<Case>> {
    let request_id =
        builtin_module_bytes("request-id").context("the gateway has no built-in request-id")?;
    let one = |name: &str, wasm: &[u8]| -> Result<Vec<Arc<FilterInstance>>> {
        let module = runtime.load_module(name, wasm)?;
        Ok(vec![runtime.filter(&module, Vec::new(), "")?])
    };
    let file = |name: &str, path: &str| one(name, &filters::read(path)?);
    Ok(vec![
        Case {
            name: "no filter",
            chain: Vec::new(),
            check: unchanged,
        },
        Case {
            name: "bench-empty",
            chain: file("bench-empty", filters::BENCH_EMPTY)?,
            check: unchanged,
        },
        Case {
            name: "bench-headers",
            chain: file("bench-headers", filters::BENCH_HEADERS)?,
            check: headers_set,
        },
        Case {
            name: "bench-body",
            chain: file("bench-body", filters::BENCH_BODY)?,
            check: body_upper_cased,
        },
        Case {
            name: "request-id (built-in)",
            chain: one("request-id", request_id)?,
            check: request_id_on_both_legs,
        },
    ])
}

fn unchanged(x: &Exchange, fixture: &Fixture) -> Result<()> {
    ensure!(x.body == fixture.body, "the body changed");
    ensure!(
        header(&x.request.headers, "x-bench-path").is_none(),
        "request headers changed"
    );
    Ok(())
}

fn headers_set(x: &Exchange, _: &Fixture) -> Result<()> {
    let req = |name| header(&x.request.headers, name);
    ensure!(
        req("x-bench-method") == Some("GET"),
        "no x-bench-method: GET"
    );
    ensure!(req("x-bench-path") == Some(PATH), "no x-bench-path: {PATH}");
    for name in ["x-bench-authority", "x-bench-user-agent", "x-bench-accept"] {
        ensure!(req(name).is_some(), "no {name}");
    }
    ensure!(
        header(&x.response.headers, "x-bench-headers") == Some("200"),
        "no x-bench-headers: 200 on the response"
    );
    Ok(())
}

fn body_upper_cased(x: &Exchange, fixture: &Fixture) -> Result<()> {
    ensure!(
        x.body == fixture.body.to_ascii_uppercase(),
        "the body is not the upper-cased original"
    );
    Ok(())
}

fn request_id_on_both_legs(x: &Exchange, _: &Fixture) -> Result<()> {
    ensure!(
        header(&x.response.headers, "x-request-id") == Some(REQUEST_ID),
        "no x-request-id on the response"
    );
    Ok(())
}

/// Runs the benchmark and prints the table.
///
/// # Errors
/// Bad options, a filter that does not load or does not do its work, a fault.
pub fn run(args: &Args) -> Result<()> {
    args.validate()?;
    let fixture = Fixture::new(args.body_bytes, args.body_chunks)?;
    let runtime = WasmRuntime::new(RuntimeOptions {
        worker_threads: 1,
        max_plugins: 8,
        ..RuntimeOptions::default()
    })?;
    let cases = cases(&runtime)?;
    let rounds = args.iterations / args.batch;
    println!(
        "wasm-cost: {} cases × {rounds} rounds × {} requests (interleaved), warm-up {}; \
         response body {} B in {} chunks; one thread",
        cases.len(),
        args.batch,
        args.warmup,
        fixture.body.len(),
        fixture.chunk_count()
    );
    if cfg!(debug_assertions) {
        println!("WARNING: a debug build; run with --release for figures that mean anything");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let means = rt.block_on(measure(args, rounds, &cases, &fixture))?;
    for case in &cases {
        for filter in &case.chain {
            ensure!(
                filter.faults() == 0,
                "{}: {} faults",
                case.name,
                filter.faults()
            );
        }
    }
    println!("\n{}", table(&cases, &means));
    if let Some(empty) = cases.iter().position(|c| c.name == "bench-empty") {
        let added = median(&differences(&means, empty)) / 1000.0;
        let verdict = if added < 5.0 { "met" } else { "NOT met" };
        println!(
            "target: an empty filter adds < 5 µs per request at the median: {added:.2} µs, {verdict}"
        );
    }
    Ok(())
}

/// Checks and warms up every case, then times `rounds` rounds; returns each case's batch
/// means, ns per request, in round order.
async fn measure(
    args: &Args,
    rounds: usize,
    cases: &[Case],
    fixture: &Fixture,
) -> Result<Vec<Vec<f64>>> {
    for case in cases {
        let x = exchange::exchange(&case.chain, fixture).await?;
        (case.check)(&x, fixture).with_context(|| format!("{}: wrong result", case.name))?;
        for _ in 0..args.warmup {
            black_box(exchange::exchange(&case.chain, fixture).await?);
        }
    }
    let mut means = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (c, case) in cases.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..args.batch {
                black_box(exchange::exchange(&case.chain, fixture).await?);
            }
            means[c].push(started.elapsed().as_nanos() as f64 / args.batch as f64);
        }
    }
    Ok(means)
}

/// Case `c`'s batch means minus the baseline's (case 0) of the same round.
fn differences(means: &[Vec<f64>], c: usize) -> Vec<f64> {
    means[c].iter().zip(&means[0]).map(|(m, b)| m - b).collect()
}

/// The `p`th percentile (nearest rank) of `values`; NaN when empty.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
    v.get(rank.saturating_sub(1)).copied().unwrap_or(f64::NAN)
}

fn table(cases: &[Case], means: &[Vec<f64>]) -> String {
    let mut out = format!(
        "{:<24} {:>14} {:>12} {:>22}\n",
        "case", "median ns/req", "p99 ns/req", "added ns/req (median)"
    );
    for (c, case) in cases.iter().enumerate() {
        let added = match c {
            0 => "—".to_owned(),
            _ => format!("{:.0}", median(&differences(means, c))),
        };
        out += &format!(
            "{:<24} {:>14.0} {:>12.0} {:>22}\n",
            case.name,
            median(&means[c]),
            percentile(&means[c], 99.0),
            added
        );
    }
    out + "(over batch means; added: median of per-round differences to \"no filter\")"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 99.0).is_nan());
    }

    #[test]
    fn differences_pair_rounds() {
        let means = vec![vec![10.0, 20.0], vec![15.0, 21.0]];
        assert_eq!(differences(&means, 1), vec![5.0, 1.0]);
    }

    /// Every filter loads and does its work, through the same path the timing takes.
    #[tokio::test(flavor = "current_thread")]
    async fn every_case_passes_its_check() {
        let runtime = WasmRuntime::new(RuntimeOptions {
            worker_threads: 1,
            ..RuntimeOptions::default()
        })
        .expect("runtime");
        for fixture in [
            Fixture::new(1024, 2),
            Fixture::new(2, 1),
            Fixture::new(0, 1),
        ] {
            let fixture = fixture.expect("fixture");
            for case in cases(&runtime).expect("cases") {
                let x = exchange::exchange(&case.chain, &fixture)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
                (case.check)(&x, &fixture).unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
            }
        }
    }
}
