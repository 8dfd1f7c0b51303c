//! A server process: a master on its own storage engine, enlisted with the coordinator and
//! sending it heartbeats. (Backups join it with the durability issue.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faascache_transport::msg::coordinator::{EnlistServerRequest, HeartbeatRequest};
use faascache_transport::msg::{call, CallError, ServerId, Services};
use faascache_transport::zk::CoordinatorLocator;
use faascache_transport::{
    ClientConfig, DispatchConfig, DispatchHandler, Locator, ServerHandle, ServiceLocator, Session,
    Status,
};

use crate::master::{Master, MasterService};
use crate::storage::{Engine, EngineConfig};

/// How often a server reports to the coordinator.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Timeout of one coordinator RPC from a server.
pub const COORDINATOR_RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a server process.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The coordinator: its locator, or a `zk:` address where the leader publishes it.
    pub coordinator: CoordinatorLocator,
    /// Where to serve (port 0 picks a free port).
    pub listen: ServiceLocator,
    /// Log memory of the master, bytes.
    pub memory_bytes: usize,
    /// Dispatch cores and polling.
    pub dispatch: DispatchConfig,
    /// Give up enlisting after this long.
    pub enlist_timeout: Duration,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad storage configuration (e.g. too little memory).
    #[error(transparent)]
    Config(#[from] crate::storage::ConfigError),
    /// Could not serve.
    #[error(transparent)]
    Transport(#[from] faascache_transport::Error),
    /// Could not enlist.
    #[error("cannot enlist with the coordinator at {coordinator}: {reason} (is it running? check --coordinator)")]
    Enlist {
        /// Coordinator locator.
        coordinator: String,
        /// Cause.
        reason: String,
    },
    /// Could not start a thread.
    #[error("cannot start the heartbeat thread: {0}")]
    Thread(std::io::Error),
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub struct Node {
    server: Option<ServerHandle>,
    master: Arc<Master>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Node {
    /// Where it serves.
    pub fn locator(&self) -> Locator {
        self.server
            .as_ref()
            .expect("running")
            .local_locator()
            .clone()
    }
    /// The master.
    pub fn master(&self) -> &Arc<Master> {
        &self.master
    }
    /// Stop.
    pub fn shutdown(mut self) {
        self.stop_all();
    }
    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn enlist(session: &Session, locator: &str, previous: ServerId) -> Result<ServerId, CallError> {
    let req = EnlistServerRequest {
        services: Services::MASTER,
        locator,
        previous_id: previous,
    };
    call(session, &req, COORDINATOR_RPC_TIMEOUT, |r| r.server_id)
}

/// Connect to the coordinator (resolving the leader first when it is found through ZooKeeper).
fn connect(loc: &CoordinatorLocator) -> Result<Session, faascache_transport::Error> {
    loc.connect(ClientConfig::default())
}

/// Start a server: engine, master service, enlistment, heartbeats.
pub fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
    let engine = Engine::new(EngineConfig::with_memory(cfg.memory_bytes))?;
    let transport = cfg.listen.first().kind().to_string();
    let master = Arc::new(Master::new(
        engine,
        &transport,
        &cfg.dispatch.poll.to_string(),
    ));
    let service = MasterService {
        master: master.clone(),
    };
    let server = faascache_transport::serve(
        &cfg.listen,
        Arc::new(DispatchHandler(service)),
        cfg.dispatch.clone(),
    )?;
    let locator = server.local_locator().to_string();
    if server
        .local_locator()
        .host()
        .is_some_and(|h| h == "0.0.0.0" || h == "::")
    {
        tracing::warn!(%locator, "listening on a wildcard address: clients get this locator and cannot use it; listen on a concrete address");
    }
    // Enlist, retrying while the coordinator is not up yet.
    let deadline = Instant::now() + cfg.enlist_timeout;
    let (session, id) = loop {
        let attempt = connect(&cfg.coordinator)
            .map_err(CallError::from)
            .and_then(|s| enlist(&s, &locator, ServerId::NONE).map(|id| (s, id)));
        match attempt {
            Ok(ok) => break ok,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "coordinator not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(NodeError::Enlist {
                    coordinator: cfg.coordinator.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    };
    master.set_server_id(id);
    tracing::info!(server = %id, %locator, memory = cfg.memory_bytes, "server enlisted");
    let stop = Arc::new(AtomicBool::new(false));
    let (m2, stop2, coord, loc2) = (
        master.clone(),
        stop.clone(),
        cfg.coordinator.clone(),
        locator.clone(),
    );
    let heartbeat = std::thread::Builder::new()
        .name("faascache-heartbeat".into())
        .spawn(move || heartbeat_loop(&m2, &stop2, &coord, &loc2, Some(session)))
        .map_err(NodeError::Thread)?;
    Ok(Node {
        server: Some(server),
        master,
        stop,
        heartbeat: Some(heartbeat),
    })
}

fn heartbeat_loop(
    master: &Master,
    stop: &AtomicBool,
    coord: &CoordinatorLocator,
    locator: &str,
    mut session: Option<Session>,
) {
    let mut down_since: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(HEARTBEAT_INTERVAL);
        if session.as_ref().is_none_or(|s| s.failure().is_some()) {
            session = connect(coord).ok();
        }
        let Some(s) = &session else {
            if down_since.is_none() {
                tracing::warn!(coordinator = %coord, "coordinator unreachable; serving on, retrying");
                down_since = Some(Instant::now());
            }
            continue;
        };
        let id = master.server_id();
        match call(
            s,
            &HeartbeatRequest { server_id: id },
            COORDINATOR_RPC_TIMEOUT,
            |_| (),
        ) {
            Ok(()) => {
                if let Some(t) = down_since.take() {
                    tracing::info!(after = ?t.elapsed(), "coordinator reachable again");
                }
            }
            Err(CallError::Failed(f)) if f.status == Status::SERVER_DOESNT_EXIST => {
                // The coordinator does not know us as up (it lost its state, or timed us out):
                // register again, offering our id.
                match enlist(s, locator, id) {
                    Ok(new) => {
                        master.set_server_id(new);
                        tracing::warn!(old = %id, new = %new, "re-enlisted with the coordinator");
                    }
                    Err(e) => tracing::warn!(error = %e, "re-enlisting failed"),
                }
            }
            Err(e) => {
                if down_since.is_none() {
                    tracing::warn!(error = %e, "heartbeat failed; retrying");
                    down_since = Some(Instant::now());
                }
                session = None;
            }
        }
    }
}
