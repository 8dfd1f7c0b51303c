//! `faascache gateway`: the S3- and Swift-compatible endpoint (`faascache-gateway`), finding
//! the cluster like the client commands (`--dir` or `--coordinator`) and the object store like
//! the servers (the environment's AWS_* / ST_* / OS_* settings, `--store-config`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use faascache_client::cli::{locator_from_dir, DEFAULT_CLUSTER_DIR, GATEWAYS_DIR};
use faascache_gateway::{AutoTables, GatewayConfig};
use faascache_objstore::{Scheme, Settings};
use faascache_protocol::msg::faas::WritePolicy;

use crate::units::parse_size;

/// Which store a bucket's auto table is backed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackingKind {
    /// `s3://BUCKET`
    S3,
    /// `swift://CONTAINER`
    Swift,
    /// No auto tables: serve only tables created with `faascache table create`
    None,
}

/// `faascache gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to serve S3 and Swift on (HTTP)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9100")]
    pub listen: SocketAddr,
    /// Coordinator service locator (as for the client commands)
    #[arg(long, value_name = "LOCATOR", conflicts_with = "dir")]
    pub coordinator: Option<String>,
    /// Local cluster directory (reads DIR/coordinator.locator) [default: .faascache-cluster]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Credentials and endpoints of the object store (TOML with [s3] and [swift]; see
    /// docs/faas.md); the environment (AWS_*, ST_*, OS_*) fills what the file leaves unset
    #[arg(long, value_name = "FILE")]
    pub store_config: Option<PathBuf>,
    /// The store behind buckets served on first use [default: swift when ST_AUTH or
    /// OS_AUTH_URL is set, else s3 when AWS settings are, else none]
    #[arg(long, value_enum, value_name = "KIND")]
    pub backing: Option<BackingKind>,
    /// Only these buckets (comma-separated) get a backed table on first use
    #[arg(
        long,
        value_name = "B1,B2,...",
        value_delimiter = ',',
        conflicts_with = "no_auto_tables"
    )]
    pub buckets: Option<Vec<String>>,
    /// Serve only tables created by hand (`faascache table create`)
    #[arg(long)]
    pub no_auto_tables: bool,
    /// Write policy of the tables the gateway creates
    #[arg(long, value_name = "POLICY", default_value = "write-back", value_parser = parse_policy)]
    pub policy: WritePolicy,
    /// Serve requests without checking signatures (only when no credentials are configured;
    /// anyone who can reach the port can then read and write)
    #[arg(long)]
    pub no_auth: bool,
    /// Most client connections at once (more are closed when accepted)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Bytes of request bodies held in memory at once over all requests (units B, KiB, MiB,
    /// GiB): a large PUT streams to the store holding 19 MiB of it, a multipart part or a copy
    /// is held whole; requests beyond the budget are answered SlowDown, a part or copy larger
    /// than all of it EntityTooLarge
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_buffer: usize,
    /// Threads serving HTTP
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Most cluster and store calls in flight at once (threads of the blocking pool)
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_calls: usize,
    /// Log every request (method, path, status) at info level
    #[arg(long)]
    pub access_log: bool,
    /// How the gateway's cluster calls wait for replies: block (least CPU; the default: a
    /// gateway shares its node's cores, and spinning calls slowed it — docs/benchmarks.md §12),
    /// adaptive[:SPIN] (spin briefly, then block) or spin
    #[arg(long, value_name = "MODE", default_value = "block")]
    pub poll: faascache_transport::PollMode,
}

fn parse_policy(s: &str) -> std::result::Result<WritePolicy, String> {
    WritePolicy::parse(s)
        .ok_or_else(|| format!("unknown policy {s:?}: use write-back, write-through or ephemeral"))
}

fn default_scheme(s: &Settings) -> Option<Scheme> {
    if s.swift.auth_url.is_some() {
        Some(Scheme::Swift)
    } else if s.s3.access_key_id.is_some() || s.s3.endpoint.is_some() {
        Some(Scheme::S3)
    } else {
        None
    }
}

