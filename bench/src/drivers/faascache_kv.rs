//! FaaSCache key-value driver, over the client library (`faascache-client`).
//!
//! `--coordinator LOCATOR` (or `--driver faascache:LOCATOR`) names the coordinator; `--dir DIR`
//! (or `faascache:` with no locator) reads `DIR/coordinator.locator` written by
//! `faascache cluster up` (default directory `.faascache-cluster`).
//!
//! The objects live in one table, [`TABLE`], created on open and spread over every master
//! that is up. Each load thread gets its own [`faascache_client::Client`], hence its own
//! sessions (like one connection per thread for the peers). Mapping of the harness's ops:
//!
//! | op | FaaSCache |
//! |---|---|
//! | Get / Set / Delete | `read_async` / `write_async` / `remove_async`: `send` puts the RPC on the master's session at once, `recv` waits for the oldest (pipelined) |
//! | MultiGet / MultiSet | `multi_read` / `multi_write` (grouped by master, 20 objects per RPC, all RPCs in flight), run when `recv` reaches them |
//! | Echo | the transport's `Echo` RPC on the session of the master owning the key `echo` |
//!
//! `flush_all` drops and re-creates the table.

use super::util::{fill_process_info, is_local};
use crate::driver::{Client, ClientConfig, Driver, DriverInfo, DriverSpec, Op, OpKind, Reply};
use crate::net::PollMode;
use anyhow::{anyhow, bail, Context, Result};
use faascache_client::transport::{self, Opcode, PendingRpc};
use faascache_client::{ClientOptions, Error, Object, Pending, TableId, WriteItem};
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

/// The table the benchmark uses.
pub const TABLE: &str = "faascache-bench";

/// Opens the driver for `--coordinator` / `--dir` / `faascache:LOCATOR`.
///
/// A `--coordinator` locator that names a bare transport server (one that does not serve the
/// coordinator's `GetServerList`, e.g. `transport/examples/echo_server.rs`) is refused with a
/// pointer to `--echo-locator` (the echo driver, `drivers/faascache.rs`).
pub fn open(spec: &DriverSpec, server_pid: Option<u32>) -> Result<Box<dyn Driver>> {
    let locator = match spec {
        DriverSpec::FaasCacheCoordinator(l) if !l.trim().is_empty() => {
            if !is_coordinator(l.trim())? {
                bail!(
                    "{} is not a FaaSCache coordinator (it does not serve GetServerList): for a \
                     bare echo server use `--echo-locator {}`; key-value tests need a cluster \
                     (`faascache cluster up`)",
                    l.trim(),
                    l.trim()
                );
            }
            l.trim().to_string()
        }
        DriverSpec::FaasCacheCoordinator(_) => {
            locator_from_dir(Path::new(faascache_client::cli::DEFAULT_CLUSTER_DIR))?
        }
        DriverSpec::FaasCacheDir(d) => locator_from_dir(Path::new(d))?,
        other => bail!("not a FaaSCache driver spec: {}", other.describe()),
    };
    Ok(Box::new(KvDriver::new(&locator, server_pid)?))
}

/// Whether the server at `locator` answers the coordinator's `GetServerList` (a bare transport
/// server answers `UNIMPLEMENTED_REQUEST`).
fn is_coordinator(locator: &str) -> Result<bool> {
    use faascache_protocol::msg::{coordinator::GetServerListRequest, Services};
    use transport::CallError;
    let loc: transport::ServiceLocator = locator
        .parse()
        .with_context(|| format!("bad locator {locator:?}"))?;
    let session = transport::connect(&loc, transport::ClientConfig::default())
        .with_context(|| format!("FaaSCache server at {locator} is not reachable"))?;
    let req = GetServerListRequest {
        services: Services(0),
    };
    match faascache_transport::call(&session, &req, Duration::from_secs(5), |_| ()) {
        Ok(()) => Ok(true),
        Err(e @ CallError::Failed(_))
            if e.status() == Some(transport::Status::UNIMPLEMENTED_REQUEST) =>
        {
            Ok(false)
        }
        // Anything else: let the key-value driver report it with context.
        Err(_) => Ok(true),
    }
}

fn locator_from_dir(dir: &Path) -> Result<String> {
    faascache_client::cli::locator_from_dir(dir).map_err(|e| anyhow!(e))
}

/// A FaaSCache cluster reached through its coordinator.
#[derive(Debug)]
pub struct KvDriver {
    locator: String,
    admin: faascache_client::Client,
    span: u32,
    pid_override: Option<u32>,
}

impl KvDriver {
    /// Connects to the coordinator and creates [`TABLE`] over every master that is up.
    pub fn new(locator: &str, server_pid: Option<u32>) -> Result<Self> {
        let admin = faascache_client::Client::connect(locator).with_context(|| {
            format!("FaaSCache coordinator at {locator} is not reachable (start a cluster with `faascache cluster up`)")
        })?;
        let masters = admin
            .servers()
            .context("asking the coordinator for its servers")?
            .iter()
            .filter(|s| s.status == "up" && s.services.contains("master"))
            .count();
        if masters == 0 {
            bail!("the FaaSCache cluster at {locator} has no master up: start servers first");
        }
        let span = masters as u32;
        admin
            .create_table(TABLE, span)
            .with_context(|| format!("creating table {TABLE}"))?;
        Ok(Self {
            locator: locator.to_string(),
            admin,
            span,
            pid_override: server_pid,
        })
    }

