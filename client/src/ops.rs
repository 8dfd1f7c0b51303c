//! Single-object operations of [`Client`]: read, write, remove and increment, each with its
//! conditional form. The machinery they share (sessions, tablet maps, exactly-once ids,
//! retries) is in `client.rs`.

use faascache_protocol::msg::large::MAX_CHUNK_DATA;
use faascache_protocol::msg::master::{
    IncrementRequest, Number, ReadRequest, RemoveRequest, WriteRequest,
};
use faascache_protocol::msg::{self, Request};

use crate::client::{check_key, check_value, Client, Object};
use crate::error::{Error, Result, TableId};
use crate::lease::RpcGuard;
use crate::options::{ReadOptions, WriteOptions};
use crate::retry::Backoff;

impl Client {
    /// Reads an object. [`Error::NoSuchObject`] if there is none. An object of a backed table
    /// larger than one reply (the master answers `OBJECT_TOO_LARGE`) is read piece by piece
    /// with [`Client::read_object`] instead, so `value` may then exceed the 1 MiB value limit.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// match c.read(t, b"alice") {
    ///     Ok(o) => println!("{} bytes at version {}", o.value.len(), o.version),
    ///     Err(faascache_client::Error::NoSuchObject) => println!("no alice"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read(&self, table: TableId, key: &[u8]) -> Result<Object> {
        self.read_with(table, key, &ReadOptions::default())
    }

    /// Reads an object under reject rules (e.g. only if its version moved past a cached one).
    ///
    /// ```no_run
    /// use faascache_client::{Client, ReadOptions, RejectRules};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let newer = ReadOptions::default().reject(RejectRules {
    ///     version_le_given: true, given_version: 5, ..RejectRules::NONE });
    /// let r = c.read_with(t, b"alice", &newer);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn read_with(&self, table: TableId, key: &[u8], opts: &ReadOptions) -> Result<Object> {
        check_key(key)?;
        match self.read_tracked(table, key, opts, &mut self.backoff()) {
            Err(Error::ObjectTooLarge(_)) => {
                let (_, value, version) = self.read_object_with(table, key, opts.reject)?;
                Ok(Object { value, version })
            }
            r => r,
        }
    }

    /// A read with a given back-off (deadline).
    pub(crate) fn read_tracked(
        &self,
        table: TableId,
        key: &[u8],
        opts: &ReadOptions,
        backoff: &mut Backoff,
    ) -> Result<Object> {
        let req = ReadRequest {
            table,
            rules: opts.reject,
            key,
        };
        self.on_master(table, msg::key_hash(key), backoff, |s, left| {
            let r = faascache_transport::call(s, &req, left, |r| Object {
                value: r.value.to_vec(),
                version: r.version,
            });
            self.classify(table, ReadRequest::OPCODE, r)
        })
    }

    /// Writes (creates or overwrites) an object; returns its new version. A value above the
    /// 1 MiB value limit is written to a backed table in chunks, as [`Client::write_object`]
    /// does (a plain table: [`Error::TooLarge`]).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let v = c.write(t, b"alice", b"42")?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn write(&self, table: TableId, key: &[u8], value: &[u8]) -> Result<u64> {
        self.write_with(table, key, value, &WriteOptions::default())
    }

    /// Writes under reject rules: e.g. compare-and-swap with [`RejectRules::version_is`], or
    /// create-only with [`RejectRules::must_not_exist`].
    ///
    /// ```no_run
    /// use faascache_client::{Client, Error, RejectRules, WriteOptions};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let o = c.read(t, b"counter")?;
    /// let cas = WriteOptions::default().reject(RejectRules::version_is(o.version));
    /// match c.write_with(t, b"counter", b"new", &cas) {
    ///     Ok(v) => println!("now at version {v}"),
    ///     Err(Error::VersionMismatch { current }) => println!("lost the race to version {current}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn write_with(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        opts: &WriteOptions,
    ) -> Result<u64> {
        check_key(key)?;
        if value.len() > msg::MAX_VALUE_LEN {
            // Large values are objects of backed tables, written in chunks (a plain table
            // answers TooLarge).
            let meta = faascache_protocol::msg::faas::ObjectMeta::default();
            return self.write_object_with(table, key, &meta, value, opts);
        }
        check_value(value)?;
        let r = self.write_tracked(
            table,
            key,
            value,
            opts,
            &self.begin_rpc()?,
            &mut self.backoff(),
        );
        match r {
            // Within 1 MiB but not with a backed table's envelope: in chunks after all.
            Err(Error::ObjectTooLarge(_)) if value.len() > MAX_CHUNK_DATA as usize => {
                let meta = faascache_protocol::msg::faas::ObjectMeta::default();
                self.write_object_with(table, key, &meta, value, opts)
            }
            r => r,
        }
    }

    /// A write with a given rpc id (first attempt or a retry of a pipelined one).
    pub(crate) fn write_tracked(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        opts: &WriteOptions,
        guard: &RpcGuard,
        backoff: &mut Backoff,
    ) -> Result<u64> {
        let hash = msg::key_hash(key);
        self.on_master_tracked(
            table,
            hash,
            guard,
            backoff,
            WriteRequest::OPCODE,
            |s, left, rpc| {
                let req = WriteRequest {
                    table,
                    rpc,
                    rules: opts.reject,
                    key,
                    value,
                };
                faascache_transport::call(s, &req, left, |r| r.version)
            },
        )
    }

    /// Removes an object; returns the version removed, or `None` if there was no object.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// if c.remove(t, b"alice")?.is_none() { println!("there was no alice"); }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn remove(&self, table: TableId, key: &[u8]) -> Result<Option<u64>> {
        self.remove_with(table, key, &WriteOptions::default())
    }

    /// Removes under reject rules (e.g. only if still at a version read earlier).
    ///
    /// ```no_run
    /// use faascache_client::{Client, RejectRules, WriteOptions};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// c.remove_with(t, b"alice", &WriteOptions::default().reject(RejectRules::version_is(3)))?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn remove_with(
        &self,
        table: TableId,
        key: &[u8],
        opts: &WriteOptions,
    ) -> Result<Option<u64>> {
        check_key(key)?;
        self.remove_tracked(table, key, opts, &self.begin_rpc()?, &mut self.backoff())
    }

    /// A remove with a given rpc id.
    pub(crate) fn remove_tracked(
        &self,
        table: TableId,
        key: &[u8],
        opts: &WriteOptions,
        guard: &RpcGuard,
        backoff: &mut Backoff,
    ) -> Result<Option<u64>> {
        let hash = msg::key_hash(key);
        self.on_master_tracked(
            table,
            hash,
            guard,
            backoff,
            RemoveRequest::OPCODE,
            |s, left, rpc| {
                let req = RemoveRequest {
                    table,
                    rpc,
                    rules: opts.reject,
                    key,
                };
                faascache_transport::call(s, &req, left, |r| (r.version != 0).then_some(r.version))
            },
        )
    }

    fn increment(
        &self,
        table: TableId,
        key: &[u8],
        delta: Number,
        opts: &WriteOptions,
    ) -> Result<(Number, u64)> {
        check_key(key)?;
        let guard = self.begin_rpc()?;
        let mut backoff = self.backoff();
        let hash = msg::key_hash(key);
        let op = IncrementRequest::OPCODE;
        self.on_master_tracked(table, hash, &guard, &mut backoff, op, |s, left, rpc| {
            let req = IncrementRequest {
                table,
                rpc,
                rules: opts.reject,
                key,
                delta,
            };
            faascache_transport::call(s, &req, left, |r| (r.value, r.version))
        })
    }

    /// Adds `delta` to the 8-byte little-endian `i64` stored at `key` (an absent object counts
    /// as 0); returns the new value and version. [`Error::NotANumber`] if the value is not
    /// 8 bytes or the sum overflows.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("stats")?;
    /// let (hits, _version) = c.increment_i64(t, b"hits", 1)?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn increment_i64(&self, table: TableId, key: &[u8], delta: i64) -> Result<(i64, u64)> {
        self.increment_i64_with(table, key, delta, &WriteOptions::default())
    }

    /// [`Client::increment_i64`] under reject rules.
    ///
    /// ```no_run
    /// use faascache_client::{Client, RejectRules, WriteOptions};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("stats")?;
    /// // Only count if the counter was created already.
    /// c.increment_i64_with(t, b"hits", 1, &WriteOptions::default().reject(RejectRules::must_exist()))?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn increment_i64_with(
        &self,
        table: TableId,
        key: &[u8],
        delta: i64,
        opts: &WriteOptions,
    ) -> Result<(i64, u64)> {
        match self.increment(table, key, Number::I64(delta), opts)? {
            (Number::I64(v), version) => Ok((v, version)),
            (Number::F64(_), _) => Err(Error::Protocol(
                "the master answered an i64 increment with an f64".into(),
            )),
        }
    }

    /// Adds `delta` to the 8-byte little-endian `f64` stored at `key` (absent = 0.0); returns the
    /// new value and version.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("stats")?;
    /// let (total, _) = c.increment_f64(t, b"seconds", 0.25)?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn increment_f64(&self, table: TableId, key: &[u8], delta: f64) -> Result<(f64, u64)> {
        self.increment_f64_with(table, key, delta, &WriteOptions::default())
    }

    /// [`Client::increment_f64`] under reject rules.
    ///
    /// ```no_run
    /// use faascache_client::{Client, RejectRules, WriteOptions};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("stats")?;
    /// c.increment_f64_with(t, b"seconds", 1.5, &WriteOptions::default().reject(RejectRules::must_exist()))?;
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn increment_f64_with(
        &self,
        table: TableId,
        key: &[u8],
        delta: f64,
        opts: &WriteOptions,
    ) -> Result<(f64, u64)> {
        match self.increment(table, key, Number::F64(delta), opts)? {
            (Number::F64(v), version) => Ok((v, version)),
            (Number::I64(_), _) => Err(Error::Protocol(
                "the master answered an f64 increment with an i64".into(),
            )),
        }
    }
}
