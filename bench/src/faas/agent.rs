//! `--faas-agent`: the node agent (`faascache agent`) beside a cached backend's server, told
//! about every sandbox as an OpenWhisk invoker would tell it (docs/faas.md, "An OpenWhisk
//! invoker"), and sampled once a second for the report's "cache size vs sandbox memory".
//!
//! - [`AgentProcess`] starts `faascache agent --server <server-1's locator> --dir <cluster>
//!   --cache-pid <its pid>` on `127.0.0.1:0` (address read back from `--addr-file`) with a
//!   state directory in the run's temporary directory, and stops it when dropped.
//! - [`AgentLink`] sends the events: `created` once the sandbox's process is in its cgroup and
//!   before `/init`, `start` before each `/run` with the invocation's features, `finish` after it
//!   (with the cgroup's peak when it gives one), `DELETE` when the sandbox goes. An event the
//!   agent refuses or that times out (2 s) never fails the invocation: it is counted, and the
//!   first one printed.
//! - [`Sampler`] reads `GET /v1/status` every period; [`summarize`] turns the samples into the
//!   report's series and extremes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Longest wait for one request to the agent.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from the agent (a status lists up to 4,096 sandboxes).
pub const MAX_BODY: usize = 4 << 20;
/// Samples kept per run at most (one a second: over a day); later ones are dropped.
pub const MAX_SAMPLES: usize = 100_000;

