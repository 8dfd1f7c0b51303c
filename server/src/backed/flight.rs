//! Single flight: a reader that misses (or finds an old copy to revalidate) joins the fetch of
//! its key already running, or starts one on the `store-fetch` pool; every waiter is answered
//! when it ends ([`super::fill`]).

use std::sync::Arc;

use faascache_storage::RejectRules;
use faascache_transport::server::Responder;
use faascache_transport::Status;

use super::read::{not_found, serve, Job, Served, Waiter, Want, WAITERS_MAX};
use super::registry::BackedTable;
use super::Counters;
use crate::master::Master;

/// Answer a reader of a backed table: from the engine, or by starting (or joining) a fetch.
/// `defer` gives the responder when the reply must wait (a dispatch call's `defer`).
pub(crate) fn read(
    m: &Arc<Master>,
    t: &Arc<BackedTable>,
    key: &[u8],
    rules: RejectRules,
    want: Want,
    defer: impl FnOnce() -> Option<Option<Responder>>,
) -> Option<Served> {
    let job = match serve(m, t, key, &rules, want) {
        // An ephemeral table without a store has nothing to read through.
        Served::Miss if !t.backing.has_store() => return Some(not_found()),
        Served::Miss => {
            if m.reads.is_negative(t.id, key, m.now_ms()) {
                Counters::bump(&m.counters.negative_hits);
                return Some(not_found());
            }
            Job::Miss
        }
        Served::Revalidate { version, etag } => Job::Revalidate { version, etag },
        s => {
            Counters::bump(&m.counters.hits);
            return Some(s);
        }
    };
    let responder = defer()?;
    start(
        m,
        t,
        key,
        job,
        Waiter {
            responder,
            rules,
            want,
        },
    )
    .err()
}

/// Join the fetch of `key` or start one. `Err` is the answer when the reader cannot wait.
fn start(
    m: &Arc<Master>,
    t: &Arc<BackedTable>,
    key: &[u8],
    job: Job,
    w: Waiter,
) -> Result<(), Served> {
    let fk = (t.id, key.to_vec());
    {
        let mut f = m.reads.flights.lock();
        if let Some(ws) = f.get_mut(&fk) {
            if ws.len() >= WAITERS_MAX {
                return reject(w, "too many readers wait for this object: retry shortly");
            }
            ws.push(w);
            return Ok(());
        }
        f.insert(fk.clone(), vec![w]);
    }
    let place = match m.reads.pool().reserve() {
        Ok(p) => p,
        Err(busy) => {
            let ws = m.reads.flights.lock().remove(&fk).unwrap_or_default();
            let detail = busy.to_string();
            for w in ws {
                let _ = reject(w, &detail);
            }
            return Ok(());
        }
    };
    let (m, t) = (m.clone(), t.clone());
    place.submit(move || {
        super::fill::run(&m, &t, &fk.1, job);
    });
    Ok(())
}

fn reject(w: Waiter, detail: &str) -> Result<(), Served> {
    let s = Served::Fail(Status::RETRY, 0, detail.to_string());
    match w.responder {
        Some(r) => {
            let (st, p) = s.encode(w.want);
            r.reply_vec(st, p);
            Ok(())
        }
        None => Err(s),
    }
}

/// Start fetching `key` for a multi-read item (answered `RETRY` meanwhile); `Some` is the
/// item's answer when it is known at once (a hit or a negative entry).
pub(crate) fn read_item(m: &Arc<Master>, t: &Arc<BackedTable>, key: &[u8]) -> Served {
    match read(m, t, key, RejectRules::NONE, Want::Read, || Some(None)) {
        Some(s) => s,
        None => Served::Fail(
            Status::RETRY,
            0,
            "being fetched from the store: ask again".into(),
        ),
    }
}
