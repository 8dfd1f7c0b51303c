//! FaaSCache *echo* driver: the echo RPC through the real transport API
//! (`faascache_transport::connect` → `Session::send_batch` → `PendingRpc::wait`).
//!
//! * `--echo-locator LOCATOR` connects to a running echo server, e.g.
//!   one started with `cargo run --release -p faascache-transport --example echo_server -- tcp:host=127.0.0.1,port=12247 spin 1`.
//! * `--echo-server tcp,udp` starts an in-process echo server per transport (no handler: the
//!   transport answers `Echo` itself) pinned to `--echo-server-core`, polling in
//!   `--echo-server-poll` (default: the client's mode, `busy` → `spin`).
//!
//! The `echo` test on this driver measures, per size in `--echo-sizes`, the echo RPC and the
//! plain-socket floor of the same transport (`floor`), interleaved run by run, in the same
//! polling mode and on the same cores, and records the ratio of the medians.
//!
//! Only `Op::Echo` is supported here; the key-value ops belong to the client library's driver
//! (`faascache_kv.rs`).

use crate::cli::Opts;
use crate::driver::{Client, ClientConfig, Driver, DriverInfo, Op, OpKind, Reply};
use crate::floor::{self, FloorSpec, FloorTransport};
use crate::keys::KeyChooser;
use crate::load::{self, LoadSpec};
use crate::net::PollMode;
use crate::report::{Record, Report};
use crate::suite::ctx::{self as suite, Ctx};
use crate::workloads::{KvGen, Pattern};
use anyhow::{anyhow, bail, Context, Result};
use faascache_transport as ft;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The transport polling mode that matches the harness's client mode.
pub fn transport_poll(p: PollMode) -> ft::PollMode {
    match p {
        PollMode::Busy => ft::PollMode::Spin,
        PollMode::Block => ft::PollMode::Block,
    }
}

/// Echo driver over one locator; optionally owns the in-process server it talks to.
pub struct FaasCacheEcho {
    locator: ft::ServiceLocator,
    server_pid: Option<u32>,
    server: Option<ft::ServerHandle>,
    notes: Vec<String>,
}

impl std::fmt::Debug for FaasCacheEcho {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaasCacheEcho")
            .field("locator", &self.locator.to_string())
            .finish()
    }
}

impl FaasCacheEcho {
    /// Driver for a running server at `locator`.
    pub fn connect_to(locator: &str, server_pid: Option<u32>) -> Result<Self> {
        let loc: ft::ServiceLocator = locator
            .parse()
            .with_context(|| format!("bad FaaSCache locator {locator:?}"))?;
        let first = loc.first();
        let pid = server_pid.or_else(|| {
            (first.kind() == ft::TransportKind::Tcp)
                .then(|| first.port())
                .flatten()
                .and_then(crate::procinfo::pid_listening_on)
        });
        Ok(Self {
            locator: loc,
            server_pid: pid,
            server: None,
            notes: vec![
                "echo RPC = 32 B header + payload each way; the floor sends the payload only"
                    .into(),
            ],
        })
    }

    /// Starts an in-process echo server (`transport` = `tcp` or `udp`, loopback) on `core`.
    pub fn in_process(transport: &str, core: Option<usize>, poll: ft::PollMode) -> Result<Self> {
        let loc: ft::ServiceLocator = format!("{transport}:host=127.0.0.1,port=0")
            .parse()
            .with_context(|| format!("bad echo server transport {transport:?}"))?;
        let server = ft::serve(
            &loc,
            Arc::new(ft::NoHandler),
            ft::DispatchConfig {
                cores: 1,
                pin: core.is_some(),
                first_core: core.unwrap_or(0),
                poll,
                conn: Default::default(),
            },
        )
        .map_err(|e| anyhow!("starting the in-process {transport} echo server: {e}"))?;
        let mut d = Self::connect_to(&server.local_locator().to_string(), None)?;
        d.server_pid = None; // this process: CPU comes from the dispatch thread's clock
        d.notes.push(format!(
            "in-process echo server: 1 dispatch thread, core {}, poll {poll}",
            core.map_or("unpinned".into(), |c| c.to_string())
        ));
        d.server = Some(server);
        Ok(d)
    }