    /// The transport of this process's session to the master of the benchmark table.
    pub fn data_transport(&self) -> Result<String> {
        let t = self.admin.table_id(TABLE)?;
        Ok(self
            .admin
            .master_session_for(t, b"echo")?
            .transport()
            .to_string())
    }

    /// Locators of the masters that are up.
    fn masters(&self) -> Vec<String> {
        self.admin
            .servers()
            .map(|v| {
                v.into_iter()
                    .filter(|s| s.status == "up" && s.services.contains("master"))
                    .map(|s| s.locator)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `port=N` of a `tcp:`/`udp:` locator on this machine.
fn local_port(locator: &str) -> Option<u16> {
    let first = locator.split(';').next()?;
    let (_, args) = first.split_once(':')?;
    let mut host = None;
    let mut port = None;
    for kv in args.split(',') {
        match kv.split_once('=') {
            Some(("host", h)) => host = Some(h.to_string()),
            Some(("port", p)) => port = p.parse().ok(),
            _ => {}
        }
    }
    let host = host?;
    is_local(&format!("{host}:0")).then_some(port?)
}

impl Driver for KvDriver {
    fn name(&self) -> &str {
        "faascache"
    }

    fn info(&self) -> DriverInfo {
        let masters = self.masters();
        let mut d = DriverInfo {
            name: "faascache".into(),
            transport: self.locator.clone(),
            server_version: None,
            protocol: format!(
                "FaaSCache RPC v{} via faascache-client, pipelined",
                faascache_protocol::wire::PROTOCOL_VERSION
            ),
            notes: vec![
                format!(
                    "table {TABLE} over {} tablet(s); masters: {}",
                    self.span,
                    masters.join(" ")
                ),
                "multiRead/multiWrite = client multi_read/multi_write (grouped by master, 20 objects per RPC, all in flight)".into(),
                "echo = transport Echo RPC to the master owning key `echo`".into(),
                "replication: as configured on the servers (see `faascache status`)".into(),
            ],
            ..Default::default()
        };
        fill_process_info(&mut d, self.server_pid());
        d
    }

    fn connect(&self, cfg: &ClientConfig) -> Result<Box<dyn Client>> {
        let poll = match cfg.poll {
            PollMode::Busy => transport::PollMode::Spin,
            PollMode::Block => transport::PollMode::Block,
        };
        let opts =
            ClientOptions::default()
                .timeout(cfg.timeout)
                .transport(transport::ClientConfig {
                    poll,
                    ..transport::ClientConfig::default()
                });
        let client =
            faascache_client::Client::connect_with(&self.locator, opts).with_context(|| {
                format!(
                    "connecting to the FaaSCache coordinator at {}",
                    self.locator
                )
            })?;
        let table = client.table_id(TABLE)?;
        Ok(Box::new(KvClient {
            client,
            table,
            queue: VecDeque::new(),
            timeout: cfg.timeout,
        }))
    }

    fn supports(&self, _kind: OpKind) -> bool {
        true
    }

    fn max_key_len(&self) -> usize {
        faascache_protocol::MAX_KEY_LEN
    }

    fn server_pid(&self) -> Option<u32> {
        if self.pid_override.is_some() {
            return self.pid_override;
        }
        // The first master that runs on this machine (with one server, the system under test).
        self.masters()
            .iter()
            .filter_map(|l| local_port(l))
            .find_map(crate::procinfo::pid_listening_on)
    }

    fn flush_all(&self) -> Result<()> {
        match self.admin.drop_table(TABLE) {
            Ok(()) | Err(Error::NoSuchTable(_)) => {}
            Err(e) => return Err(e).context("dropping the benchmark table"),
        }
        self.admin
            .create_table(TABLE, self.span)
            .context("re-creating the benchmark table")?;
        Ok(())
    }
}

/// A request in the queue.
enum Queued {
    Read(Pending<Object>),
    Write(Pending<u64>),
    Remove(Pending<Option<u64>>),
    Echo(
        PendingRpc,
        Option<transport::Result<(transport::Status, Vec<u8>)>>,
    ),
    MultiGet(Vec<Vec<u8>>),
    MultiSet(Vec<Vec<u8>>, Vec<u8>),
    /// Failed before it was sent: reported in order.
    Failed(String),
}

impl Queued {
    /// Whether `finish` will not block on the network (multi-ops always block).
    fn ready(&mut self) -> bool {
        match self {
            Queued::Read(p) => p.is_ready(),
            Queued::Write(p) => p.is_ready(),
            Queued::Remove(p) => p.is_ready(),
            Queued::Echo(p, reply) => {
                if reply.is_none() {
                    *reply = p.try_poll();
                }
                reply.is_some()
            }
            Queued::MultiGet(_) | Queued::MultiSet(..) | Queued::Failed(_) => true,
        }
    }
}

struct KvClient {
    client: faascache_client::Client,
    table: TableId,
    queue: VecDeque<Queued>,
    timeout: Duration,
}

impl KvClient {
    fn error_reply(&mut self, e: Error) -> Result<Reply> {
        match e {
            Error::Timeout { .. } | Error::Unavailable { .. } => Err(anyhow!(e)),
            Error::NoSuchTable(_) => {
                // Dropped by flush_all: pick up the new table for the next requests.
                if let Ok(t) = self.client.table_id(TABLE) {
                    self.table = t;
                }
                Ok(Reply::Error(e.to_string()))
            }
            e => Ok(Reply::Error(e.to_string())),
        }
    }

    fn finish(&mut self, q: Queued) -> Result<Reply> {
        let t = self.table;
        match q {
            Queued::Read(p) => match p.wait() {
                Ok(o) => Ok(Reply::Value(o.value.len())),
                Err(Error::NoSuchObject) => Ok(Reply::Miss),
                Err(e) => self.error_reply(e),
            },
            Queued::Write(p) => match p.wait() {
                Ok(_) => Ok(Reply::Ok),
                Err(e) => self.error_reply(e),
            },
            Queued::Remove(p) => match p.wait() {
                Ok(v) => Ok(Reply::Deleted(v.is_some())),
                Err(e) => self.error_reply(e),
            },
            Queued::Echo(mut p, reply) => match reply.unwrap_or_else(|| p.wait(self.timeout)) {
                Ok((s, _)) if s.is_ok() => Ok(Reply::Ok),
                Ok((s, _)) => Ok(Reply::Error(s.to_string())),
                Err(e) => Err(anyhow!("echo RPC: {e}")),
            },
            Queued::MultiGet(keys) => {
                let items: Vec<(TableId, &[u8])> = keys.iter().map(|k| (t, k.as_slice())).collect();
                let (mut found, mut bytes) = (0, 0);
                for r in self.client.multi_read(&items) {
                    match r {
                        Ok(o) => {
                            found += 1;
                            bytes += o.value.len();
                        }
                        Err(Error::NoSuchObject) => {}
                        Err(e) => return self.error_reply(e),
                    }
                }
                Ok(Reply::Values { found, bytes })
            }
            Queued::MultiSet(keys, value) => {
                let items: Vec<WriteItem<'_>> =
                    keys.iter().map(|k| WriteItem::new(t, k, &value)).collect();
                for r in self.client.multi_write(&items) {
                    if let Err(e) = r {
                        return self.error_reply(e);
                    }
                }
                Ok(Reply::Ok)
            }
            Queued::Failed(m) => Ok(Reply::Error(m)),
        }
    }
}

impl Client for KvClient {
    fn send(&mut self, op: &Op<'_>) -> Result<()> {
        let t = self.table;
        let c = &self.client;
        let q = match *op {
            Op::Get { key } => c.read_async(t, key).map(Queued::Read),
            Op::Set { key, value } => c.write_async(t, key, value).map(Queued::Write),
            Op::Delete { key } => c.remove_async(t, key).map(Queued::Remove),
            Op::MultiGet { keys } => Ok(Queued::MultiGet(keys.to_vec())),
            Op::MultiSet { keys, value } => Ok(Queued::MultiSet(keys.to_vec(), value.to_vec())),
            Op::Echo { payload } => c
                .master_session_for(t, b"echo")
                .and_then(|s| {
                    s.send(Opcode::Echo, payload)
                        .map_err(|e| Error::from_transport(e, "master"))
                })
                .map(|p| Queued::Echo(p, None)),
        };
        self.queue.push_back(match q {
            Ok(q) => q,
            Err(e @ (Error::Timeout { .. } | Error::Unavailable { .. })) => return Err(anyhow!(e)),
            Err(e) => Queued::Failed(e.to_string()),
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        // Requests go on the wire in `send`.
        Ok(())
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Reply>> {
        let Some(front) = self.queue.front_mut() else {
            bail!("recv with no request outstanding");
        };
        if let Some(d) = deadline {
            while !front.ready() {
                if Instant::now() >= d {
                    return Ok(None);
                }
                std::hint::spin_loop();
            }
        }
        let q = self.queue.pop_front().expect("checked non-empty");
        self.finish(q).map(Some)
    }

    fn outstanding(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ports_of_locators() {
        assert_eq!(local_port("tcp:host=127.0.0.1,port=12247"), Some(12247));
        assert_eq!(
            local_port("udp:host=localhost,port=9;tcp:host=127.0.0.1,port=1"),
            Some(9)
        );
        assert_eq!(local_port("tcp:host=10.1.2.3,port=12247"), None);
        assert_eq!(local_port("tcp:port=1"), None);
    }

    #[test]
    fn missing_cluster_gives_a_hint() {
        let e = match open(
            &DriverSpec::FaasCacheDir("/nonexistent/fc-bench".into()),
            None,
        ) {
            Ok(_) => panic!("there is no cluster there"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("no cluster at /nonexistent/fc-bench"), "{e}");
        assert!(e.contains("faascache cluster up"), "{e}");
    }
}