/// Features of one invocation (`input_bytes`, ...): names as the agent accepts them.
pub type Features<'a> = &'a [(&'a str, f64)];

/// The `features` object of an event (non-finite values left out: the agent refuses them).
pub fn features_json(f: Features<'_>) -> Value {
    let m: Map<String, Value> = f
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    Value::Object(m)
}

/// The body of `POST /v1/sandboxes`.
pub fn created_body(
    id: &str,
    function: &str,
    booked_bytes: u64,
    features: Features<'_>,
    cgroup: Option<&Path>,
) -> Value {
    let mut v = json!({"id": id, "function": function, "booked_bytes": booked_bytes});
    if !features.is_empty() {
        v["features"] = features_json(features);
    }
    if let Some(c) = cgroup {
        v["cgroup"] = json!(c.display().to_string());
    }
    v
}

/// The body of `POST /v1/sandboxes/{id}/start` (none without features).
pub fn start_body(features: Features<'_>) -> Option<Value> {
    (!features.is_empty()).then(|| json!({"features": features_json(features)}))
}

/// The body of `POST /v1/sandboxes/{id}/finish` (none without a peak: the agent measures).
pub fn finish_body(peak_bytes: Option<u64>) -> Option<Value> {
    peak_bytes
        .filter(|&p| p > 0)
        .map(|p| json!({"peak_bytes": p}))
}

/// Events sent to the agent and accepted, and those that failed (any kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub created: u64,
    pub started: u64,
    pub finished: u64,
    pub destroyed: u64,
    pub failed: u64,
}

impl EventCounts {
    /// Events the agent accepted.
    pub fn sent(&self) -> u64 {
        self.created + self.started + self.finished + self.destroyed
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Created,
    Started,
    Finished,
    Destroyed,
}

/// The invoker's connection to one agent.
#[derive(Debug)]
pub struct AgentLink {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::blocking::Client,
    counts: Mutex<EventCounts>,
    first_error: Mutex<Option<String>>,
}

impl AgentLink {
    /// A link to the agent at `base` (`http://HOST:PORT`); nothing is sent yet.
    pub fn new(base: &str) -> Result<AgentLink> {
        let http = super::http::http_client(TIMEOUT)?;
        Ok(AgentLink {
            base: base.trim_end_matches('/').to_string(),
            http,
            counts: Mutex::new(EventCounts::default()),
            first_error: Mutex::new(None),
        })
    }

    /// One request; the answer's JSON when the status is 2xx, else an error naming the
    /// agent's message.
    fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b)?);
        }
        let resp = req.send().map_err(|e| anyhow!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        resp.take(MAX_BODY as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow!("{method} {path}: reading the answer: {e}"))?;
        if bytes.len() > MAX_BODY {
            bail!("{method} {path}: answer over {MAX_BODY} bytes");
        }
        let v: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !(200..300).contains(&status) {
            let msg = v
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map_or_else(
                    || String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
                    str::to_string,
                );
            bail!("{method} {path}: HTTP {status}: {msg}");
        }
        v.ok_or_else(|| anyhow!("{method} {path}: HTTP {status} with a body that is not JSON"))
    }

    /// Sends one event; true when the agent accepted it.
    fn event(&self, ev: Event, method: reqwest::Method, path: &str, body: Option<&Value>) -> bool {
        let r = self.request(method, path, body);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(_) => {
                match ev {
                    Event::Created => c.created += 1,
                    Event::Started => c.started += 1,
                    Event::Finished => c.finished += 1,
                    Event::Destroyed => c.destroyed += 1,
                }
                true
            }
            Err(e) => {
                c.failed += 1;
                drop(c);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    eprintln!(
                        "faas: agent {}: {e:#} (an event error fails no invocation; later ones are counted, not printed)",
                        self.base
                    );
                    *first = Some(format!("{e:#}"));
                }
                false
            }
        }
    }

    /// `created`: the sandbox's process exists (in its cgroup), `/init` not sent yet.
    pub fn created(
        &self,
        id: &str,
        function: &str,
        booked_bytes: u64,
        features: Features<'_>,
        cgroup: Option<&Path>,
    ) -> bool {
        let body = created_body(id, function, booked_bytes, features, cgroup);
        self.event(
            Event::Created,
            reqwest::Method::POST,
            "/v1/sandboxes",
            Some(&body),
        )
    }

    /// `start`: before a `/run`.
    pub fn started(&self, id: &str, features: Features<'_>) -> bool {
        let body = start_body(features);
        self.event(
            Event::Started,
            reqwest::Method::POST,
            &format!("/v1/sandboxes/{id}/start"),
            body.as_ref(),
        )
    }

    /// `finish`: after the `/run` answered (or failed).
    pub fn finished(&self, id: &str, peak_bytes: Option<u64>) -> bool {
        let body = finish_body(peak_bytes);
        self.event(
            Event::Finished,
            reqwest::Method::POST,
            &format!("/v1/sandboxes/{id}/finish"),
            body.as_ref(),
        )
    }

    /// `DELETE`: the sandbox is gone.
    pub fn destroyed(&self, id: &str) -> bool {
        self.event(
            Event::Destroyed,
            reqwest::Method::DELETE,
            &format!("/v1/sandboxes/{id}"),
            None,
        )
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Value> {
        self.request(reqwest::Method::GET, "/v1/status", None)
    }

    /// The events so far.
    pub fn counts(&self) -> EventCounts {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first event that failed, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The agent's view at one moment (from `GET /v1/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    /// The cache server's budget, as the agent reads it.
    pub budget_bytes: u64,
    /// What the policy wants the budget to be.
    pub target_bytes: u64,
    /// Memory reserved for the sandboxes (predictions, observed use).
    pub reserved_bytes: u64,
    /// The sandboxes' measured use (their cgroups).
    pub observed_bytes: u64,
    pub node_used_bytes: u64,
    pub node_total_bytes: u64,
    /// Sandboxes the agent tracks.
    pub sandboxes: u64,
    /// Resizes made and refused since the agent started.
    pub resizes: u64,
    pub refusals: u64,
    /// Events the agent counted since it started.
    pub created: u64,
    pub destroyed: u64,
}

fn field(v: &Value, path: &[&str]) -> Result<u64> {
    let mut x = v;
    for k in path {
        x = x
            .get(k)
            .ok_or_else(|| anyhow!("status without {}", path.join(".")))?;
    }
    x.as_u64()
        .ok_or_else(|| anyhow!("status: {} is {x}, not a whole number", path.join(".")))
}

/// The [`Sample`] of a `GET /v1/status` answer taken `t_s` after the sampler started. A status
/// without the cache's budget (the agent could not read it) is an error with its reason.
pub fn parse_status(v: &Value, t_s: f64) -> Result<Sample> {
    if v.pointer("/cache/budget_bytes").is_some_and(Value::is_null) {
        let why = v
            .pointer("/cache/budget_error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        bail!("the agent does not know the cache's budget: {why}");
    }
    Ok(Sample {
        t_s,
        budget_bytes: field(v, &["cache", "budget_bytes"])?,
        target_bytes: field(v, &["cache", "target_bytes"])?,
        reserved_bytes: field(v, &["plan", "reserved_bytes"])?,
        observed_bytes: field(v, &["plan", "observed_bytes"])?,
        node_used_bytes: field(v, &["node", "used_bytes"])?,
        node_total_bytes: field(v, &["node", "total_bytes"])?,
        sandboxes: field(v, &["counts", "sandboxes"])?,
        resizes: field(v, &["counts", "resizes"])?,
        refusals: field(v, &["counts", "refusals"])?,
        created: field(v, &["counts", "created"])?,
        destroyed: field(v, &["counts", "destroyed"])?,
    })
}

/// What the report shows of the agent for one backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The agent's address.
    pub url: String,
    /// Events the invoker sent (accepted) and those that failed.
    pub events: EventCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_error: Option<String>,
    /// Resizes the agent made and those the server refused, over the run (last sample).
    pub resizes: u64,
    pub refusals: u64,
    /// Sandboxes the agent counted as created and destroyed (last sample).
    pub agent_created: u64,
    pub agent_destroyed: u64,
    /// The cache's budget: smallest and largest sampled.
    pub budget_min_bytes: u64,
    pub budget_max_bytes: u64,
    /// Largest sandbox memory reserved and observed.
    pub reserved_max_bytes: u64,
    pub observed_max_bytes: u64,
    /// Status requests that failed or could not be read; the first reason.
    pub failed_samples: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_sample_error: Option<String>,
    pub samples: Vec<Sample>,
}

/// The summary of `samples` (in time order).
pub fn summarize(samples: Vec<Sample>, failed: u64, first_error: Option<String>) -> Summary {
    let last = samples.last().copied().unwrap_or_default();
    let max = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
    Summary {
        resizes: last.resizes,
        refusals: last.refusals,
        agent_created: last.created,
        agent_destroyed: last.destroyed,
        budget_min_bytes: samples.iter().map(|s| s.budget_bytes).min().unwrap_or(0),
        budget_max_bytes: max(|s| s.budget_bytes),
        reserved_max_bytes: max(|s| s.reserved_bytes),
        observed_max_bytes: max(|s| s.observed_bytes),
        failed_samples: failed,
        first_sample_error: first_error,
        samples,
        ..Summary::default()
    }
}

/// Samples an agent's status in the background until [`Sampler::stop`].
#[derive(Debug)]
pub struct Sampler {
    link: Arc<AgentLink>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<Sample>, u64, Option<String>)>,
}