/// The key pairs requests may be signed with: the S3 keys and the Swift user/key (as Swift's
/// s3api takes them).
fn credentials(s: &Settings) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let (Some(a), Some(k)) = (&s.s3.access_key_id, &s.s3.secret_access_key) {
        out.push((a.clone(), k.expose().to_string()));
    }
    if let (Some(u), Some(k)) = (&s.swift.user, &s.swift.key) {
        out.push((u.clone(), k.expose().to_string()));
    }
    if let (Some(u), Some(k)) = (&s.swift.username, &s.swift.password) {
        out.push((u.clone(), k.expose().to_string()));
    }
    out
}

/// Run the gateway until the process is ended.
pub fn run(args: GatewayArgs) -> Result<()> {
    // Found through a cluster directory: `faascache status` finds the gateway there too.
    let cluster_dir = match (&args.coordinator, &args.dir) {
        (Some(_), _) => None,
        (None, d) => Some(
            d.clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CLUSTER_DIR)),
        ),
    };
    let locator = match (&args.coordinator, &cluster_dir) {
        (Some(c), _) => c.clone(),
        (None, d) => locator_from_dir(d.as_deref().unwrap_or(Path::new(DEFAULT_CLUSTER_DIR)))?,
    };
    let file = args.store_config.as_deref();
    let settings = Settings::resolve(Settings::default(), file).with_context(|| {
        "cannot read the object-store settings (--store-config or FAASCACHE_STORE_CONFIG): fix the file or leave it out"
    })?;
    let scheme = match args.backing {
        Some(BackingKind::S3) => Some(Scheme::S3),
        Some(BackingKind::Swift) => Some(Scheme::Swift),
        Some(BackingKind::None) => None,
        None => default_scheme(&settings),
    };
    let auto = match (&args.buckets, args.no_auto_tables) {
        (_, true) => AutoTables::Off,
        (Some(list), false) => AutoTables::Only(list.iter().cloned().collect::<BTreeSet<_>>()),
        (None, false) => AutoTables::All,
    };
    let credentials = credentials(&settings);
    if args.no_auth && !credentials.is_empty() {
        anyhow::bail!("--no-auth with credentials configured: requests are checked against them; leave --no-auth out");
    }
    let cfg = GatewayConfig {
        listen: args.listen,
        locator,
        scheme,
        auto,
        policy: args.policy,
        settings,
        credentials,
        no_auth: args.no_auth,
        max_connections: args.max_connections,
        max_buffer: args.max_buffer as u64,
        threads: args.threads,
        max_calls: args.max_calls,
        access_log: args.access_log,
        poll: args.poll,
    };
    // The address file, once written: removed when a signal ends the gateway.
    let addr_file: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let on_signal = addr_file.clone();
    ctrlc::set_handler(move || {
        if let Some(f) = on_signal.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_file(f);
        }
        std::process::exit(0);
    })
    .context("cannot install the signal handler")?;
    let result = faascache_gateway::run(cfg, |addr| {
        println!("gateway listening on http://{addr} (S3: endpoint_url=http://{addr}; Swift: http://{addr}/auth/v1.0)");
        if let Some(dir) = &cluster_dir {
            *addr_file.lock().unwrap_or_else(|e| e.into_inner()) = write_addr_file(dir, addr);
        }
    });
    if let Some(f) = addr_file.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::fs::remove_file(f);
    }
    result?;
    Ok(())
}

/// Write `DIR/gateways/<port>.addr`, where `faascache status --dir DIR` finds a running
/// gateway (a file left by a killed gateway is shown as not answering); `None` if it cannot.
fn write_addr_file(dir: &Path, addr: SocketAddr) -> Option<PathBuf> {
    let file = dir.join(GATEWAYS_DIR).join(format!("{}.addr", addr.port()));
    let url = format!("http://{}\n", reachable(addr));
    let written = std::fs::create_dir_all(file.parent().unwrap_or(dir))
        .and_then(|()| std::fs::write(&file, url));
    match written {
        Ok(()) => Some(file),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "gateway: cannot write the address file; `faascache status --dir` will not list this gateway (use --gateway URL)");
            None
        }
    }
}

/// An address a local client can connect to (an unspecified listen address: loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
