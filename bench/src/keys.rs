//! Key and value generation and key-choice distributions (uniform, YCSB zipfian, scrambled
//! zipfian, skewed-latest). Shared by every driver so all systems see the same workload.

use rand::Rng;

/// Writes the key for record `index` into `out`: the decimal index, left-padded with `'0'` to
/// exactly `len` bytes (ClusterPerf also uses fixed-length keys derived from the record number).
/// Fails when the index does not fit into `len` characters.
pub fn make_key(index: u64, len: usize, out: &mut Vec<u8>) -> Result<(), KeyError> {
    let digits = decimal_digits(index);
    if len < digits {
        return Err(KeyError::TooShort { index, len });
    }
    out.clear();
    out.resize(len - digits, b'0');
    let start = out.len();
    out.resize(len, b'0');
    let mut v = index;
    for i in (start..len).rev() {
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    Ok(())
}

/// Number of decimal digits of `v` (1 for 0).
pub fn decimal_digits(mut v: u64) -> usize {
    let mut d = 1;
    while v >= 10 {
        v /= 10;
        d += 1;
    }
    d
}

/// Smallest key length that can name `keys` distinct records.
pub fn min_key_len(keys: u64) -> usize {
    decimal_digits(keys.saturating_sub(1))
}

/// A key that cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// `len` bytes are too few for the decimal index.
    TooShort {
        /// record index
        index: u64,
        /// key length asked for
        len: usize,
    },
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::TooShort { index, len } => write!(
                f,
                "key length {len} B is too short for record {index}; use --key-size >= {}",
                decimal_digits(*index)
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// Fills `out` with a value of `len` bytes derived from `seed` (printable, cheap, not constant so
/// compression or dedup in a server cannot cheat).
pub fn make_value(seed: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for b in x.to_le_bytes() {
            if out.len() == len {
                break;
            }
            out.push(b'a' + (b % 26));
        }
    }
}

/// ζ(n, θ) = Σ_{i=1..n} 1/i^θ.
pub fn zeta(n: u64, theta: f64) -> f64 {
    let mut s = 0.0;
    for i in 1..=n {
        s += 1.0 / (i as f64).powf(theta);
    }
    s
}

/// YCSB's zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases"): rank 0 is the most popular item; P(rank k) ∝ 1/(k+1)^θ over `items` items.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    half_pow_theta: f64,
}

/// Parameters a zipfian distribution cannot have.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZipfError {
    /// Zero items to choose from.
    #[error("zipfian needs at least one item (load some records: --keys)")]
    NoItems,
    /// `theta` outside (0, 1).
    #[error("zipfian theta must be in (0, 1), got {0} (YCSB uses 0.99; 0 means uniform)")]
    Theta(f64),
}

impl Zipfian {
    /// `theta` must be in (0, 1) (YCSB's default is 0.99); `items` ≥ 1.
    pub fn new(items: u64, theta: f64) -> Result<Self, ZipfError> {
        if items == 0 {
            return Err(ZipfError::NoItems);
        }
        if !(theta > 0.0 && theta < 1.0) {
            return Err(ZipfError::Theta(theta));
        }
        let zetan = zeta(items, theta);
        let zeta2 = zeta(2.min(items), theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = if items > 1 {
            (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            0.0
        };
        Ok(Self {
            items,
            theta,
            alpha,
            zetan,
            eta,
            half_pow_theta: 0.5f64.powf(theta),
        })
    }

    /// Number of items.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// ζ(items, θ): the probability of rank 0 is 1/ζ.
    pub fn zetan(&self) -> f64 {
        self.zetan
    }

    /// θ.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// Maps a uniform `u` in [0, 1) to a rank in [0, items).
    pub fn rank_for(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if self.items > 1 && uz < 1.0 + self.half_pow_theta {
            return 1;
        }
        let r = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.items - 1)
    }

    /// Draws a rank.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        self.rank_for(rng.gen::<f64>())
    }
}

/// 64-bit FNV-1a of the little-endian bytes of `v` (YCSB scrambles zipfian ranks this way so
/// that popular items are spread over the key space).
pub fn fnv1a64(v: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How a workload chooses the record of its next operation.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Always the same record.
    Single(u64),
    /// Uniform over [0, n).
    Uniform(u64),
    /// Zipfian ranks scrambled over [0, n) (YCSB "zipfian" request distribution).
    ScrambledZipf(Zipfian),
    /// Zipfian ranks, unscrambled: record 0 is the hottest.
    Zipf(Zipfian),
    /// YCSB "latest": recent inserts are hottest; `max - zipf` over the current record count.
    Latest(Zipfian),
}

impl KeyChooser {
    /// Uniform when `theta` is 0, scrambled zipfian otherwise.
    pub fn for_theta(n: u64, theta: f64) -> Result<Self, ZipfError> {
        if theta == 0.0 {
            Ok(KeyChooser::Uniform(n.max(1)))
        } else {
            Ok(KeyChooser::ScrambledZipf(Zipfian::new(n, theta)?))
        }
    }

