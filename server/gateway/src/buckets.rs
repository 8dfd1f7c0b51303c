//! Buckets (containers) as backed tables: which table a bucket name is, and creating it on
//! first use when the gateway's configuration allows (`docs/faas.md`, "The S3 and Swift
//! endpoint").
//!
//! A bucket name resolves, in order: to the table of that name (any policy; its backing says
//! which store and prefix); else — when auto tables are on and the name is allowed — to a new
//! backed table `SCHEME://NAME` with the default policy, created after the gateway checked
//! with its own credentials that the store has that bucket (so pointing a client at the node
//! just works, and a typo does not create a table); else `NoSuchBucket`. Resolutions are
//! cached; a dropped table is forgotten at the first call that finds it gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_client::{Client, Error as ClientError, TableBacking, TableId, WritePolicy};
use faascache_objstore::{ClientOptions, ObjectStore, Scheme, Settings};
use parking_lot::{Mutex, RwLock};

use crate::error::{GwError, GwResult};

/// Which buckets get a backed table on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoTables {
    /// Any bucket the store has.
    All,
    /// Only these.
    Only(BTreeSet<String>),
    /// None: only tables created by hand (`faascache table create`).
    Off,
}

impl AutoTables {
    fn allows(&self, bucket: &str) -> bool {
        match self {
            AutoTables::All => true,
            AutoTables::Only(s) => s.contains(bucket),
            AutoTables::Off => false,
        }
    }
}

/// A bucket the gateway serves: its table and, when it has one, its store (the gateway's own
/// connection to it, for listings and for objects too large for one cached value).
#[derive(Debug)]
pub struct Bucket {
    /// The cluster.
    pub client: Arc<Client>,
    /// The bucket (table) name.
    pub name: String,
    /// The table.
    pub table: TableId,
    /// Its backing (`None`: a plain table, served without store metadata).
    pub backing: Option<TableBacking>,
    /// The store, opened with the gateway's credentials (`None`: no store).
    pub store: Option<Arc<dyn ObjectStore>>,
}

impl Bucket {
    /// The cluster client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether writes are never uploaded (an ephemeral or plain table).
    pub fn ephemeral(&self) -> bool {
        self.backing
            .as_ref()
            .is_none_or(|b| b.policy == WritePolicy::Ephemeral)
    }
}

/// How long "this bucket does not exist" is remembered (a bucket created in the store
/// meanwhile is found after this).
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// At most this many negative entries (a client guessing names cannot grow the map).
const MAX_NEGATIVE: usize = 4096;

/// The bucket ↔ table map of one gateway.
#[derive(Debug)]
pub struct Buckets {
    client: Arc<Client>,
    settings: Settings,
    store_options: ClientOptions,
    scheme: Option<Scheme>,
    auto: AutoTables,
    policy: WritePolicy,
    known: RwLock<HashMap<String, Arc<Bucket>>>,
    missing: Mutex<HashMap<String, Instant>>,
    /// One creation at a time (two first requests for a new bucket make one table).
    creating: Mutex<()>,
}

impl Buckets {
    /// A map over `client`'s cluster; `scheme` is the store auto tables use (`None`: no auto
    /// tables whatever `auto` says).
    pub fn new(
        client: Arc<Client>,
        settings: Settings,
        scheme: Option<Scheme>,
        auto: AutoTables,
        policy: WritePolicy,
    ) -> Buckets {
        Buckets {
            client,
            settings,
            store_options: ClientOptions::default(),
            scheme,
            auto,
            policy,
            known: RwLock::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
        }
    }

    /// The cluster client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket `name`, resolving (and creating) it on first use.
    pub fn get(&self, name: &str) -> GwResult<Arc<Bucket>> {
        if let Some(b) = self.known.read().get(name) {
            return Ok(b.clone());
        }
        if let Some(at) = self.missing.lock().get(name) {
            if at.elapsed() < NEGATIVE_TTL {
                return Err(GwError::NoSuchBucket(name.to_string()));
            }
        }
        let b = Arc::new(self.resolve(name)?);
        self.known.write().insert(name.to_string(), b.clone());
        Ok(b)
    }

    /// Forget `name` (its table was dropped, or a call found its id stale).
    pub fn forget(&self, name: &str) {
        self.known.write().remove(name);
    }

    /// Run `op` on bucket `name`; if the table turns out to be gone, forget it and answer
    /// `NoSuchBucket`.
    pub fn with<T>(&self, name: &str, op: impl FnOnce(&Bucket) -> GwResult<T>) -> GwResult<T> {
        let b = self.get(name)?;
        match op(&b) {
            Err(GwError::NoSuchBucket(_)) => {
                self.forget(name);
                Err(GwError::NoSuchBucket(name.to_string()))
            }
            r => r,
        }
    }

