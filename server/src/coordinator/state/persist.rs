//! The persisted encoding of [`CoordinatorState`] and its invariants: what a restarted
//! coordinator reads back from external storage, checked before it is trusted.

use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::faas::TableBacking;
use faascache_protocol::msg::{MsgError, ServerId, Services};
use faascache_protocol::wire::codec::{CodecError, Reader, Writer};

use super::{CoordinatorState, ServerRecord, TableRecord, Tablet};

const STATE_MAGIC: &[u8; 4] = b"FCCS";
/// Format 2 adds each table's optional backing (a presence byte, then `TableBacking`'s wire
/// encoding). A state without backed tables is still written as format 1, so a build from
/// before backed tables reads it; format 1 reads as tables without backings.
/// Format 3: format 2 and, at the end, the masters' replica epochs (written only when some
/// master recorded one, so other states keep the older formats).
const STATE_VERSION_EPOCHS: u32 = 3;
const STATE_VERSION: u32 = 2;
const STATE_VERSION_PLAIN: u32 = 1;
/// Counters (versions, ids) read back must be below this: each grows by one per operation, so
/// only a damaged blob gets near `u64::MAX` (and `+ 1` on it would overflow).
const COUNTER_LIMIT: u64 = 1 << 62;

/// A broken invariant of the state (the first one found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    /// A table's tablets overlap or leave a gap.
    #[error("table {table} tablets do not tile the hash space at {at:#x}")]
    NotTiled {
        /// Table name.
        table: String,
        /// First hash where the tiling breaks.
        at: u64,
    },
    /// A tablet's owner is not in the server list.
    #[error("tablet {start:#x} of {table} is owned by unknown server {owner}")]
    UnknownOwner {
        /// Table name.
        table: String,
        /// The tablet's first hash.
        start: u64,
        /// Its owner.
        owner: ServerId,
    },
    /// A table's tablets end before `u64::MAX`.
    #[error("table {0} tablets stop before the end of the hash space")]
    ShortOfEnd(String),
    /// A table id not below the next id to hand out (it could be handed out again).
    #[error("table id {id} not below next id {next}")]
    TableIdAhead {
        /// The table's id.
        id: u64,
        /// `next_table_id`.
        next: u64,
    },
    /// A tablet of a table that does not exist.
    #[error("a tablet belongs to no table (table id {0})")]
    OrphanTablet(u64),
}

