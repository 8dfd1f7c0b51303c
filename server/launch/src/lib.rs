//! One process launcher for `faascache` daemons, shared by `faascache cluster up` / `demo`, the
//! bench's private cluster and the process tests.
//!
//! * [`find_binary`] — the `faascache` binary: an explicit path, `$FAASCACHE_BIN`, or next to the
//!   running executable (`target/<profile>/`, also from `target/<profile>/deps/`);
//! * [`Launch`] — what to start: program, arguments, an optional wrapper command (`taskset -c N`,
//!   `ip netns exec NS`: it must exec the program), environment, and the log file that gets the
//!   child's stderr;
//! * [`Daemon`] — a running child: [`Daemon::wait_file`] waits for the locator file the daemon
//!   writes (`--locator-file`) with a deadline and fails early, with the log's tail, if the
//!   child exits first; [`Daemon::stop`] sends SIGTERM and SIGKILL after a grace period;
//!   dropping a `Daemon` kills and reaps it;
//! * [`pid`] — signals and liveness for processes that are not our children (`cluster down`).
//!
//! Ports cannot race: daemons listen on port 0 and report the port they got in their locator
//! file, which [`Daemon::wait_file`] returns.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why a daemon could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The `faascache` binary was not found.
    #[error("cannot find the `faascache` binary: {0}")]
    NoBinary(String),
    /// The log file could not be created.
    #[error(
        "cannot create the log file {path}: {source} (check the directory exists and is writable)"
    )]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        /// The daemon's name.
        name: String,
        /// The program run (the wrapper's, if any).
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The process exited before it wrote its locator file.
    #[error("{name} exited ({status}) before it was up; its log {log} ends with:\n{tail}")]
    Exited {
        /// The daemon's name.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// The locator file did not appear in time.
    #[error("{name} was not up within {waited:?} (no {file}); its log {log} ends with:\n{tail}")]
    Timeout {
        /// The daemon's name.
        name: String,
        /// How long we waited.
        waited: Duration,
        /// The file it should have written.
        file: PathBuf,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
}

/// The `faascache` binary: `explicit` if given, else `$FAASCACHE_BIN`, else next to the running
/// executable (a binary in `target/<profile>/` or a test in `target/<profile>/deps/`).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(LaunchError::NoBinary(format!(
                "{} is not a file",
                p.display()
            )))
        };
    }
    if let Some(p) = std::env::var_os("FAASCACHE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LaunchError::NoBinary(format!(
                "FAASCACHE_BIN={} is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| LaunchError::NoBinary(format!("cannot find the running executable: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join("faascache");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(LaunchError::NoBinary(format!(
        "it is not next to {}: build it with `cargo build -p faascache` (add --release for \
         release runs) or set FAASCACHE_BIN",
        exe.display()
    )))
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    wrap: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
}

impl Launch {
    /// Start `program` as `name`, its stderr to `log` (created or truncated), stdin and stdout
    /// to /dev/null.
    pub fn new(name: &str, program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Launch {
        Launch {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            wrap: Vec::new(),
            env: Vec::new(),
            log: log.into(),
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run under a wrapper command (`taskset -c 3`, `ip netns exec NS`), which must exec the
    /// program (so the child's pid is the daemon's). Empty: none.
    pub fn wrap<I, S>(mut self, wrapper: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrap = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// Set environment variables of the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Launch
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Start it.
    pub fn spawn(self) -> Result<Daemon, LaunchError> {
        let log = std::fs::File::create(&self.log).map_err(|source| LaunchError::Log {
            path: self.log.clone(),
            source,
        })?;
        let mut cmd = match self.wrap.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                name: self.name.clone(),
                program,
                source,
            })?;
        Ok(Daemon {
            name: self.name,
            pid: child.id(),
            child: Some(child),
            status: None,
            log: self.log,
        })
    }
}

/// How [`Daemon::stop`] ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It had exited already, or exited after SIGTERM within the grace period.
    Exited(Option<ExitStatus>),
    /// It ignored SIGTERM for the grace period and was killed.
    Killed,
}

/// A running daemon; dropping it kills (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    pid: u32,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
}