    fn remember_missing(&self, name: &str) -> GwError {
        let mut m = self.missing.lock();
        if m.len() >= MAX_NEGATIVE {
            m.retain(|_, at| at.elapsed() < NEGATIVE_TTL);
            if m.len() >= MAX_NEGATIVE {
                m.clear();
            }
        }
        m.insert(name.to_string(), Instant::now());
        GwError::NoSuchBucket(name.to_string())
    }

    fn resolve(&self, name: &str) -> GwResult<Bucket> {
        match self.existing(name)? {
            Some(b) => Ok(b),
            None => {
                let Some(scheme) = self.scheme.filter(|_| self.auto.allows(name)) else {
                    return Err(self.remember_missing(name));
                };
                self.create_auto(name, scheme)
            }
        }
    }

    /// The table `name` if it exists.
    fn existing(&self, name: &str) -> GwResult<Option<Bucket>> {
        let table = match self.client.table_id(name) {
            Ok(t) => t,
            Err(ClientError::NoSuchTable(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let backing = match self.client.table_config(name) {
            Ok(b) => b,
            Err(ClientError::NoSuchTable(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let store = match backing.as_ref().filter(|b| b.has_store()) {
            Some(b) => Some(self.open(&b.url)?),
            None => None,
        };
        Ok(Some(Bucket {
            client: self.client.clone(),
            name: name.to_string(),
            table,
            backing,
            store,
        }))
    }

    fn open(&self, url: &str) -> GwResult<Arc<dyn ObjectStore>> {
        faascache_objstore::open(url, &self.settings, &self.store_options).map_err(|e| {
            GwError::StoreRejected(format!(
                "the gateway cannot open {url} with its own credentials ({e}); give it the same AWS_* / ST_* settings as the servers"
            ))
        })
    }

    fn create_auto(&self, name: &str, scheme: Scheme) -> GwResult<Bucket> {
        self.create_table(name, scheme, false)
    }

    /// A backed table for bucket `name` of the store; `make`: create the bucket in the store
    /// if it has none (CreateBucket, Swift's container PUT), else answer `NoSuchBucket`.
    fn create_table(&self, name: &str, scheme: Scheme, make: bool) -> GwResult<Bucket> {
        let _one = self.creating.lock();
        if let Some(b) = self.existing(name)? {
            return Ok(b);
        }
        let url = match scheme {
            Scheme::S3 => format!("s3://{name}"),
            Scheme::Swift => format!("swift://{name}"),
        };
        let store = self.open(&url)?;
        match store.check() {
            Ok(()) => {}
            Err(faascache_objstore::Error::NoSuchBucket { .. }) if make => {
                store.create_bucket().map_err(|e| match e {
                    faascache_objstore::Error::Config(m) => GwError::AccessDenied(m),
                    e => e.into(),
                })?;
                self.missing.lock().remove(name);
            }
            Err(faascache_objstore::Error::NoSuchBucket { .. }) => {
                return Err(self.remember_missing(name))
            }
            Err(e) => return Err(e.into()),
        }
        let backing = TableBacking::new(url.clone(), self.policy);
        let table = match self.client.create_backed_table_unchecked(name, 1, &backing) {
            Ok(t) => t,
            // Created meanwhile by another gateway (same backing: same id) or by hand.
            Err(ClientError::TableExists(_)) => {
                return self
                    .existing(name)?
                    .ok_or_else(|| GwError::Internal(format!("table {name} vanished")))
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(bucket = name, %url, policy = self.policy.name(), "created a backed table for a bucket of the store");
        Ok(Bucket {
            client: self.client.clone(),
            name: name.to_string(),
            table,
            backing: Some(backing),
            store: Some(store),
        })
    }

    /// Every bucket: the cluster's tables (backed or not).
    pub fn list(&self) -> GwResult<Vec<String>> {
        Ok(self
            .client
            .list_tables()?
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// Create bucket `name`: a backed table over the store's bucket of that name (created in
    /// the store first if it has none and the store can), or `Ok(false)` if the table exists.
    pub fn create(&self, name: &str) -> GwResult<bool> {
        if self.existing(name)?.is_some() {
            return Ok(false);
        }
        let Some(scheme) = self.scheme else {
            return Err(GwError::AccessDenied(
                "this gateway has no object store configured (AWS_* or ST_* settings); create tables with `faascache table create`".into(),
            ));
        };
        let b = self.create_table(name, scheme, true)?;
        self.known.write().insert(name.to_string(), Arc::new(b));
        Ok(true)
    }
}