impl Sampler {
    /// Starts sampling `link`'s agent every `period`.
    pub fn start(link: Arc<AgentLink>, period: Duration) -> Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, l) = (stop.clone(), link.clone());
        let handle = std::thread::Builder::new()
            .name("faas-agentstats".into())
            .spawn(move || {
                let start = Instant::now();
                let (mut samples, mut failed, mut first) = (Vec::new(), 0u64, None);
                let mut take = |samples: &mut Vec<Sample>| match l
                    .status()
                    .and_then(|v| parse_status(&v, start.elapsed().as_secs_f64()))
                {
                    Ok(s) if samples.len() < MAX_SAMPLES => samples.push(s),
                    Ok(_) => {}
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                };
                loop {
                    take(&mut samples);
                    let until = Instant::now() + period;
                    while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50).min(period));
                    }
                    if flag.load(Ordering::Relaxed) {
                        take(&mut samples);
                        return (samples, failed, first);
                    }
                }
            })?;
        Ok(Sampler { link, stop, handle })
    }

    /// Takes a last sample, stops and summarizes (with the link's event counts).
    pub fn stop(self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        let mut s = match self.handle.join() {
            Ok((samples, failed, first)) => summarize(samples, failed, first),
            Err(_) => Summary::default(),
        };
        s.url = self.link.base.clone();
        s.events = self.link.counts();
        s.first_event_error = self.link.first_error();
        s
    }
}