    /// CPU time of the in-process server's dispatch thread.
    pub fn server_cpu_time(&self) -> Option<Duration> {
        self.server.as_ref().map(|s| s.cpu_time())
    }

    /// The transport of the locator.
    pub fn transport(&self) -> ft::TransportKind {
        self.locator.first().kind()
    }
}

impl Driver for FaasCacheEcho {
    fn name(&self) -> &str {
        "faascache-echo"
    }

    fn info(&self) -> DriverInfo {
        let mut info = DriverInfo {
            name: "faascache-echo".into(),
            transport: self.locator.to_string(),
            server_version: Some(format!("faascache-transport {}", env!("CARGO_PKG_VERSION"))),
            protocol: "FaaSCache RPC v1 (32 B header), Echo opcode answered by the transport"
                .into(),
            notes: self.notes.clone(),
            ..Default::default()
        };
        if let Some(s) = &self.server {
            info.server_cmdline = Some(format!(
                "in-process serve({}, NoHandler, poll {})",
                s.local_locator(),
                s.poll_mode()
            ));
        } else {
            super::fill_process_info(&mut info, self.server_pid);
        }
        info
    }

    fn connect(&self, cfg: &ClientConfig) -> Result<Box<dyn Client>> {
        let session = ft::connect(
            &self.locator,
            ft::ClientConfig {
                poll: transport_poll(cfg.poll),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow!("connecting to {}: {e}", self.locator))?;
        Ok(Box::new(EchoClient {
            session,
            queued: Vec::new(),
            nq: 0,
            pending: VecDeque::new(),
            timeout: cfg.timeout,
        }))
    }

    fn supports(&self, kind: OpKind) -> bool {
        kind == OpKind::Echo
    }

    fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }

    fn flush_all(&self) -> Result<()> {
        Ok(()) // an echo server holds no data
    }
}

/// One session; requests queued by `send` leave together at `flush` (`Session::send_batch`).
struct EchoClient {
    session: ft::Session,
    /// Payload copies of queued requests (buffers reused across batches).
    queued: Vec<Vec<u8>>,
    nq: usize,
    pending: VecDeque<ft::PendingRpc>,
    timeout: Duration,
}

impl Client for EchoClient {
    fn send(&mut self, op: &Op<'_>) -> Result<()> {
        let Op::Echo { payload } = op else {
            bail!("the FaaSCache echo driver only runs the echo test (key-value ops: faascache_kv driver)");
        };
        if self.queued.len() == self.nq {
            self.queued.push(Vec::new());
        }
        let b = &mut self.queued[self.nq];
        b.clear();
        b.extend_from_slice(payload);
        self.nq += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        match self.nq {
            0 => {}
            1 => self
                .pending
                .push_back(self.session.send(ft::Opcode::Echo, &self.queued[0])?),
            n => {
                let reqs: Vec<(ft::Opcode, &[u8])> = self.queued[..n]
                    .iter()
                    .map(|b| (ft::Opcode::Echo, b.as_slice()))
                    .collect();
                self.session.send_batch_into(&reqs, &mut self.pending)?;
            }
        }
        self.nq = 0;
        Ok(())
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Reply>> {
        let Some(p) = self.pending.front_mut() else {
            bail!("recv with nothing outstanding (flush first)");
        };
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => self.timeout,
        };
        match p.wait(wait) {
            Ok((status, _)) => {
                self.pending.pop_front();
                Ok(Some(if status.is_ok() {
                    Reply::Ok
                } else {
                    Reply::Error(format!("status {status:?}"))
                }))
            }
            Err(ft::Error::Timeout(_)) if deadline.is_some() => Ok(None),
            Err(e) => Err(anyhow!("echo RPC failed: {e}")),
        }
    }

    fn outstanding(&self) -> usize {
        self.nq + self.pending.len()
    }
}

/// Fewer round trips than this in a measured run means the scheduler starved it.
const MIN_SAMPLES: u64 = 100;

fn floor_transport(k: ft::TransportKind) -> Option<FloorTransport> {
    match k {
        ft::TransportKind::Tcp => Some(FloorTransport::Tcp),
        ft::TransportKind::Udp => Some(FloorTransport::Udp),
        _ => None,
    }
}

