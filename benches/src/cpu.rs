//! CPU accounting around each wrk run, from `/proc`: how busy each pinned core was and
//! how much CPU the proxy's process group used. A proxy below ~95 % of its core, or a
//! client core at 100 %, means the run measured something other than the proxy.

use anyhow::{Context, Result};

/// Linux reports `/proc` times in USER_HZ, which is 100 on every mainstream architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// Busy and total jiffies of one core, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreTimes {
    busy: u64,
    total: u64,
}

/// Reads the `cpuN` line of `/proc/stat`.
pub fn core_times(core: usize) -> Result<CoreTimes> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let label = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))
        .with_context(|| format!("no {label} in /proc/stat"))?;
    Ok(parse_core_line(line))
}

fn parse_core_line(line: &str) -> CoreTimes {
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    CoreTimes {
        busy: total - idle,
        total,
    }
}

/// Share of `after - before` the core spent busy, in percent.
pub fn busy_percent(before: CoreTimes, after: CoreTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    100.0 * after.busy.saturating_sub(before.busy) as f64 / total as f64
}

/// User + system CPU seconds of every live process in process group `pgid`.
pub fn group_cpu_secs(pgid: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let ticks: u64 = dir
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_proc_stat(&stat))
        .filter(|&(group, _)| group == pgid)
        .map(|(_, t)| t)
        .sum();
    ticks as f64 / TICKS_PER_SEC
}

/// CPU seconds of this process's children that have exited and been waited for
/// (`cutime + cstime`): how wrk's CPU is counted, since it is gone when we look.
pub fn reaped_children_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks = stat.rfind(')').and_then(|end| {
        let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
        // rest starts at field 3: cutime is field 16, cstime 17.
        Some(fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?)
    });
    ticks.unwrap_or(0) as f64 / TICKS_PER_SEC
}

/// `(pgrp, utime + stime)` from `/proc/PID/stat`; the command name may hold spaces
/// and parentheses, so fields are counted after the last `)`.
fn parse_proc_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): pgrp is field 5, utime 14, stime 15.
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_line() {
        let t = parse_core_line("cpu1 100 0 50 800 50 0 0 0 0 0");
        assert_eq!((t.busy, t.total), (150, 1000));
        let later = parse_core_line("cpu1 190 0 60 840 50 0 0 0 0 0");
        assert_eq!(busy_percent(t, later), 100.0 * 100.0 / 140.0);
    }

    #[test]
    fn proc_stat_with_odd_name() {
        let stat =
            "4242 (nginx: a) b) S 1 4240 4240 0 -1 4194560 100 0 0 0 70 30 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_proc_stat(stat), Some((4240, 100)));
    }

    #[test]
    fn reads_this_machine() {
        assert!(core_times(0).is_ok());
    }
}
