//! The AI Stack vs nginx load benchmark: start everything, warm up, run interleaved
//! wrk rounds, report medians and ratios (to nginx, and to AI Stack without filters for
//! the contenders with a Proxy-Wasm filter on the route). See benches/README.md for the
//! method.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum as _};
use tokio::process::Command;

use crate::children::Children;
use crate::contenders::{self, Contender, Tools, loopback};
use crate::cpu;
use crate::lineup::{ContenderId, Kind};
use crate::report::{self, Sample};
use crate::wrk::{self, WrkResult};

/// Command-line options of `loadbench`.
#[derive(Debug, Parser)]
#[command(
    name = "loadbench",
    about = "AI Stack vs nginx as reverse proxies in front of one fast upstream"
)]
pub struct Args {
    /// Interleaved rounds; each round runs every contender once.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// wrk connections (keep-alive), one wrk thread.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Access logging on for every proxy (a file each); off by default.
    #[arg(long)]
    pub access_log: bool,
    /// Seconds of warm-up per contender before the first round (not reported).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Core for the proxies.
    #[arg(long, default_value_t = 0)]
    pub proxy_cpu: usize,
    /// Core for wrk and the upstream.
    #[arg(long, default_value_t = 1)]
    pub client_cpu: usize,
    /// Niceness for every benchmark process (proxies, upstream, wrk) and for this
    /// session's scheduler autogroup (restored at exit). On a machine shared with other
    /// work, `--nice -20` (needs root) keeps that work off the benchmark's cores as far
    /// as the scheduler allows.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub nice: i32,
    /// The aistack binary. Default: `aistack` next to this executable.
    #[arg(long)]
    pub aistack_bin: Option<PathBuf>,
    /// Keep the temporary directory (configs, logs) and print its path.
    #[arg(long)]
    pub keep_tmp: bool,
    /// Contenders to run, comma-separated. Rounds run them in the order below, whatever
    /// the order given. Default: all.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ContenderId::ALL)]
    pub contenders: Vec<ContenderId>,
}

impl Args {
    /// The contenders asked for, in round order, each once.
    pub fn selected(&self) -> Vec<ContenderId> {
        let mut selected = self.contenders.clone();
        selected.sort_unstable();
        selected.dedup();
        selected
    }

    fn validate(&self) -> Result<()> {
        ensure!(!self.contenders.is_empty(), "--contenders names none");
        ensure!((1..=50).contains(&self.rounds), "--rounds must be 1–50");
        ensure!(
            (1..=300).contains(&self.duration),
            "--duration must be 1–300 seconds"
        );
        ensure!(self.warmup <= 60, "--warmup must be at most 60 seconds");
        // nginx: worker_connections 1024, and each client connection needs an upstream one.
        ensure!(
            (1..=400).contains(&self.connections),
            "--connections must be 1–400"
        );
        ensure!((-20..=19).contains(&self.nice), "--nice must be -20–19");
        ensure!(
            self.proxy_cpu != self.client_cpu,
            "--proxy-cpu and --client-cpu must differ"
        );
        cpu::core_times(self.proxy_cpu).context("--proxy-cpu")?;
        cpu::core_times(self.client_cpu).context("--client-cpu")?;
        Ok(())
    }
}

/// What every step of a run needs.
struct Ctx<'a> {
    args: &'a Args,
    tools: &'a Tools,
    tmp: &'a Path,
    children: &'a mut Children,
    wrk_runs: usize,
    /// Process group of the upstream, for client-side CPU accounting.
    upstream_pgid: u32,
    /// The API key a contender's route needs: every wrk run sends it (`X-API-Key`), to
    /// every contender alike, so all requests are the same.
    api_key: Option<String>,
}

/// Runs the whole benchmark. Every child is stopped when this future ends or is dropped.
pub async fn run(args: Args) -> Result<()> {
    args.validate()?;
    let tools = Tools::find(args.aistack_bin.clone(), args.nice)?;
    print_setup(&args, &tools).await;
    let _priority = match args.nice {
        0 => None,
        n => crate::priority::AutogroupNice::set(n)?,
    };
    check_quiet(&args).await?;
    let tmp = tempfile::Builder::new()
        .prefix("aistack-loadbench-")
        .tempdir()?;
    // Declared after `tmp`, so dropped (children stopped) before the directory goes.
    let mut children = Children::default();
    let mut ctx = Ctx {
        args: &args,
        tools: &tools,
        tmp: tmp.path(),
        children: &mut children,
        wrk_runs: 0,
        upstream_pgid: 0,
        api_key: None,
    };
    let result = bench(&mut ctx).await;
    drop(children);
    if args.keep_tmp {
        println!("kept {}", tmp.keep().display());
    }
    result
}

