//! `faascache`: the FaaSCache client for Python, a PyO3 binding of the Rust client
//! (`faascache-client`). One `Client` per process is enough: it is thread-safe, and every call
//! releases the GIL while it waits on the network. See `faascache.pyi` for the Python API.

#![forbid(unsafe_code)]

mod errors;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use faascache_client::{
    Client as RustClient, ClientOptions, Entry, RejectRules, TableBacking, TableId, WriteItem,
    WriteOptions, WritePolicy,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyMemoryView, PyString, PyTuple};

use errors::{to_py, InvalidArgument};

/// The cluster directory used when neither `coordinator` nor `dir` is given (the CLI's default).
const DEFAULT_DIR: &str = ".faascache-cluster";

/// A key or value argument: `bytes` (borrowed, no copy), `str` (UTF-8), or anything `bytes()`
/// exposes as a buffer (`bytearray`, `memoryview`, `array`, ...; copied once).
fn byte_arg<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Cow::Owned(s.to_cow()?.as_bytes().to_vec()));
    }
    // Only objects with the buffer protocol: `bytes(12)` would make twelve zero bytes.
    let py = obj.py();
    let copy = py
        .get_type::<PyMemoryView>()
        .call1((obj,))
        .and_then(|view| view.call_method0("tobytes"));
    match copy {
        Ok(b) => Ok(Cow::Owned(b.cast::<PyBytes>()?.as_bytes().to_vec())),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{what} must be bytes, str or a bytes-like object, not {}",
            obj.get_type().name()?
        ))),
    }
}

/// An enumerated object as Python sees it: `(key, value, version)`.
type EntryTuple<'py> = (Bound<'py, PyBytes>, Bound<'py, PyBytes>, u64);

/// A table argument: its name (`str`) or id (`int`).
enum Table {
    Id(TableId),
    Name(String),
}

impl Table {
    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Table> {
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(Table::Name(s.to_cow()?.into_owned()));
        }
        match obj.extract::<TableId>() {
            Ok(id) => Ok(Table::Id(id)),
            Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(
                "table must be a table name (str) or id (int >= 0)",
            )),
        }
    }

    /// The id (a name is looked up once, then cached by the client).
    fn id(&self, c: &RustClient) -> faascache_client::Result<TableId> {
        match self {
            Table::Id(id) => Ok(*id),
            Table::Name(n) => c.table_id(n),
        }
    }
}

fn locator_in(dir: &Path) -> PyResult<String> {
    let file = dir.join("coordinator.locator");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => Err(errors::BadLocator::new_err(format!(
            "{} is empty: the cluster is still starting or was not shut down cleanly",
            file.display()
        ))),
        Err(e) => Err(errors::BadLocator::new_err(format!(
            "no cluster at {} ({}: {e}): start one with `faascache cluster up --dir {}` or pass coordinator=",
            dir.display(),
            file.display(),
            dir.display()
        ))),
    }
}

