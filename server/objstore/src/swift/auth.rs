//! Logging in to Swift: auth v1 (tempauth, swauth, and the v1 endpoints of many providers:
//! `GET AUTH_URL` with `X-Auth-User`/`X-Auth-Key` → `X-Storage-Url`, `X-Auth-Token`) and
//! Keystone v3 password auth (`POST AUTH_URL/auth/tokens` → the token in `X-Subject-Token`, the
//! storage URL from the catalog's `object-store` service).

use serde::Deserialize;

use crate::config::{Secret, StoreUrl, SwiftSettings};
use crate::error::{from_status, Error, Result};

/// How to log in.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    V1 {
        url: String,
        user: String,
        key: Secret,
    },
    V3 {
        url: String,
        username: String,
        password: Secret,
        project: String,
        user_domain: String,
        project_domain: String,
        region: Option<String>,
        interface: String,
    },
}

/// A login: where the account is and the token for it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) storage_url: String,
    pub(crate) token: Secret,
}

impl Auth {
    /// Auth v1 when `user` and `key` are set, else Keystone v3 when `username` and `password`
    /// are; both need `auth_url`.
    pub(crate) fn from_settings(s: &SwiftSettings, url: &StoreUrl) -> Result<Auth> {
        let Some(auth_url) = s.auth_url.clone() else {
            return Err(Error::Config(format!(
                "{url}: no Swift auth URL: set ST_AUTH (auth v1) or OS_AUTH_URL (Keystone v3), or auth_url under [swift] in the store config file"
            )));
        };
        if !(auth_url.starts_with("http://") || auth_url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "{url}: the Swift auth URL {auth_url:?} must start with http:// or https://"
            )));
        }
        if let (Some(user), Some(key)) = (&s.user, &s.key) {
            return Ok(Auth::V1 {
                url: auth_url,
                user: user.clone(),
                key: key.clone(),
            });
        }
        if let (Some(username), Some(password)) = (&s.username, &s.password) {
            let Some(project) = s.project_name.clone() else {
                return Err(Error::Config(format!(
                    "{url}: Keystone v3 needs a project: set OS_PROJECT_NAME (or project_name under [swift])"
                )));
            };
            return Ok(Auth::V3 {
                url: auth_url,
                username: username.clone(),
                password: password.clone(),
                project,
                user_domain: s
                    .user_domain_name
                    .clone()
                    .unwrap_or_else(|| "Default".into()),
                project_domain: s
                    .project_domain_name
                    .clone()
                    .unwrap_or_else(|| "Default".into()),
                region: s.region_name.clone(),
                interface: s.interface.clone().unwrap_or_else(|| "public".into()),
            });
        }
        Err(Error::Config(format!(
            "{url}: no Swift credentials: set ST_USER and ST_KEY (auth v1) or OS_USERNAME and OS_PASSWORD (Keystone v3), or the same under [swift] in the store config file"
        )))
    }

    /// The auth endpoint (no secret in it), for messages.
    pub(crate) fn url(&self) -> &str {
        match self {
            Auth::V1 { url, .. } | Auth::V3 { url, .. } => url,
        }
    }

    /// Log in.
    pub(crate) async fn login(&self, client: &reqwest::Client, store: &str) -> Result<Token> {
        match self {
            Auth::V1 { url, user, key } => {
                let r = client
                    .get(url)
                    .header("X-Auth-User", user)
                    .header("X-Auth-Key", key.expose())
                    .send()
                    .await
                    .map_err(|e| super::wire::http_error(store, "auth v1", &e))?;
                let status = r.status().as_u16();
                if !(200..300).contains(&status) {
                    return Err(auth_status(store, status, "auth v1"));
                }
                let h = r.headers();
                let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                match (get("x-storage-url"), get("x-auth-token")) {
                    (Some(storage_url), Some(token)) => Ok(Token {
                        storage_url,
                        token: Secret::new(token),
                    }),
                    _ => Err(Error::Protocol {
                        store: store.into(),
                        detail: format!(
                            "auth v1 at {url} answered {status} without X-Storage-Url and X-Auth-Token"
                        ),
                    }),
                }
            }
            Auth::V3 { .. } => self.login_v3(client, store).await,
        }
    }

    async fn login_v3(&self, client: &reqwest::Client, store: &str) -> Result<Token> {
        let Auth::V3 {
            url,
            username,
            password,
            project,
            user_domain,
            project_domain,
            region,
            interface,
        } = self
        else {
            unreachable!("login_v3 is called for Keystone v3 only")
        };
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"name": user_domain}, "password": password.expose()}}},
            "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}});
        let base = url.trim_end_matches('/');
        let endpoint = if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        };
        let r = client
            .post(&endpoint)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| super::wire::http_error(store, "Keystone v3 auth", &e))?;
        let status = r.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(auth_status(store, status, "Keystone v3"));
        }
        let token = r
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // A token answer with its catalog is a few tens of KiB; refuse anything huge.
        let text = super::wire::read_small(r, 4 << 20, store).await?;
        let Some(token) = token else {
            return Err(Error::Protocol {
                store: store.into(),
                detail: format!("Keystone at {endpoint} answered {status} without X-Subject-Token"),
            });
        };
        let storage_url =
            pick_endpoint(&text, region.as_deref(), interface).map_err(|e| match e {
                Error::Config(why) => {
                    Error::Config(format!("{store}: Keystone at {endpoint}: {why}"))
                }
                e => e,
            })?;
        Ok(Token {
            storage_url,
            token: Secret::new(token),
        })
    }
}