async fn bench(ctx: &mut Ctx<'_>) -> Result<()> {
    let (args, tools, tmp) = (ctx.args, ctx.tools, ctx.tmp);
    let selected = args.selected();
    // Two each (proxy, admin), all bound at once so none repeats; nginx and
    // pingora-bare leave their second unused.
    let ports = contenders::free_ports(1 + 2 * selected.len())?;
    let upstream = loopback(ports[0]);
    let up =
        contenders::start_upstream(tools, ctx.children, tmp, args.client_cpu, upstream).await?;
    ctx.upstream_pgid = ctx.children.pgid(up);
    let mut all = Vec::with_capacity(selected.len());
    for (i, &id) in selected.iter().enumerate() {
        let (p, a) = (loopback(ports[1 + 2 * i]), loopback(ports[2 + 2 * i]));
        all.push(start(ctx, id, p, a, upstream).await?);
    }
    let names: Vec<&str> = all.iter().map(|c| c.name).collect();
    let addrs: Vec<String> = all
        .iter()
        .map(|c| format!("{} {}", c.name, c.addr))
        .collect();
    println!("all up: upstream {upstream}, {}", addrs.join(", "));
    ctx.api_key = all.iter().find_map(|c| c.api_key.clone());

    for c in &all {
        let w = run_wrk(ctx, c.addr, args.warmup).await?;
        ensure!(
            w.errors() == 0,
            "{}: {} failed requests during warm-up",
            c.name,
            w.errors()
        );
    }
    let direct = run_wrk(ctx, upstream, args.duration).await?;
    println!(
        "client-core ceiling (wrk → upstream, no proxy, both on cpu {}): {:.0} req/s, p99 {:.2} ms\n",
        args.client_cpu,
        direct.requests_per_sec,
        direct.p99_us / 1000.0
    );

    let samples = run_rounds(ctx, &all).await?;
    println!();
    print_summary(&selected, &names, &samples);
    warn_about(args, &names, &samples, direct.requests_per_sec);
    if args.access_log {
        for c in &all {
            match &c.access_log {
                Some(log) => println!(
                    "access log {}: {} lines in {}",
                    c.name,
                    count_lines(log),
                    log.display()
                ),
                None => println!("access log {}: none (it has no access log)", c.name),
            }
        }
    }
    Ok(())
}

/// Starts one contender on the proxy core, serving on `addr` (AI Stack's admin API on
/// `admin`).
async fn start(
    ctx: &mut Ctx<'_>,
    id: ContenderId,
    addr: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
) -> Result<Contender> {
    let (tools, tmp) = (ctx.tools, ctx.tmp);
    let (cpu, log) = (ctx.args.proxy_cpu, ctx.args.access_log);
    match id.kind() {
        Kind::Nginx => {
            contenders::start_nginx(tools, ctx.children, tmp, cpu, addr, upstream, log).await
        }
        Kind::PingoraBare => {
            contenders::start_pingora_bare(tools, ctx.children, tmp, cpu, addr, upstream).await
        }
        Kind::Aistack(spec) => {
            let children = &mut *ctx.children;
            contenders::start_aistack(tools, children, tmp, cpu, spec, addr, admin, upstream, log)
                .await
        }
    }
}

async fn run_rounds(ctx: &mut Ctx<'_>, all: &[Contender]) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    println!("{}", report::rounds_header());
    for round in 1..=ctx.args.rounds {
        for (i, c) in all.iter().enumerate() {
            ctx.children.ensure_running(c.child)?;
            let sample = measure(ctx, ctx.children.pgid(c.child), c.addr, round, i).await?;
            println!("{}", report::row(c.name, &sample));
            samples.push(sample);
        }
    }
    Ok(samples)
}

