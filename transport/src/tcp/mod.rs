//! Kernel TCP transport: non-blocking sockets, `TCP_NODELAY`, frames delimited by the RPC
//! header's length, vectored writes. `client.rs` is the session side (caller-driven progress);
//! `server.rs` the dispatch threads (one mio/epoll set each, connections spread round-robin).

mod client;
mod server;

pub(crate) use client::connect;
pub(crate) use server::serve;

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};
use crate::locator::Locator;

/// Resolve a locator's `host` and `port` to socket addresses.
pub(crate) fn resolve(loc: &Locator) -> Result<Vec<SocketAddr>> {
    let host = loc.host().unwrap_or_default();
    let port = loc.port().unwrap_or_default();
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::Connect {
            locator: loc.to_string(),
            reason: format!("cannot resolve host: {e}"),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Connect {
            locator: loc.to_string(),
            reason: "host resolves to no address".into(),
        });
    }
    Ok(addrs)
}
