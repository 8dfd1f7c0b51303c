//! Which tables of this master are backed, and their stores.
//!
//! The coordinator keeps each table's backing (fixed at creation). A master learns it
//! (`GetTableConfig`) on a control or recovery thread when it first takes ownership of a range
//! of the table — take, recovery, migration in — before the range is served, and keeps it until
//! the table's last range leaves. Stores are opened once per backing URL from the server's
//! [`Settings`]; a store that cannot be opened is remembered as an error and every use of it is
//! answered `STORE_REJECTED` with its text.
//!
//! The data path's lookup ([`BackedTables::get`]) is a read lock and a map lookup; a table
//! that is not backed costs nothing more.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use faascache_objstore::{ClientOptions, ObjectStore, Settings};
use faascache_protocol::msg::faas::{GetTableConfigRequest, TableBacking};
use faascache_storage::TableId;
use faascache_transport::{call, CallError, ClientConfig, CoordinatorLocator, Session, Status};
use parking_lot::{Mutex, RwLock};

/// A store failure as the client sees it: `STORE_UNAVAILABLE` (retryable) or `STORE_REJECTED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct StoreFailure {
    /// `STORE_UNAVAILABLE` or `STORE_REJECTED`.
    pub status: Status,
    /// What went wrong and what to do (the object store's message).
    pub detail: String,
}

impl StoreFailure {
    /// The status a store error is answered with, with its text.
    pub fn of(e: &faascache_objstore::Error) -> StoreFailure {
        StoreFailure {
            status: if e.is_retryable() {
                Status::STORE_UNAVAILABLE
            } else {
                Status::STORE_REJECTED
            },
            detail: e.to_string(),
        }
    }

    /// A refusal (`STORE_REJECTED`) with `detail`.
    pub fn rejected(detail: impl Into<String>) -> StoreFailure {
        StoreFailure {
            status: Status::STORE_REJECTED,
            detail: detail.into(),
        }
    }
}

/// One backed table.
#[derive(Debug)]
pub struct BackedTable {
    /// Table id.
    pub id: TableId,
    /// Its name (for messages).
    pub name: String,
    /// Its backing.
    pub backing: TableBacking,
    /// Bytes the backing URL's prefix adds to each key in the store (`PREFIX/`).
    pub prefix_len: usize,
    store: Result<Arc<dyn ObjectStore>, StoreFailure>,
}

impl BackedTable {
    /// The table's store, or why there is none (an ephemeral table without a URL, or a store
    /// that could not be opened: `STORE_REJECTED`).
    pub fn store(&self) -> Result<&Arc<dyn ObjectStore>, StoreFailure> {
        self.store.as_ref().map_err(Clone::clone)
    }
}

#[cfg(test)]
impl BackedTable {
    /// A table without a store (unit tests).
    pub(crate) fn for_test(id: TableId, backing: TableBacking) -> BackedTable {
        BackedTable {
            id,
            name: format!("t{id}"),
            backing,
            prefix_len: 0,
            store: Err(StoreFailure::rejected("no store in this test")),
        }
    }
}

/// Why a table's configuration could not be learnt.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The coordinator could not be asked (or answered with a failure).
    #[error("cannot get table {table}'s configuration from the coordinator: {source} (retrying)")]
    Coordinator {
        /// The table.
        table: TableId,
        /// The failure.
        source: CallError,
    },
}

impl ConfigError {
    /// The status a control step that needed the configuration fails with (the coordinator
    /// retries it).
    pub fn status(&self) -> Status {
        Status::RETRY
    }
}

/// A table's name and backing, as the coordinator has them.
pub type TableConfig = (String, Option<TableBacking>);

/// Where a master learns tables' configurations: the coordinator, or a fixed map in tests.
pub trait ConfigSource: Send + Sync + std::fmt::Debug {
    /// The table's configuration; `Ok(None)` when the source does not know the table (or does
    /// not know backings at all: an older coordinator) — it is then served as not backed.
    fn table_config(&self, table: TableId) -> Result<Option<TableConfig>, ConfigError>;
}

/// Asks the coordinator (`GetTableConfig`).
#[derive(Debug)]
pub struct CoordinatorSource {
    locator: CoordinatorLocator,
    session: Mutex<Option<Session>>,
}

/// Timeout of one `GetTableConfig`.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(2);

impl CoordinatorSource {
    /// A source asking the coordinator at `locator`.
    pub fn new(locator: CoordinatorLocator) -> CoordinatorSource {
        CoordinatorSource {
            locator,
            session: Mutex::new(None),
        }
    }

