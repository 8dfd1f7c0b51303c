//! Command line.

use crate::net::PollMode;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;

/// Commands besides the tests (the tests are `suite::TESTS`).
pub const COMMANDS: &[(&str, &str)] = &[
    ("compare", "the whole suite against Redis, memcached (and FaaSCache when wired) → bench/results/<date>/"),
    ("render", "re-render Markdown (--markdown or stdout) and plots (--plots) from a results --json file"),
    ("list", "list the tests"),
    ("churn", "FaaSCache: N short-lived clients (one tracked write each), then a long-lived writer; exactly-once state and clients/s"),
    ("backed", "FaaSCache backed tables against a real store (--faas-store): store GET/PUT, miss (read-through), hit, write-back PUT per size; write-back drain rate and its cost to reads (issue 16)"),
    ("recoveryReads", "FaaSCache: read p50/p99 on a node before and while its backup serves the recovery of another, SIGKILLed, master (issue 15)"),
];

pub(crate) const AFTER_HELP: &str = "\
Tests: floor echo readDist readDistRandom writeDist writeDistRandom readThroughput writeThroughput
       multiRead_oneMaster multiWrite_oneMaster readVaryingKeyLength writeVaryingKeyLength
       ycsbA ycsbB ycsbC ycsbD ycsbE ycsbF mix memory compare render list churn
       recoveryReads backed faas

Load models: closed loop by default (each client keeps --pipeline requests in flight; latency per
request from its batch's send time). --rate R switches to an open loop: Poisson arrivals at R ops/s
in total, latency from each request's intended send time (no coordinated omission). --sweep runs
an open-loop rate sweep up to the closed-loop maximum and reports the knee.

Examples:
  scripts/peers.sh start
  faascache-bench floor --duration 3
  faascache-bench readDist --driver redis://127.0.0.1:6379 --runs 5 --json out.json
  faascache-bench readThroughput --driver memcached://127.0.0.1:11211 --clients 2 --pipeline 16
  faascache-bench ycsbB --driver redis:// --keys 100000 --zipf 0.99 --rate 20000
  faascache-bench compare --runs 5
  faascache-bench churn --churn-clients 1000000 --churn-parallel 8 --churn-max-eo-bytes 16777216";

/// FaaSCache benchmark harness (ClusterPerf-style tests, YCSB, floors, peers).
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "faascache-bench", version, after_help = AFTER_HELP)]
pub struct Opts {
    /// Test to run (see the list below), `compare` for the whole suite, `list` to list tests
    pub test: String,

