//! Child processes of the load benchmark (upstream, nginx, AI Stack), each in its own
//! process group so that one signal reaches nginx's master *and* its worker. Every child
//! is stopped when [`Children`] is dropped: on success, on error, on panic and when
//! Ctrl-C drops the benchmark's future.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// How long a child gets between its stop signal and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The children started so far; dropped → all stopped.
#[derive(Default)]
pub struct Children {
    procs: Vec<Managed>,
}

struct Managed {
    name: String,
    child: Child,
    /// Process id of the group leader, which is also the group id.
    pgid: u32,
    /// Signal that makes this child stop quickly (nginx: TERM, Pingora: INT).
    stop_signal: &'static str,
    log: PathBuf,
}

/// Handle to a child started through [`Children::spawn`].
#[derive(Debug, Clone, Copy)]
pub struct ChildId(usize);

impl Children {
    /// Starts `cmd` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Result<ChildId> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let pgid = child
            .id()
            .context("child exited before it could be tracked")?;
        self.procs.push(Managed {
            name: name.to_owned(),
            child,
            pgid,
            stop_signal,
            log: log.to_path_buf(),
        });
        Ok(ChildId(self.procs.len() - 1))
    }

    /// Runs `cmd` to completion (output to `log`), killed if it takes longer than
    /// `limit`. Managed like the servers, so Ctrl-C mid-run stops and reaps it too.
    pub async fn run(
        &mut self,
        name: &str,
        cmd: Command,
        log: &Path,
        limit: Duration,
    ) -> Result<ExitStatus> {
        let id = self.spawn(name, cmd, log, "TERM")?;
        let p = &mut self.procs[id.0];
        match tokio::time::timeout(limit, p.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                signal_group(p.pgid, "KILL");
                let _ = p.child.wait().await;
                bail!("{name} overran its {limit:?} limit; killed")
            }
        }
    }

    /// Process group id of a child (for CPU accounting).
    pub fn pgid(&self, id: ChildId) -> u32 {
        self.procs[id.0].pgid
    }

    /// Fails, with the end of its log, if the child has exited.
    pub fn ensure_running(&mut self, id: ChildId) -> Result<()> {
        let p = &mut self.procs[id.0];
        if let Some(status) = p.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                p.name,
                p.log.display(),
                log_tail(&p.log)
            );
        }
        Ok(())
    }

    /// Path of a child's log.
    pub fn log(&self, id: ChildId) -> &Path {
        &self.procs[id.0].log
    }

    fn stop_all(&mut self) {
        // Finished runs (wrk) are reaped already: their group ids may be reused.
        self.procs
            .retain_mut(|p| matches!(p.child.try_wait(), Ok(None)));
        for p in &self.procs {
            signal_group(p.pgid, p.stop_signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline
            && self
                .procs
                .iter_mut()
                .any(|p| matches!(p.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in &mut self.procs {
            // Also reaches group members that outlived their leader (an nginx worker).
            signal_group(p.pgid, "KILL");
            if matches!(p.child.try_wait(), Ok(None)) {
                eprintln!(
                    "loadbench: {} ignored SIG{} for {STOP_GRACE:?}; killed",
                    p.name, p.stop_signal
                );
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `kill -s SIG -- -PGID`: the safe-Rust way to signal a process group without a new
/// dependency (the workspace forbids `unsafe`, so no raw `libc::kill`).
fn signal_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last ~3 KiB of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(3072);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