    fn ask(&self, table: TableId) -> Result<TableConfig, CallError> {
        let mut cached = self.session.lock();
        let session = match cached.take() {
            Some(s) if s.failure().is_none() => s,
            _ => self.locator.connect(ClientConfig::default())?,
        };
        let req = GetTableConfigRequest {
            table_id: table as u64,
        };
        let r = call(&session, &req, CONFIG_TIMEOUT, |r| {
            (r.name.to_string(), r.backing)
        });
        if !matches!(r, Err(CallError::Transport(_))) {
            *cached = Some(session);
        }
        r
    }
}

/// Attempts of one `GetTableConfig` before the control step fails (and is retried by the
/// coordinator).
const CONFIG_ATTEMPTS: u32 = 3;

impl ConfigSource for CoordinatorSource {
    fn table_config(&self, table: TableId) -> Result<Option<TableConfig>, ConfigError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let e = match self.ask(table) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => e,
            };
            match e.status() {
                Some(Status::TABLE_DOESNT_EXIST) => return Ok(None),
                Some(Status::UNIMPLEMENTED_REQUEST) => {
                    tracing::warn!(
                        table,
                        "the coordinator does not know GetTableConfig (an older version): serving the table as not backed"
                    );
                    return Ok(None);
                }
                _ if attempt >= CONFIG_ATTEMPTS => {
                    return Err(ConfigError::Coordinator { table, source: e })
                }
                _ => std::thread::sleep(Duration::from_millis(100 << attempt)),
            }
        }
    }
}

/// Fixed configurations (in-process tests and servers without a coordinator).
#[derive(Debug, Default)]
pub struct FixedConfigs(Mutex<HashMap<TableId, TableConfig>>);

impl FixedConfigs {
    /// Configure `table`.
    pub fn insert(&self, table: TableId, name: &str, backing: Option<TableBacking>) {
        self.0.lock().insert(table, (name.to_string(), backing));
    }
}

impl ConfigSource for FixedConfigs {
    fn table_config(&self, table: TableId) -> Result<Option<TableConfig>, ConfigError> {
        Ok(self.0.lock().get(&table).cloned())
    }
}

type Opened = Result<Arc<dyn ObjectStore>, StoreFailure>;

/// The master's backed tables (see the module documentation).
#[derive(Debug)]
pub struct BackedTables {
    /// Known tables: `None` = learnt, not backed.
    tables: RwLock<HashMap<TableId, Option<Arc<BackedTable>>>>,
    /// Stores by backing URL.
    stores: Mutex<HashMap<String, Opened>>,
    settings: Settings,
    options: ClientOptions,
    source: Option<Arc<dyn ConfigSource>>,
    /// Whether any backed table was ever learnt (the data path's first, cheapest test).
    any: std::sync::atomic::AtomicBool,
}

impl Default for BackedTables {
    fn default() -> Self {
        BackedTables::new(Settings::default(), None)
    }
}