/// A duration in seconds, checked: finite, positive, at most a day.
fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        return Err(InvalidArgument::new_err(format!(
            "{what} must be a number of seconds in (0, 86400], not {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// The backing of `create_table`'s arguments (`None`: a plain table).
fn table_backing(
    url: Option<String>,
    policy: Option<String>,
    ttl: Option<f64>,
) -> PyResult<Option<TableBacking>> {
    let policy = match policy.as_deref() {
        None if url.is_none() => {
            if ttl.is_some() {
                return Err(InvalidArgument::new_err(
                    "ttl is for policy=\"ephemeral\" tables",
                ));
            }
            return Ok(None);
        }
        None => WritePolicy::WriteBack,
        Some(p) => WritePolicy::parse(p).ok_or_else(|| {
            InvalidArgument::new_err(format!(
                "policy must be \"write-back\", \"write-through\" or \"ephemeral\", not {p:?}"
            ))
        })?,
    };
    let mut backing = TableBacking::new(url.unwrap_or_default(), policy);
    if let Some(ttl) = ttl {
        backing.ttl_ms = seconds(ttl, "ttl")?
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
    }
    Ok(Some(backing))
}

fn reject(if_version: Option<u64>, if_absent: bool) -> PyResult<WriteOptions> {
    let rules = match (if_version, if_absent) {
        (Some(_), true) => {
            return Err(InvalidArgument::new_err(
                "if_version and if_absent exclude each other",
            ))
        }
        (Some(v), false) => RejectRules::version_is(v),
        (None, true) => RejectRules::must_not_exist(),
        (None, false) => RejectRules::NONE,
    };
    Ok(WriteOptions::default().reject(rules))
}

/// A connection to a FaaSCache cluster.
///
/// `Client(coordinator="tcp:host=10.0.0.1,port=12246")`, `Client(dir="/path/to/cluster")` (the
/// directory of `faascache cluster up --dir`), or `Client()` (the directory `.faascache-cluster`).
/// `timeout` (seconds) bounds every call, retries included. Thread-safe: share one client
/// between threads. Use as a context manager, or call `close()`.
#[pyclass(module = "faascache", frozen)]
struct Client {
    inner: Mutex<Option<RustClient>>,
    locator: String,
}

impl Client {
    /// The Rust client (a cheap clone), or `InvalidArgument` once closed.
    fn rust(&self) -> PyResult<RustClient> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .clone()
            .ok_or_else(|| InvalidArgument::new_err("the client is closed"))
    }

    /// Runs `f` on the client with the GIL released; maps its error to the Python exception.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl Send + FnOnce(&RustClient) -> faascache_client::Result<T>,
    ) -> PyResult<T> {
        let c = self.rust()?;
        py.detach(|| f(&c)).map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (coordinator=None, *, dir=None, timeout=5.0))]
    fn new(
        py: Python<'_>,
        coordinator: Option<String>,
        dir: Option<PathBuf>,
        timeout: f64,
    ) -> PyResult<Self> {
        let timeout = seconds(timeout, "timeout")?;
        let locator = match (coordinator, dir) {
            (Some(_), Some(_)) => {
                return Err(InvalidArgument::new_err(
                    "give coordinator= or dir=, not both",
                ))
            }
            (Some(c), None) => c,
            (None, Some(d)) => locator_in(&d)?,
            (None, None) => locator_in(Path::new(DEFAULT_DIR))?,
        };
        let opts = ClientOptions::default().timeout(timeout);
        let loc = locator.clone();
        let inner = py
            .detach(move || RustClient::connect_with(&loc, opts))
            .map_err(|e| to_py(py, e))?;
        Ok(Client {
            inner: Mutex::new(Some(inner)),
            locator,
        })
    }

    /// Closes the client (releases its lease); later calls raise `InvalidArgument`. Idempotent.
    fn close(&self, py: Python<'_>) {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        // Dropping the last clone releases the lease: a network call, without the GIL.
        py.detach(move || drop(c));
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// The coordinator's locator.
    #[getter]
    fn coordinator(&self) -> &str {
        &self.locator
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { ", closed" } else { "" };
        format!("faascache.Client(coordinator={:?}{state})", self.locator)
    }

    /// Creates a table spread over `span` masters (or returns the existing one's id). With
    /// `backing="s3://bucket/prefix"` or `"swift://container/prefix"` the table caches that
    /// object store (`policy`: `"write-back"`, `"write-through"`); `policy="ephemeral"` without
    /// a backing makes an ephemeral table whose objects expire `ttl` seconds after their write
    /// (None: when the table is dropped). A table of this name with another backing raises
    /// `TableExists`.
    #[pyo3(signature = (name, span=1, *, backing=None, policy=None, ttl=None))]
    fn create_table(
        &self,
        py: Python<'_>,
        name: String,
        span: u32,
        backing: Option<String>,
        policy: Option<String>,
        ttl: Option<f64>,
    ) -> PyResult<TableId> {
        let Some(backing) = table_backing(backing, policy, ttl)? else {
            return self.call(py, |c| c.create_table(&name, span.max(1)));
        };
        self.call(py, |c| c.create_backed_table(&name, span.max(1), &backing))
    }

    /// Waits until the dirty objects of a backed table (or just `key`) are in its store, at most
    /// `timeout` seconds; returns `(objects, bytes)` uploaded meanwhile. Raises `Timeout`.
    #[pyo3(signature = (table, key=None, timeout=30.0))]
    fn flush<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: Option<&Bound<'py, PyAny>>,
        timeout: f64,
    ) -> PyResult<(u64, u64)> {
        let table = Table::from_py(table)?;
        let key = key.map(|k| byte_arg(k, "key")).transpose()?;
        let timeout = seconds(timeout, "timeout")?;
        let r = self.call(py, |c| c.flush(table.id(c)?, key.as_deref(), timeout))?;
        Ok((r.objects, r.bytes))
    }

    /// Drops the clean cached copy of `key` in a backed table (after it changed in the store);
    /// with `prefix=True`, of every key starting with `key` (`b""`: the whole table). Returns
    /// `(invalidated, kept_dirty)`: dirty copies are newer than the store's and stay.
    #[pyo3(signature = (table, key, *, prefix=false))]
    fn invalidate<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        prefix: bool,
    ) -> PyResult<(u64, u64)> {
        let table = Table::from_py(table)?;
        let key = byte_arg(key, "key")?;
        let r = self.call(py, |c| {
            let t = table.id(c)?;
            if prefix {
                c.invalidate_prefix(t, &key)
            } else {
                c.invalidate(t, &key)
            }
        })?;
        Ok((r.invalidated, r.kept_dirty))
    }

    /// The id of the table `name`; raises `NoSuchTable` if there is none.
    fn get_table_id(&self, py: Python<'_>, name: String) -> PyResult<TableId> {
        self.call(py, |c| c.table_id(&name))
    }

    /// Drops the table `name` and every object in it; raises `NoSuchTable` if there is none.
    fn drop_table(&self, py: Python<'_>, name: String) -> PyResult<()> {
        self.call(py, |c| c.drop_table(&name))
    }

    /// Every table as a list of `(name, id)`.
    fn list_tables(&self, py: Python<'_>) -> PyResult<Vec<(String, TableId)>> {
        let tables = self.call(py, |c| c.list_tables())?;
        Ok(tables.into_iter().map(|t| (t.name, t.id)).collect())
    }

    /// The value of `key` in `table` (a name or an id); raises `NotFound` if there is none.
    fn get<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(self.get_versioned(py, table, key)?.0)
    }

    /// `(value, version)` of `key`; raises `NotFound` if there is none. Pass the version to
    /// `put(..., if_version=)` for a compare-and-swap.
    fn get_versioned<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyBytes>, u64)> {
        let table = Table::from_py(table)?;
        let key = byte_arg(key, "key")?;
        let o = self.call(py, |c| c.read(table.id(c)?, &key))?;
        Ok((PyBytes::new(py, &o.value), o.version))
    }

    /// Writes `value` at `key`; returns the new version. `if_version=V`: only if the object is
    /// at version V (else `VersionMismatch`, or `NotFound`); `if_absent=True`: only if there is
    /// no object (else `ObjectExists`).
    #[pyo3(signature = (table, key, value, *, if_version=None, if_absent=false))]
    fn put<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        if_version: Option<u64>,
        if_absent: bool,
    ) -> PyResult<u64> {
        let table = Table::from_py(table)?;
        let (key, value) = (byte_arg(key, "key")?, byte_arg(value, "value")?);
        let opts = reject(if_version, if_absent)?;
        self.call(py, |c| c.write_with(table.id(c)?, &key, &value, &opts))
    }

    /// Removes `key`; returns the removed version, or `None` if there was no object.
    /// `if_version=V`: only if the object is at version V (else `VersionMismatch`).
    #[pyo3(signature = (table, key, *, if_version=None))]
    fn remove<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        if_version: Option<u64>,
    ) -> PyResult<Option<u64>> {
        let table = Table::from_py(table)?;
        let key = byte_arg(key, "key")?;
        let opts = reject(if_version, false)?;
        self.call(py, |c| c.remove_with(table.id(c)?, &key, &opts))
    }

    /// Adds `delta` to the 8-byte little-endian integer at `key` (absent counts as 0); returns
    /// the new value. Raises `NotANumber` if the value is not 8 bytes or the sum overflows.
    #[pyo3(signature = (table, key, delta=1))]
    fn incr<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        delta: i64,
    ) -> PyResult<i64> {
        let table = Table::from_py(table)?;
        let key = byte_arg(key, "key")?;
        Ok(self
            .call(py, |c| c.increment_i64(table.id(c)?, &key, delta))?
            .0)
    }

    /// The values of `keys` in one round trip per master, in order; `None` where there is no
    /// object. Any other error of any key is raised.
    fn multi_get<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let table = Table::from_py(table)?;
        let keys: Vec<Bound<'py, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let keys: Vec<Cow<'_, [u8]>> = keys
            .iter()
            .map(|k| byte_arg(k, "key"))
            .collect::<PyResult<_>>()?;
        let results = self.call(py, |c| {
            let t = table.id(c)?;
            let items: Vec<(TableId, &[u8])> = keys.iter().map(|k| (t, &k[..])).collect();
            Ok(c.multi_read(&items))
        })?;
        let out = PyList::empty(py);
        for r in results {
            match r {
                Ok(o) => out.append(PyBytes::new(py, &o.value))?,
                Err(faascache_client::Error::NoSuchObject) => out.append(py.None())?,
                Err(e) => return Err(to_py(py, e)),
            }
        }
        Ok(out)
    }

    /// Writes many objects (a dict, or an iterable of `(key, value)` pairs) in one round trip per
    /// master; returns the new versions in order. The first error of any item is raised after
    /// every item was tried (each write is atomic on its own).
    fn multi_put<'py>(
        &self,
        py: Python<'py>,
        table: &Bound<'py, PyAny>,
        items: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<u64>> {
        let table = Table::from_py(table)?;
        let pairs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = match items.cast::<PyDict>() {
            Ok(d) => d.iter().collect(),
            Err(_) => items
                .try_iter()?
                .map(|p| p.and_then(|p| p.extract()))
                .collect::<PyResult<_>>()?,
        };
        let mut data = Vec::with_capacity(pairs.len());
        for (k, v) in &pairs {
            data.push((byte_arg(k, "key")?, byte_arg(v, "value")?));
        }
        let results = self.call(py, |c| {
            let t = table.id(c)?;
            let writes: Vec<WriteItem<'_>> =
                data.iter().map(|(k, v)| WriteItem::new(t, k, v)).collect();
            Ok(c.multi_write(&writes))
        })?;
        results
            .into_iter()
            .map(|r| r.map_err(|e| to_py(py, e)))
            .collect()
    }

    /// An iterator over every object of `table` as `(key, value, version)`, in no particular
    /// order. It fetches one batch at a time (about 256 KiB of keys and values), with the GIL
    /// released, as it is consumed: a table of any size enumerates in bounded memory. A table
    /// name is looked up now (`NoSuchTable`); other errors are raised by the iteration, which
    /// then ends. An object that exists for the whole iteration comes exactly once.
    fn enumerate(slf: Bound<'_, Self>, table: &Bound<'_, PyAny>) -> PyResult<Enumeration> {
        let py = slf.py();
        let table = Table::from_py(table)?;
        let table = slf.get().call(py, |c| table.id(c))?;
        Ok(Enumeration {
            client: slf.unbind(),
            table,
            next: Some(0),
            buf: Vec::new().into_iter(),
        })
    }
}

