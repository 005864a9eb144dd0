//! `--nice` on a shared machine. With `kernel.sched_autogroup_enabled` (the default on
//! most distributions) a process's niceness only ranks it against its own session:
//! another session's build still gets an equal share of the cores. So `--nice` also
//! sets the niceness of this session's autogroup, and puts the old value back after.

use std::path::Path;

use anyhow::{Context, Result};

const AUTOGROUP: &str = "/proc/self/autogroup";

/// The session's autogroup niceness while the benchmark runs; restored on drop.
#[derive(Debug)]
pub struct AutogroupNice {
    previous: i32,
}

impl AutogroupNice {
    /// Sets this session's autogroup niceness to `nice`. `Ok(None)` when the kernel has
    /// no autogroups (then plain `nice` is enough).
    pub fn set(nice: i32) -> Result<Option<Self>> {
        if !Path::new(AUTOGROUP).exists() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(AUTOGROUP).context("cannot read /proc/self/autogroup")?;
        let previous =
            parse(&text).with_context(|| format!("unexpected /proc/self/autogroup: {text:?}"))?;
        std::fs::write(AUTOGROUP, nice.to_string()).with_context(|| {
            format!("cannot set the autogroup niceness to {nice} (root needed for < 0)")
        })?;
        Ok(Some(Self { previous }))
    }
}

impl Drop for AutogroupNice {
    fn drop(&mut self) {
        let _ = std::fs::write(AUTOGROUP, self.previous.to_string());
    }
}

/// `/autogroup-129 nice 0` → 0.
fn parse(text: &str) -> Option<i32> {
    text.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_autogroup() {
        assert_eq!(super::parse("/autogroup-129 nice -5\n"), Some(-5));
        assert_eq!(super::parse(""), None);
    }
}