/// A running `faascache agent`.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    pub link: Arc<AgentLink>,
}

/// How the harness starts an agent beside a cluster's server.
#[derive(Debug, Clone)]
pub struct AgentSpec<'a> {
    /// The `faascache` binary.
    pub bin: &'a Path,
    /// The cluster's directory (`--dir`).
    pub cluster: &'a Path,
    /// The server the agent resizes: its name in the cluster (`server-1`).
    pub server: &'a str,
    /// Largest cache the agent asks for (the server's `--max-memory`: it cannot grow past it).
    pub max_cache: u64,
    /// Logs, the address file and the state directory go here.
    pub work: &'a Path,
    /// Names the files (the backend's name).
    pub name: &'a str,
}

/// The arguments of `faascache agent` for `spec`, its server's locator `locator` and pid.
pub fn agent_args(spec: &AgentSpec<'_>, locator: &str, pid: u32) -> Vec<String> {
    let p = |p: PathBuf| p.display().to_string();
    vec![
        "agent".into(),
        "--server".into(),
        locator.into(),
        "--dir".into(),
        p(spec.cluster.to_path_buf()),
        "--cache-pid".into(),
        pid.to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--addr-file".into(),
        p(addr_file(spec)),
        "--state-dir".into(),
        p(spec.work.join(format!("agent-{}-state", spec.name))),
        "--max-cache".into(),
        format!("{}B", spec.max_cache),
    ]
}

fn addr_file(spec: &AgentSpec<'_>) -> PathBuf {
    spec.work.join(format!("agent-{}.addr", spec.name))
}