/// The medians table (ratios to nginx, else to aistack), and with aistack in the run,
/// what the others cost against it, with the end-to-end target for bench-empty.
fn print_summary(selected: &[ContenderId], names: &[&str], samples: &[Sample]) {
    let at = |id| selected.iter().position(|&s| s == id);
    let (nginx, aistack) = (at(ContenderId::Nginx), at(ContenderId::Aistack));
    println!(
        "{}",
        report::summary_table(names, nginx.or(aistack).unwrap_or(0), samples)
    );
    let Some(aistack) = aistack.filter(|_| selected.len() > 1) else {
        return;
    };
    println!("{}", report::versus_table(names, aistack, samples));
    if let Some(empty) = at(ContenderId::BenchEmpty) {
        let ratio = report::median_ratio(samples, empty, aistack, |s| s.wrk.requests_per_sec);
        let verdict = if ratio >= 0.9 { "met" } else { "NOT met" };
        println!(
            "target: an empty filter costs < 10% of throughput end to end: req/s ratio {ratio:.3}, {verdict}"
        );
    }
    if let Some(policies) = at(ContenderId::Policies) {
        let ratio = report::median_ratio(samples, policies, aistack, |s| s.wrk.requests_per_sec);
        let verdict = if ratio >= 0.8 { "met" } else { "NOT met" };
        println!(
            "target: key-auth + rate-limit + tracing keep >= 80% of the no-filter throughput: req/s ratio {ratio:.3}, {verdict}"
        );
    }
}

/// One wrk run with CPU accounting around it.
async fn measure(
    ctx: &mut Ctx<'_>,
    pgid: u32,
    addr: SocketAddr,
    round: usize,
    contender: usize,
) -> Result<Sample> {
    let proxy = ctx.args.proxy_cpu;
    let client_cpu = |up| cpu::group_cpu_secs(up) + cpu::reaped_children_cpu_secs();
    let (pc0, g0, c0) = (
        cpu::core_times(proxy)?,
        cpu::group_cpu_secs(pgid),
        client_cpu(ctx.upstream_pgid),
    );
    let started = Instant::now();
    let wrk = run_wrk(ctx, addr, ctx.args.duration).await?;
    let wall = started.elapsed().as_secs_f64();
    let (pc1, g1, c1) = (
        cpu::core_times(proxy)?,
        cpu::group_cpu_secs(pgid),
        client_cpu(ctx.upstream_pgid),
    );
    Ok(Sample {
        round,
        contender,
        wrk,
        wall_secs: wall,
        proxy_cpu_secs: g1 - g0,
        proxy_core_percent: cpu::busy_percent(pc0, pc1),
        client_cpu_secs: c1 - c0,
    })
}

/// `taskset -c CLIENT wrk -t1 -cN -dSs --latency http://ADDR/`, killed if it overruns.
/// Its report stays in the temporary directory (see `--keep-tmp`).
async fn run_wrk(ctx: &mut Ctx<'_>, addr: SocketAddr, secs: u64) -> Result<WrkResult> {
    let args = ctx.args;
    let mut cmd: Command = ctx.tools.pinned(args.client_cpu, &ctx.tools.wrk);
    cmd.args([
        "-t1",
        &format!("-c{}", args.connections),
        &format!("-d{secs}s"),
        "--latency",
        "--timeout",
        "2s",
    ]);
    if let Some(key) = &ctx.api_key {
        cmd.arg("-H").arg(format!("X-API-Key: {key}"));
    }
    cmd.arg(format!("http://{addr}/"));
    ctx.wrk_runs += 1;
    let out = ctx.tmp.join(format!("wrk-{:02}.txt", ctx.wrk_runs));
    let status = ctx
        .children
        .run("wrk", cmd, &out, Duration::from_secs(secs + 30))
        .await?;
    let report =
        std::fs::read_to_string(&out).with_context(|| format!("cannot read {}", out.display()))?;
    if !status.success() {
        bail!("wrk failed ({status}): {report}");
    }
    wrk::parse(&report)
}

