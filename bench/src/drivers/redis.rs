//! Redis driver: RESP2 over TCP, written by hand, pipelined.

use super::util::{exchange, fill_process_info, is_local, port_of};
use crate::driver::{Client, ClientConfig, Driver, DriverInfo, Op, OpKind, Reply};
use crate::net::BufStream;
use crate::proto::resp::{self, RespReply};
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Redis at `host:port`.
#[derive(Debug)]
pub struct RedisDriver {
    addr: String,
    pid_override: Option<u32>,
}

impl RedisDriver {
    /// Checks the server answers PING.
    pub fn new(addr: &str, server_pid: Option<u32>) -> Result<Self> {
        let r = exchange(
            addr,
            b"*1\r\n$4\r\nPING\r\n",
            b"\r\n",
            Duration::from_secs(2),
        )
        .with_context(|| {
            format!("Redis at {addr} is not reachable (start it with scripts/peers.sh start redis)")
        })?;
        if !r.starts_with("+PONG") {
            bail!("Redis at {addr} answered PING with {r:?}");
        }
        Ok(Self {
            addr: addr.to_string(),
            pid_override: server_pid,
        })
    }

    fn info_server(&self) -> Option<String> {
        let r = exchange(
            &self.addr,
            b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n",
            b"\r\n\r\n",
            Duration::from_secs(2),
        )
        .ok()?;
        // bulk reply: "$n\r\n...\r\n" - read until the payload is complete
        Some(r)
    }
}

/// The bulk-string values of a RESP array reply, in order (empty strings kept).
fn bulk_values(reply: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lines = reply.split("\r\n");
    while let Some(l) = lines.next() {
        if l.starts_with('$') && l != "$-1" {
            out.push(lines.next().unwrap_or(""));
        }
    }
    out
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

impl Driver for RedisDriver {
    fn name(&self) -> &str {
        "redis"
    }

    fn info(&self) -> DriverInfo {
        let info = self.info_server().unwrap_or_default();
        let mut d = DriverInfo {
            name: "redis".into(),
            transport: format!("tcp:{}", self.addr),
            server_version: info_field(&info, "redis_version"),
            protocol: "RESP2 (hand-written), pipelined".into(),
            notes: vec![
                "multiRead = MGET, multiWrite = MSET".into(),
                "echo = ECHO".into(),
                "YCSB scan = MGET of the next N sequential records (Redis has no ordered key scan)"
                    .into(),
            ],
            ..Default::default()
        };
        // Redis rewrites its process title, so the flags are asked from the server itself
        let cfg = exchange(
            &self.addr,
            b"*6\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n$10\r\nappendonly\r\n$10\r\nio-threads\r\n$9\r\nmaxmemory\r\n",
            b"\r\n",
            Duration::from_secs(2),
        )
        .unwrap_or_default();
        let vals = bulk_values(&cfg);
        let cfg_s: Vec<String> = vals
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| format!("{}={:?}", c[0], c[1]))
            .collect();
        if !cfg_s.is_empty() {
            d.notes.push(format!("config: {}", cfg_s.join(" ")));
        }
        let mode = info_field(&info, "redis_mode");
        if let Some(m) = mode {
            d.notes.push(format!("redis_mode={m}"));
        }
        fill_process_info(&mut d, self.server_pid());
        d
    }

    fn connect(&self, cfg: &ClientConfig) -> Result<Box<dyn Client>> {
        let s = BufStream::connect(&self.addr, cfg.poll, cfg.timeout)
            .with_context(|| format!("connecting to Redis at {}", self.addr))?;
        Ok(Box::new(RedisClient {
            s,
            pending: VecDeque::new(),
            timeout: cfg.timeout,
        }))
    }

    fn supports(&self, _kind: OpKind) -> bool {
        true
    }

    fn server_pid(&self) -> Option<u32> {
        if self.pid_override.is_some() {
            return self.pid_override;
        }
        if !is_local(&self.addr) {
            return None;
        }
        // INFO reports the server's own pid; /proc/net/tcp is the fallback.
        self.info_server()
            .and_then(|i| info_field(&i, "process_id"))
            .and_then(|p| p.parse().ok())
            .filter(|p: &u32| std::path::Path::new(&format!("/proc/{p}")).exists())
            .or_else(|| port_of(&self.addr).and_then(crate::procinfo::pid_listening_on))
    }

    fn flush_all(&self) -> Result<()> {
        let r = exchange(
            &self.addr,
            b"*1\r\n$8\r\nFLUSHALL\r\n",
            b"\r\n",
            Duration::from_secs(60),
        )?;
        if !r.starts_with("+OK") {
            bail!("FLUSHALL answered {r:?}");
        }
        Ok(())
    }
}