impl AgentProcess {
    /// Starts the agent of `spec` and waits (30 s at most) until it answers `/healthz`.
    pub fn start(spec: &AgentSpec<'_>) -> Result<AgentProcess> {
        let read = |f: &str| -> Result<String> {
            let p = spec.cluster.join(f);
            Ok(std::fs::read_to_string(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_string())
        };
        let locator = read(&format!("run/{}.locator", spec.server))?;
        let pid: u32 = read(&format!("pids/{}.pid", spec.server))?
            .parse()
            .with_context(|| format!("the pid file of {}", spec.server))?;
        let addr = addr_file(spec);
        let _ = std::fs::remove_file(&addr);
        let log_path = spec.work.join(format!("agent-{}.log", spec.name));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(spec.bin)
            .process_group(0)
            .args(agent_args(spec, &locator, pid))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} agent", spec.bin.display()))?;
        match wait_ready(&mut child, &addr, &log_path) {
            Ok(link) => Ok(AgentProcess {
                child,
                link: Arc::new(link),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }
}

/// Waits (30 s at most) until the agent `child` has written its address to `addr` and answers
/// `/healthz` there.
fn wait_ready(child: &mut Child, addr: &Path, log_path: &Path) -> Result<AgentLink> {
    let t = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            bail!(
                "faascache agent exited ({s}) before it was ready; log {}",
                log_path.display()
            );
        }
        if let Ok(url) = std::fs::read_to_string(addr) {
            let url = url.trim();
            if url.starts_with("http://") {
                let link = AgentLink::new(url)?;
                if link.request(reqwest::Method::GET, "/healthz", None).is_ok() {
                    return Ok(link);
                }
            }
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!(
                "faascache agent was not ready within 30 s; log {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bodies() {
        let f: Features<'_> = &[("input_bytes", 16384.0), ("bad", f64::NAN)];
        let c = created_body(
            "blur-3",
            "blur",
            512 << 20,
            f,
            Some(Path::new("/sys/fs/cgroup/memory/x/blur-3")),
        );
        assert_eq!(
            c,
            json!({"id": "blur-3", "function": "blur", "booked_bytes": 536870912u64,
                   "features": {"input_bytes": 16384.0},
                   "cgroup": "/sys/fs/cgroup/memory/x/blur-3"})
        );
        let bare = created_body("a", "f", 1, &[], None);
        assert_eq!(bare, json!({"id": "a", "function": "f", "booked_bytes": 1}));
        assert_eq!(start_body(&[]), None);
        assert_eq!(
            start_body(&[("input_bytes", 2.0)]),
            Some(json!({"features": {"input_bytes": 2.0}}))
        );
        assert_eq!(finish_body(None), None);
        assert_eq!(finish_body(Some(0)), None);
        assert_eq!(finish_body(Some(7)), Some(json!({"peak_bytes": 7})));
    }

    fn status(budget: Value) -> Value {
        json!({
            "node": {"source": "/proc/meminfo", "total_bytes": 1000, "used_bytes": 400, "error": null},
            "cache": {"budget_bytes": budget, "use_bytes": 100, "target_bytes": 300,
                      "min_bytes": 10, "max_bytes": 500, "budget_error": "unreachable"},
            "plan": {"reserved_bytes": 200, "observed_bytes": 150, "others_bytes": 0},
            "counts": {"sandboxes": 2, "functions": 1, "created": 3, "started": 5,
                       "finished": 5, "destroyed": 1, "resizes": 4, "refusals": 1},
            "sandboxes": []
        })
    }

    #[test]
    fn status_parsing() {
        let s = parse_status(&status(json!(256)), 1.5).unwrap();
        assert_eq!(
            s,
            Sample {
                t_s: 1.5,
                budget_bytes: 256,
                target_bytes: 300,
                reserved_bytes: 200,
                observed_bytes: 150,
                node_used_bytes: 400,
                node_total_bytes: 1000,
                sandboxes: 2,
                resizes: 4,
                refusals: 1,
                created: 3,
                destroyed: 1,
            }
        );
        let e = parse_status(&status(Value::Null), 0.0).unwrap_err();
        assert!(e.to_string().contains("budget: unreachable"), "{e}");
        let mut v = status(json!(1));
        v["plan"] = json!({"observed_bytes": 1});
        let e = parse_status(&v, 0.0).unwrap_err();
        assert!(e.to_string().contains("plan.reserved_bytes"), "{e}");
        let mut v = status(json!(1));
        v["plan"]["reserved_bytes"] = json!(-3);
        let e = parse_status(&v, 0.0).unwrap_err();
        assert!(e.to_string().contains("not a whole number"), "{e}");
        assert!(parse_status(&json!("x"), 0.0).is_err());
    }

    #[test]
    fn the_series_extremes_and_last_counts() {
        let s = |t: f64, budget: u64, reserved: u64, observed: u64, resizes: u64| Sample {
            t_s: t,
            budget_bytes: budget,
            reserved_bytes: reserved,
            observed_bytes: observed,
            resizes,
            created: resizes * 2,
            ..Sample::default()
        };
        let sum = summarize(
            vec![
                s(0.0, 500, 0, 0, 0),
                s(1.0, 300, 400, 120, 1),
                s(2.0, 450, 100, 90, 2),
            ],
            1,
            Some("x".into()),
        );
        assert_eq!((sum.budget_min_bytes, sum.budget_max_bytes), (300, 500));
        assert_eq!((sum.reserved_max_bytes, sum.observed_max_bytes), (400, 120));
        assert_eq!((sum.resizes, sum.agent_created), (2, 4));
        assert_eq!(sum.failed_samples, 1);
        assert_eq!(sum.samples.len(), 3);
        let empty = summarize(Vec::new(), 2, None);
        assert_eq!((empty.budget_min_bytes, empty.failed_samples), (0, 2));
    }

    #[test]
    fn agent_arguments() {
        let spec = AgentSpec {
            bin: Path::new("/bin/faascache"),
            cluster: Path::new("/tmp/w/cluster-gateway"),
            server: "server-1",
            max_cache: 512 << 20,
            work: Path::new("/tmp/w"),
            name: "gateway",
        };
        let a = agent_args(&spec, "tcp:host=127.0.0.1,port=5", 42);
        let s = a.join(" ");
        assert!(s.starts_with("agent --server tcp:host=127.0.0.1,port=5 --dir /tmp/w/cluster-gateway --cache-pid 42 --listen 127.0.0.1:0"), "{s}");
        assert!(s.contains("--addr-file /tmp/w/agent-gateway.addr"), "{s}");
        assert!(s.contains("--state-dir /tmp/w/agent-gateway-state"), "{s}");
        assert!(s.ends_with("--max-cache 536870912B"), "{s}");
    }

    #[test]
    fn an_agent_that_is_down_fails_events_not_callers() {
        // A port nobody listens on (bound, then released).
        let port = super::super::http::free_port().unwrap();
        let link = AgentLink::new(&format!("http://127.0.0.1:{port}")).unwrap();
        assert!(!link.created("a", "f", 1, &[], None));
        assert!(!link.started("a", &[]));
        assert!(!link.destroyed("a"));
        assert!(link.status().is_err());
        let c = link.counts();
        assert_eq!((c.failed, c.sent()), (3, 0));
        assert!(link.first_error().unwrap().contains("POST /v1/sandboxes"));
    }

    #[test]
    fn an_agent_that_cannot_start_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let spec = AgentSpec {
            bin: Path::new("/bin/false"),
            cluster: d.path(),
            server: "server-1",
            max_cache: 1 << 30,
            work: d.path(),
            name: "gateway",
        };
        let e = AgentProcess::start(&spec).unwrap_err();
        assert!(
            format!("{e:#}").contains("run/server-1.locator"),
            "no cluster: {e:#}"
        );
        std::fs::create_dir_all(d.path().join("run")).unwrap();
        std::fs::create_dir_all(d.path().join("pids")).unwrap();
        std::fs::write(
            d.path().join("run/server-1.locator"),
            "tcp:host=127.0.0.1,port=1\n",
        )
        .unwrap();
        std::fs::write(d.path().join("pids/server-1.pid"), "x").unwrap();
        let e = AgentProcess::start(&spec).unwrap_err();
        assert!(format!("{e:#}").contains("pid file of server-1"), "{e:#}");
        std::fs::write(d.path().join("pids/server-1.pid"), "4242\n").unwrap();
        let e = AgentProcess::start(&spec).unwrap_err();
        assert!(
            format!("{e:#}").contains("exited (exit status: 1) before it was ready"),
            "{e:#}"
        );
    }

    /// A one-shot listener answering its first request with `status` and `body`; its URL.
    fn answer_once(status: u16, body: Vec<u8>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body);
        });
        url
    }

    #[test]
    fn bad_answers_are_clear_errors() {
        let l = AgentLink::new(&answer_once(200, b"<html>".to_vec())).unwrap();
        let e = l.status().unwrap_err().to_string();
        assert!(e.contains("HTTP 200 with a body that is not JSON"), "{e}");
        let l = AgentLink::new(&answer_once(200, vec![b' '; MAX_BODY + 10])).unwrap();
        let e = l.status().unwrap_err().to_string();
        assert!(e.contains("answer over 4194304 bytes"), "{e}");
        let l = AgentLink::new(&answer_once(
            422,
            br#"{"error": "booked_bytes must be above 0"}"#.to_vec(),
        ))
        .unwrap();
        assert!(!l.created("a", "f", 1, &[], None));
        assert_eq!(
            l.first_error().unwrap(),
            "POST /v1/sandboxes: HTTP 422: booked_bytes must be above 0"
        );
        let l = AgentLink::new(&answer_once(500, b"plain text".to_vec())).unwrap();
        assert!(!l.destroyed("a"));
        assert!(l.first_error().unwrap().ends_with("HTTP 500: plain text"));
        let l = AgentLink::new(&answer_once(200, br#"{"cache": {}}"#.to_vec())).unwrap();
        let e = parse_status(&l.status().unwrap(), 0.0).unwrap_err();
        assert!(e.to_string().contains("cache.budget_bytes"), "{e}");
    }
}
