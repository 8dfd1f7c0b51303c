//! A fault injector in front of any store: [`Faulty`] answers some operations with a delay,
//! a server error, a reset connection, a timeout or a partial write, by script (the next
//! faults, in order, for one kind of operation or any) or at random from a seed (so a
//! simulation replays), and can take the whole store "down" until told otherwise.
//!
//! A partial write models an upload cut after some bytes: the error is retryable and the
//! store keeps whatever it had before (object stores commit a PUT whole or not at all).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::store::ObjectStore;
use crate::types::{ETag, GetResult, GetStream, ListPage, ObjectMeta, Payload, PutMeta, PutResult};

/// A kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `get` and `get_stream`.
    Get,
    /// `put`.
    Put,
    /// `head`.
    Head,
    /// `delete`.
    Delete,
    /// `list`.
    List,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then do the operation.
    Delay(Duration),
    /// Answer with this HTTP server error (5xx: retryable but 501/505) without doing it.
    ServerError(u16),
    /// The connection was reset before an answer: retryable; for a `put`, nothing stored.
    ConnectionReset,
    /// No answer within the timeout: retryable; nothing done.
    Timeout,
    /// A `put` whose upload breaks after `after` bytes: nothing stored (on other
    /// operations, a connection reset).
    PartialWrite {
        /// Bytes sent before the break.
        after: u64,
    },
}

/// Probabilities (0.0..=1.0, checked in this order) of random faults per operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RandomFaults {
    /// A 503.
    pub server_error: f64,
    /// A reset connection.
    pub reset: f64,
    /// A partial write (`put` only).
    pub partial_write: f64,
    /// A delay of up to `max_delay` before the operation.
    pub delay: f64,
    /// The longest random delay.
    pub max_delay: Duration,
}

#[derive(Debug)]
struct State {
    script: VecDeque<(Option<Op>, Fault)>,
    random: Option<(SmallRng, RandomFaults)>,
    down: bool,
    injected: u64,
    calls: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    state: Mutex<State>,
}

impl<S: ObjectStore> Faulty<S> {
    /// `inner` with no faults planned.
    pub fn new(inner: S) -> Faulty<S> {
        Faulty {
            inner,
            state: Mutex::new(State {
                script: VecDeque::new(),
                random: None,
                down: false,
                injected: 0,
                calls: 0,
            }),
        }
    }

    /// The store behind the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Queue `fault` for the next operation of kind `op` (`None`: of any kind). Scripted
    /// faults come before random ones, in the order queued.
    pub fn script(&self, op: Option<Op>, fault: Fault) {
        self.state.lock().script.push_back((op, fault));
    }

    /// Draw random faults from `seed` with `probabilities` from now on (`None` stops).
    pub fn random(&self, seed: u64, probabilities: Option<RandomFaults>) {
        self.state.lock().random = probabilities.map(|p| (SmallRng::seed_from_u64(seed), p));
    }