/// Why a persisted coordinator state does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StateDecodeError {
    /// The bytes end early or run on.
    #[error("coordinator state: {0}")]
    Codec(#[from] CodecError),
    /// Not a coordinator state blob.
    #[error("coordinator state: bad magic (not a coordinator state blob)")]
    BadMagic,
    /// Written by another build.
    #[error(
        "coordinator state: format version {0} is not supported (this build reads {STATE_VERSION_PLAIN} to {STATE_VERSION_EPOCHS})"
    )]
    Version(u32),
    /// A replica epoch names a server the state does not list.
    #[error(
        "coordinator state: a replica epoch names server {0}, which the server list does not hold"
    )]
    EpochOfUnknownServer(ServerId),
    /// A table's backing does not decode.
    #[error("coordinator state: table {table:?} has a bad backing: {error}")]
    Backing {
        /// Table name.
        table: String,
        /// Why.
        error: MsgError,
    },
    /// A text field is not UTF-8.
    #[error("coordinator state: {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// An unknown server status byte.
    #[error("coordinator state: bad server status {0}")]
    ServerStatus(u8),
    /// An unknown tablet state byte.
    #[error("coordinator state: bad tablet state {0}")]
    TabletState(u8),
    /// A counter so large that it could not grow any more.
    #[error("coordinator state: {what} is {value}, beyond any real cluster's (a damaged blob)")]
    Counter {
        /// Which counter.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// Decodes, but breaks an invariant.
    #[error("coordinator state is inconsistent: {0}")]
    Inconsistent(#[from] InvariantError),
}

impl CoordinatorState {
    /// Check the invariants; the first broken one is the error.
    pub fn check(&self) -> Result<(), InvariantError> {
        for t in self.tables.values() {
            let mut next = Some(0u64);
            for x in self.tablets.iter().filter(|x| x.table_id == t.id) {
                if Some(x.start) != next || x.end < x.start {
                    return Err(InvariantError::NotTiled {
                        table: t.name.clone(),
                        at: x.start,
                    });
                }
                next = x.end.checked_add(1);
                if self.server(x.owner).is_none() {
                    return Err(InvariantError::UnknownOwner {
                        table: t.name.clone(),
                        start: x.start,
                        owner: x.owner,
                    });
                }
            }
            if next.is_some() {
                return Err(InvariantError::ShortOfEnd(t.name.clone()));
            }
            if t.id >= self.next_table_id {
                return Err(InvariantError::TableIdAhead {
                    id: t.id,
                    next: self.next_table_id,
                });
            }
        }
        if let Some(x) = self
            .tablets
            .iter()
            .find(|x| !self.tables.values().any(|t| t.id == x.table_id))
        {
            return Err(InvariantError::OrphanTablet(x.table_id));
        }
        Ok(())
    }

    // ---- persistence ---------------------------------------------------------------------------

    /// Encode the durable part of the state (volatile fields and `Migrating` states are not
    /// kept: a migration in flight restarts from its source).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        let epochs: Vec<(ServerId, u64)> = self
            .servers
            .values()
            .filter(|s| s.replica_epoch > 0)
            .map(|s| (s.id, s.replica_epoch))
            .collect();
        let backed = !epochs.is_empty() || self.tables.values().any(|t| t.backing.is_some());
        let version = if !epochs.is_empty() {
            STATE_VERSION_EPOCHS
        } else if backed {
            STATE_VERSION
        } else {
            STATE_VERSION_PLAIN
        };
        w.raw(STATE_MAGIC).u32(version);
        w.u64(self.server_list_version)
            .u64(self.next_table_id)
            .u64(self.tablet_map_version)
            .u64(self.client_id_ceiling);
        w.u32(self.servers.len() as u32);
        for s in self.servers.values() {
            w.u64(s.id.0)
                .u32(s.services.0)
                .u8(s.status.as_u8())
                .bytes_u16(s.locator.as_bytes());
        }
        w.u32(self.tables.len() as u32);
        for t in self.tables.values() {
            w.u64(t.id).bytes_u16(t.name.as_bytes());
            if backed {
                TableBacking::write_opt(t.backing.as_ref(), &mut w);
            }
        }
        w.u32(self.tablets.len() as u32);
        for t in &self.tablets {
            let state = if t.state == TabletState::Migrating {
                TabletState::Normal
            } else {
                t.state
            };
            w.u64(t.table_id)
                .u64(t.start)
                .u64(t.end)
                .u64(t.owner.0)
                .u8(state.as_u8());
        }
        if !epochs.is_empty() {
            w.u32(epochs.len() as u32);
            for (id, epoch) in epochs {
                w.u64(id.0).u64(epoch);
            }
        }
        buf
    }

    /// Decode a state written by [`encode`](Self::encode); a clear error if it is not one.
    pub fn decode(bytes: &[u8]) -> Result<CoordinatorState, StateDecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != STATE_MAGIC {
            return Err(StateDecodeError::BadMagic);
        }
        let v = r.u32()?;
        if !matches!(
            v,
            STATE_VERSION_PLAIN | STATE_VERSION | STATE_VERSION_EPOCHS
        ) {
            return Err(StateDecodeError::Version(v));
        }
        let mut s = CoordinatorState {
            server_list_version: r.u64()?,
            next_table_id: r.u64()?,
            tablet_map_version: r.u64()?,
            client_id_ceiling: r.u64()?,
            ..Default::default()
        };
        for (what, value) in [
            ("the server list version", s.server_list_version),
            ("the next table id", s.next_table_id),
            ("the tablet map version", s.tablet_map_version),
            ("the client id ceiling", s.client_id_ceiling),
        ] {
            if value >= COUNTER_LIMIT {
                return Err(StateDecodeError::Counter { what, value });
            }
        }
        let text = |b: &[u8], what: &'static str| {
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| StateDecodeError::NotUtf8(what))
        };
        let n = r.u32()?;
        for _ in 0..n {
            let id = ServerId(r.u64()?);
            if id.index() == u32::MAX {
                return Err(StateDecodeError::Counter {
                    what: "a server slot index",
                    value: u64::from(id.index()),
                });
            }
            let services = Services(r.u32()?);
            let st = r.u8()?;
            let status = ServerStatus::from_u8(st).ok_or(StateDecodeError::ServerStatus(st))?;
            let locator = text(r.bytes_u16()?, "a locator")?;
            s.servers.insert(
                id.index(),
                ServerRecord {
                    id,
                    services,
                    locator,
                    status,
                    replica_epoch: 0,
                },
            );
        }
        let n = r.u32()?;
        for _ in 0..n {
            let id = r.u64()?;
            let name = text(r.bytes_u16()?, "a table name")?;
            let backing = if v >= STATE_VERSION {
                TableBacking::read_opt(&mut r).map_err(|error| StateDecodeError::Backing {
                    table: name.clone(),
                    error,
                })?
            } else {
                None
            };
            s.tables
                .insert(name.clone(), TableRecord { id, name, backing });
        }
        let n = r.u32()?;
        for _ in 0..n {
            let table_id = r.u64()?;
            let start = r.u64()?;
            let end = r.u64()?;
            let owner = ServerId(r.u64()?);
            let st = r.u8()?;
            let state = TabletState::from_u8(st).ok_or(StateDecodeError::TabletState(st))?;
            s.tablets.push(Tablet {
                table_id,
                start,
                end,
                owner,
                state,
            });
        }
        if v == STATE_VERSION_EPOCHS {
            let n = r.u32()?;
            for _ in 0..n {
                let id = ServerId(r.u64()?);
                let epoch = r.u64()?;
                match s.servers.get_mut(&id.index()) {
                    Some(rec) if rec.id == id => rec.replica_epoch = epoch,
                    _ => return Err(StateDecodeError::EpochOfUnknownServer(id)),
                }
            }
        }
        r.finish()?;
        s.next_client_id = s.client_id_ceiling;
        s.check()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_at_the_edge_of_u64_are_refused_not_overflowed() {
        let bytes = CoordinatorState::default().encode();
        assert!(CoordinatorState::decode(&bytes).is_ok());
        // The four counters follow the magic and the format version.
        for (i, what) in [
            "the server list version",
            "the next table id",
            "the tablet map version",
            "the client id ceiling",
        ]
        .into_iter()
        .enumerate()
        {
            let mut bad = bytes.clone();
            let at = 8 + 8 * i;
            bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            match CoordinatorState::decode(&bad) {
                Err(StateDecodeError::Counter { what: w, value }) => {
                    assert_eq!((w, value), (what, u64::MAX));
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn decode_errors_are_typed() {
        let bytes = CoordinatorState::default().encode();
        assert!(matches!(
            CoordinatorState::decode(&bytes[..3]),
            Err(StateDecodeError::Codec(_))
        ));
        let mut v = bytes.clone();
        v[4] = 9;
        assert!(matches!(
            CoordinatorState::decode(&v),
            Err(StateDecodeError::Version(9))
        ));
    }

    fn two_masters() -> CoordinatorState {
        let mut c = CoordinatorState::default();
        for i in 0..2 {
            c.enlist(
                Services::MASTER,
                &format!("tcp:host=h,port={i}"),
                ServerId::NONE,
                std::time::Duration::from_secs(1),
            );
        }
        c
    }

    fn backing(url: &str, policy: WritePolicy) -> TableBacking {
        TableBacking::new(url, policy)
    }

    use super::super::{Action, CoordError, Status};
    use faascache_protocol::msg::faas::WritePolicy;

    #[test]
    fn backed_tables_are_created_once_and_their_backing_never_changes() {
        let mut c = two_masters();
        let b = backing("s3://bucket/pre", WritePolicy::WriteBack);
        let (id, a) = c.create_table_with("photos", 2, Some(b.clone())).unwrap();
        assert_eq!(a.len(), 3, "persist + one take per tablet");
        // Same name, same backing: the same id and nothing to do (a retried create).
        let (again, a) = c.create_table_with("photos", 2, Some(b.clone())).unwrap();
        assert_eq!((again, a.len()), (id, 0));
        // Another backing, or none: refused, naming the backing the table has.
        let other = backing("swift://c", WritePolicy::WriteThrough);
        for wrong in [Some(other), None] {
            let e = c.create_table_with("photos", 2, wrong).unwrap_err();
            assert_eq!(e.status(), Status::OBJECT_EXISTS);
            assert!(
                e.to_string().contains("s3://bucket/pre (write-back)"),
                "{e}"
            );
        }
        // A plain table asked for again with a backing is refused too.
        c.create_table("plain", 1).unwrap();
        let e = c
            .create_table_with("plain", 1, Some(b.clone()))
            .unwrap_err();
        assert!(e.to_string().contains("no backing"), "{e}");
        // An invalid backing: the validator's text, REQUEST_FORMAT_ERROR, no table.
        for bad in [
            backing("gs://bucket", WritePolicy::WriteBack),
            backing("", WritePolicy::WriteBack),
            backing("s3://", WritePolicy::WriteThrough),
        ] {
            let e = c
                .create_table_with("bad", 1, Some(bad.clone()))
                .unwrap_err();
            assert_eq!(e.status(), Status::REQUEST_FORMAT_ERROR, "{bad:?}");
            assert_eq!(e, CoordError::BadBacking(bad.validate().unwrap_err().0));
            assert!(c.table_id("bad").is_err());
        }
        // An ephemeral table may have no store.
        let eph = TableBacking {
            ttl_ms: 60_000,
            ..backing("", WritePolicy::Ephemeral)
        };
        let (eid, _) = c.create_table_with("tmp", 1, Some(eph.clone())).unwrap();
        assert_eq!(c.table_config(id).unwrap().backing, Some(b));
        assert_eq!(c.table_config(eid).unwrap().backing, Some(eph));
        assert_eq!(c.table_config(eid).unwrap().name, "tmp");
        assert_eq!(
            c.table_config(999).unwrap_err().status(),
            Status::TABLE_DOESNT_EXIST
        );
        // Dropping the table forgets its backing: the name may be reused with another one.
        c.drop_table("photos").unwrap();
        assert!(c.table_config(id).is_err());
        let sw = backing("swift://c", WritePolicy::WriteThrough);
        let (new_id, _) = c.create_table_with("photos", 1, Some(sw.clone())).unwrap();
        assert_ne!(new_id, id);
        assert_eq!(c.table_config(new_id).unwrap().backing, Some(sw));
        c.check().unwrap();
    }

    #[test]
    fn replica_epochs_are_kept_raised_only_and_survive_a_restart() {
        let mut c = two_masters();
        let ids: Vec<ServerId> = c.server_list(Services(0)).1.iter().map(|s| s.id).collect();
        let before = c.encode();
        assert_eq!(before[4..8], 1u32.to_le_bytes());
        assert_eq!(c.set_replica_epoch(ids[0], 3), Ok(vec![Action::Persist]));
        // Lower or equal: kept, nothing to persist.
        assert_eq!(c.set_replica_epoch(ids[0], 2), Ok(vec![]));
        assert_eq!(c.set_replica_epoch(ids[0], 3), Ok(vec![]));
        assert_eq!(c.server(ids[0]).unwrap().replica_epoch, 3);
        // An unknown server (or a stale id of its slot) is refused.
        let stale = ServerId::new(ids[1].index(), 99);
        assert!(c.set_replica_epoch(stale, 1).is_err());
        let bytes = c.encode();
        assert_eq!(bytes[4..8], 3u32.to_le_bytes());
        let back = CoordinatorState::decode(&bytes).unwrap();
        assert_eq!(back.server(ids[0]).unwrap().replica_epoch, 3);
        assert_eq!(back.server(ids[1]).unwrap().replica_epoch, 0);
        assert_eq!(back.encode(), bytes);
        for cut in 0..bytes.len() {
            assert!(
                CoordinatorState::decode(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // A crashed master may record nothing more.
        c.tick(std::time::Duration::from_secs(3600));
        assert_eq!(c.server(ids[0]).unwrap().status, ServerStatus::Removed);
        assert!(c.set_replica_epoch(ids[0], 4).is_err());
    }

    #[test]
    fn backings_survive_a_restart_and_plain_states_stay_format_1() {
        let mut c = two_masters();
        c.create_table("plain", 2).unwrap();
        // No backed table: format 1, readable by a build from before backed tables.
        assert_eq!(c.encode()[4..8], 1u32.to_le_bytes());
        let b = TableBacking {
            negative_ttl_ms: 5,
            revalidate_ms: 6,
            admit_max_bytes: 7,
            ttl_ms: 8,
            ..backing("swift://cont/a/b", WritePolicy::WriteThrough)
        };
        let (id, _) = c.create_table_with("photos", 1, Some(b.clone())).unwrap();
        let bytes = c.encode();
        assert_eq!(bytes[4..8], 2u32.to_le_bytes());
        let back = CoordinatorState::decode(&bytes).unwrap();
        assert_eq!(back.table_config(id).unwrap().backing, Some(b));
        assert_eq!(back.tables.get("plain").unwrap().backing, None);
        assert_eq!(back.encode(), bytes);
        for cut in 0..bytes.len() {
            assert!(
                CoordinatorState::decode(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // A damaged policy byte names the table.
        let mut bad = bytes.clone();
        let at = bad
            .windows(16)
            .position(|w| w == b"swift://cont/a/b")
            .unwrap()
            + 16;
        bad[at] = 9;
        let e = CoordinatorState::decode(&bad).unwrap_err();
        assert!(
            matches!(&e, StateDecodeError::Backing { table, .. } if table == "photos"),
            "{e}"
        );
        // Dropping the last backed table goes back to format 1.
        c.drop_table("photos").unwrap();
        assert_eq!(c.encode()[4..8], 1u32.to_le_bytes());
    }

    /// A state file written by a build from before backed tables (format 1), encoded by hand
    /// here so that a change to the encoder cannot hide a break.
    #[test]
    fn a_format_1_state_file_still_loads() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        w.raw(b"FCCS").u32(1);
        w.u64(3).u64(2).u64(4).u64(1024); // server list v, next table id, map v, client ids
        w.u32(1);
        w.u64(ServerId::new(0, 1).0)
            .u32(Services::MASTER.0)
            .u8(ServerStatus::Up.as_u8())
            .bytes_u16(b"tcp:host=h,port=1");
        w.u32(1);
        w.u64(1).bytes_u16(b"users");
        w.u32(1);
        w.u64(1)
            .u64(0)
            .u64(u64::MAX)
            .u64(ServerId::new(0, 1).0)
            .u8(TabletState::Normal.as_u8());
        let s = CoordinatorState::decode(&buf).unwrap();
        assert_eq!(s.table_id("users").unwrap(), 1);
        let t = s.table_config(1).unwrap();
        assert_eq!((t.name.as_str(), &t.backing), ("users", &None));
        assert_eq!(s.tablet_map(1).unwrap().1.len(), 1);
        assert_eq!(s.client_id_ceiling(), 1024);
        // Written back unchanged (still format 1).
        assert_eq!(s.encode(), buf);
    }
}