/// Client core, and the core for the server side (the echo server or the floor's echo thread).
pub fn cores(opts: &Opts) -> (Option<usize>, Option<usize>) {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let client = opts
        .client_core
        .first()
        .copied()
        .or(if nproc >= 2 { Some(0) } else { None });
    let server = opts
        .echo_server_core
        .or(opts.floor_server_core)
        .or(client.map(|c| (c + 1) % nproc));
    (client, server)
}

/// The `echo` test on the FaaSCache echo driver: per size, `runs` × (floor run, echo run),
/// interleaved; one echo record and one floor record per size, the echo record carrying the
/// floor's p50 and the ratio. Pipelined runs (`--pipeline` > 1) skip the floor (a ping-pong is
/// not their floor).
pub fn echo_test(ctx: &Ctx<'_>, echo: &FaasCacheEcho) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let (client_core, server_core) = cores(o);
    let server_poll = echo
        .server
        .as_ref()
        .map(|s| s.poll_mode().to_string())
        .unwrap_or_else(|| "external (see server_cmdline)".into());
    let ft_kind = echo.transport();
    let pipeline = o.pipeline.max(1);
    let clients = o.clients.max(1);
    let floor_t = floor_transport(ft_kind).filter(|_| pipeline == 1 && clients == 1);
    let mut out = Vec::new();
    for &size in &o.echo_sizes {
        let mut spec: LoadSpec = ctx.spec(clients, pipeline);
        if spec.client_cores.is_empty() {
            spec.client_cores = client_core.into_iter().collect();
        }
        let fspec = floor_t.map(|t| FloorSpec {
            transport: t,
            size,
            poll: o.poll,
            warmup: Duration::from_secs_f64(o.warmup.min(1.0)),
            duration: Duration::from_secs_f64(o.duration),
            client_core,
            server_core,
        });
        let make = move |t: usize| -> Result<Box<dyn load::OpGen>> {
            Ok(Box::new(KvGen::new(
                Pattern::Echo,
                KeyChooser::Single(0),
                o.key_size,
                size,
                Arc::new(AtomicU64::new(1)),
                o.seed + t as u64,
            )))
        };
        let (mut eruns, mut fruns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let mut repeated = 0;
        for i in 0..o.runs() {
            // A run the scheduler starved (other work on a shared machine: < MIN_SAMPLES round
            // trips in the whole measured interval) says nothing about either side: repeat it,
            // up to 3 times, and say so in the record.
            let mut attempt = 0;
            let (fr, er) = loop {
                let fr = match &fspec {
                    Some(f) => Some(floor::run(f)?),
                    None => None,
                };
                let mut s = spec.clone();
                s.seed = spec.seed.wrapping_add(1000 * i as u64);
                let (c0, t0) = (echo.server_cpu_time(), Instant::now());
                let mut r = load::run(echo, &make, &s)?;
                if let (Some(c0), Some(c1)) = (c0, echo.server_cpu_time()) {
                    r.server_cpu = Some((c1 - c0).as_secs_f64() / t0.elapsed().as_secs_f64());
                }
                let starved = r.hist.len() < MIN_SAMPLES
                    || fr.as_ref().is_some_and(|f| f.hist.len() < MIN_SAMPLES);
                if !starved || attempt == 3 {
                    break (fr, r);
                }
                attempt += 1;
                repeated += 1;
            };
            if let Some(f) = &fr {
                let (e, fl) = (er.hist.summary().p50_us, f.hist.summary().p50_us);
                if e > 0.0 && fl > 0.0 {
                    ratios.push(e / fl);
                }
            }
            fruns.extend(fr);
            eruns.push(er);
        }
        let mut rec = ctx.base("echo", format!("{}/{size}B", ft_kind.as_str()), &spec);
        rec.value_size = size;
        suite::summarise(&mut rec, &eruns);
        let floor_rec = fspec.as_ref().map(|f| {
            let mut fr = suite::floor_record(o, f);
            suite::summarise(&mut fr, &fruns);
            fr
        });
        rec.extra = serde_json::json!({
            "client_poll": o.poll.as_str(),
            "server_poll": server_poll,
            "client_core": client_core,
            "server_core": if echo.server.is_some() { server_core } else { None },
            "floor_server_core": server_core,
            "floor_p50_us": floor_rec.as_ref().map(|f| f.p50_us),
            "floor_p99_us": floor_rec.as_ref().map(|f| f.p99_us),
            "ratio_p50_to_floor": floor_rec.as_ref().map(|f| rec.p50_us / f.p50_us.max(1e-9)),
            "ratio_p50_to_floor_per_run": ratios,
            "load_average_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        });
        if repeated > 0 {
            rec.notes.push(format!(
                "{repeated} starved run(s) (< {MIN_SAMPLES} samples) repeated"
            ));
        }
        rec.notes.push(format!(
            "server_cpu = CPU of the echo server's dispatch thread ({})",
            if echo.server.is_some() {
                "thread clock"
            } else {
                "/proc of the server process"
            }
        ));
        if let Some(fr) = floor_rec {
            suite::print_line(&fr);
            out.push(fr);
        }
        suite::print_line(&rec);
        if let Some(r) = rec.extra["ratio_p50_to_floor"].as_f64() {
            let per: Vec<String> = rec.extra["ratio_p50_to_floor_per_run"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_f64())
                        .map(|x| format!("{x:.2}"))
                        .collect()
                })
                .unwrap_or_default();
            eprintln!(
                "  echo p50 / floor p50 = {r:.2} (per run: {})",
                per.join(", ")
            );
        }
        out.push(rec);
    }
    Ok(out)
}

/// `faascache-bench echo --echo-server tcp,udp` (an in-process server per transport) or
/// `--echo-locator LOCATOR` (a running server): [`echo_test`] against each.
pub fn run_in_process(opts: &Opts) -> Result<Report> {
    let (_, server_core) = cores(opts);
    let poll = match &opts.echo_server_poll {
        Some(p) => p
            .parse::<ft::PollMode>()
            .map_err(|e| anyhow!("--echo-server-poll: {e}"))?,
        None => transport_poll(opts.poll),
    };
    let mut records = Vec::new();
    let mut infos = Vec::new();
    let mut drivers = Vec::new();
    if let Some(l) = &opts.echo_locator {
        drivers.push(FaasCacheEcho::connect_to(l, opts.server_pid)?);
    }
    for t in &opts.echo_server {
        drivers.push(FaasCacheEcho::in_process(t, server_core, poll)?);
    }
    for d in drivers {
        let info = d.info();
        eprintln!(
            "== echo on {} ({}; client poll {})",
            info.transport,
            info.server_cmdline.as_deref().unwrap_or("external server"),
            opts.poll.as_str()
        );
        let ctx = Ctx {
            opts,
            driver: Some(&d),
            info: info.clone(),
        };
        records.extend(echo_test(&ctx, &d)?);
        infos.push(info);
    }
    Ok(Report {
        metadata: suite::metadata(opts, infos),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_driver_round_trips_single_and_batched_over_tcp_and_udp() {
        for t in ["tcp", "udp"] {
            let d = FaasCacheEcho::in_process(t, None, ft::PollMode::default()).unwrap();
            assert!(d.supports(OpKind::Echo) && !d.supports(OpKind::Get));
            for poll in [PollMode::Busy, PollMode::Block] {
                let mut c = d
                    .connect(&ClientConfig {
                        poll,
                        timeout: Duration::from_secs(10),
                    })
                    .unwrap();
                for batch in [1usize, 7, 300] {
                    for i in 0..batch {
                        c.send(&Op::Echo {
                            payload: &vec![i as u8; 100 + i],
                        })
                        .unwrap();
                    }
                    assert_eq!(c.outstanding(), batch);
                    c.flush().unwrap();
                    for _ in 0..batch {
                        assert_eq!(c.recv(None).unwrap(), Some(Reply::Ok), "{t} {poll:?}");
                    }
                    assert_eq!(c.outstanding(), 0);
                }
                assert!(c.send(&Op::Get { key: b"k" }).is_err());
            }
            assert!(d.server_cpu_time().is_some());
            assert!(d.info().server_cmdline.unwrap().contains("NoHandler"));
        }
    }
}
