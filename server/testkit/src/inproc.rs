//! An in-process cluster for the integration tests: a coordinator (in-memory external storage)
//! and N masters from `faascache-server`, over TCP on 127.0.0.1 with OS-chosen ports, without
//! pinning or spinning (the test machine has two shared cores).

#![allow(dead_code)]

use std::time::Duration;

use faascache_server::coordinator::{self, CoordinatorConfig, MemStorage};
use faascache_server::node::{self, NodeConfig};
use faascache_transport::{DispatchConfig, PollMode, ServiceLocator};

/// A running cluster; dropping it stops every process (masters first).
#[allow(missing_debug_implementations)] // holds running services
pub struct Cluster {
    pub nodes: Vec<node::Node>,
    pub coord: coordinator::CoordinatorHandle,
}

impl Cluster {
    pub fn locator(&self) -> String {
        self.coord.locator().to_string()
    }
}

fn dispatch() -> DispatchConfig {
    // Two shared cores: no pinning, no spinning.
    DispatchConfig {
        cores: 1,
        pin: false,
        first_core: 0,
        poll: PollMode::Block,
        conn: Default::default(),
    }
}

/// A coordinator and `masters` masters (64 MiB of log each).
pub fn cluster(masters: usize) -> Cluster {
    let listen: ServiceLocator = "tcp:host=127.0.0.1,port=0".parse().unwrap();
    let coord = coordinator::start(
        &listen,
        Box::new(MemStorage::default()),
        CoordinatorConfig {
            dispatch: dispatch(),
            ..CoordinatorConfig::default()
        },
    )
    .expect("coordinator starts");
    let coord_loc: ServiceLocator = coord.locator().to_string().parse().unwrap();
    let nodes = (0..masters)
        .map(|_| {
            node::start(NodeConfig {
                coordinator: coord_loc.clone().into(),
                listen: listen.clone(),
                require_bypass: false,
                memory_bytes: 64 << 20,
                max_memory_bytes: Some(256 << 20),
                warm_ahead_bytes: None,
                dispatch: dispatch(),
                enlist_timeout: Duration::from_secs(10),
                // With more than one master, every write goes through replication.
                replicas: usize::from(masters > 1),
                backup: Some(faascache_server::backup::BackupConfig::default()),
                store_settings: Default::default(),
                write_back_limit: None,
                orphan_chunk_age: faascache_server::backed::pending::DEFAULT_ORPHAN_AGE,
            })
            .expect("master starts")
        })
        .collect();
    Cluster { nodes, coord }
}

/// A cluster directory as `faascache cluster up` leaves it: `DIR/coordinator.locator` (a
/// temporary directory, removed when dropped).
pub fn cluster_dir(c: &Cluster, name: &str) -> crate::TestDir {
    let dir = crate::tempdir(&format!("client-{name}"));
    std::fs::write(
        dir.join("coordinator.locator"),
        format!("{}\n", c.locator()),
    )
    .unwrap();
    dir
}
