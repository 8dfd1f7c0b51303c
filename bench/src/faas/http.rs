//! The loopback HTTP pieces the sandboxes and the node agent's link share: a free port, the
//! blocking client.

use std::time::Duration;

use anyhow::{Context, Result};

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it first; the
/// proxy then fails to listen and the start is reported).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The blocking HTTP client of a sandbox or an agent link (no proxies from the environment: loopback only).
pub fn http_client(timeout: Duration) -> Result<reqwest::blocking::Client> {
    #[allow(deprecated)] // the provider faascache-objstore installs too
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(1)
        .build()
        .context("building the HTTP client")
}