/// The iterator of `Client.enumerate`: yields `(key, value, version)` and holds at most one
/// batch. It keeps a reference to its `Client`, not a clone of the Rust client: after
/// `close()` its next fetch raises `InvalidArgument`. One iterator is for one thread at a time
/// (a concurrent `next()` raises `RuntimeError`); the client itself may be shared.
#[pyclass(module = "faascache")]
struct Enumeration {
    client: Py<Client>,
    table: TableId,
    /// The key hash the next batch starts at; `None` once the table is done (or after an error).
    next: Option<u64>,
    /// The rest of the current batch.
    buf: std::vec::IntoIter<Entry>,
}

#[pymethods]
impl Enumeration {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<EntryTuple<'py>>> {
        loop {
            if let Some(e) = self.buf.next() {
                let key = PyBytes::new(py, &e.key);
                return Ok(Some((key, PyBytes::new(py, &e.value), e.version)));
            }
            let Some(from) = self.next else {
                return Ok(None);
            };
            let table = self.table;
            match self
                .client
                .get()
                .call(py, |c| c.enumerate_page(table, from))
            {
                Ok(page) => {
                    self.buf = page.entries.into_iter();
                    self.next = page.next;
                }
                Err(e) => {
                    self.next = None;
                    return Err(e);
                }
            }
        }
    }

    fn __repr__(&self) -> String {
        let state = if self.next.is_none() && self.buf.as_slice().is_empty() {
            ", done"
        } else {
            ""
        };
        format!("faascache.Enumeration(table={}{state})", self.table)
    }
}

/// FaaSCache's Python client. `faascache.Client(coordinator=... | dir=...)`; errors are
/// subclasses of `faascache.Error`.
#[pymodule]
fn faascache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Enumeration>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
