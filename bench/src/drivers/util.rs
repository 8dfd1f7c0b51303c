//! What the drivers share: control-plane exchanges, address helpers, process facts. A leaf: it
//! names no driver.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `req` on a fresh blocking connection and reads until the reply ends with `end`
/// (control-plane helper: INFO, stats, version, flush).
pub fn exchange(addr: &str, req: &[u8], end: &[u8], timeout: Duration) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(req)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while !buf.ends_with(end) {
        let n = s
            .read(&mut chunk)
            .with_context(|| format!("reading reply from {addr}"))?;
        if n == 0 {
            anyhow::bail!("{addr} closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 * 1024 {
            anyhow::bail!("reply from {addr} too long");
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Whether `addr` (host:port) names this machine.
pub fn is_local(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map(|x| x.0).unwrap_or(addr);
    matches!(
        host,
        "127.0.0.1" | "localhost" | "::1" | "[::1]" | "0.0.0.0"
    ) || host.starts_with("127.")
}

/// Port of a host:port address.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Fills the process facts of a [`crate::driver::DriverInfo`] from /proc.
pub fn fill_process_info(info: &mut crate::driver::DriverInfo, pid: Option<u32>) {
    if let Some(pid) = pid {
        info.server_cmdline = crate::procinfo::cmdline(pid);
        info.server_cpus = crate::procinfo::status_field(pid, "Cpus_allowed_list");
        info.server_threads =
            crate::procinfo::status_field(pid, "Threads").and_then(|t| t.parse().ok());
    }
}
