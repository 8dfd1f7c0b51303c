//! The client subcommands of the `faascache` binary: `status`, `table create|drop|list`, `put`,
//! `get`, `rm`, `incr`, `flush`, `invalidate`, `resize`, `drain`, `shell` (one client, commands from stdin:
//! [`shell`]). Tables backed by an object store: `table create NAME --backing URL` with the
//! flags of [`BackingArgs`] (`docs/faas.md`).
//!
//! The binary flattens [`ClientCommand`] into its own subcommands and calls [`run`]:
//!
//! ```
//! use clap::{Parser, Subcommand};
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     cmd: Cmd,
//! }
//! #[derive(Subcommand)]
//! enum Cmd {
//!     // ... the binary's own subcommands (coordinator, server, cluster) ...
//!     #[command(flatten)]
//!     Client(faascache_client::cli::ClientCommand),
//! }
//! let cli = Cli::parse_from(["faascache", "get", "users", "alice", "--dir", "/tmp/c"]);
//! let Cmd::Client(cmd) = cli.cmd;
//! // faascache_client::cli::run(cmd) would now connect and print the value.
//! ```
//!
//! Every command finds the cluster through `--coordinator LOCATOR`, or `--dir DIR` (the file
//! `DIR/coordinator.locator` that `faascache cluster up` writes; default
//! [`DEFAULT_CLUSTER_DIR`]). Output is human-readable by default; `--json` prints one JSON
//! document for scripts. `get` and `incr` print the bare value so that shell scripts can use it.
//! Errors go to stderr with a hint. Exit status: 0 success, 1 error, 2 no such object or table.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::{Client, ClientOptions, Error, Object, TableBacking};
use format::{cache_json, cache_text, kib, mib};

mod args;
mod format;
mod gateways;
pub mod shell;

pub use args::{parse_duration, parse_policy, parse_size, ArgError, BackingArgs, DurationError};
pub use gateways::{DIR_TIMEOUT, GATEWAYS_DIR};

/// The cluster directory used when neither `--dir` nor `--coordinator` is given (the default of
/// `faascache cluster up`).
///
/// ```
/// assert_eq!(faascache_client::cli::DEFAULT_CLUSTER_DIR, ".faascache-cluster");
/// ```
pub const DEFAULT_CLUSTER_DIR: &str = ".faascache-cluster";

/// The file in a cluster directory that holds the coordinator's service locator.
///
/// ```
/// let f = std::path::Path::new(".faascache-cluster").join(faascache_client::cli::LOCATOR_FILE);
/// assert!(f.ends_with("coordinator.locator"));
/// ```
pub const LOCATOR_FILE: &str = "coordinator.locator";