    /// Short description for reports.
    pub fn describe(&self) -> String {
        match self {
            KeyChooser::Single(i) => format!("single(record {i})"),
            KeyChooser::Uniform(n) => format!("uniform({n})"),
            KeyChooser::ScrambledZipf(z) => format!("zipfian({}, theta={})", z.items, z.theta),
            KeyChooser::Zipf(z) => format!("zipfian-unscrambled({}, theta={})", z.items, z.theta),
            KeyChooser::Latest(z) => format!("latest(theta={})", z.theta),
        }
    }

    /// Next record index. `current` is the number of records that exist now (for `Latest`).
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R, current: u64) -> u64 {
        match self {
            KeyChooser::Single(i) => *i,
            KeyChooser::Uniform(n) => rng.gen_range(0..*n),
            KeyChooser::ScrambledZipf(z) => fnv1a64(z.sample(rng)) % z.items,
            KeyChooser::Zipf(z) => z.sample(rng),
            KeyChooser::Latest(z) => {
                let cur = current.max(1);
                let r = z.sample(rng) % cur;
                cur - 1 - r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn keys_are_fixed_length_and_distinct() {
        let mut a = Vec::new();
        make_key(42, 30, &mut a).unwrap();
        assert_eq!(a.len(), 30);
        assert!(a.ends_with(b"42"));
        assert!(a.starts_with(b"0000"));
        let mut b = Vec::new();
        make_key(4, 30, &mut b).unwrap();
        assert_ne!(a, b);
        make_key(0, 1, &mut b).unwrap();
        assert_eq!(b, b"0");
        make_key(123456, 6, &mut b).unwrap();
        assert_eq!(b, b"123456");
    }

    #[test]
    fn key_too_short_is_an_error() {
        let mut k = Vec::new();
        let e = make_key(1000, 3, &mut k).unwrap_err();
        assert!(e.to_string().contains("--key-size >= 4"));
        assert_eq!(min_key_len(1000), 3);
        assert_eq!(min_key_len(1001), 4);
        assert_eq!(min_key_len(1), 1);
    }

    #[test]
    fn values_have_requested_size() {
        let mut v = Vec::new();
        for len in [0, 1, 7, 8, 100, 1000] {
            make_value(3, len, &mut v);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|b| b.is_ascii_lowercase()));
        }
    }

    #[test]
    fn zipfian_rank0_matches_theory_and_ranges_hold() {
        let n = 1000;
        let z = Zipfian::new(n, 0.99).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let draws = 400_000;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            let r = z.sample(&mut rng);
            assert!(r < n);
            counts[r as usize] += 1;
        }
        let p0 = counts[0] as f64 / draws as f64;
        let theory0 = 1.0 / z.zetan();
        assert!(
            (p0 - theory0).abs() / theory0 < 0.03,
            "p0 {p0} vs {theory0}"
        );
        let p1 = counts[1] as f64 / draws as f64;
        let theory1 = 1.0 / 2f64.powf(0.99) / z.zetan();
        assert!(
            (p1 - theory1).abs() / theory1 < 0.05,
            "p1 {p1} vs {theory1}"
        );
        // monotone-ish head
        assert!(counts[0] > counts[1] && counts[1] > counts[5] && counts[5] > counts[100]);
    }

    #[test]
    fn zipfian_rejects_bad_parameters() {
        assert!(Zipfian::new(0, 0.5).is_err());
        assert!(Zipfian::new(10, 1.0).is_err());
        assert!(Zipfian::new(10, -0.1).is_err());
        let one = Zipfian::new(1, 0.99).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(one.sample(&mut rng), 0);
        }
    }

    #[test]
    fn choosers_respect_ranges() {
        let mut rng = SmallRng::seed_from_u64(3);
        let cs = [
            KeyChooser::Single(5),
            KeyChooser::Uniform(17),
            KeyChooser::for_theta(17, 0.99).unwrap(),
            KeyChooser::Zipf(Zipfian::new(17, 0.5).unwrap()),
            KeyChooser::Latest(Zipfian::new(17, 0.99).unwrap()),
        ];
        for c in &cs {
            for _ in 0..10_000 {
                let k = c.next(&mut rng, 17);
                assert!(k < 17, "{} gave {k}", c.describe());
            }
        }
        // latest favours the newest record
        let l = KeyChooser::Latest(Zipfian::new(100, 0.99).unwrap());
        let newest = (0..10_000).filter(|_| l.next(&mut rng, 100) == 99).count();
        assert!(newest > 1000);
        assert!(matches!(
            KeyChooser::for_theta(5, 0.0).unwrap(),
            KeyChooser::Uniform(5)
        ));
    }
}
