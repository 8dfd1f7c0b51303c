//! The one table of RPC types.
//!
//! Adding an RPC is one line in [`for_each_rpc!`](crate::for_each_rpc) at the bottom of this
//! file: `/// doc` + `Name = 0xNNNN => method_name,` with a number from the right range of
//! [`OPCODE_RANGES`]. The table is an "x-macro": it hands every line to a macro of the caller's.
//! This crate generates from it the [`Opcode`] enum, [`Opcode::name`], [`Opcode::from_u16`] and
//! [`Opcode::ALL`]; the transport runtime generates its `Dispatch` trait (one method per RPC,
//! default `UNIMPLEMENTED_REQUEST`) and `dispatch` router from the same table, so the schema
//! never depends on the runtime.
//!
//! Opcode numbers are part of the wire contract: never renumber, never reuse a retired number.

/// A reserved block of opcode numbers and who owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpcodeRange {
    /// First opcode of the block.
    pub first: u16,
    /// Last opcode of the block (inclusive).
    pub last: u16,
    /// Owner / purpose.
    pub purpose: &'static str,
}

/// The reserved opcode ranges (also documented in `docs/protocol.md`). Opcode 0 is never valid.
pub const OPCODE_RANGES: &[OpcodeRange] = &[
    OpcodeRange {
        first: 0x0001,
        last: 0x00FF,
        purpose: "transport and diagnostics (ping, echo)",
    },
    OpcodeRange {
        first: 0x0100,
        last: 0x01FF,
        purpose: "master data operations (read, write, remove, increment, multi-ops, enumerate)",
    },
    OpcodeRange {
        first: 0x0200,
        last: 0x02FF,
        purpose: "coordinator (server list, tables, tablet map, recovery)",
    },
    OpcodeRange {
        first: 0x0300,
        last: 0x03FF,
        purpose: "backup (open/write/free segment, recovery reads)",
    },
    OpcodeRange {
        first: 0x0400,
        last: 0x04FF,
        purpose: "server control and membership (server-list updates, recovery masters, migration)",
    },
    OpcodeRange {
        first: 0x0500,
        last: 0x05FF,
        purpose: "FaaS layer (node agent, capacity, write-back) — tranche 2",
    },
    OpcodeRange {
        first: 0xF000,
        last: 0xFFFF,
        purpose: "tests and experiments; never used by a shipped service",
    },
];

macro_rules! define_opcodes {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal => $method:ident, )*) => {
        /// Every RPC type. Generated from the one table, [`for_each_rpc!`](crate::for_each_rpc).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum Opcode {
            $( $(#[doc = $doc])* $name = $code, )*
        }

        impl Opcode {
            /// Every opcode in table order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// Human-readable name (the enum variant name).
            pub const fn name(self) -> &'static str {
                match self { $( Opcode::$name => stringify!($name), )* }
            }

            /// The opcode for a wire value, or `None` if this build does not know it.
            pub const fn from_u16(v: u16) -> Option<Opcode> {
                match v { $( $code => Some(Opcode::$name), )* _ => None }
            }

            /// The wire value.
            pub const fn as_u16(self) -> u16 {
                self as u16
            }
        }
    };
}

crate::for_each_rpc!(define_opcodes);

// Every opcode must be non-zero and inside a reserved range.
const fn in_ranges(code: u16) -> bool {
    let mut i = 0;
    while i < OPCODE_RANGES.len() {
        if code >= OPCODE_RANGES[i].first && code <= OPCODE_RANGES[i].last {
            return true;
        }
        i += 1;
    }
    false
}
const _: () = {
    let mut i = 0;
    while i < Opcode::ALL.len() {
        assert!(
            in_ranges(Opcode::ALL[i].as_u16()),
            "opcode outside the reserved ranges"
        );
        i += 1;
    }
};

impl std::fmt::Display for Opcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ------------------------------------------------------------------------------------------------
// THE TABLE. One line per RPC. Keep numbers inside OPCODE_RANGES; never renumber.
// ------------------------------------------------------------------------------------------------

