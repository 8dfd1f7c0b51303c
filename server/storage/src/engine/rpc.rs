//! Tracked (exactly-once) mutations: each writes its completion record in the log with what
//! it changed (RIFL's completion records; `docs/log-format.md`, entry type 7).
//!
//! A tracked write, remove or increment appends its object or tombstone and its
//! [`CompletionRecord`] in one append, under the key's stripe lock; one that changes nothing
//! (a refused reject rule, a remove of a missing key) appends the record alone. Outcomes that
//! did not run at all — no memory (`NoSpace`), an unknown table, a malformed key or value — write
//! nothing: the caller forgets the rpc and a retry runs it.
//!
//! The engine does not know clients: whether a record is still needed is asked of the
//! [`CompletionLiveness`] the master installs (its exactly-once table). The cleaner relocates
//! live records and drops dead ones; [`Engine::completions_changed`] makes the next cleaning
//! pass recount dead records, so their space is seen.

use std::sync::Arc;

use faascache_protocol::Status;

use super::{check_key, check_rules, Engine, Inner, RejectRules, StorageError, TableId};
use crate::format::CompletionRecord;

/// Whether a completion record is still needed (installed by the master).
pub type CompletionLiveness = Arc<dyn Fn(&CompletionRecord) -> bool + Send + Sync>;

/// Who asked for a tracked mutation: what its completion record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rpc {
    /// The client (lease id, ≠ 0).
    pub client_id: u64,
    /// The rpc id.
    pub rpc_id: u64,
    /// The client's ack id in the request.
    pub ack_id: u64,
    /// What kind of reply the master rebuilds from the record (opaque to the engine).
    pub kind: u8,
}

impl Rpc {
    /// The record of this rpc's outcome on `key`.
    pub fn record(
        &self,
        table: TableId,
        key: &[u8],
        timestamp: u32,
        status: Status,
        version: u64,
        value: Option<&[u8]>,
    ) -> CompletionRecord {
        let value = value
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .unwrap_or_default();
        CompletionRecord {
            table,
            key_hash: super::key_hash(key),
            client_id: self.client_id,
            rpc_id: self.rpc_id,
            ack_id: self.ack_id,
            timestamp,
            status: status.0,
            version,
            kind: self.kind,
            value,
        }
    }
}

impl Inner {
    /// Records a refusal of a tracked mutation (the caller holds the key's stripe) and hands
    /// the error back; a failure to record (no memory) replaces it.
    fn refuse(
        &self,
        table: TableId,
        key: &[u8],
        rpc: Option<&Rpc>,
        e: StorageError,
    ) -> StorageError {
        let Some(rpc) = rpc.filter(|_| e.is_outcome()) else {
            return e;
        };
        let (status, version) = e.status();
        let rec = rpc.record(table, key, self.clock.now(), status, version, None);
        match self.append_completion(&rec) {
            Ok(()) => e,
            Err(no_room) => no_room,
        }
    }
}

impl Engine {
    /// [`Engine::write`], tracked when `rpc` is given: the object and its completion record are
    /// appended together; a refusal by `rules` is recorded too.
    pub fn write_rpc(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        rules: &RejectRules,
        rpc: Option<&Rpc>,
    ) -> Result<u64, StorageError> {
        self.write_rpc_parts(table, key, [value, &[]], rules, rpc)
    }

    /// [`Engine::write_rpc`] of the value `value[0]` followed by `value[1]` (a backed table's
    /// envelope header and the client's bytes), copied once, into the log.
    pub fn write_rpc_parts(
        &self,
        table: TableId,
        key: &[u8],
        value: [&[u8]; 2],
        rules: &RejectRules,
        rpc: Option<&Rpc>,
    ) -> Result<u64, StorageError> {
        check_key(key)?;
        self.check_value_len(key, value[0].len() + value[1].len())?;
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        if let Err(e) = check_rules(rules, existing.as_ref().map(|e| e.version)) {
            return Err(inner.refuse(table, key, rpc, e));
        }
        inner.put_parts(&mut g, &info, table, key, value, existing, false, None, rpc)
    }

