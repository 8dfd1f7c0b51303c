//! The persisted encoding of [`CoordinatorState`] and its invariants: what a restarted
//! coordinator reads back from external storage, checked before it is trusted.

use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::{ServerId, Services};
use faascache_protocol::wire::codec::{CodecError, Reader, Writer};

use super::{CoordinatorState, ServerRecord, TableRecord, Tablet};

const STATE_MAGIC: &[u8; 4] = b"FCCS";
const STATE_VERSION: u32 = 1;
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
        "coordinator state: format version {0} is not supported (this build reads {STATE_VERSION})"
    )]
    Version(u32),
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
        w.raw(STATE_MAGIC).u32(STATE_VERSION);
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
        buf
    }

    /// Decode a state written by [`encode`](Self::encode); a clear error if it is not one.
    pub fn decode(bytes: &[u8]) -> Result<CoordinatorState, StateDecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != STATE_MAGIC {
            return Err(StateDecodeError::BadMagic);
        }
        let v = r.u32()?;
        if v != STATE_VERSION {
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
                },
            );
        }
        let n = r.u32()?;
        for _ in 0..n {
            let id = r.u64()?;
            let name = text(r.bytes_u16()?, "a table name")?;
            s.tables.insert(name.clone(), TableRecord { id, name });
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
}