/// The one table of RPC types, as an x-macro: `for_each_rpc!(m)` expands to `m! { ... }` with one
/// `/// doc` + `Name = 0xNNNN => method_name,` line per RPC. The protocol crate builds [`Opcode`]
/// from it; the transport runtime builds its `Dispatch` trait from it.
#[macro_export]
macro_rules! for_each_rpc {
    ($m:ident) => {
        $m! {
        /// Liveness probe; empty request and response. Answered by the transport on the dispatch core.
        Ping = 0x0001 => ping,
        /// Returns the request payload unchanged. Answered by the transport on the dispatch core.
        Echo = 0x0002 => echo,
        // ---- master data operations (payloads: `msg::master`, docs/protocol.md "Cluster messages")
        /// Read one object.
        Read = 0x0101 => read,
        /// Write one object (exactly-once, reject rules).
        Write = 0x0102 => write,
        /// Remove one object (exactly-once, reject rules).
        Remove = 0x0103 => remove,
        /// Add an i64 or f64 to an 8-byte value (exactly-once, reject rules).
        Increment = 0x0104 => increment,
        /// Read several objects of one master.
        MultiRead = 0x0105 => multi_read,
        /// Write several objects of one master (each exactly-once).
        MultiWrite = 0x0106 => multi_write,
        /// Remove several objects of one master (each exactly-once).
        MultiRemove = 0x0107 => multi_remove,
        /// List the objects of one tablet in batches.
        Enumerate = 0x0108 => enumerate,
        // ---- coordinator (payloads: `msg::coordinator`)
        /// A server joins (or re-registers with) the cluster.
        EnlistServer = 0x0201 => enlist_server,
        /// A server's periodic liveness report.
        ServerHeartbeat = 0x0202 => server_heartbeat,
        /// The server list.
        GetServerList = 0x0203 => get_server_list,
        /// Create a table spread over masters.
        CreateTable = 0x0204 => create_table,
        /// Drop a table and its data.
        DropTable = 0x0205 => drop_table,
        /// Look up a table id by name.
        GetTableId = 0x0206 => get_table_id,
        /// List tables.
        ListTables = 0x0207 => list_tables,
        /// The tablet map (one table or all).
        GetTabletMap = 0x0208 => get_tablet_map,
        /// Split a tablet at a key hash.
        SplitTablet = 0x0209 => split_tablet,
        /// Move a tablet to another master.
        MigrateTablet = 0x020A => migrate_tablet,
        /// A client lease (a new client id, or the renewal of one) for exactly-once mutations.
        GetClientLease = 0x020B => get_client_lease,
        /// A server suspects another crashed (the coordinator checks before acting).
        HintServerCrashed = 0x020C => hint_server_crashed,
        /// A client gives its lease back (it is dropped: its results may be freed).
        ReleaseClientLease = 0x020D => release_client_lease,
        /// Master → coordinator: which of these client leases are still valid.
        CheckClientLeases = 0x020E => check_client_leases,
        /// A backup's server asks which crashed masters to fence (those not fully recovered).
        GetFencedMasters = 0x020F => get_fenced_masters,
        GetTableConfig = 0x0210 => get_table_config,
        /// Master → coordinator: record its replica epoch (open replicas below it are stale).
        SetReplicaEpoch = 0x0211 => set_replica_epoch,
        /// Move every tablet off a server and remove it from the cluster (`msg::elastic`).
        DrainServer = 0x0212 => drain_server,
        // ---- backup (payloads: `msg::backup`)
        /// Master → backup: write (open, append, close) a replica of a log segment.
        BackupWrite = 0x0301 => backup_write,
        /// Master → backup: free a replica. Idempotent.
        BackupFree = 0x0302 => backup_free,
        /// Coordinator → backup: list a crashed master's replicas and its log digest; fences the master.
        BackupGetReplicas = 0x0303 => backup_get_replicas,
        /// Recovery master → backup: a replica's entries of the tablets being recovered.
        BackupGetRecoveryData = 0x0304 => backup_get_recovery_data,
        /// Coordinator → backup: recovery of a master is complete; free its replicas.
        BackupRecoveryDone = 0x0305 => backup_recovery_done,
        // ---- server control (payloads: `msg::control`)
        /// Coordinator → master: serve a tablet.
        TakeTabletOwnership = 0x0401 => take_tablet_ownership,
        /// Coordinator → master: stop serving a tablet and delete its objects.
        DropTabletOwnership = 0x0402 => drop_tablet_ownership,
        /// Coordinator → migration target: accept data for a tablet.
        PrepareMigration = 0x0403 => prepare_migration,
        /// Coordinator → migration source: copy a tablet to the target.
        MigrateTabletOut = 0x0404 => migrate_tablet_out,
        /// Migration source → target: a batch of objects.
        ReceiveMigrationData = 0x0405 => receive_migration_data,
        /// Any server: id, memory, tablets, transport (for `status`).
        GetServerInfo = 0x0406 => get_server_info,
        /// Coordinator → recovery master: replay a crashed master's tablets from its replicas.
        RecoverTablets = 0x0407 => recover_tablets,
        /// Any master: change its log memory budget now (grow, or shrink by cleaning and
        /// evicting clean objects of backed tables; `msg::elastic`).
        ResizeMemory = 0x0408 => resize_memory,
        /// Coordinator → a drained server: stop heartbeating, hand off, exit (`msg::elastic`).
        RetireServer = 0x0409 => retire_server,
        // ---- FaaS layer: backed tables (payloads: `msg::faas`)
        FlushObjects = 0x0501 => flush_objects,
        InvalidateObjects = 0x0502 => invalidate_objects,
        ReadObject = 0x0503 => read_object,
        CheckBacking = 0x0504 => check_backing,
        /// Write an object of a backed table with its store metadata (exactly-once, reject rules).
        WriteObject = 0x0505 => write_object,
        /// One chunk of a large object of a backed table, invisible until committed.
        WriteObjectChunk = 0x0506 => write_object_chunk,
        /// Make a large object's chunks the object (exactly-once, reject rules).
        CommitObject = 0x0507 => commit_object,
        /// Test-only opcode that no built-in handler serves (exercises `UNIMPLEMENTED_REQUEST`).
        TestUnserved = 0xF001 => test_unserved,
        /// Test-only opcode for handlers written by tests.
        TestCustom = 0xF002 => test_custom,
            }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips() {
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from_u16(op.as_u16()), Some(op));
            assert!(!op.name().is_empty());
        }
        assert_eq!(Opcode::from_u16(0), None);
        assert_eq!(Opcode::Echo.to_string(), "Echo");
    }

    #[test]
    fn ranges_do_not_overlap() {
        for (i, a) in OPCODE_RANGES.iter().enumerate() {
            assert!(a.first <= a.last && a.first != 0);
            for b in &OPCODE_RANGES[i + 1..] {
                assert!(a.last < b.first, "{a:?} overlaps {b:?}");
            }
        }
    }
}
