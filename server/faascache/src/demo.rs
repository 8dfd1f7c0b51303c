//! `faascache demo`: starts a local cluster, runs a short workload through the client library,
//! prints what it measured, and stops the cluster. The README's first command.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::units::parse_size;
use anyhow::{bail, Context, Result};
use clap::Args;
use faascache_client::{Client, RejectRules, WriteOptions};
use faascache_transport::PollMode;

/// `faascache demo ...`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of servers
    #[arg(long, value_name = "N", default_value_t = 3)]
    servers: usize,
    /// Cluster directory (cleared and reused on each run)
    #[arg(long, value_name = "DIR", default_value = ".faascache-demo")]
    dir: PathBuf,
    /// Objects to write and read back (30 B keys, 100 B values)
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    objects: usize,
    /// Transport: tcp or udp
    #[arg(long, value_name = "KIND", default_value = "tcp")]
    transport: String,
    /// Poll mode of the servers: spin, adaptive[:SPIN] or block. Default: adaptive when the
    /// machine has a core for each server and one for the client, else block
    #[arg(long, value_name = "MODE")]
    poll: Option<PollMode>,
    /// Log memory of each server
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = parse_size)]
    memory: usize,
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    format!(
        "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

fn key(i: usize) -> String {
    format!("demo:user:{i:010}:profile-000")
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<()> {
    let n = a.objects.max(1);
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    eprintln!(
        "faascache demo: starting a coordinator and {} servers on 127.0.0.1 over {} ...",
        a.servers, a.transport
    );
    let poll = a
        .poll
        .unwrap_or_else(|| super::cluster::default_poll(a.servers));
    eprintln!("faascache demo: servers poll in {poll} mode");
    // Ctrl-C / SIGTERM: while the cluster starts, it stops what it started; during the
    // workload, the main thread stops the cluster; a second signal exits at once.
    let stop = crate::lifecycle::Termination::delivered()?;
    let t = Instant::now();
    let replicas = super::cluster::replicas_for(a.servers, None)?;
    eprintln!("faascache demo: each master keeps {replicas} backup replica(s) of its log on the other servers");
    let cluster = super::cluster::start_until(
        &super::cluster::Options {
            servers: a.servers,
            transport: a.transport.clone(),
            memory: a.memory,
            poll,
            timeout: Duration::from_secs(30),
            replicas,
            durability: faascache_server::backup::Durability::Memory,
            client_lease_term: None,
            rebalance: false,
            store_config: None,
            write_back_limit: None,
            max_memory: None,
        },
        &a.dir,
        &|| stop.requested(),
    );
    let cluster = match cluster {
        Err(e) if e.is::<super::cluster::Interrupted>() => {
            bail!(
                "terminated by a signal while the cluster was starting; its processes are stopped"
            )
        }
        r => r?,
    };
    println!(
        "cluster up in {:.2} s: coordinator {} (logs in {})",
        t.elapsed().as_secs_f64(),
        cluster.coordinator,
        cluster.dir.join("logs").display()
    );
    eprintln!("faascache demo: running the workload (Ctrl-C stops the demo and its cluster)");
    let (coordinator, servers) = (cluster.coordinator.clone(), a.servers);
    let work = std::thread::Builder::new()
        .name("demo-workload".into())
        .spawn(move || workload(&coordinator, servers, n))
        .context("cannot start the workload thread")?;
    let result = loop {
        if work.is_finished() {
            break work
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the demo workload panicked")));
        }
        if stop.recv_timeout(Duration::from_millis(100)).is_ok() {
            eprintln!("faascache demo: terminated by a signal: stopping the cluster");
            break Err(anyhow::anyhow!(
                "terminated by a signal during the workload; the cluster is stopped"
            ));
        }
    };
    cluster.stop();
    println!("cluster stopped");
    result
}

fn workload(coordinator: &str, servers: usize, n: usize) -> Result<()> {
    let client = Client::connect(coordinator)?;
    let table = client.create_table("demo", servers as u32)?;
    println!(
        "table \"demo\" (id {table}) split into {} tablets over {servers} servers; client transport: {}",
        client.tablets(table)?.len(),
        client.transport()?
    );
    let value = [7u8; 100];
    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let s = Instant::now();
        client.write(table, key(i).as_bytes(), &value)?;
        lat.push(s.elapsed());
    }
    println!(
        "write  {n} objects (30 B keys, 100 B values), one at a time: {:.0} ops/s; {}",
        n as f64 / t.elapsed().as_secs_f64(),
        percentiles(lat)
    );
    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let k = key((i * 7919) % n);
        let s = Instant::now();
        let o = client.read(table, k.as_bytes())?;
        lat.push(s.elapsed());
        anyhow::ensure!(o.value == value, "read back a wrong value for {k}");
    }
    println!(
        "read   {n} objects in random order, one at a time: {:.0} ops/s; {}",
        n as f64 / t.elapsed().as_secs_f64(),
        percentiles(lat)
    );
    let keys: Vec<String> = (0..n).map(key).collect();
    let t = Instant::now();
    for chunk in keys.chunks(100) {
        let reqs: Vec<(u64, &[u8])> = chunk.iter().map(|k| (table, k.as_bytes())).collect();
        for r in client.multi_read(&reqs) {
            anyhow::ensure!(r?.value == value, "multi-read returned a wrong value");
        }
    }
    println!(
        "multi_read all {n} objects, 100 per call, grouped by server: {:.0} objects/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let v = client.write(table, b"counter", &0i64.to_le_bytes())?;
    match client.write_with(
        table,
        b"counter",
        b"stale",
        &WriteOptions::default().reject(RejectRules::version_is(v + 1)),
    ) {
        Err(e) => println!("compare-and-swap with a stale version refused: {e}"),
        Ok(_) => anyhow::bail!("a stale compare-and-swap was accepted"),
    }
    let (c, _) = client.increment_i64(table, b"counter", 42)?;
    println!("increment: counter = {c}");
    for s in client.servers()? {
        if let Ok(st) = client.server_stats(&s.locator) {
            println!(
                "  server {} at {}: {} objects, {} tablets, {:.1} MiB live of {} MiB, transport {}",
                st.id,
                s.locator,
                st.objects,
                st.tablets,
                st.live_bytes as f64 / 1048576.0,
                st.budget_bytes >> 20,
                st.transport
            );
        }
    }
    println!("demo done: every value read back matched");
    Ok(())
}