    /// System under test: redis://HOST:PORT or memcached://HOST:PORT (FaaSCache: --coordinator / --dir)
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub driver: String,
    /// FaaSCache cluster directory: reads DIR/coordinator.locator (written by `faascache cluster up`)
    #[arg(long, conflicts_with = "coordinator")]
    pub dir: Option<String>,
    /// FaaSCache coordinator service locator, e.g. tcp:host=127.0.0.1,port=12246
    #[arg(long)]
    pub coordinator: Option<String>,
    /// echo: measure the transport's echo RPC against a running echo server at this locator
    /// (e.g. `transport/examples/echo_server.rs`), beside the floor of the same transport
    #[arg(long, value_name = "LOCATOR", conflicts_with = "echo_server")]
    pub echo_locator: Option<String>,
    /// echo: start an in-process FaaSCache echo server per transport (tcp,udp) and measure the
    /// echo RPC against the plain-socket floor of the same transport, interleaved run by run
    #[arg(long, value_delimiter = ',', value_name = "T")]
    pub echo_server: Vec<String>,
    /// echo: core of the in-process echo server and of the floor's echo thread [default: another core than the client's]
    #[arg(long, value_name = "N")]
    pub echo_server_core: Option<usize>,
    /// echo: polling mode of the in-process echo server: spin, adaptive[:DUR], block [default: spin for --poll busy, block for --poll block]
    #[arg(long, value_name = "MODE")]
    pub echo_server_poll: Option<String>,
    /// echo on the FaaSCache echo driver: payload sizes in bytes
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000",
        value_name = "B"
    )]
    pub echo_sizes: Vec<usize>,
    /// Write results (metadata + one record per test configuration) to this JSON file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a Markdown report to this file
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write SVG plots (CDF, latency vs throughput) into this directory
    #[arg(long)]
    pub plots: Option<PathBuf>,

    /// Measured time per run and configuration, seconds
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub duration: f64,
    /// Measure this many operations per run instead of --duration
    #[arg(long, value_name = "N")]
    pub ops: Option<u64>,
    /// Warm-up per run, seconds (discarded)
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub warmup: f64,
    /// Repeat each measurement N times; the report gives the median and the spread [default: 1; compare: 5]
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// Client threads, one connection each (throughput tests sweep 1..=N)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub clients: usize,
    /// Requests in flight per client connection (closed loop)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pipeline: usize,
    /// Open loop: offered load in ops/s over all clients (Poisson arrivals)
    #[arg(long, value_name = "OPS/S")]
    pub rate: Option<f64>,
    /// Open-loop rate sweep up to the closed-loop maximum; reports the knee
    #[arg(long)]
    pub sweep: bool,
    /// Sweep points as fractions of the closed-loop maximum
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.25,0.5,0.7,0.8,0.9,1.0,1.1"
    )]
    pub sweep_points: Vec<f64>,
    /// Value size in bytes [default: 100; YCSB: 1000]
    #[arg(long, value_name = "B")]
    pub value_size: Option<usize>,
    /// Key size in bytes (keys are zero-padded record numbers)
    #[arg(long, default_value_t = 30, value_name = "B")]
    pub key_size: usize,
    /// Records in the data set (ClusterPerf's readDistRandom uses 2,000,000; YCSB's default is 1000)
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub keys: u64,
    /// Zipfian θ for YCSB tests (0 = uniform)
    #[arg(long, default_value_t = 0.99, value_name = "THETA")]
    pub zipf: f64,
    /// `mix` test: fraction of reads (the rest are overwrites)
    #[arg(long, default_value_t = 0.9, value_name = "F")]
    pub read_fraction: f64,
    /// Client polling mode: busy (non-blocking socket, spin) or block (churn: busy = the client library's default, spin 200 µs then block; block = sleep while waiting, for more client threads than cores)
    #[arg(long, value_enum, default_value_t = PollMode::Busy)]
    pub poll: PollMode,
    /// Pin client thread i to core LIST[i % len] (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub client_core: Vec<usize>,
    /// Server process id for CPU/RSS accounting [default: asked from the server or found from its port]
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Reply timeout, milliseconds
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Skip loading the data set (it is already there)
    #[arg(long)]
    pub no_load: bool,
    /// RNG seed
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// multiRead/multiWrite batch sizes
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,5,10,20,50,100,200,500,1000,2000,5000"
    )]
    pub batch_sizes: Vec<usize>,
    /// readVaryingKeyLength/writeVaryingKeyLength key lengths (bytes)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,5,10,15,20,25,30,35,40,45,50,55,60,65,70,75,80,85,90,95,100,200,300,400,500,600,700,800,900,1000,2000,3000,4000,5000,6000,7000,8000,9000,10000,20000,30000,40000,50000,60000"
    )]
    pub key_lengths: Vec<usize>,
    /// floor: transports
    #[arg(long, value_delimiter = ',', default_value = "tcp,udp")]
    pub floor_transports: Vec<String>,
    /// floor: message sizes in bytes
    #[arg(long, value_delimiter = ',', default_value = "64,100,1000")]
    pub floor_sizes: Vec<usize>,
    /// floor: core for the echo thread [default: another core than the client's]
    #[arg(long, value_name = "N")]
    pub floor_server_core: Option<usize>,
    /// memory: patterns
    #[arg(long, value_delimiter = ',', default_value = "W2,W3,W5,W8")]
    pub memory_patterns: Vec<String>,
    /// memory: live key+value data to hold, MiB
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub live_mb: u64,
    /// memory: shell command run before each pattern to restart the peer fresh; `{peer}` is
    /// replaced by redis/memcached (compare default: "scripts/peers.sh stop {peer}; scripts/peers.sh start {peer}")
    #[arg(long)]
    pub restart_cmd: Option<String>,

    /// compare: drivers to measure; `faascache:local` is a private coordinator + server on TCP,
    /// `faascache:local-memif` the same serving clients over DPDK memif (needs --features dpdk)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379,memcached://127.0.0.1:11211,faascache:local"
    )]
    pub drivers: Vec<String>,
    /// `faascache:local`: polling mode of the private cluster's server (spin, adaptive, block)
    #[arg(long, default_value = "spin", value_name = "MODE")]
    pub fc_poll: String,
    /// `faascache:local` (and the peers `compare` restarts): core the server is pinned to
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub server_core: usize,
    /// `faascache:local`: log memory of the server, MiB (the memory test sizes it from the data
    /// instead, see --fc-memory-factor)
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub fc_memory_mb: u64,
    /// `faascache:local`, memory test: the server's log memory = this × --live-mb (FaaSCache
    /// has a fixed memory size, like memcached's -m; the test gives it what the data needs)
    #[arg(long, default_value_t = 1.6, value_name = "F")]
    pub fc_memory_factor: f64,
    /// compare: tests to run
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,echo,readDist,readDistRandom,writeDist,writeDistRandom,readThroughput,writeThroughput,multiRead_oneMaster,multiWrite_oneMaster,ycsbA,ycsbB,ycsbC,ycsbD,ycsbE,ycsbF,memory"
    )]
    pub tests: Vec<String>,
    /// compare: output directory [default: bench/results/<UTC date>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,

    /// churn: short-lived clients (each: connect, one tracked write, drop)
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub churn_clients: u64,
    /// churn: short-lived clients at a time (threads)
    #[arg(long, default_value_t = 8, value_name = "P")]
    pub churn_parallel: usize,
    /// churn: writes of the long-lived client afterwards
    #[arg(long, default_value_t = 10_000, value_name = "K")]
    pub churn_writes: u64,
    /// churn: print the masters' exactly-once state every this many seconds
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub churn_report: f64,
    /// churn: fail if the masters' exactly-once bytes at the end exceed this
    #[arg(long, value_name = "BYTES")]
    pub churn_max_eo_bytes: Option<u64>,
    /// churn: at the end, wait up to this many seconds for the exactly-once state to shrink
    /// below the bound (masters drop released clients' state when they next check leases)
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub churn_settle: f64,
    /// churn, private cluster: the coordinator's client lease term, seconds
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub churn_lease_term: f64,

    /// recoveryReads: locator of the server the client reads from (node X)
    #[arg(long, value_name = "LOCATOR")]
    pub recovery_reader: Option<String>,
    /// recoveryReads: locator of the server that is filled and then killed (node V)
    #[arg(long, value_name = "LOCATOR")]
    pub recovery_victim: Option<String>,
    /// recoveryReads: process id of node V (SIGKILLed after --recovery-before)
    #[arg(long, value_name = "PID")]
    pub recovery_victim_pid: Option<u32>,
    /// recoveryReads: MiB of objects (keys + values) written to node V before the crash
    #[arg(long, default_value_t = 300, value_name = "MIB")]
    pub recovery_fill_mb: u64,
    /// recoveryReads: after the fill, wait for this many masters up (then 1 s) before reading
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub recovery_wait_masters: usize,
    /// recoveryReads: seconds of reads before the crash
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub recovery_before: f64,
    /// recoveryReads: seconds of reads after the recovery ended
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub recovery_after: f64,

    /// backed: the object store the backed tables use (`s3://BUCKET[/PREFIX]` or
    /// `swift://CONTAINER[/PREFIX]`); credentials from the environment, as the servers'
    #[arg(long, value_name = "URL")]
    pub faas_store: Option<String>,
    /// backed: object sizes, bytes
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,16000,128000,1000000,8000000"
    )]
    pub faas_sizes: Vec<usize>,
    /// backed: scale of the number of objects per size (200 at ≤ 128 KB, 50 at 1 MB, 20 above)
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub faas_rounds: f64,
    /// backed: 128 KB objects written and flushed to measure the write-back drain (0: skip)
    #[arg(long, default_value_t = 400, value_name = "N")]
    pub faas_drain_objects: usize,

    /// faas (the evaluation harness): short run with assertions — one tenant per function,
    /// 16KB and 1MB inputs, a few seconds per backend, every output checked
    #[arg(long)]
    pub quick: bool,
    /// faas: backends compared, in order (swift = Swift direct, the ratios' baseline; gateway;
    /// faascache = the Python client to the cluster; redis = Redis in front of Swift)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "swift,gateway,faascache,redis",
        value_name = "B"
    )]
    pub faas_backends: Vec<String>,
    /// faas: functions, one tenant each (single-stage functions of bench/faas/functions, and
    /// wcpipeline: the word-count map-reduce, wcmap ×parts then wcreduce, through the store)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "thumbnail,blur,convert,resample,infer,wordcount,wcpipeline",
        value_name = "F"
    )]
    pub faas_functions: Vec<String>,
    /// faas: input sizes (gen_inputs.py labels) [default: 16KB,128KB,1MB,3MB,8MB; --quick: 16KB,1MB]
    #[arg(long, value_delimiter = ',', value_name = "SIZE")]
    pub faas_input_sizes: Vec<String>,
    /// faas: inputs made by gen_inputs.py (DIR/manifest.json) [default: generated into target/faas-inputs-SEED]
    #[arg(long, value_name = "DIR")]
    pub faas_inputs: Option<PathBuf>,
    /// faas: invocations per second per tenant
    #[arg(long, default_value_t = 1.0, value_name = "R")]
    pub faas_rate: f64,
    /// faas: arrival process of every tenant: poisson or periodic
    #[arg(long, default_value = "poisson", value_name = "P")]
    pub faas_arrival: String,
    /// faas: measured seconds per backend [default: 60; --quick: 6]
    #[arg(long, value_name = "S")]
    pub faas_duration: Option<f64>,
    /// faas: warm-up seconds per backend, run but not reported [default: 10; --quick: 3]
    #[arg(long, value_name = "S")]
    pub faas_warmup: Option<f64>,
    /// faas: replay this trace (JSON saved by an earlier run) instead of drawing arrivals
    #[arg(long, value_name = "FILE")]
    pub faas_trace: Option<PathBuf>,
    /// faas: save the trace here [default: next to --json, else target/faas-trace.json]
    #[arg(long, value_name = "FILE")]
    pub faas_save_trace: Option<PathBuf>,
    /// faas: seconds an idle sandbox is kept warm
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    pub faas_keep_alive: f64,
    /// faas: most sandboxes per function
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub faas_max_sandboxes: usize,
    /// faas: invoker threads (invocations in flight)
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub faas_workers: usize,
    /// faas: booked memory per sandbox (its cgroup's limit), MiB
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub faas_memory_mb: u64,
    /// faas: run sandboxes without memory cgroups
    #[arg(long)]
    pub faas_no_cgroups: bool,
    /// faas: the functions' interpreter [default: $CARGO_TARGET_DIR or target, /faas-venv/bin/python]
    #[arg(long, value_name = "PATH")]
    pub faas_python: Option<PathBuf>,
    /// faas: the faascache binary (cluster, gateway) [default: next to this one]
    #[arg(long, value_name = "PATH")]
    pub faas_bin: Option<PathBuf>,
    /// faas: run the node agent (`faascache agent`) beside the cluster's first server for the
    /// cached backends (gateway, faascache), send it every sandbox's events (created, start,
    /// finish, DELETE) and sample its status: cache budget vs sandbox memory over time
    #[arg(long)]
    pub faas_agent: bool,
}

impl Opts {
    /// Runs per measurement.
    pub fn runs(&self) -> usize {
        self.runs
            .unwrap_or(if self.test == "compare" { 5 } else { 1 })
            .max(1)
    }
}