fn auth_status(store: &str, status: u16, what: &str) -> Error {
    match status {
        401 | 403 => Error::BadCredentials {
            store: store.into(),
            detail: format!("{what} answered {status}"),
        },
        _ => from_status(store, "", status, format!("{what} login")),
    }
}

#[derive(Deserialize)]
struct V3Answer {
    token: V3Token,
}
#[derive(Deserialize)]
struct V3Token {
    #[serde(default)]
    catalog: Vec<Service>,
}
#[derive(Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}
#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    url: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
}

/// The object-store endpoint of a Keystone v3 token answer for `interface` and `region`.
pub(crate) fn pick_endpoint(answer: &str, region: Option<&str>, interface: &str) -> Result<String> {
    let a: V3Answer = serde_json::from_str(answer)
        .map_err(|e| Error::Config(format!("the token answer is not Keystone v3 JSON ({e})")))?;
    let services: Vec<&Service> = a
        .token
        .catalog
        .iter()
        .filter(|s| s.kind == "object-store")
        .collect();
    if services.is_empty() {
        return Err(Error::Config(
            "the catalog has no `object-store` service: this cloud has no Swift, or the project cannot see it"
                .into(),
        ));
    }
    services
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| {
            e.interface == interface
                && region.is_none_or(|r| {
                    e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r)
                })
        })
        .map(|e| e.url.clone())
        .ok_or_else(|| {
            Error::Config(format!(
                "the `object-store` service has no `{interface}` endpoint{}: set OS_INTERFACE / OS_REGION_NAME",
                region.map(|r| format!(" in region `{r}`")).unwrap_or_default()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"token": {"methods": ["password"], "catalog": [
        {"type": "identity", "endpoints": [{"interface": "public", "url": "http://ks:5000/v3", "region": "r1"}]},
        {"type": "object-store", "name": "swift", "endpoints": [
            {"interface": "internal", "url": "http://10.0.0.1:8080/v1/AUTH_p", "region": "r1"},
            {"interface": "public", "url": "http://r1:8080/v1/AUTH_p", "region": "r1", "region_id": "r1"},
            {"interface": "public", "url": "http://r2:8080/v1/AUTH_p", "region": "r2", "region_id": "r2"}]}]}}"#;

    #[test]
    fn the_catalog_gives_the_storage_url() {
        assert_eq!(
            pick_endpoint(ANSWER, None, "public").unwrap(),
            "http://r1:8080/v1/AUTH_p"
        );
        assert_eq!(
            pick_endpoint(ANSWER, Some("r2"), "public").unwrap(),
            "http://r2:8080/v1/AUTH_p"
        );
        assert_eq!(
            pick_endpoint(ANSWER, None, "internal").unwrap(),
            "http://10.0.0.1:8080/v1/AUTH_p"
        );
        let e = pick_endpoint(ANSWER, Some("r3"), "public")
            .unwrap_err()
            .to_string();
        assert!(e.contains("region `r3`"), "{e}");
        let e = pick_endpoint(r#"{"token": {"catalog": []}}"#, None, "public")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `object-store`"), "{e}");
        assert!(pick_endpoint("<html>", None, "public").is_err());
    }

    #[test]
    fn settings_choose_the_auth_version() {
        let url: StoreUrl = "swift://c".parse().unwrap();
        let mut s = SwiftSettings {
            auth_url: Some("http://127.0.0.1:8080/auth/v1.0".into()),
            user: Some("test:tester".into()),
            key: Some(Secret::new("testing")),
            ..Default::default()
        };
        assert!(matches!(
            Auth::from_settings(&s, &url).unwrap(),
            Auth::V1 { .. }
        ));
        s.user = None;
        s.username = Some("u".into());
        s.password = Some(Secret::new("p"));
        let e = Auth::from_settings(&s, &url).unwrap_err().to_string();
        assert!(e.contains("OS_PROJECT_NAME"), "{e}");
        s.project_name = Some("p".into());
        let a = Auth::from_settings(&s, &url).unwrap();
        assert!(matches!(a, Auth::V3 { ref user_domain, .. } if user_domain == "Default"));
        assert!(format!("{a:?}").contains("password: ***"), "{a:?}");
        s.auth_url = None;
        assert!(Auth::from_settings(&s, &url)
            .unwrap_err()
            .to_string()
            .contains("ST_AUTH"));
    }
}