/// Where the cluster is, and how to talk to it (common to every client command).
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct T { #[command(flatten)] t: faascache_client::cli::Target }
/// let t = T::parse_from(["x", "--dir", "/tmp/c", "--json", "--timeout", "1s"]).t;
/// assert!(t.json && t.coordinator.is_none());
/// ```
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Coordinator service locator, e.g. `tcp:host=127.0.0.1,port=12246` (`;` separates
    /// alternatives), or `zk:HOST:PORT[,HOST:PORT...][/CHROOT]` to find the leading coordinator
    /// through ZooKeeper
    #[arg(long, value_name = "LOCATOR", conflicts_with = "dir")]
    pub coordinator: Option<String>,
    /// Local cluster directory: reads DIR/coordinator.locator, written by `faascache cluster up`
    /// [default: .faascache-cluster]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print JSON (one document) instead of text
    #[arg(long)]
    pub json: bool,
    /// Give up on a call after this long (e.g. 500ms, 5s, 1m)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Client subcommands; flatten into the binary's command enum and pass to [`run`].
///
/// ```
/// use clap::Parser;
/// use faascache_client::cli::ClientCommand;
/// #[derive(Parser)]
/// struct Cli { #[command(subcommand)] cmd: ClientCommand }
/// let cli = Cli::parse_from(["faascache", "put", "users", "alice", "-"]);
/// assert!(matches!(cli.cmd, ClientCommand::Put { ref value, .. } if value == "-"));
/// ```
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Show the cluster: coordinator, transport, servers, tables, and the gateways of --dir
    Status {
        /// Show this gateway (http://HOST:PORT; repeatable) instead of those the cluster
        /// directory names (DIR/gateways/*.addr)
        #[arg(long, value_name = "URL")]
        gateway: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Create, drop or list tables
    Table {
        #[command(subcommand)]
        cmd: TableCommand,
    },
    /// Write an object (VALUE, or `-` to read the value from stdin)
    Put {
        /// Table name
        table: String,
        /// Key
        key: String,
        /// Value, or `-` for stdin
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Read an object and print its value (raw bytes, no newline added)
    Get {
        /// Table name
        table: String,
        /// Key
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove an object
    Rm {
        /// Table name
        table: String,
        /// Key
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// One client, many commands from stdin (`put T K V`, `get T K`, `incr T K [N]`, `rm T K`,
    /// `lease`, `quit`), one reply line each (`ok ...`, `notfound` or `error ...`)
    Shell {
        /// Send mutations untracked (client id 0: no lease, at most once per send) instead of
        /// exactly-once
        #[arg(long)]
        untracked: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Wait until the dirty objects of a backed table (or just KEY) are in its store, at most
    /// --timeout; prints how many objects and bytes were uploaded
    Flush {
        /// Table name
        table: String,
        /// Only this key
        key: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Drop cached clean copies after a change made in the store outside the cache: one KEY, or
    /// every key starting with --prefix P (`--prefix ''`: the whole table); dirty copies are kept
    Invalidate {
        /// Table name
        table: String,
        /// Key
        #[arg(conflicts_with = "prefix")]
        key: Option<String>,
        /// Every key starting with this
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Change a server's log memory now: grow (up to its --max-memory) or shrink (evicting
    /// clean objects of backed tables; never a dirty object or one of a plain table — refused,
    /// with the bytes still needed, when those do not fit)
    Resize {
        /// The server: its id as `status` shows it (2.0), its index (2) or its locator
        server: String,
        /// The new size (units B, KiB, MiB, GiB)
        #[arg(value_parser = parse_size)]
        size: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Move every tablet of a server to other masters and remove it from the cluster (no write
    /// is lost; dirty objects of backed tables move with their tablets); the server then exits
    Drain {
        /// The server: its id as `status` shows it (2.0), its index (2) or its locator
        server: String,
        #[command(flatten)]
        target: Target,
    },
    /// Add DELTA (default 1) to the 8-byte integer stored at KEY and print the new value
    Incr {
        /// Table name
        table: String,
        /// Key
        key: String,
        /// What to add (may be negative)
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
        #[command(flatten)]
        target: Target,
    },
}

/// `faascache table ...`
///
/// ```
/// use clap::Parser;
/// use faascache_client::cli::{ClientCommand, TableCommand};
/// #[derive(Parser)]
/// struct Cli { #[command(subcommand)] cmd: ClientCommand }
/// let cli = Cli::parse_from(["faascache", "table", "create", "users", "--span", "4"]);
/// assert!(matches!(cli.cmd, ClientCommand::Table { cmd: TableCommand::Create { span: 4, .. } }));
/// ```
#[derive(Debug, Clone, Subcommand)]
pub enum TableCommand {
    /// Create a table (or show the id of an existing one)
    Create {
        /// Table name
        name: String,
        /// Number of masters (tablets) to spread the table over
        #[arg(long, default_value_t = 1, value_name = "N")]
        span: u32,
        #[command(flatten)]
        backing: BackingArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Drop a table and all its objects
    Drop {
        /// Table name
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the tables
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// Why a cluster directory gives no coordinator locator.
#[derive(Debug, thiserror::Error)]
pub enum LocatorFileError {
    /// The locator file is empty.
    #[error("{} is empty: the cluster in {} is still starting or was not shut down cleanly; restart it with `faascache cluster up --dir {}`", .file.display(), .dir.display(), .dir.display())]
    Empty {
        /// The cluster directory.
        dir: PathBuf,
        /// Its locator file.
        file: PathBuf,
    },
    /// No locator file: no cluster there.
    #[error("no cluster at {} ({} not found): start one with `faascache cluster up --dir {}`, or pass --coordinator LOCATOR", .dir.display(), .file.display(), .dir.display())]
    NoCluster {
        /// The cluster directory.
        dir: PathBuf,
        /// Its locator file.
        file: PathBuf,
    },
    /// The file cannot be read.
    #[error("cannot read {}: {source}", .file.display())]
    Read {
        /// The locator file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The coordinator locator of a cluster directory (`DIR/coordinator.locator`).
///
/// ```
/// let tmp = tempfile::tempdir().unwrap();
/// let dir = tmp.path();
/// std::fs::write(dir.join("coordinator.locator"), "tcp:host=127.0.0.1,port=12246\n").unwrap();
/// assert_eq!(faascache_client::cli::locator_from_dir(dir).unwrap(), "tcp:host=127.0.0.1,port=12246");
/// assert!(faascache_client::cli::locator_from_dir(&dir.join("nope")).is_err());
/// ```
pub fn locator_from_dir(dir: &Path) -> Result<String, LocatorFileError> {
    let file = dir.join(LOCATOR_FILE);
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => Err(LocatorFileError::Empty {
            dir: dir.to_path_buf(),
            file,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LocatorFileError::NoCluster {
            dir: dir.to_path_buf(),
            file,
        }),
        Err(source) => Err(LocatorFileError::Read { file, source }),
    }
}

impl Target {
    /// The coordinator locator this target names.
    ///
    /// ```
    /// use clap::Parser;
    /// #[derive(Parser)]
    /// struct T { #[command(flatten)] t: faascache_client::cli::Target }
    /// let t = T::parse_from(["x", "--coordinator", "tcp:host=h,port=1"]).t;
    /// assert_eq!(t.locator().unwrap(), "tcp:host=h,port=1");
    /// ```
    pub fn locator(&self) -> Result<String, LocatorFileError> {
        match (&self.coordinator, &self.dir) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(d)) => locator_from_dir(d),
            (None, None) => locator_from_dir(Path::new(DEFAULT_CLUSTER_DIR)),
        }
    }

    fn connect(&self) -> Result<Client, Failure> {
        let loc = self.locator().map_err(|e| Failure::Usage(e.to_string()))?;
        let opts = ClientOptions::default().timeout(self.timeout);
        Client::connect_with(&loc, opts).map_err(Failure::Client)
    }
}

/// Why a command failed.
enum Failure {
    /// Bad arguments or no cluster: message with a hint.
    Usage(String),
    /// The object asked for does not exist (exit status 2).
    NotFound(String),
    /// A client error.
    Client(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

/// Runs a client command; prints its result on stdout and errors on stderr.
///
/// ```no_run
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(subcommand)] cmd: faascache_client::cli::ClientCommand }
/// let cli = Cli::parse_from(["faascache", "status", "--dir", ".faascache-cluster"]);
/// let code: std::process::ExitCode = faascache_client::cli::run(cli.cmd);
/// ```
pub fn run(cmd: ClientCommand) -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(
        cmd,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// [`run`] with explicit streams (tests, embedding): the value of `put ... -` is read from
/// `stdin`, results go to `stdout`, errors to `stderr`.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(subcommand)] cmd: faascache_client::cli::ClientCommand }
/// let cli = Cli::parse_from(["faascache", "get", "t", "k", "--dir", "/nonexistent/dir"]);
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let code = faascache_client::cli::run_with(cli.cmd, &mut std::io::empty(), &mut out, &mut err);
/// assert_eq!(code, std::process::ExitCode::from(1));
/// assert!(String::from_utf8(err).unwrap().contains("faascache cluster up"));
/// ```
pub fn run_with(
    cmd: ClientCommand,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    let out = &mut Out(stdout);
    let (json, r) = match &cmd {
        ClientCommand::Status { gateway, target } => (target.json, status(out, target, gateway)),
        ClientCommand::Table { cmd } => match cmd {
            TableCommand::Create {
                name,
                span,
                backing,
                target,
            } => (target.json, table_create(out, target, name, *span, backing)),
            TableCommand::Drop { name, target } => (target.json, table_drop(out, target, name)),
            TableCommand::List { target } => (target.json, table_list(out, target)),
        },
        ClientCommand::Put {
            table,
            key,
            value,
            target,
        } => (target.json, put(out, stdin, target, table, key, value)),
        ClientCommand::Get { table, key, target } => (target.json, get(out, target, table, key)),
        ClientCommand::Rm { table, key, target } => (target.json, rm(out, target, table, key)),
        ClientCommand::Incr {
            table,
            key,
            delta,
            target,
        } => (target.json, incr(out, target, table, key, *delta)),
        ClientCommand::Flush { table, key, target } => {
            (target.json, flush(out, target, table, key.as_deref()))
        }
        ClientCommand::Invalidate {
            table,
            key,
            prefix,
            target,
        } => (
            target.json,
            invalidate(out, target, table, key.as_deref(), prefix.as_deref()),
        ),
        ClientCommand::Resize {
            server,
            size,
            target,
        } => (target.json, resize(out, target, server, *size)),
        ClientCommand::Drain { server, target } => (target.json, drain(out, target, server)),
        ClientCommand::Shell { untracked, target } => {
            (false, shell_cmd(out, stdin, target, *untracked))
        }
    };
    let r = r.and_then(|()| {
        out.0
            .flush()
            .map_err(|e| Failure::Usage(format!("cannot write to stdout: {e}")))
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let (msg, code) = match f {
                Failure::Usage(m) => (m, 1),
                Failure::NotFound(m) => (m, 2),
                Failure::Client(e) => {
                    let code = match e {
                        Error::NoSuchObject | Error::NoSuchTable(_) => 2,
                        _ => 1,
                    };
                    (e.to_string(), code)
                }
            };
            if json {
                let _ = writeln!(out.0, "{}", json!({ "error": msg }));
            }
            let _ = writeln!(stderr, "faascache: error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Standard output of a command; write errors become [`Failure::Usage`].
struct Out<'a>(&'a mut dyn Write);

impl Out<'_> {
    fn line(&mut self, s: &str) -> Result<(), Failure> {
        writeln!(self.0, "{s}").map_err(|e| Failure::Usage(format!("cannot write to stdout: {e}")))
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), Failure> {
        self.0
            .write_all(b)
            .map_err(|e| Failure::Usage(format!("cannot write to stdout: {e}")))
    }
}

fn resize(out: &mut Out<'_>, t: &Target, server: &str, size: u64) -> Result<(), Failure> {
    let r = t.connect()?.resize_server(server, size)?;
    if t.json {
        return print_json(out, format::resize_json(&r));
    }
    out.line(&format::resize_text(&r))
}

fn drain(out: &mut Out<'_>, t: &Target, server: &str) -> Result<(), Failure> {
    let r = t.connect()?.drain_server(server)?;
    if t.json {
        return print_json(out, format::drain_json(&r));
    }
    out.line(&format::drain_text(&r))
}

fn print_json(out: &mut Out<'_>, v: serde_json::Value) -> Result<(), Failure> {
    out.line(&v.to_string())
}

fn status(out: &mut Out<'_>, t: &Target, gateway: &[String]) -> Result<(), Failure> {
    let c = t.connect()?;
    let dir = t
        .coordinator
        .is_none()
        .then(|| t.dir.clone().unwrap_or(DEFAULT_CLUSTER_DIR.into()));
    let gws = gateways::collect(dir.as_deref(), gateway, t.timeout);
    let transport = c.transport()?;
    let servers = c.servers()?;
    let tables = c.list_tables()?;
    // Each master that is up describes itself (memory, transport, durability).
    let stats: Vec<Option<Result<crate::ServerStats, Error>>> = servers
        .iter()
        .map(|s| {
            (s.status == "up" && s.services.contains("master")).then(|| c.server_stats(&s.locator))
        })
        .collect();
    if t.json {
        let servers: Vec<serde_json::Value> = servers
            .iter()
            .zip(&stats)
            .map(|(s, st)| server_json(s, st))
            .collect();
        return print_json(
            out,
            json!({
                "coordinator": c.coordinator(),
                "transport": transport,
                "servers": servers,
                "tables": tables.iter().map(|t| json!({
                    "id": t.id, "name": t.name, "tablets": t.tablets,
                })).collect::<Vec<_>>(),
                "gateways": gateways::to_json(&gws),
            }),
        );
    }
    let up = servers.iter().filter(|s| s.status == "up").count();
    out.line(&format!(
        "coordinator  {} (transport {transport})",
        c.coordinator()
    ))?;
    out.line(&format!("servers      {} ({up} up)", servers.len()))?;
    print_table(
        out,
        &[
            "ID",
            "SERVICES",
            "STATUS",
            "TRANSPORT",
            "POLL",
            "TABLETS",
            "OBJECTS",
            "MEMORY",
            "LOCATOR",
        ],
        servers
            .iter()
            .zip(&stats)
            .map(|(s, st)| {
                let mut row = vec![s.id.clone(), s.services.clone(), s.status.clone()];
                match st {
                    Some(Ok(st)) => row.extend([
                        st.transport.clone(),
                        st.poll.clone(),
                        st.tablets.to_string(),
                        st.objects.to_string(),
                        format!("{} / {}", mib(st.live_bytes), mib(st.budget_bytes)),
                    ]),
                    Some(Err(_)) => row.extend([
                        "unreachable".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]),
                    None => {
                        row.extend(["-".into(), "-".into(), "-".into(), "-".into(), "-".into()])
                    }
                }
                row.push(s.locator.clone());
                row
            })
            .collect(),
    )?;
    let mut durability: Vec<&str> = stats
        .iter()
        .filter_map(|s| s.as_ref()?.as_ref().ok())
        .map(|s| s.durability.as_str())
        .collect();
    durability.sort_unstable();
    durability.dedup();
    for d in durability {
        out.line(&format!("durability   {d}"))?;
    }
    // Why each server serves on its transport (its --listen alternatives, in order).
    for (s, st) in servers.iter().zip(&stats) {
        if let Some(Ok(st)) = st {
            out.line(&format!(
                "transport    server {}: {} ({})",
                s.id, st.transport, st.transport_choice
            ))?;
        }
    }
    print_replication(out, servers.iter().zip(&stats))?;
    // Exactly-once state: clients with saved results, the results, their bytes.
    for (s, st) in servers.iter().zip(&stats) {
        if let Some(Ok(st)) = st {
            out.line(&format!(
                "exactly-once server {}: {} clients, {} saved results, {}",
                s.id,
                st.eo_clients,
                st.eo_results,
                kib(st.eo_bytes)
            ))?;
        }
    }
    for (s, st) in servers.iter().zip(&stats) {
        if let Some(Ok(st)) = st {
            if st.cache != crate::CacheStats::default() {
                out.line(&format!(
                    "cache        server {}: {}",
                    s.id,
                    cache_text(&st.cache)
                ))?;
            }
        }
    }
    for (s, st) in servers.iter().zip(&stats) {
        if let Some(Err(e)) = st {
            out.line(&format!("warning      {}: {e}", s.locator))?;
        }
    }
    out.line(&format!("tables       {}", tables.len()))?;
    if !tables.is_empty() {
        print_tables(out, &tables)?;
    }
    gateways::text(&gws).iter().try_for_each(|l| out.line(l))
}

/// One server of `status --json`: its list entry and what it says about itself.
fn server_json(
    s: &crate::ServerInfo,
    st: &Option<Result<crate::ServerStats, Error>>,
) -> serde_json::Value {
    let mut v = json!({
        "id": s.id, "services": s.services, "status": s.status, "locator": s.locator,
        "coordinator_memory_budget_bytes": s.budget_bytes,
    });
    match st {
        Some(Ok(st)) => {
            v["memory_budget_bytes"] = json!(st.budget_bytes);
            v["live_bytes"] = json!(st.live_bytes);
            v["objects"] = json!(st.objects);
            v["tablets"] = json!(st.tablets);
            v["transport"] = json!(st.transport);
            v["transport_choice"] = json!(st.transport_choice);
            v["poll"] = json!(st.poll);
            v["durability"] = json!(st.durability);
            v["eo_clients"] = json!(st.eo_clients);
            v["eo_results"] = json!(st.eo_results);
            v["eo_bytes"] = json!(st.eo_bytes);
            v["replication"] = json!(st.replication);
            v["under_replicated"] = json!(st.under_replicated);
            v["cache"] = cache_json(&st.cache);
        }
        Some(Err(e)) => v["error"] = json!(e.to_string()),
        None => {}
    }
    v
}

/// How each master's log is replicated now, or why it is under-replicated (and that its
/// tablets are).
fn print_replication<'a>(
    out: &mut Out<'_>,
    servers: impl Iterator<
        Item = (
            &'a crate::ServerInfo,
            &'a Option<Result<crate::ServerStats, Error>>,
        ),
    >,
) -> Result<(), Failure> {
    for (s, st) in servers {
        if let Some(Ok(st)) = st {
            let tablets = if st.under_replicated && st.tablets > 0 {
                format!(" (its {} tablet(s) are under-replicated)", st.tablets)
            } else {
                String::new()
            };
            out.line(&format!(
                "replication  server {}: {}{tablets}",
                s.id, st.replication
            ))?;
        }
    }
    Ok(())
}

fn print_tables(out: &mut Out<'_>, tables: &[crate::TableInfo]) -> Result<(), Failure> {
    print_table(
        out,
        &["ID", "NAME", "TABLETS"],
        tables
            .iter()
            .map(|t| vec![t.id.to_string(), t.name.clone(), t.tablets.to_string()])
            .collect(),
    )
}

/// Prints rows as aligned columns under a header.
fn print_table(out: &mut Out<'_>, header: &[&str], rows: Vec<Vec<String>>) -> Result<(), Failure> {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("  ");
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    out.line(&line(header.to_vec()))?;
    for r in &rows {
        out.line(&line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn table_create(
    out: &mut Out<'_>,
    t: &Target,
    name: &str,
    span: u32,
    b: &BackingArgs,
) -> Result<(), Failure> {
    let backing = b.to_backing().map_err(|e| Failure::Usage(e.0))?;
    let c = t.connect()?;
    let id = match &backing {
        None => c.create_table(name, span)?,
        Some(bk) if b.no_check => c.create_backed_table_unchecked(name, span, bk)?,
        Some(bk) => c.create_backed_table(name, span, bk)?,
    };
    let (url, policy) = backing_cells(backing.as_ref());
    if t.json {
        print_json(
            out,
            json!({ "name": name, "id": id, "backing": url, "policy": policy }),
        )
    } else if backing.is_some() {
        out.line(&format!(
            "table {name} has id {id} (backing {url}, {policy})"
        ))
    } else {
        out.line(&format!("table {name} has id {id}"))
    }
}

/// A table's backing and policy as `table list` shows them (`-` for a plain table).
fn backing_cells(b: Option<&TableBacking>) -> (String, String) {
    match b {
        None => ("-".into(), "-".into()),
        Some(b) if b.url.is_empty() => ("(none)".into(), b.policy.to_string()),
        Some(b) => (b.url.clone(), b.policy.to_string()),
    }
}

fn flush(out: &mut Out<'_>, t: &Target, table: &str, key: Option<&str>) -> Result<(), Failure> {
    let c = t.connect()?;
    let id = c.table_id(table)?;
    let r = c.flush(id, key.map(str::as_bytes), t.timeout)?;
    if t.json {
        print_json(out, json!({ "objects": r.objects, "bytes": r.bytes }))
    } else {
        out.line(&format!(
            "flushed {table}: {} objects, {} bytes uploaded",
            r.objects, r.bytes
        ))
    }
}

fn invalidate(
    out: &mut Out<'_>,
    t: &Target,
    table: &str,
    key: Option<&str>,
    prefix: Option<&str>,
) -> Result<(), Failure> {
    if key.is_none() && prefix.is_none() {
        return Err(Failure::Usage(
            "give a KEY or --prefix P (--prefix '' for the whole table)".into(),
        ));
    }
    let c = t.connect()?;
    let id = c.table_id(table)?;
    let r = match (key, prefix) {
        (Some(k), _) => c.invalidate(id, k.as_bytes())?,
        (_, p) => c.invalidate_prefix(id, p.unwrap_or_default().as_bytes())?,
    };
    if t.json {
        print_json(
            out,
            json!({ "invalidated": r.invalidated, "kept_dirty": r.kept_dirty }),
        )
    } else {
        out.line(&format!(
            "invalidated {} objects of {table} ({} dirty kept: newer than the store)",
            r.invalidated, r.kept_dirty
        ))
    }
}

fn table_drop(out: &mut Out<'_>, t: &Target, name: &str) -> Result<(), Failure> {
    let c = t.connect()?;
    c.drop_table(name)?;
    if t.json {
        print_json(out, json!({ "name": name, "dropped": true }))
    } else {
        out.line(&format!("dropped table {name}"))
    }
}

fn table_list(out: &mut Out<'_>, t: &Target) -> Result<(), Failure> {
    let c = t.connect()?;
    let tables = c.list_tables()?;
    let mut cells = Vec::with_capacity(tables.len());
    for t in &tables {
        cells.push(match c.table_config(&t.name) {
            Ok(b) => backing_cells(b.as_ref()),
            // A coordinator from before backed tables (no GetTableConfig): list the rest.
            Err(Error::Protocol(_)) => ("?".into(), "?".into()),
            Err(e) => return Err(e.into()),
        });
    }
    if t.json {
        print_json(
            out,
            json!(tables
                .iter()
                .zip(&cells)
                .map(|(t, (url, policy))| json!({
                    "id": t.id, "name": t.name, "tablets": t.tablets,
                    "backing": url, "policy": policy,
                }))
                .collect::<Vec<_>>()),
        )
    } else if tables.is_empty() {
        out.line("no tables (create one with `faascache table create NAME`)")
    } else {
        print_table(
            out,
            &["ID", "NAME", "TABLETS", "BACKING", "POLICY"],
            tables
                .iter()
                .zip(cells)
                .map(|(t, (url, policy))| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.tablets.to_string(),
                        url,
                        policy,
                    ]
                })
                .collect(),
        )
    }
}

fn value_arg(stdin: &mut dyn Read, v: &str) -> Result<Vec<u8>, Failure> {
    if v == "-" {
        let mut buf = Vec::new();
        stdin
            .read_to_end(&mut buf)
            .map_err(|e| Failure::Usage(format!("cannot read the value from stdin: {e}")))?;
        Ok(buf)
    } else {
        Ok(v.as_bytes().to_vec())
    }
}

fn put(
    out: &mut Out<'_>,
    stdin: &mut dyn Read,
    t: &Target,
    table: &str,
    key: &str,
    value: &str,
) -> Result<(), Failure> {
    let value = value_arg(stdin, value)?;
    let c = t.connect()?;
    let id = c.table_id(table)?;
    let version = c.write(id, key.as_bytes(), &value)?;
    if t.json {
        print_json(
            out,
            json!({ "table": table, "key": key, "version": version }),
        )
    } else {
        out.line(&format!(
            "wrote {table}/{key} ({} bytes), version {version}",
            value.len()
        ))
    }
}

fn get(out: &mut Out<'_>, t: &Target, table: &str, key: &str) -> Result<(), Failure> {
    let c = t.connect()?;
    let id = c.table_id(table)?;
    let Object { value, version } = match c.read(id, key.as_bytes()) {
        Err(Error::NoSuchObject) => {
            return Err(Failure::NotFound(format!("no object {table}/{key}")))
        }
        r => r?,
    };
    if t.json {
        let mut v = json!({ "table": table, "key": key, "version": version });
        match std::str::from_utf8(&value) {
            Ok(s) => v["value"] = json!(s),
            Err(_) => v["value_hex"] = json!(hex(&value)),
        }
        print_json(out, v)
    } else {
        out.bytes(&value)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rm(out: &mut Out<'_>, t: &Target, table: &str, key: &str) -> Result<(), Failure> {
    let c = t.connect()?;
    let id = c.table_id(table)?;
    let removed = c.remove(id, key.as_bytes())?;
    if t.json {
        return print_json(
            out,
            json!({ "table": table, "key": key, "removed_version": removed }),
        );
    }
    match removed {
        Some(v) => out.line(&format!("removed {table}/{key} (was version {v})")),
        None => out.line(&format!("{table}/{key} did not exist: nothing removed")),
    }
}

fn shell_cmd(
    out: &mut Out<'_>,
    stdin: &mut dyn Read,
    t: &Target,
    untracked: bool,
) -> Result<(), Failure> {
    let loc = t.locator().map_err(|e| Failure::Usage(e.to_string()))?;
    let opts = ClientOptions::default()
        .timeout(t.timeout)
        .tracked(!untracked);
    let c = Client::connect_with(&loc, opts)?;
    let mut input = std::io::BufReader::new(stdin);
    shell::run(&c, &mut input, out.0)
        .map_err(|e| Failure::Usage(format!("cannot write to stdout: {e}")))
}

fn incr(out: &mut Out<'_>, t: &Target, table: &str, key: &str, delta: i64) -> Result<(), Failure> {
    let c = t.connect()?;
    let id = c.table_id(table)?;
    let (value, version) = c.increment_i64(id, key.as_bytes(), delta)?;
    if t.json {
        print_json(
            out,
            json!({ "table": table, "key": key, "value": value, "version": version }),
        )
    } else {
        out.line(&value.to_string())
    }
}

#[cfg(test)]
mod tests;