impl Daemon {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its log file (its stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Its exit status if it has exited (reaped), without blocking.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    self.status = Some(s);
                    self.child = None;
                }
            }
        }
        self.status
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// Wait until `file` exists and is not empty and return its trimmed content (a daemon's
    /// `--locator-file`); fails early with the log's tail if the process exits first, or after
    /// `timeout`.
    pub fn wait_file(&mut self, file: &Path, timeout: Duration) -> Result<String, LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = std::fs::read_to_string(file) {
                if !s.trim().is_empty() {
                    return Ok(s.trim().to_string());
                }
            }
            if let Some(status) = self.exited() {
                return Err(LaunchError::Exited {
                    name: self.name.clone(),
                    status,
                    log: self.log.clone(),
                    tail: self.log_tail(8),
                });
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::Timeout {
                    name: self.name.clone(),
                    waited: timeout,
                    file: file.to_path_buf(),
                    log: self.log.clone(),
                    tail: self.log_tail(8),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send SIGTERM (nothing if it has exited).
    pub fn terminate(&mut self) {
        if self.running() {
            pid::signal(self.pid, pid::Sig::Term);
        }
    }

    /// Wait until it exits or `deadline` passes; its exit status if it exited.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(s) = c.wait() {
                self.status = Some(s);
            }
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        stop_all(std::slice::from_mut(self), grace)[0]
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stop several daemons: SIGTERM to all (last started first), then wait for each within one
/// shared `grace` period and SIGKILL those still running. Returns how each ended, in order.
pub fn stop_all(daemons: &mut [Daemon], grace: Duration) -> Vec<Stopped> {
    for d in daemons.iter_mut().rev() {
        d.terminate();
    }
    let deadline = Instant::now() + grace;
    let mut out = vec![Stopped::Killed; daemons.len()];
    for (i, d) in daemons.iter_mut().enumerate().rev() {
        if d.child.is_none() {
            out[i] = Stopped::Exited(d.status);
            continue;
        }
        match d.wait_until(deadline) {
            Some(s) => out[i] = Stopped::Exited(Some(s)),
            None => d.kill(),
        }
    }
    out
}

/// Signals and liveness of processes known by pid only (not our children).
pub mod pid {
    use rustix::process::{kill_process, Pid, Signal};

    /// A signal to send.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Sig {
        /// SIGTERM: please stop.
        Term,
        /// SIGKILL.
        Kill,
    }

    /// Send `sig` to `pid`; false if there is no such process (or it is not ours to signal).
    pub fn signal(pid: u32, sig: Sig) -> bool {
        let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        let s = match sig {
            Sig::Term => Signal::TERM,
            Sig::Kill => Signal::KILL,
        };
        kill_process(p, s).is_ok()
    }

    /// Whether `pid` runs; a zombie (exited, not yet reaped) counts as gone.
    pub fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, name: &str, script: &str) -> Daemon {
        Launch::new(name, "/bin/sh", dir.join(format!("{name}.log")))
            .args(["-c", script])
            .spawn()
            .unwrap()
    }

    #[test]
    fn waits_for_the_file_and_stops_with_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("loc");
        let script = format!("echo ' tcp:port=1 ' > {}; exec sleep 30", f.display());
        let mut d = sh(dir.path(), "ok", &script);
        let t = Duration::from_secs(30);
        assert_eq!(d.wait_file(&f, t).unwrap(), "tcp:port=1");
        assert!(d.running());
        assert!(pid::alive(d.pid()));
        assert!(matches!(d.stop(t), Stopped::Exited(Some(_))));
        assert!(!d.running());
        assert!(!pid::alive(d.pid()));
    }

    #[test]
    fn an_early_exit_fails_at_once_with_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = sh(dir.path(), "bad", "echo 'no such flag' >&2; exit 3");
        let e = bad
            .wait_file(&dir.path().join("never"), Duration::from_secs(60))
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LaunchError::Exited { .. }), "{msg}");
        assert!(
            msg.contains("no such flag") && msg.contains("bad exited"),
            "{msg}"
        );
    }

    #[test]
    fn a_timeout_names_the_file_and_a_stubborn_child_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let script = format!(
            "trap '' TERM; echo up > {}; while :; do sleep 0.05; done",
            ready.display()
        );
        let mut stubborn = sh(dir.path(), "stubborn", &script);
        let e = stubborn
            .wait_file(&dir.path().join("never"), Duration::from_millis(50))
            .unwrap_err();
        assert!(
            matches!(e, LaunchError::Timeout { .. }) && e.to_string().contains("never"),
            "{e}"
        );
        // The trap is set once `ready` is written: SIGTERM is then ignored.
        stubborn.wait_file(&ready, Duration::from_secs(30)).unwrap();
        assert_eq!(stubborn.stop(Duration::from_millis(200)), Stopped::Killed);
        assert!(!stubborn.running());
    }

    #[test]
    fn an_explicit_binary_must_exist() {
        let e = find_binary(Some(Path::new("/nonexistent/faascache"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/faascache"), "{e}");
    }
}