/// One pipelined Redis connection.
#[derive(Debug)]
pub struct RedisClient {
    s: BufStream,
    pending: VecDeque<OpKind>,
    timeout: Duration,
}

impl Client for RedisClient {
    fn send(&mut self, op: &Op<'_>) -> Result<()> {
        let w = &mut self.s.wbuf;
        match op {
            Op::Get { key } => resp::encode(w, &[b"GET", key]),
            Op::Set { key, value } => resp::encode(w, &[b"SET", key, value]),
            Op::Delete { key } => resp::encode(w, &[b"DEL", key]),
            Op::Echo { payload } => resp::encode(w, &[b"ECHO", payload]),
            Op::MultiGet { keys } => {
                resp::header(w, b'*', keys.len() + 1);
                resp::bulk(w, b"MGET");
                for k in keys.iter() {
                    resp::bulk(w, k);
                }
            }
            Op::MultiSet { keys, value } => {
                resp::header(w, b'*', 2 * keys.len() + 1);
                resp::bulk(w, b"MSET");
                for k in keys.iter() {
                    resp::bulk(w, k);
                    resp::bulk(w, value);
                }
            }
        }
        self.pending.push_back(op.kind());
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.s.flush().context("sending to Redis")
    }

    fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Reply>> {
        let Some(&kind) = self.pending.front() else {
            bail!("recv with no request outstanding");
        };
        let hard = deadline.is_none();
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.timeout);
        loop {
            if let Some((r, used)) = resp::parse(self.s.data())? {
                self.s.consume(used);
                self.pending.pop_front();
                return Ok(Some(map_reply(kind, r)?));
            }
            if !self.s.fill(Some(deadline)).context("reading from Redis")? {
                if hard {
                    bail!("no reply from Redis within {:?}", self.timeout);
                }
                return Ok(None);
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

/// Maps a RESP reply to the harness's reply for the request kind that produced it.
pub fn map_reply(kind: OpKind, r: RespReply) -> Result<Reply> {
    Ok(match (kind, r) {
        (_, RespReply::Error(e)) => Reply::Error(e),
        (OpKind::Get, RespReply::Bulk(n)) => Reply::Value(n),
        (OpKind::Get, RespReply::Nil) => Reply::Miss,
        (OpKind::Set | OpKind::MultiSet, RespReply::Simple(s)) if s == "OK" => Reply::Ok,
        (OpKind::Delete, RespReply::Integer(n)) => Reply::Deleted(n > 0),
        (OpKind::Echo, RespReply::Bulk(_)) => Reply::Ok,
        (OpKind::MultiGet, RespReply::Array { found, bytes, .. }) => Reply::Values { found, bytes },
        (k, r) => bail!("unexpected Redis reply {r:?} to {k:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_replies() {
        assert_eq!(
            map_reply(OpKind::Get, RespReply::Bulk(5)).unwrap(),
            Reply::Value(5)
        );
        assert_eq!(map_reply(OpKind::Get, RespReply::Nil).unwrap(), Reply::Miss);
        assert_eq!(
            map_reply(OpKind::Set, RespReply::Simple("OK".into())).unwrap(),
            Reply::Ok
        );
        assert_eq!(
            map_reply(OpKind::Set, RespReply::Error("OOM".into())).unwrap(),
            Reply::Error("OOM".into())
        );
        assert!(map_reply(OpKind::Set, RespReply::Integer(1)).is_err());
        assert_eq!(
            map_reply(
                OpKind::MultiGet,
                RespReply::Array {
                    len: 3,
                    found: 2,
                    bytes: 10
                }
            )
            .unwrap(),
            Reply::Values {
                found: 2,
                bytes: 10
            }
        );
    }

    #[test]
    fn config_reply_values() {
        let r = "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
        assert_eq!(bulk_values(r), vec!["save", "", "appendonly", "no"]);
    }

    #[test]
    fn info_fields() {
        let i = "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n";
        assert_eq!(info_field(i, "redis_version").as_deref(), Some("7.0.15"));
        assert_eq!(info_field(i, "process_id").as_deref(), Some("42"));
        assert_eq!(info_field(i, "nope"), None);
    }
}