impl BackedTables {
    /// Tables learnt from `source` (`None`: every table is served as not backed), stores
    /// opened with `settings`.
    pub fn new(settings: Settings, source: Option<Arc<dyn ConfigSource>>) -> BackedTables {
        BackedTables {
            tables: RwLock::new(HashMap::new()),
            stores: Mutex::new(HashMap::new()),
            settings,
            options: ClientOptions::default(),
            source,
            any: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this master ever served a backed table (false: every lookup can be skipped).
    #[inline]
    pub fn any(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The table's backing, if it is a backed table this master knows (data path: cheap).
    #[inline]
    pub fn get(&self, table: TableId) -> Option<Arc<BackedTable>> {
        self.tables.read().get(&table).and_then(|t| t.clone())
    }

    /// The backed tables learnt here.
    pub fn all(&self) -> Vec<Arc<BackedTable>> {
        self.tables.read().values().flatten().cloned().collect()
    }

    /// Whether the table is backed (learnt already).
    pub fn is_backed(&self, table: TableId) -> bool {
        self.tables.read().get(&table).is_some_and(|t| t.is_some())
    }

    /// Learn the table's configuration (once; later calls return what was learnt). Runs on a
    /// control or recovery thread: it may ask the coordinator. Returns the backed table, if
    /// it is one.
    pub fn learn(&self, table: TableId) -> Result<Option<Arc<BackedTable>>, ConfigError> {
        if let Some(t) = self.tables.read().get(&table) {
            return Ok(t.clone());
        }
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let Some((name, backing)) = source.table_config(table)? else {
            // Unknown to the source: not remembered (asked again on the next take).
            return Ok(None);
        };
        let entry = backing.map(|backing| {
            let store = if backing.has_store() {
                self.open(&backing.url)
            } else {
                Err(StoreFailure::rejected(format!(
                    "table {name} is ephemeral and has no store"
                )))
            };
            tracing::info!(table, name, url = backing.url, policy = %backing.policy, "backed table");
            let prefix_len = backing
                .url
                .parse::<faascache_objstore::StoreUrl>()
                .map_or(0, |u| u.prefix_len());
            Arc::new(BackedTable {
                id: table,
                name,
                backing,
                prefix_len,
                store,
            })
        });
        if entry.is_some() {
            self.any.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(self.tables.write().entry(table).or_insert(entry).clone())
    }

    /// Forget a table whose last range left this master.
    pub fn forget(&self, table: TableId) {
        self.tables.write().remove(&table);
    }

    fn open(&self, url: &str) -> Opened {
        let mut stores = self.stores.lock();
        if let Some(s) = stores.get(url) {
            return s.clone();
        }
        let s = faascache_objstore::open(url, &self.settings, &self.options).map_err(|e| {
            tracing::error!(url, error = %e, "cannot open the table's store");
            StoreFailure::rejected(format!("cannot open the store {url}: {e}"))
        });
        stores.insert(url.to_string(), s.clone());
        s
    }

    /// Check a backing URL with this server's credentials (`CheckBacking`): open the store (an
    /// already opened one is reused; a new one is not kept, so clients cannot grow the set of
    /// open stores) and check its credentials and bucket with one request. Blocking: call it
    /// on a pool thread.
    pub fn check_url(&self, url: &str) -> Result<(), StoreFailure> {
        let known = self.stores.lock().get(url).cloned();
        let store = match known {
            Some(s) => s?,
            None => faascache_objstore::open(url, &self.settings, &self.options)
                .map_err(|e| StoreFailure::rejected(format!("cannot open the store {url}: {e}")))?,
        };
        store.check().map_err(|e| StoreFailure::of(&e))
    }

    /// Test hook: use `store` for the backing URL `url` (before a table with it is learnt).
    pub fn inject_store(&self, url: &str, store: Arc<dyn ObjectStore>) {
        self.stores.lock().insert(url.to_string(), Ok(store));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faascache_objstore::MemoryStore;
    use faascache_protocol::msg::faas::WritePolicy;

    #[test]
    fn learns_once_and_opens_stores_per_url() {
        let fixed = Arc::new(FixedConfigs::default());
        fixed.insert(1, "plain", None);
        fixed.insert(
            2,
            "photos",
            Some(TableBacking::new("s3://b/p", WritePolicy::WriteBack)),
        );
        fixed.insert(
            3,
            "tmp",
            Some(TableBacking::new("", WritePolicy::Ephemeral)),
        );
        fixed.insert(
            4,
            "bad",
            Some(TableBacking::new("ftp://x", WritePolicy::WriteBack)),
        );
        let b = BackedTables::new(Settings::default(), Some(fixed.clone()));
        let mem: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("mem"));
        b.inject_store("s3://b/p", mem.clone());
        assert!(b.learn(1).unwrap().is_none());
        assert!(b.get(1).is_none() && !b.is_backed(1));
        let t = b.learn(2).unwrap().unwrap();
        assert_eq!(t.name, "photos");
        assert!(Arc::ptr_eq(t.store().unwrap(), &mem));
        assert!(b.get(2).is_some());
        assert_eq!(
            b.learn(3).unwrap().unwrap().store().unwrap_err().status,
            Status::STORE_REJECTED
        );
        let bad = b.learn(4).unwrap().unwrap().store().unwrap_err();
        assert_eq!(bad.status, Status::STORE_REJECTED);
        assert!(bad.detail.contains("ftp://x"), "{}", bad.detail);
        // Unknown tables are not remembered; learnt ones are not asked again.
        assert!(b.learn(9).unwrap().is_none());
        fixed.insert(2, "changed", None);
        assert_eq!(b.learn(2).unwrap().unwrap().name, "photos");
        b.forget(2);
        assert!(b.get(2).is_none());
        assert!(b.learn(2).unwrap().is_none());
    }

    #[test]
    fn no_source_means_not_backed() {
        let b = BackedTables::default();
        assert!(b.learn(7).unwrap().is_none());
    }
}
