//! The client's lease (RIFL): the client id its tracked mutations carry, kept alive by renewal.
//!
//! - The first tracked mutation asks the coordinator for an id and a lease (`GetClientLease`).
//!   Every tracked request carries the current lease ([`ExactlyOnce::lease`], the `lease` of
//!   multi-requests), so a master can refuse a request whose lease it knows expired
//!   (`EXPIRED_LEASE`).
//! - The lease's local deadline is an [`Instant`] taken when the lease request was *sent* plus
//!   the lease's length (`expiration − timestamp`): never later than the coordinator's.
//! - One renewal thread per client (started with the first lease, ended when the last clone of
//!   the client drops) renews at half the term. A call also renews inline when the local clock
//!   says the lease is past half its term (a thawed process runs its callers before the renewal
//!   thread has caught up).
//! - A renewal of an expired id gets a **new** id from the coordinator. An RPC begun under the
//!   old id that never ran (every attempt was refused, e.g. `EXPIRED_LEASE`) is sent again under
//!   the new id with a new rpc id; one that may have run (an attempt got no answer) fails with
//!   [`Error::LeaseExpired`]: its outcome is unknown.
//! - Dropping the last clone releases the lease (`ReleaseClientLease`, one attempt, at most
//!   [`RELEASE_TIMEOUT`]), so masters can free the client's saved results at once.
//! - [`crate::ClientOptions::tracked`]`(false)` sends mutations untracked (client id 0): no
//!   lease, at most once per send.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use faascache_protocol::msg::coordinator::GetClientLeaseRequest;
use faascache_protocol::msg::ExactlyOnce;
use faascache_transport::{CallError, Session, Status};
use parking_lot::{Condvar, Mutex};

use crate::client::{Attempt, Client, Inner};
use crate::error::{Error, Result, TableId};
use crate::lease_state::{add, LeaseSnap, Leases};
pub use crate::lease_state::{LeaseInfo, RELEASE_TIMEOUT};
use crate::retry::Backoff;

/// A tracked mutation's identity: client id and rpc id (in flight until the guard drops), and
/// whether an attempt may have run (so it may not move to a new client id).
pub(crate) struct RpcGuard {
    pub(crate) client: Client,
    pub(crate) state: Mutex<GuardState>,
}

/// See [`RpcGuard`].
#[derive(Debug)]
pub(crate) struct GuardState {
    /// 0 = untracked.
    pub(crate) client_id: u64,
    pub(crate) id: u64,
    /// An attempt was sent and got no answer.
    pub(crate) maybe_ran: bool,
}

impl RpcGuard {
    /// The client id the rpc runs under now (0 = untracked).
    pub(crate) fn client_id(&self) -> u64 {
        self.state.lock().client_id
    }
    /// Its rpc id now.
    pub(crate) fn id(&self) -> u64 {
        self.state.lock().id
    }
    /// An attempt got no answer: it may have run.
    pub(crate) fn mark_maybe_ran(&self) {
        self.state.lock().maybe_ran = true;
    }
}

impl std::fmt::Debug for RpcGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.state.lock();
        write!(f, "RpcGuard({}.{})", g.client_id, g.id)
    }
}

impl Drop for RpcGuard {
    fn drop(&mut self) {
        let id = self.state.get_mut().id;
        self.client.inner().rpc.lock().finish(id);
    }
}

impl Client {
    /// A new rpc id under the current lease (acquired on first use), in flight until the
    /// guard drops. Untracked (client id 0) if the client is.
    pub(crate) fn begin_rpc(&self) -> Result<RpcGuard> {
        Ok(self.begin_rpcs(1)?.pop().expect("one guard"))
    }

