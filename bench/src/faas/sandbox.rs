//! One sandbox: an OpenWhisk action proxy process (`PYTHON actionproxy.py --port P`) in its own
//! memory cgroup, initialised once with a function's code (`POST /init`, the cold start) and
//! then run any number of times (`POST /run`, warm).
//!
//! The process is moved into its cgroup right after `spawn`, before `/init` sends it any action
//! code. Its stdout's first line (`actionproxy listening on 127.0.0.1:PORT`) says it serves; the
//! rest of stdout and all of stderr go to a log file per sandbox. Dropping a sandbox kills the
//! process and removes the cgroup.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::agent::{AgentLink, Features};
use super::cgroup::{Cgroup, Cgroups};

/// Longest wait for a proxy's "listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `/run` or `/init` response accepted.
pub const MAX_RESPONSE: usize = 16 << 20;

/// What a sandbox runs: a function's code and how much memory it books.
#[derive(Debug, Clone)]
pub struct Action {
    /// The function's name (also the cgroup's prefix).
    pub name: String,
    /// Python source of the action (OpenWhisk `code`).
    pub code: String,
    /// Booked memory, bytes (the cgroup's limit).
    pub memory: u64,
}

/// How to start proxies.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The interpreter (the functions' venv's `python`).
    pub python: PathBuf,
    /// `bench/faas/runtime/actionproxy.py`.
    pub proxy: PathBuf,
    /// Directory for the sandboxes' logs.
    pub log_dir: PathBuf,
    /// Per-request timeout of `/init` and `/run`.
    pub timeout: Duration,
}

/// A `/run` that failed: the sandbox is not reused.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("sandbox {sandbox} was OOM-killed (limit {limit} bytes)")]
    Oom { sandbox: String, limit: u64 },
    #[error("sandbox {sandbox}: {detail}")]
    Failed { sandbox: String, detail: String },
    /// The action answered with an error (502 and the like); the sandbox stays usable.
    #[error("action error in {sandbox}: HTTP {status}: {body}")]
    Action {
        sandbox: String,
        status: u16,
        body: String,
    },
}

/// A live sandbox.
#[derive(Debug)]
pub struct Sandbox {
    pub id: String,
    pub function: String,
    pub port: u16,
    pub memory: u64,
    child: Child,
    cgroup: Option<Cgroup>,
    http: reqwest::blocking::Client,
    /// When it last finished a run (keep-alive).
    pub idle_since: Instant,
    /// Cold start: spawn → listening → `/init` answered.
    pub start_time: Duration,
    /// The node agent told about this sandbox (`--faas-agent`), once it accepted `created`.
    agent: Option<Arc<AgentLink>>,
}

pub use super::http::{free_port, http_client};

impl Sandbox {
    /// Starts a proxy for `action` in a fresh cgroup `id` and initialises it (a cold start).
    pub fn start(rt: &Runtime, cgroups: &Cgroups, action: &Action, id: &str) -> Result<Sandbox> {
        Sandbox::start_with(rt, cgroups, action, id, None, &[])
    }

