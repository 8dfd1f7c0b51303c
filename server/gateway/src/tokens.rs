//! Swift login tokens (a leaf module: the shared state holds them, the Swift API issues and
//! checks them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The most tokens held at once (the oldest is dropped for a new one).
pub const MAX_TOKENS: usize = 10_000;
/// How long a token is valid (tempauth's default).
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
struct Session {
    account: String,
    expires: Instant,
}

/// Swift login tokens: token → the account it may use and when it expires.
#[derive(Debug, Default)]
pub struct Tokens(Mutex<HashMap<String, Session>>);

impl Tokens {
    /// A new token for `account`, valid for [`TOKEN_TTL`] from `now`.
    pub fn issue(&self, account: &str, now: Instant) -> String {
        let token = format!("AUTH_tk{:032x}", rand::random::<u128>());
        let mut m = self.0.lock();
        if m.len() >= MAX_TOKENS {
            m.retain(|_, s| s.expires > now);
        }
        while m.len() >= MAX_TOKENS {
            let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(
            token.clone(),
            Session {
                account: account.to_string(),
                expires: now + TOKEN_TTL,
            },
        );
        token
    }

    /// The account of a valid `token` (an expired one is forgotten).
    pub fn account(&self, token: &str, now: Instant) -> Option<String> {
        let mut m = self.0.lock();
        let s = m.get(token)?;
        if s.expires <= now {
            m.remove(token);
            return None;
        }
        Some(s.account.clone())
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