    /// `n` new rpc ids under the current lease, in flight until their guards drop.
    pub(crate) fn begin_rpcs(&self, n: usize) -> Result<Vec<RpcGuard>> {
        let client_id = if n == 0 {
            0
        } else {
            self.current_lease()?.client_id
        };
        let mut g = self.inner().rpc.lock();
        Ok((0..n)
            .map(|_| RpcGuard {
                client: self.clone(),
                state: Mutex::new(GuardState {
                    client_id,
                    id: g.begin(),
                    maybe_ran: false,
                }),
            })
            .collect())
    }

    /// Ends rpc id `old` (it never ran) and returns a new one.
    pub(crate) fn reissue_rpc_id(&self, old: u64) -> u64 {
        let mut g = self.inner().rpc.lock();
        g.finish(old);
        g.begin()
    }

    fn leases(&self) -> &Leases {
        &self.inner().leases
    }

    /// The client's lease as last granted (all 0 before the first tracked mutation, and for
    /// untracked clients).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// c.write(t, b"k", b"v")?;
    /// assert_ne!(c.lease().client_id, 0);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn lease(&self) -> LeaseInfo {
        let s = self.leases().state.lock().snap;
        LeaseInfo {
            client_id: s.client_id,
            expiration: s.lease.expiration,
            timestamp: s.lease.timestamp,
        }
    }

    /// The lease to stamp a tracked request with: acquired on first use, renewed inline when
    /// past half its term. Client id 0 = untracked.
    pub(crate) fn current_lease(&self) -> Result<LeaseSnap> {
        if !self.options().tracked {
            return Ok(LeaseSnap::default());
        }
        let (snap, due, expired) = {
            let st = self.leases().state.lock();
            if st.no_leases {
                return Ok(LeaseSnap::default());
            }
            let now = Instant::now();
            let due = st.snap.client_id == 0 || st.renew_at.is_some_and(|t| now >= t);
            let expired = st.expires_at.is_some_and(|t| now >= t);
            (st.snap, due, expired)
        };
        if !due {
            return Ok(snap);
        }
        if snap.client_id != 0 && !expired {
            // Still valid: renew if nobody else is, else go on with it.
            if let Some(_g) = self.leases().renewing.try_lock() {
                if self.leases().state.lock().snap == snap {
                    if let Err(e) = self.lease_rpc(snap.client_id) {
                        tracing::warn!(error = %e, "client lease renewal failed; retrying later");
                    }
                }
            }
            return Ok(self.leases().state.lock().snap);
        }
        let _g = self.leases().renewing.lock();
        let st_snap = self.leases().state.lock().snap;
        if st_snap != snap {
            return Ok(st_snap); // renewed meanwhile
        }
        match self.lease_rpc(snap.client_id) {
            Ok(()) => Ok(self.leases().state.lock().snap),
            Err(Error::Protocol(m)) if snap.client_id == 0 => {
                tracing::warn!(error = %m, "the coordinator grants no client leases: mutations are not exactly-once");
                self.leases().state.lock().no_leases = true;
                Ok(LeaseSnap::default())
            }
            Err(e) if snap.client_id == 0 => Err(e),
            Err(e) => {
                // Expired by our clock and the coordinator is unreachable: the masters decide.
                tracing::warn!(error = %e, "client lease expired and cannot be renewed");
                Ok(snap)
            }
        }
    }

    /// `GetClientLease` for `id` (0 = new); installs the answer. Call with `renewing` held.
    fn lease_rpc(&self, id: u64) -> Result<()> {
        let sent = Instant::now();
        let r = self.coord_call(&GetClientLeaseRequest { client_id: id }, "", |r| r)?;
        let term = Duration::from_millis(r.lease.expiration.saturating_sub(r.lease.timestamp));
        {
            let mut st = self.leases().state.lock();
            st.snap = LeaseSnap {
                client_id: r.client_id,
                lease: r.lease,
            };
            st.term = term;
            st.renew_at = add(sent, term / 2);
            st.expires_at = add(sent, term);
        }
        if id != 0 && r.client_id != id {
            tracing::info!(
                old = id,
                new = r.client_id,
                "the client lease had expired: continuing under a new client id"
            );
        }
        self.spawn_renewer();
        Ok(())
    }

    /// Renews after a master refused `refused` as expired (unless someone renewed since).
    pub(crate) fn lease_refused(&self, refused: LeaseSnap) -> Result<()> {
        let _g = self.leases().renewing.lock();
        if self.leases().state.lock().snap != refused {
            return Ok(());
        }
        self.lease_rpc(refused.client_id)
    }

    /// The header for `guard`'s next attempt: its rpc moves to a new lease's id if it never
    /// ran, or fails with [`Error::LeaseExpired`] if it may have run under an expired one.
    pub(crate) fn stamp(&self, guard: &RpcGuard) -> Result<(ExactlyOnce, LeaseSnap)> {
        if guard.client_id() == 0 {
            return Ok((ExactlyOnce::UNTRACKED, LeaseSnap::default()));
        }
        let snap = self.current_lease()?;
        let rpc_id = self.align(guard, snap)?;
        let eo = ExactlyOnce {
            client_id: snap.client_id,
            rpc_id,
            ack_id: self.ack_id(),
            lease: snap.lease,
        };
        Ok((eo, snap))
    }

    /// Moves `guard` to `snap`'s id if it never ran; its rpc id.
    pub(crate) fn align(&self, guard: &RpcGuard, snap: LeaseSnap) -> Result<u64> {
        let mut g = guard.state.lock();
        if g.client_id != 0 && g.client_id != snap.client_id {
            if g.maybe_ran || snap.client_id == 0 {
                return Err(Error::LeaseExpired);
            }
            g.id = self.reissue_rpc_id(g.id);
            g.client_id = snap.client_id;
        }
        Ok(g.id)
    }

    /// Runs a tracked mutation against the master owning `hash` of `table`: stamps each attempt
    /// with the current lease, renews on `EXPIRED_LEASE`, and remembers attempts that may have
    /// run.
    pub(crate) fn on_master_tracked<T>(
        &self,
        table: TableId,
        hash: u64,
        guard: &RpcGuard,
        backoff: &mut Backoff,
        opcode: faascache_transport::Opcode,
        mut f: impl FnMut(
            &Session,
            std::time::Duration,
            ExactlyOnce,
        ) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        self.on_master(table, hash, backoff, |s, left| {
            let (eo, snap) = self.stamp(guard).map_err(Attempt::Fail)?;
            let r = f(s, left, eo);
            match &r {
                Err(CallError::Failed(fl)) if fl.status == Status::EXPIRED_LEASE => {
                    return Err(Attempt::Retry(match self.lease_refused(snap) {
                        Ok(()) => format!("the master refused client lease {} as expired; renewed", snap.client_id),
                        Err(e) => format!("the master refused client lease {} as expired and renewing failed: {e}", snap.client_id),
                    }));
                }
                Err(CallError::Transport(_)) => guard.mark_maybe_ran(),
                _ => {}
            }
            self.classify(table, opcode, r)
        })
    }

    /// Starts the renewal thread (once per client).
    fn spawn_renewer(&self) {
        let leases = self.leases();
        if leases.thread_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self.inner_arc());
        let stop = leases.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("faascache-lease".into())
            .spawn(move || renewer(&weak, &stop));
        if let Err(e) = spawned {
            // Inline renewal still keeps the lease alive while the client is used.
            tracing::warn!(error = %e, "cannot start the client lease renewal thread");
            leases.thread_started.store(false, Ordering::Release);
        }
    }
}

