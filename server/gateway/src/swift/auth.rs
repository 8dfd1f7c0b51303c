//! Swift logins as tempauth answers them (`GET /auth/v1.0` with `X-Auth-User`/`X-Auth-Key`),
//! and the token check of every `/v1/` request. Tokens live in the gateway's memory only: a
//! bounded map (at most [`MAX_TOKENS`], each valid for [`TOKEN_TTL`]); a restarted gateway
//! answers 401 and clients log in again, as they do when a Swift token expires.

use std::time::Instant;

use http::StatusCode;

use super::util::{error, header, respond, Resp};
use crate::shared::Shared;
pub use crate::tokens::{Tokens, MAX_TOKENS, TOKEN_TTL};

/// Byte-wise comparison whose time does not depend on where the inputs differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The account of a tempauth user name (`test:tester` → `test`).
pub(crate) fn account_of(user: &str) -> Option<&str> {
    let (account, name) = user.split_once(':')?;
    (!account.is_empty() && !name.is_empty()).then_some(account)
}

/// `GET /auth/v1.0`: check the user and key against the gateway's credentials, answer the
/// storage URL and a new token.
pub(crate) fn login(gw: &Shared, req: &http::Request<s3s::Body>) -> Resp {
    gw.ops.count("SwiftAuth");
    let h = req.headers();
    let user = header(h, "x-auth-user").or_else(|| header(h, "x-storage-user"));
    let key = header(h, "x-auth-key").or_else(|| header(h, "x-storage-pass"));
    let account = match (user, key) {
        _ if gw.no_auth => user.and_then(account_of).unwrap_or("gateway"),
        (Some(u), Some(k)) => {
            let known = gw.credentials.iter().any(|(cu, ck)| cu == u && same(ck, k));
            match account_of(u) {
                Some(a) if known => a,
                _ => return error(StatusCode::UNAUTHORIZED, None),
            }
        }
        _ => return error(StatusCode::UNAUTHORIZED, None),
    };
    if !account
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        return error(StatusCode::UNAUTHORIZED, None);
    }
    let host = header(h, "host")
        .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let token = gw.tokens.issue(&format!("AUTH_{account}"), Instant::now());
    respond(
        StatusCode::OK,
        &[
            ("x-storage-url", format!("http://{host}/v1/AUTH_{account}")),
            ("x-auth-token", token.clone()),
            ("x-storage-token", token),
            ("x-auth-token-expires", TOKEN_TTL.as_secs().to_string()),
            ("content-type", "text/html; charset=UTF-8".to_string()),
            ("content-length", "0".to_string()),
        ],
        s3s::Body::empty(),
    )
}

/// Check a `/v1/` request's token against the account of its path: `Err` is the 401 or 403
/// to answer.
pub(crate) fn check(gw: &Shared, h: &http::HeaderMap, account: &str) -> Result<(), Resp> {
    if gw.no_auth {
        return Ok(());
    }
    let token = header(h, "x-auth-token").or_else(|| header(h, "x-storage-token"));
    let Some(owner) = token.and_then(|t| gw.tokens.account(t, Instant::now())) else {
        return Err(error(StatusCode::UNAUTHORIZED, None));
    };
    if owner != account {
        return Err(error(StatusCode::FORBIDDEN, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_expire_and_are_bounded() {
        let t = Tokens::default();
        let now = Instant::now();
        let a = t.issue("AUTH_test", now);
        assert!(a.starts_with("AUTH_tk") && a.len() == 7 + 32);
        assert_eq!(t.account(&a, now).as_deref(), Some("AUTH_test"));
        assert_eq!(t.account("AUTH_tkother", now), None);
        let later = now + TOKEN_TTL;
        assert_eq!(t.account(&a, later), None);
        assert!(t.is_empty(), "an expired token is forgotten when seen");
        // Full: expired ones go first, then the oldest.
        let first = t.issue("AUTH_a", now);
        for i in 1..MAX_TOKENS {
            t.issue("AUTH_a", now + Duration::from_millis(i as u64));
        }
        assert_eq!(t.len(), MAX_TOKENS);
        let newest = t.issue("AUTH_a", now + Duration::from_secs(60));
        assert_eq!(t.len(), MAX_TOKENS);
        assert_eq!(t.account(&first, now + Duration::from_secs(61)), None);
        assert!(t.account(&newest, now + Duration::from_secs(61)).is_some());
        let after_all = now + TOKEN_TTL + Duration::from_secs(61);
        t.issue("AUTH_b", after_all);
        assert_eq!(t.len(), 1, "all expired ones were dropped at once");
    }

    #[test]
    fn accounts_and_keys() {
        assert_eq!(account_of("test:tester"), Some("test"));
        assert_eq!(account_of("test:a:b"), Some("test"));
        assert_eq!(account_of("test"), None);
        assert_eq!(account_of(":x"), None);
        assert_eq!(account_of("x:"), None);
        assert!(same("testing", "testing"));
        assert!(!same("testing", "testinG"));
        assert!(!same("testing", "test"));
    }
}