    /// [`Sandbox::start`], telling `agent` (`created`, with `features`) once the process is in
    /// its cgroup and before `/init`; the sandbox then tells it about its runs and its end.
    pub fn start_with(
        rt: &Runtime,
        cgroups: &Cgroups,
        action: &Action,
        id: &str,
        agent: Option<&Arc<AgentLink>>,
        features: Features<'_>,
    ) -> Result<Sandbox> {
        let t0 = Instant::now();
        let cgroup = cgroups.create(id, action.memory)?;
        let port = free_port()?;
        let log_path = rt.log_dir.join(format!("{id}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        // Its own process group: a terminal's Ctrl-C reaches the harness only, which then stops
        // dispatching, lets running invocations end and destroys the sandboxes itself.
        let mut child = Command::new(&rt.python)
            .process_group(0)
            .arg(&rt.proxy)
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {}", rt.python.display(), rt.proxy.display()))?;
        // Into the cgroup before any action code is sent (the interpreter's own start-up is
        // the only thing that may run outside it).
        if let Some(cg) = &cgroup {
            if let Err(e) = cg.add(child.id()) {
                let _ = child.kill();
                let _ = child.wait();
                cg.remove();
                return Err(e);
            }
        }
        let mut sb = Sandbox {
            id: id.to_string(),
            function: action.name.clone(),
            port,
            memory: action.memory,
            child,
            cgroup,
            http: http_client(rt.timeout)?,
            idle_since: Instant::now(),
            start_time: Duration::ZERO,
            agent: None,
        };
        // The memory is the sandbox's from here on: the agent hears of it before `/init` (a
        // failed start below drops the sandbox, which sends `DELETE`).
        if let Some(a) = agent {
            let cg = sb.cgroup.as_ref().map(Cgroup::path);
            if a.created(id, &action.name, action.memory, features, cg) {
                sb.agent = Some(a.clone());
            }
        }
        sb.wait_listening(&log_path)?;
        sb.init(action)?;
        sb.start_time = t0.elapsed();
        Ok(sb)
    }

    fn wait_listening(&mut self, log_path: &Path) -> Result<()> {
        let stdout = self.child.stdout.take().context("proxy stdout")?;
        let (tx, rx) = mpsc::channel();
        let log_copy = log_path.to_path_buf();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            // Keep draining so the proxy never blocks on a full pipe; append to its log.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_copy)
                .ok();
            for l in lines.map_while(|l| l.ok()) {
                if let Some(f) = f.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{l}");
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(l) if l.contains("listening") => Ok(()),
            Ok(l) => bail!(
                "sandbox {}: unexpected first line from the proxy: {l:?}",
                self.id
            ),
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                bail!(
                    "sandbox {}: the proxy did not say it listens within {START_TIMEOUT:?} (exit: {status:?}; log {})",
                    self.id,
                    log_path.display()
                )
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body)?)
            .send()
            .map_err(|e| anyhow!("POST {path}: {e}"))?;
        let status = resp.status().as_u16();
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE as u64)
        {
            bail!("POST {path}: response over {MAX_RESPONSE} bytes");
        }
        let bytes = resp
            .bytes()
            .map_err(|e| anyhow!("POST {path}: reading the body: {e}"))?;
        if bytes.len() > MAX_RESPONSE {
            bail!("POST {path}: response over {MAX_RESPONSE} bytes");
        }
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned())
        });
        Ok((status, v))
    }

    fn init(&self, action: &Action) -> Result<()> {
        let body = json!({"value": {"name": action.name, "main": "main", "code": action.code, "binary": false}});
        let (status, v) = self
            .post("/init", &body)
            .map_err(|e| anyhow!("sandbox {}: {e:#}", self.id))?;
        if status != 200 {
            bail!("sandbox {}: /init answered {status}: {v}", self.id);
        }
        Ok(())
    }

    /// [`Sandbox::run`] between the agent's `start` (with `features`) and `finish` (with the
    /// run's peak when the cgroup gives one); a plain run without an agent. The agent's errors
    /// are counted by its link and never fail the run.
    pub fn run_with(
        &mut self,
        args: &Value,
        activation: &str,
        features: Features<'_>,
    ) -> Result<Value, RunError> {
        let Some(agent) = self.agent.clone() else {
            return self.run(args, activation);
        };
        let reset = self.cgroup.as_ref().is_some_and(Cgroup::reset_peak);
        agent.started(&self.id, features);
        let r = self.run(args, activation);
        // v2's peak covers the sandbox's whole life: let the agent measure instead.
        let peak = if reset { self.peak_bytes() } else { None };
        agent.finished(&self.id, peak);
        r
    }

    /// One invocation: `POST /run` with `args`; the action's result.
    pub fn run(&mut self, args: &Value, activation: &str) -> Result<Value, RunError> {
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64 + 600_000);
        let body =
            json!({"value": args, "activation_id": activation, "deadline": deadline.to_string()});
        let res = self.post("/run", &body);
        self.idle_since = Instant::now();
        match res {
            Ok((200, v)) if v.is_object() => Ok(v),
            Ok((status, v)) if self.alive() => Err(RunError::Action {
                sandbox: self.id.clone(),
                status,
                body: truncate(&v.to_string(), 400),
            }),
            Ok((status, _)) => Err(self.failure(format!("HTTP {status}, then the process died"))),
            Err(e) => Err(self.failure(format!("{e:#}"))),
        }
    }

    fn failure(&mut self, detail: String) -> RunError {
        // The kernel may count the kill a moment after the connection dropped.
        for _ in 0..10 {
            if self.oom_kills() > 0 {
                return RunError::Oom {
                    sandbox: self.id.clone(),
                    limit: self.memory,
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        RunError::Failed {
            sandbox: self.id.clone(),
            detail,
        }
    }

    /// Whether the proxy process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// OOM kills in the sandbox's cgroup (0 without cgroups).
    pub fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, Cgroup::oom_kills)
    }

    /// The cgroup's peak memory, bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(Cgroup::peak_bytes)
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(cg) = &self.cgroup {
            cg.remove();
        }
        if let Some(a) = &self.agent {
            a.destroyed(&self.id);
        }
    }
}