/// The renewal thread: sleeps until the lease is half over, renews, repeats; ends when the
/// client is dropped.
fn renewer(weak: &Weak<Inner>, stop: &(Mutex<bool>, Condvar)) {
    let mut not_before = Instant::now();
    loop {
        let next = {
            let Some(inner) = weak.upgrade() else { return };
            let st = inner.leases.state.lock();
            st.renew_at.map(|t| t.max(not_before))
        };
        {
            let (m, cv) = stop;
            let mut stopped = m.lock();
            if *stopped {
                return;
            }
            match next {
                Some(t) => {
                    cv.wait_until(&mut stopped, t);
                }
                None => cv.wait(&mut stopped),
            }
            if *stopped {
                return;
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        let client = Client::from_inner(inner);
        let now = Instant::now();
        let (snap, due, term) = {
            let st = client.leases().state.lock();
            (st.snap, st.renew_at.is_some_and(|t| now >= t), st.term)
        };
        if due && snap.client_id != 0 {
            if let Some(_g) = client.leases().renewing.try_lock() {
                if client.leases().state.lock().snap == snap {
                    if let Err(e) = client.lease_rpc(snap.client_id) {
                        tracing::warn!(error = %e, "client lease renewal failed; retrying");
                        not_before = Instant::now()
                            + (term / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
                    }
                }
            } else {
                // An inline renewal runs: look again shortly.
                not_before = now + Duration::from_millis(10);
            }
        }
        drop(client); // may be the last clone: then `Inner::drop` releases the lease here
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientOptions;
    use faascache_protocol::msg::ClientLease;
    use faascache_transport::{serve, Dispatch, DispatchConfig, DispatchHandler, PollMode};

    /// A server that answers nothing (the client only needs a coordinator session).
    struct Nothing;
    impl Dispatch for Nothing {}

    fn set_lease(c: &Client, id: u64) {
        let mut st = c.leases().state.lock();
        st.snap = LeaseSnap {
            client_id: id,
            lease: ClientLease {
                expiration: 1000 + id,
                timestamp: id,
            },
        };
        st.renew_at = Some(Instant::now() + Duration::from_secs(3600));
        st.expires_at = Some(Instant::now() + Duration::from_secs(7200));
    }

    #[test]
    fn an_rpc_moves_to_a_new_id_only_if_it_never_ran() {
        let loc = "loopback:name=lease-unit";
        let cfg = DispatchConfig {
            cores: 1,
            pin: false,
            first_core: 0,
            poll: PollMode::Block,
            conn: Default::default(),
        };
        let _server = serve(
            &loc.parse().unwrap(),
            Arc::new(DispatchHandler(Nothing)),
            cfg,
        )
        .unwrap();
        let c = Client::connect_with(loc, ClientOptions::default()).unwrap();
        set_lease(&c, 5);
        let never_ran = c.begin_rpc().unwrap();
        let (eo, _) = c.stamp(&never_ran).unwrap();
        assert_eq!((eo.client_id, eo.rpc_id, eo.lease.timestamp), (5, 1, 5));
        // The lease expired and the coordinator gave id 6: a never-sent rpc moves, with a new
        // rpc id (rpc 1 of id 5 is finished, so the ack id passes it).
        set_lease(&c, 6);
        let (eo, snap) = c.stamp(&never_ran).unwrap();
        assert_eq!((eo.client_id, eo.rpc_id, eo.lease.timestamp), (6, 2, 6));
        assert_eq!(eo.ack_id, 1);
        assert_eq!(snap.client_id, 6);
        // One that may have run under 6 cannot move to 7: its outcome is unknown.
        let maybe_ran = c.begin_rpc().unwrap();
        maybe_ran.mark_maybe_ran();
        set_lease(&c, 7);
        assert_eq!(c.stamp(&maybe_ran).unwrap_err(), Error::LeaseExpired);
        assert!(Error::LeaseExpired
            .to_string()
            .contains("read the object back"));
        // Untracked clients stamp nothing.
        let untracked = Client::connect_with(loc, ClientOptions::default().tracked(false)).unwrap();
        let g = untracked.begin_rpc().unwrap();
        assert_eq!(untracked.stamp(&g).unwrap().0, ExactlyOnce::UNTRACKED);
        assert_eq!(untracked.lease(), LeaseInfo::default());
    }
}
