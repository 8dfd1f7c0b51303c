//! A seeded, deterministic fake network and [`Driver`] for tests and simulation: loss,
//! duplication and reordering described as data, virtual time, one seed reproduces a run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use super::{Driver, RxPacket, TxPacket};

/// Faults applied to every packet, as probabilities in `[0, 1]` and a delay range in ticks.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Each copy is delayed by a uniform `0..=max_delay` ticks (reordering).
    pub max_delay: u64,
}

/// xorshift64* — small, seeded, good enough for fault injection.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `0..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next_u64() % (max + 1)
        }
    }
}

#[derive(Debug)]
struct NetInner {
    now: u64,
    seq: u64,
    faults: Faults,
    rng: Rng,
    /// (deliver_at, seq) -> (from, to, bytes)
    queue: BTreeMap<(u64, u64), (u32, u32, Vec<u8>)>,
    sent: u64,
    dropped: u64,
    duplicated: u64,
}

/// The shared fake network. Addresses are `u32`.
#[derive(Debug, Clone)]
pub struct SimNet(Rc<RefCell<NetInner>>);

impl SimNet {
    /// A network with the given faults and seed.
    pub fn new(seed: u64, faults: Faults) -> Self {
        SimNet(Rc::new(RefCell::new(NetInner {
            now: 0,
            seq: 0,
            faults,
            rng: Rng::new(seed),
            queue: BTreeMap::new(),
            sent: 0,
            dropped: 0,
            duplicated: 0,
        })))
    }
    /// A driver attached at `addr`.
    pub fn driver(&self, addr: u32, mtu: usize) -> SimDriver {
        SimDriver {
            net: self.clone(),
            addr,
            mtu,
        }
    }
    /// Advance virtual time by one tick.
    pub fn tick(&self) {
        self.0.borrow_mut().now += 1;
    }
    /// Current tick.
    pub fn now(&self) -> u64 {
        self.0.borrow().now
    }
    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.0.borrow().queue.len()
    }
    /// (sent, dropped, duplicated) so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        let n = self.0.borrow();
        (n.sent, n.dropped, n.duplicated)
    }
}

/// A [`Driver`] on a [`SimNet`].
#[derive(Debug)]
pub struct SimDriver {
    net: SimNet,
    addr: u32,
    mtu: usize,
}

impl Driver for SimDriver {
    type Addr = u32;
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn local_addr(&self) -> u32 {
        self.addr
    }
    fn tx_burst(&mut self, batch: &mut Vec<TxPacket<u32>>) -> io::Result<usize> {
        let mut n = self.net.0.borrow_mut();
        let count = batch.len();
        for p in batch.drain(..) {
            assert!(p.data.len() <= self.mtu, "packet larger than the MTU");
            n.sent += 1;
            if n.rng.unit() < n.faults.loss {
                n.dropped += 1;
                continue;
            }
            let copies = if n.rng.unit() < n.faults.duplicate {
                n.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let max_delay = n.faults.max_delay;
                let at = n.now + 1 + n.rng.upto(max_delay);
                n.seq += 1;
                let seq = n.seq;
                n.queue.insert((at, seq), (self.addr, p.to, p.data.clone()));
            }
        }
        Ok(count)
    }
    fn rx_burst(&mut self, out: &mut Vec<RxPacket<u32>>, max: usize) -> io::Result<usize> {
        let mut n = self.net.0.borrow_mut();
        let now = n.now;
        let keys: Vec<(u64, u64)> = n
            .queue
            .iter()
            .filter(|(&(at, _), (_, to, _))| at <= now && *to == self.addr)
            .map(|(k, _)| *k)
            .take(max)
            .collect();
        for k in &keys {
            let (from, _, data) = n.queue.remove(k).expect("present");
            out.push(RxPacket { from, data });
        }
        Ok(keys.len())
    }
    fn post_buffers(&mut self, bufs: &mut Vec<Vec<u8>>) {
        bufs.clear();
    }
}