    /// Take the store down (every operation answers 503) or bring it back.
    pub fn set_down(&self, down: bool) {
        self.state.lock().down = down;
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// How many operations were attempted so far.
    pub fn calls(&self) -> u64 {
        self.state.lock().calls
    }

    /// The fault for this call of `op`, if any.
    fn next_fault(&self, op: Op) -> Option<Fault> {
        let mut st = self.state.lock();
        st.calls += 1;
        let fault = if st.down {
            Some(Fault::ServerError(503))
        } else if let Some(i) = st
            .script
            .iter()
            .position(|(o, _)| o.is_none_or(|o| o == op))
        {
            st.script.remove(i).map(|(_, f)| f)
        } else if let Some((rng, p)) = st.random.as_mut() {
            let x: f64 = rng.gen();
            let mut edge = p.server_error;
            if x < edge {
                Some(Fault::ServerError(503))
            } else if x < {
                edge += p.reset;
                edge
            } {
                Some(Fault::ConnectionReset)
            } else if op == Op::Put
                && x < {
                    edge += p.partial_write;
                    edge
                }
            {
                Some(Fault::PartialWrite {
                    after: rng.gen_range(0..4096),
                })
            } else if x < edge + p.delay {
                let ms = p.max_delay.as_millis().max(1) as u64;
                Some(Fault::Delay(Duration::from_millis(rng.gen_range(0..=ms))))
            } else {
                None
            }
        } else {
            None
        };
        if fault.is_some() {
            st.injected += 1;
        }
        fault
    }

    /// Apply the fault for `op`: `Ok(())` to go on with the operation, or the error to return.
    fn inject(&self, op: Op, put_len: u64) -> Result<()> {
        let store = self.inner.describe();
        match self.next_fault(op) {
            None => Ok(()),
            Some(Fault::Delay(d)) => {
                // The injected latency itself (a slow store), not a test waiting for a state.
                std::thread::sleep(d);
                Ok(())
            }
            Some(Fault::ServerError(status)) => Err(crate::error::from_status(
                &store,
                "",
                status,
                "injected fault".into(),
            )),
            Some(Fault::ConnectionReset) => Err(Error::Unavailable {
                store,
                detail: "connection reset by peer (injected fault)".into(),
                retryable: true,
            }),
            Some(Fault::Timeout) => Err(Error::Timeout {
                store,
                op: "request (injected fault)",
                after: Duration::ZERO,
            }),
            Some(Fault::PartialWrite { after }) => Err(Error::Unavailable {
                store,
                detail: format!(
                    "connection reset after {} of {put_len} bytes (injected partial write; nothing stored)",
                    after.min(put_len)
                ),
                retryable: true,
            }),
        }
    }
}

impl<S: ObjectStore> ObjectStore for Faulty<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn check(&self) -> Result<()> {
        self.inject(Op::List, 0)?;
        self.inner.check()
    }
    fn get(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetResult> {
        self.inject(Op::Get, 0)?;
        self.inner.get(key, if_none_match)
    }
    fn get_stream(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetStream> {
        self.inject(Op::Get, 0)?;
        self.inner.get_stream(key, if_none_match)
    }
    fn put(&self, key: &str, body: Payload, meta: &PutMeta) -> Result<PutResult> {
        self.inject(Op::Put, body.len())?;
        self.inner.put(key, body, meta)
    }
    fn put_stream(&self, key: &str, meta: &PutMeta) -> Result<Box<dyn crate::PutStream + '_>> {
        self.inject(Op::Put, 0)?;
        self.inner.put_stream(key, meta)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inject(Op::Head, 0)?;
        self.inner.head(key)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inject(Op::Delete, 0)?;
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        self.inject(Op::List, 0)?;
        self.inner.list(prefix, start_after, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::time::Instant;

    fn put(s: &impl ObjectStore, key: &str, body: &'static [u8]) -> Result<PutResult> {
        s.put(key, body.into(), &PutMeta::default())
    }

    #[test]
    fn scripted_faults_hit_their_operation_in_order() {
        let s = Faulty::new(MemoryStore::new("b"));
        s.script(Some(Op::Put), Fault::ServerError(503));
        s.script(Some(Op::Put), Fault::PartialWrite { after: 3 });
        s.script(Some(Op::Get), Fault::ConnectionReset);
        // A get is not hit by the put faults, but by its own.
        let e = s.get("k", None).unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("reset"), "{e}");
        let e = put(&s, "k", b"first").unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("503"), "{e}");
        let e = put(&s, "k", b"first").unwrap_err();
        assert!(e.to_string().contains("after 3 of 5 bytes"), "{e}");
        // Neither failed put stored anything.
        assert_eq!(s.inner().head("k").unwrap(), None);
        put(&s, "k", b"first").unwrap();
        assert!(s.head("k").unwrap().is_some());
        assert_eq!(s.injected(), 3);
        assert_eq!(s.calls(), 5);
    }

    #[test]
    fn a_partial_write_keeps_the_previous_object() {
        let s = Faulty::new(MemoryStore::new("b"));
        let old = put(&s, "k", b"old").unwrap().etag;
        s.script(None, Fault::PartialWrite { after: 1 });
        assert!(put(&s, "k", b"new value").is_err());
        let GetResult::Found { body, meta } = s.get("k", None).unwrap() else {
            panic!("the old object is gone")
        };
        assert_eq!((&body[..], meta.etag), (&b"old"[..], old));
    }

    #[test]
    fn delays_delay_and_timeouts_time_out() {
        let s = Faulty::new(MemoryStore::new("b"));
        s.script(Some(Op::Head), Fault::Delay(Duration::from_millis(30)));
        s.script(Some(Op::Head), Fault::Timeout);
        let t = Instant::now();
        assert_eq!(s.head("k").unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(matches!(s.head("k"), Err(Error::Timeout { .. })));
    }

    #[test]
    fn down_means_every_operation_fails_until_up() {
        let s = Faulty::new(MemoryStore::new("b"));
        s.set_down(true);
        for _ in 0..3 {
            assert!(put(&s, "k", b"v").unwrap_err().is_retryable());
            assert!(s.list("", None, 10).unwrap_err().is_retryable());
        }
        s.set_down(false);
        put(&s, "k", b"v").unwrap();
        assert_eq!(s.list("", None, 10).unwrap().entries.len(), 1);
    }

    #[test]
    fn random_faults_replay_from_their_seed() {
        let run = |seed| {
            let s = Faulty::new(MemoryStore::new("b"));
            s.random(
                seed,
                Some(RandomFaults {
                    server_error: 0.2,
                    reset: 0.1,
                    partial_write: 0.2,
                    ..Default::default()
                }),
            );
            (0..200)
                .map(|i| put(&s, &format!("k{i}"), b"v").is_ok())
                .collect::<Vec<bool>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let failed = a.iter().filter(|ok| !**ok).count();
        // 50 % of puts are expected to fail; allow a wide margin for 200 draws.
        assert!((60..=140).contains(&failed), "{failed} of 200 failed");
    }
}