/// Says which figures not to trust: failed requests, a proxy core shared with other
/// work, a proxy that never saturated its core, a client core that was the limit.
fn warn_about(args: &Args, names: &[&str], samples: &[Sample], ceiling: f64) {
    let failed: u64 = samples.iter().map(|s| s.wrk.errors()).sum();
    if failed > 0 {
        println!(
            "WARNING: {failed} requests failed (non-2xx or socket errors): those runs are not comparable"
        );
    }
    for (c, name) in names.iter().enumerate() {
        let med = |f: fn(&Sample) -> f64| {
            report::median(
                &samples
                    .iter()
                    .filter(|s| s.contender == c)
                    .map(f)
                    .collect::<Vec<_>>(),
            )
        };
        let (proxy_cpu, other) = (
            med(Sample::proxy_cpu_percent),
            med(Sample::other_on_proxy_core),
        );
        let (client, rps) = (
            med(Sample::client_cpu_percent),
            med(|s| s.wrk.requests_per_sec),
        );
        if other > 20.0 {
            println!(
                "note: {name}: {other:.0}% of cpu {} went to other work (median): req/s and p99 are disturbed; CPU µs/req less so",
                args.proxy_cpu
            );
        } else if proxy_cpu < 90.0 {
            println!(
                "note: {name} used {proxy_cpu:.0}% of cpu {} (median): not CPU-bound",
                args.proxy_cpu
            );
        }
        if client > 97.0 || rps > 0.9 * ceiling {
            println!(
                "note: {name}: client core {client:.0}% busy, {rps:.0} of the {ceiling:.0} req/s ceiling: wrk/upstream may be the limit"
            );
        }
    }
}

/// Other work on the benchmark's cores (a build, say) distorts every figure: measure
/// how busy they are for a second before starting, and say so.
async fn check_quiet(args: &Args) -> Result<()> {
    let (p0, c0) = (
        cpu::core_times(args.proxy_cpu)?,
        cpu::core_times(args.client_cpu)?,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (p1, c1) = (
        cpu::core_times(args.proxy_cpu)?,
        cpu::core_times(args.client_cpu)?,
    );
    let (proxy, client) = (cpu::busy_percent(p0, p1), cpu::busy_percent(c0, c1));
    println!(
        "before start: cpu {} {proxy:.0}% busy, cpu {} {client:.0}% busy",
        args.proxy_cpu, args.client_cpu
    );
    if proxy > 15.0 || client > 15.0 {
        println!("WARNING: the machine is not idle; other work will distort the figures");
    }
    Ok(())
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Prints what a reader needs to reproduce the figures.
async fn print_setup(args: &Args, tools: &Tools) {
    let version = |program: &Path, arg: &'static str| {
        let program = program.to_path_buf();
        async move {
            let out = Command::new(&program).arg(arg).output().await.ok();
            out.map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| "?".to_owned())
        }
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    println!(
        "aistack: {} ({})",
        version(&tools.aistack, "--version").await,
        tools.aistack.display()
    );
    println!("nginx:   {}", version(&tools.nginx, "-v").await);
    println!(
        "cpu:     {cpu_model}; {} cores online",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let names: Vec<String> = args
        .selected()
        .iter()
        .filter_map(|id| id.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect();
    println!("contenders: {}", names.join(", "));
    println!(
        "layout:  proxies on cpu {}, wrk (-t1 -c{}) and upstream on cpu {}; {} rounds × {} s, warm-up {} s; access log {}; nice {}",
        args.proxy_cpu,
        args.connections,
        args.client_cpu,
        args.rounds,
        args.duration,
        args.warmup,
        if args.access_log { "on" } else { "off" },
        args.nice
    );
    if tools.aistack.components().any(|c| c.as_os_str() == "debug") {
        println!(
            "WARNING: {} looks like a debug build; figures will be meaningless",
            tools.aistack.display()
        );
    }
    let n = args.selected().len() as u64;
    let total = n * args.warmup + args.duration * (1 + n * args.rounds as u64);
    println!("expected duration: ~{total} s plus start-up\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contenders_default_to_all_and_run_in_one_order() {
        let all = Args::try_parse_from(["loadbench"]).expect("parses");
        assert_eq!(all.selected(), ContenderId::ALL);
        let some =
            Args::try_parse_from(["loadbench", "--contenders", "bench-body,aistack,bench-body"])
                .expect("parses");
        assert_eq!(
            some.selected(),
            [ContenderId::Aistack, ContenderId::BenchBody]
        );
        assert!(Args::try_parse_from(["loadbench", "--contenders", "apache"]).is_err());
    }
}
