//! memcached driver: text protocol over TCP, pipelined. Multi-read is one multi-key `get`;
//! multi-write is pipelined `set`s (the text protocol has no multi-set).

use super::util::{exchange, fill_process_info, is_local, port_of};
use crate::driver::{Client, ClientConfig, Driver, DriverInfo, Op, OpKind, Reply};
use crate::net::BufStream;
use crate::proto::memcache::{self, Expect, McReply, MAX_KEY};
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// memcached at `host:port`.
#[derive(Debug)]
pub struct MemcachedDriver {
    addr: String,
    pid_override: Option<u32>,
}

impl MemcachedDriver {
    /// Checks the server answers `version`.
    pub fn new(addr: &str, server_pid: Option<u32>) -> Result<Self> {
        let r = exchange(addr, b"version\r\n", b"\r\n", Duration::from_secs(2)).with_context(|| {
            format!("memcached at {addr} is not reachable (start it with scripts/peers.sh start memcached)")
        })?;
        if !r.starts_with("VERSION") {
            bail!("memcached at {addr} answered version with {r:?}");
        }
        Ok(Self {
            addr: addr.to_string(),
            pid_override: server_pid,
        })
    }

    fn stats(&self) -> Option<String> {
        exchange(&self.addr, b"stats\r\n", b"END\r\n", Duration::from_secs(2)).ok()
    }
}

fn stat(stats: &str, key: &str) -> Option<String> {
    stats.lines().find_map(|l| {
        let mut p = l.split_whitespace();
        (p.next()? == "STAT" && p.next()? == key).then(|| p.next().map(str::to_string))?
    })
}

impl Driver for MemcachedDriver {
    fn name(&self) -> &str {
        "memcached"
    }

    fn info(&self) -> DriverInfo {
        let stats = self.stats().unwrap_or_default();
        let mut d = DriverInfo {
            name: "memcached".into(),
            transport: format!("tcp:{}", self.addr),
            server_version: stat(&stats, "version"),
            protocol: "memcached text protocol (hand-written), pipelined".into(),
            notes: vec![
                "multiRead = one multi-key get; multiWrite = pipelined sets".into(),
                "echo = meta no-op `mn` (payload not carried)".into(),
                format!("keys longer than {MAX_KEY} B are not supported (memcached limit)"),
                "YCSB scan = multi-get of the next N sequential records".into(),
            ],
            ..Default::default()
        };
        if let Some(t) = stat(&stats, "threads") {
            d.notes.push(format!("worker threads={t}"));
        }
        fill_process_info(&mut d, self.server_pid());
        d
    }

    fn connect(&self, cfg: &ClientConfig) -> Result<Box<dyn Client>> {
        let s = BufStream::connect(&self.addr, cfg.poll, cfg.timeout)
            .with_context(|| format!("connecting to memcached at {}", self.addr))?;
        Ok(Box::new(MemcachedClient {
            s,
            pending: VecDeque::new(),
            timeout: cfg.timeout,
        }))
    }

    fn supports(&self, _kind: OpKind) -> bool {
        true
    }

    fn max_key_len(&self) -> usize {
        MAX_KEY
    }

    fn server_pid(&self) -> Option<u32> {
        if self.pid_override.is_some() {
            return self.pid_override;
        }
        if !is_local(&self.addr) {
            return None;
        }
        self.stats()
            .and_then(|s| stat(&s, "pid"))
            .and_then(|p| p.parse().ok())
            .filter(|p: &u32| std::path::Path::new(&format!("/proc/{p}")).exists())
            .or_else(|| port_of(&self.addr).and_then(crate::procinfo::pid_listening_on))
    }

    fn flush_all(&self) -> Result<()> {
        let r = exchange(
            &self.addr,
            b"flush_all\r\n",
            b"\r\n",
            Duration::from_secs(60),
        )?;
        if !r.starts_with("OK") {
            bail!("flush_all answered {r:?}");
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Pending {
    expect: Expect,
    /// replies still to read (pipelined sets of a multi-write)
    remaining: usize,
    /// a single-key get: an empty reply is a miss
    single_get: bool,
    failed: Option<String>,
}

/// One pipelined memcached connection.
#[derive(Debug)]
pub struct MemcachedClient {
    s: BufStream,
    pending: VecDeque<Pending>,
    timeout: Duration,
}

impl Client for MemcachedClient {
    fn send(&mut self, op: &Op<'_>) -> Result<()> {
        let w = &mut self.s.wbuf;
        let single_get = matches!(op, Op::Get { .. });
        let (expect, remaining) = match op {
            Op::Get { key } => {
                memcache::encode_get(w, &[key]);
                (Expect::Values, 1)
            }
            Op::Set { key, value } => {
                memcache::encode_set(w, key, value);
                (Expect::Stored, 1)
            }
            Op::Delete { key } => {
                memcache::encode_delete(w, key);
                (Expect::Deleted, 1)
            }
            Op::Echo { .. } => {
                w.extend_from_slice(b"mn\r\n");
                (Expect::Noop, 1)
            }
            Op::MultiGet { keys } => {
                w.extend_from_slice(b"get");
                for k in keys.iter() {
                    w.push(b' ');
                    w.extend_from_slice(k);
                }
                w.extend_from_slice(b"\r\n");
                (Expect::Values, 1)
            }
            Op::MultiSet { keys, value } => {
                for k in keys.iter() {
                    memcache::encode_set(w, k, value);
                }
                (Expect::Stored, keys.len())
            }
        };
        if remaining == 0 {
            bail!("empty multi-op");
        }
        self.pending.push_back(Pending {
            expect,
            remaining,
            single_get,
            failed: None,
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.s.flush().context("sending to memcached")
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Reply>> {
        if self.pending.is_empty() {
            bail!("recv with no request outstanding");
        }
        let hard = deadline.is_none();
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.timeout);
        loop {
            let front = self.pending.front_mut().expect("checked non-empty");
            if let Some((r, used)) = memcache::parse(self.s.data(), front.expect)? {
                self.s.consume(used);
                front.remaining -= 1;
                let reply = match r {
                    McReply::Values { found, bytes } if front.single_get => {
                        if found == 0 {
                            Reply::Miss
                        } else {
                            Reply::Value(bytes)
                        }
                    }
                    McReply::Values { found, bytes } => Reply::Values { found, bytes },
                    McReply::Stored(true) | McReply::Noop | McReply::Version(_) => Reply::Ok,
                    McReply::Deleted(d) => Reply::Deleted(d),
                    McReply::Stored(false) => Reply::Error("NOT_STORED".into()),
                    McReply::Error(e) => Reply::Error(e),
                };
                if let Reply::Error(e) = &reply {
                    front.failed.get_or_insert_with(|| e.clone());
                }
                if front.remaining > 0 {
                    continue;
                }
                let done = self.pending.pop_front().expect("checked non-empty");
                if let Some(e) = done.failed {
                    return Ok(Some(Reply::Error(e)));
                }
                return Ok(Some(reply));
            }
            if !self
                .s
                .fill(Some(deadline))
                .context("reading from memcached")?
            {
                if hard {
                    bail!("no reply from memcached within {:?}", self.timeout);
                }
                return Ok(None);
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines() {
        let s = "STAT pid 5246\r\nSTAT version 1.6.18\r\nSTAT threads 1\r\nEND\r\n";
        assert_eq!(stat(s, "pid").as_deref(), Some("5246"));
        assert_eq!(stat(s, "version").as_deref(), Some("1.6.18"));
        assert_eq!(stat(s, "nope"), None);
    }
}
