//! Backed tables with real processes against real stores: moto's S3 server, Swift's S3 API
//! (`s3api`) and Swift's native API (started by the test kit; SKIP when not installed). Each
//! store covers objects of 0 B to 64 MiB written back and read through (3 MiB written
//! through), write-back + flush, write-through, ephemeral, invalidate and revalidation; the
//! store's side is checked through `faascache_objstore` directly.

mod cluster_util;

use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions, TableId};
use faascache_objstore::{
    ClientOptions as StoreOptions, GetResult, ObjectStore, PutMeta, Settings,
};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

/// A coordinator and one server whose environment has the store's credentials, a client,
/// and the store itself under a prefix no other run uses.
struct Rig {
    tag: &'static str,
    c: Client,
    store: std::sync::Arc<dyn ObjectStore>,
    url: String,
    _procs: (Proc, Proc),
    _dir: TestDir,
}

impl Rig {
    fn start(tag: &'static str, vars: &[(&str, String)], base: &str) -> Rig {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dir = tempdir(tag);
        let (cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
        // Room for a 64 MiB object (written back, and read through).
        let extra = ["--replicas", "0", "--memory", "256MiB"];
        let (sp, _) = server_env(&dir, &coord, "s1", &extra, &pairs);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let url = format!("{base}/{tag}-{}-{nanos}", std::process::id());
        let settings =
            Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
        let store = faascache_objstore::open(&url, &settings, &StoreOptions::default()).unwrap();
        let c = Client::connect_with(
            &coord,
            ClientOptions::default().timeout(Duration::from_secs(30)),
        )
        .unwrap();
        Rig {
            tag,
            c,
            store,
            url,
            _procs: (cp, sp),
            _dir: dir,
        }
    }

    fn table(&self, name: &str, policy: WritePolicy, revalidate_ms: u32) -> TableId {
        let mut b = TableBacking::new(&self.url, policy);
        b.revalidate_ms = revalidate_ms;
        self.c.create_backed_table(name, 1, &b).unwrap()
    }

    fn stored(&self, key: &str) -> Option<Vec<u8>> {
        match self.store.get(key, None).unwrap() {
            GetResult::Found { body, .. } => Some(body.to_vec()),
            _ => None,
        }
    }

    fn put(&self, key: &str, value: &[u8]) {
        self.store
            .put(key, value.to_vec().into(), &PutMeta::default())
            .unwrap();
    }

    fn read(&self, t: TableId, key: &str) -> Vec<u8> {
        self.c.read(t, key.as_bytes()).unwrap().value
    }

    fn all(&self) {
        self.sizes();
        self.write_back_and_flush();
        self.write_through();
        self.ephemeral();
        self.invalidate();
        self.revalidation();
    }

    /// Objects of 0 B to 64 MiB written back — above one value in chunks and a commit, above
    /// 16 MiB streamed to the store — and through: the store ends with every byte; they read
    /// back from the cache, and the largest through the store again after an invalidation.
    fn sizes(&self) {
        let (tag, c) = (self.tag, &self.c);
        let wb = self.table("sizes", WritePolicy::WriteBack, 0);
        let body = |n: usize| (0..n).map(|i| (i * 31 + n) as u8).collect::<Vec<u8>>();
        let one = faascache_protocol::msg::MAX_VALUE_LEN;
        let sizes = [0, 1, one - 1, one, one + 1, 20 << 20, 64 << 20];
        for n in sizes {
            c.write(wb, format!("size/{n}").as_bytes(), &body(n))
                .unwrap_or_else(|e| panic!("{tag}: write of {n} bytes: {e}"));
        }
        c.flush(wb, None, Duration::from_secs(120)).unwrap();
        for n in sizes {
            let key = format!("size/{n}");
            assert!(
                self.stored(&key) == Some(body(n)),
                "{tag}: {n} bytes in the store"
            );
            assert!(
                self.read(wb, &key) == body(n),
                "{tag}: {n} bytes from the cache"
            );
        }
        for n in [20 << 20, 64 << 20] {
            let key = format!("size/{n}");
            c.invalidate(wb, key.as_bytes()).unwrap();
            assert!(
                self.read(wb, &key) == body(n),
                "{tag}: {n} bytes read through"
            );
        }
        let wt = self.table("sizes-wt", WritePolicy::WriteThrough, 0);
        c.write(wt, b"size/through", &body(3 << 20)).unwrap();
        assert!(
            self.stored("size/through") == Some(body(3 << 20)),
            "{tag}: through"
        );
    }

    /// Overwritten, one removed, flushed: the store ends with each key's last value.
    fn write_back_and_flush(&self) {
        let (tag, c) = (self.tag, &self.c);
        let wb = self.table("wb", WritePolicy::WriteBack, 0);
        for round in 0..3u8 {
            for k in 0..20 {
                c.write(wb, format!("back/{k}").as_bytes(), &[round; 300])
                    .unwrap();
            }
        }
        c.remove(wb, b"back/0").unwrap();
        c.flush(wb, None, Duration::from_secs(30)).unwrap();
        assert_eq!(
            self.stored("back/0"),
            None,
            "{tag}: the removal reached the store"
        );
        for k in 1..20 {
            let got = self.stored(&format!("back/{k}"));
            assert_eq!(got, Some(vec![2; 300]), "{tag}: back/{k}");
        }
        // A flush of a key that is clean already waits for nothing.
        let again = c.flush(wb, Some(b"back/1"), Duration::from_secs(5));
        assert_eq!(again.unwrap().objects, 0, "{tag}");
    }

    /// In the store when the write returns.
    fn write_through(&self) {
        let wt = self.table("wt", WritePolicy::WriteThrough, 0);
        self.c.write(wt, b"through/a", b"now").unwrap();
        let got = self.stored("through/a");
        assert_eq!(got.as_deref(), Some(&b"now"[..]), "{}", self.tag);
        self.c.write(wt, b"through/a", b"later").unwrap();
        let got = self.stored("through/a");
        assert_eq!(got.as_deref(), Some(&b"later"[..]), "{}", self.tag);
    }

    /// Served from the cache, never in the store (even after the write-back worker ran).
    fn ephemeral(&self) {
        let tag = self.tag;
        let eph = self.table("eph", WritePolicy::Ephemeral, 0);
        let wb = self.table("eph-wb", WritePolicy::WriteBack, 0);
        self.c.write(eph, b"eph/a", b"intermediate").unwrap();
        self.c.write(wb, b"eph/b", b"uploaded").unwrap();
        self.c.flush(wb, None, Duration::from_secs(30)).unwrap();
        assert_eq!(self.read(eph, "eph/a"), b"intermediate", "{tag}");
        assert_eq!(
            self.stored("eph/b").as_deref(),
            Some(&b"uploaded"[..]),
            "{tag}"
        );
        assert_eq!(self.stored("eph/a"), None, "{tag}: never uploaded");
    }

    /// A change made directly in the store is seen after `invalidate`, not before.
    fn invalidate(&self) {
        let tag = self.tag;
        let t = self.table("inv", WritePolicy::WriteBack, 0);
        self.put("inv/a", b"old");
        assert_eq!(self.read(t, "inv/a"), b"old", "{tag}: read through");
        self.put("inv/a", b"new");
        assert_eq!(
            self.read(t, "inv/a"),
            b"old",
            "{tag}: cached, no revalidation"
        );
        let r = self.c.invalidate(t, b"inv/a").unwrap();
        assert_eq!((r.invalidated, r.kept_dirty), (1, 0), "{tag}");
        assert_eq!(self.read(t, "inv/a"), b"new", "{tag}: read through again");
    }

    /// With `--revalidate 1s`, a hit older than 1 s asks the store and sees its change.
    fn revalidation(&self) {
        let tag = self.tag;
        let t = self.table("reval", WritePolicy::WriteBack, 1000);
        self.put("reval/a", b"v1");
        assert_eq!(self.read(t, "reval/a"), b"v1", "{tag}");
        let filled = Instant::now();
        self.put("reval/a", b"v2");
        let early = self.read(t, "reval/a");
        if filled.elapsed() < Duration::from_millis(800) {
            assert_eq!(early, b"v1", "{tag}: a young hit is served as cached");
        }
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(self.read(t, "reval/a"), b"v2", "{tag}: revalidated");
        // Unchanged since: still the new bytes (a 304 keeps the object).
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(self.read(t, "reval/a"), b"v2", "{tag}");
    }
}

#[test]
fn backed_tables_on_moto() {
    let Some(env) = faascache_testkit::stores::moto("backed_tables_on_moto") else {
        return;
    };
    let vars = vec![
        (
            "AWS_ENDPOINT_URL",
            env.var("FAASCACHE_MOTO_ENDPOINT").to_string(),
        ),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let base = format!("s3://{}", env.var("FAASCACHE_MOTO_BUCKET"));
    Rig::start("moto", &vars, &base).all();
}

#[test]
fn backed_tables_on_swift_s3_api() {
    let Some(env) = faascache_testkit::stores::swift("backed_tables_on_swift_s3_api") else {
        return;
    };
    let vars = vec![
        (
            "AWS_ENDPOINT_URL",
            env.var("FAASCACHE_SWIFT_S3_ENDPOINT").to_string(),
        ),
        ("AWS_ACCESS_KEY_ID", env.var("ST_USER").to_string()),
        ("AWS_SECRET_ACCESS_KEY", env.var("ST_KEY").to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let base = format!("s3://{}", env.var("FAASCACHE_SWIFT_CONTAINER"));
    Rig::start("swift-s3", &vars, &base).all();
}

#[test]
fn backed_tables_on_swift_native() {
    let Some(env) = faascache_testkit::stores::swift("backed_tables_on_swift_native") else {
        return;
    };
    let vars = vec![
        ("ST_AUTH", env.var("ST_AUTH").to_string()),
        ("ST_USER", env.var("ST_USER").to_string()),
        ("ST_KEY", env.var("ST_KEY").to_string()),
    ];
    let base = format!("swift://{}", env.var("FAASCACHE_SWIFT_CONTAINER"));
    Rig::start("swift-native", &vars, &base).all();
}
