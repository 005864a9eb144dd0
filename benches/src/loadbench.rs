//! The AI Stack vs nginx load benchmark: start everything, warm up, run interleaved
//! wrk rounds, report medians and ratios. See benches/README.md for the method.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use tokio::process::Command;

use crate::children::Children;
use crate::contenders::{self, AistackSpec, Contender, Tools, loopback};
use crate::cpu;
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
    /// The aistack binary. Default: `aistack` next to this executable.
    #[arg(long)]
    pub aistack_bin: Option<PathBuf>,
    /// Keep the temporary directory (configs, logs) and print its path.
    #[arg(long)]
    pub keep_tmp: bool,
}

/// The AI Stack contenders, in round order around nginx.
const AISTACK: AistackSpec = AistackSpec {
    name: "aistack",
    config: "aistack-bench.yaml",
    expect_header: None,
};
const AISTACK_WASM: AistackSpec = AistackSpec {
    name: "aistack + request-id wasm",
    config: "aistack-bench-request-id.yaml",
    expect_header: Some("x-request-id"),
};

impl Args {
    fn validate(&self) -> Result<()> {
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
}

/// Runs the whole benchmark. Every child is stopped when this future ends or is dropped.
pub async fn run(args: Args) -> Result<()> {
    args.validate()?;
    let tools = Tools::find(args.aistack_bin.clone())?;
    print_setup(&args, &tools).await;
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
    let ports = contenders::free_ports(6)?;
    let upstream = loopback(ports[0]);
    contenders::start_upstream(tools, ctx.children, tmp, args.client_cpu, upstream).await?;
    let (cpu, log) = (args.proxy_cpu, args.access_log);
    let (p, a) = (loopback(ports[1]), loopback(ports[2]));
    let aistack =
        contenders::start_aistack(tools, ctx.children, tmp, cpu, AISTACK, p, a, upstream, log)
            .await?;
    let nginx = contenders::start_nginx(
        tools,
        ctx.children,
        tmp,
        cpu,
        loopback(ports[3]),
        upstream,
        log,
    )
    .await?;
    let (p, a) = (loopback(ports[4]), loopback(ports[5]));
    let wasm = contenders::start_aistack(
        tools,
        ctx.children,
        tmp,
        cpu,
        AISTACK_WASM,
        p,
        a,
        upstream,
        log,
    )
    .await?;
    let all = [aistack, nginx, wasm];
    let names: Vec<&str> = all.iter().map(|c| c.name).collect();
    let addrs: Vec<String> = all
        .iter()
        .map(|c| format!("{} {}", c.name, c.addr))
        .collect();
    println!("all up: upstream {upstream}, {}", addrs.join(", "));

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
    println!(
        "\nmedians over {} rounds; ratios are medians of per-round ratios:",
        args.rounds
    );
    println!("{}", report::summary_table(&names, 1, &samples));
    warn_about(args, &names, &samples, direct.requests_per_sec);
    if args.access_log {
        for c in &all {
            println!(
                "access log {}: {} lines in {}",
                c.name,
                count_lines(&c.access_log),
                c.access_log.display()
            );
        }
    }
    Ok(())
}

async fn run_rounds(ctx: &mut Ctx<'_>, all: &[Contender]) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    println!("{}", report::rounds_table(&[], &[]).trim_end());
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

/// One wrk run with CPU accounting around it.
async fn measure(
    ctx: &mut Ctx<'_>,
    pgid: u32,
    addr: SocketAddr,
    round: usize,
    contender: usize,
) -> Result<Sample> {
    let (proxy, client) = (ctx.args.proxy_cpu, ctx.args.client_cpu);
    let (pc0, cc0, g0) = (
        cpu::core_times(proxy)?,
        cpu::core_times(client)?,
        cpu::group_cpu_secs(pgid),
    );
    let started = Instant::now();
    let wrk = run_wrk(ctx, addr, ctx.args.duration).await?;
    let wall = started.elapsed().as_secs_f64();
    let (pc1, cc1, g1) = (
        cpu::core_times(proxy)?,
        cpu::core_times(client)?,
        cpu::group_cpu_secs(pgid),
    );
    Ok(Sample {
        round,
        contender,
        wrk,
        proxy_cpu_percent: 100.0 * (g1 - g0) / wall,
        proxy_core_percent: cpu::busy_percent(pc0, pc1),
        client_core_percent: cpu::busy_percent(cc0, cc1),
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

fn warn_about(args: &Args, names: &[&str], samples: &[Sample], ceiling: f64) {
    let failed: u64 = samples.iter().map(|s| s.wrk.errors()).sum();
    if failed > 0 {
        println!(
            "WARNING: {failed} requests failed (non-2xx or socket errors): those runs are not comparable"
        );
    }
    for (c, name) in names.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.contender == c).collect();
        let proxy_cpu =
            report::median(&mine.iter().map(|s| s.proxy_cpu_percent).collect::<Vec<_>>());
        let client = report::median(
            &mine
                .iter()
                .map(|s| s.client_core_percent)
                .collect::<Vec<_>>(),
        );
        let rps = report::median(
            &mine
                .iter()
                .map(|s| s.wrk.requests_per_sec)
                .collect::<Vec<_>>(),
        );
        if proxy_cpu < 90.0 {
            println!(
                "note: {name} used {proxy_cpu:.0}% of cpu {} (median): not CPU-bound",
                args.proxy_cpu
            );
        }
        if client > 97.0 || rps > 0.9 * ceiling {
            println!(
                "note: {name}: client core at {client:.0}%, {rps:.0} of {ceiling:.0} req/s ceiling: wrk/upstream may limit it"
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
    println!(
        "layout:  proxies on cpu {}, wrk (-t1 -c{}) and upstream on cpu {}; {} rounds × {} s, warm-up {} s; access log {}",
        args.proxy_cpu,
        args.connections,
        args.client_cpu,
        args.rounds,
        args.duration,
        args.warmup,
        if args.access_log { "on" } else { "off" }
    );
    if tools.aistack.components().any(|c| c.as_os_str() == "debug") {
        println!(
            "WARNING: {} looks like a debug build; figures will be meaningless",
            tools.aistack.display()
        );
    }
    let total = 3 * args.warmup + args.duration * (1 + 3 * args.rounds as u64);
    println!("expected duration: ~{total} s plus start-up\n");
}