    /// [`Engine::remove`], tracked when `rpc` is given (a remove of a missing key records its
    /// outcome alone).
    pub fn remove_rpc(
        &self,
        table: TableId,
        key: &[u8],
        rules: &RejectRules,
        rpc: Option<&Rpc>,
    ) -> Result<Option<u64>, StorageError> {
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        if let Err(e) = check_rules(rules, existing.as_ref().map(|e| e.version)) {
            return Err(inner.refuse(table, key, rpc, e));
        }
        match existing {
            Some(old) => inner
                .remove_locked(&mut g, &info, table, key, old, rpc)
                .map(Some),
            None => {
                if let Some(rpc) = rpc {
                    let rec = rpc.record(table, key, inner.clock.now(), Status::OK, 0, None);
                    inner.append_completion(&rec)?;
                }
                Ok(None)
            }
        }
    }

    /// [`Engine::increment_i64`], tracked when `rpc` is given.
    pub fn increment_i64_rpc(
        &self,
        table: TableId,
        key: &[u8],
        delta: i64,
        rules: &RejectRules,
        rpc: Option<&Rpc>,
    ) -> Result<(i64, u64), StorageError> {
        let (bytes, version) = self.increment(table, key, rules, rpc, |old| {
            let cur = i64::from_le_bytes(old);
            cur.checked_add(delta)
                .map(i64::to_le_bytes)
                .ok_or(StorageError::Overflow)
        })?;
        Ok((i64::from_le_bytes(bytes), version))
    }

    /// [`Engine::increment_f64`], tracked when `rpc` is given.
    pub fn increment_f64_rpc(
        &self,
        table: TableId,
        key: &[u8],
        delta: f64,
        rules: &RejectRules,
        rpc: Option<&Rpc>,
    ) -> Result<(f64, u64), StorageError> {
        let (bytes, version) = self.increment(table, key, rules, rpc, |old| {
            let v = f64::from_le_bytes(old) + delta;
            if v.is_finite() {
                Ok(v.to_le_bytes())
            } else {
                Err(StorageError::Overflow)
            }
        })?;
        Ok((f64::from_le_bytes(bytes), version))
    }

    pub(super) fn increment(
        &self,
        table: TableId,
        key: &[u8],
        rules: &RejectRules,
        rpc: Option<&Rpc>,
        op: impl FnOnce([u8; 8]) -> Result<[u8; 8], StorageError>,
    ) -> Result<([u8; 8], u64), StorageError> {
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        let new = (|| {
            check_rules(rules, existing.as_ref().map(|e| e.version))?;
            let old = match &existing {
                None => [0u8; 8],
                Some(e) => inner.log.with_entry(e.found.addr, |_, body| {
                    let v = &body[crate::format::OBJECT_FIXED + key.len()..];
                    v.try_into()
                        .map_err(|_| StorageError::NotANumber { len: v.len() })
                })?,
            };
            op(old)
        })()
        .map_err(|e| inner.refuse(table, key, rpc, e))?;
        let version =
            inner.put_locked(&mut g, &info, table, key, &new, existing, false, None, rpc)?;
        Ok((new, version))
    }

    /// Appends a completion record as given — one moved here with its tablet, or replayed by
    /// crash recovery — so that it survives this master's own crash.
    pub fn record_completion(&self, rec: &CompletionRecord) -> Result<(), StorageError> {
        self.inner.append_completion(rec)
    }

    /// Installs the test of whether a completion record is still needed.
    pub fn set_completion_liveness(&self, live: CompletionLiveness) {
        *self.inner.completion_live.write() = Some(live);
    }

    /// Results died (acknowledged, or their leases expired): the next cleaning pass recounts
    /// the dead completion records so their space is seen. Cheap; call it at most every
    /// second or so (each call makes the next pass walk segments holding records).
    pub fn completions_changed(&self) {
        self.inner.log.note_dead_entries();
    }
}

impl Inner {
    /// Whether the completion record in `body` is still needed.
    pub(super) fn completion_live(&self, body: &[u8]) -> bool {
        let Ok(rec) = crate::format::decode_completion(body, 0) else {
            return false;
        };
        self.completion_live
            .read()
            .as_ref()
            .is_some_and(|live| live(&rec))
    }
}
