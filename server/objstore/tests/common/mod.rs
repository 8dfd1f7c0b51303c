//! The three real stores the tests and the benchmark run against: Swift through its S3 API,
//! Swift's native API, and moto's S3 — each started through `scripts/*.sh` by the test kit.

#![allow(dead_code)]

use std::sync::Arc;

use faascache_objstore::config::{S3Settings, SwiftSettings};
use faascache_objstore::{ClientOptions, ObjectStore, S3Store, Secret, StoreUrl, SwiftStore};
use faascache_testkit::stores::StoreEnv;

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SwiftS3,
    SwiftNative,
    Moto,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::SwiftS3, Backend::SwiftNative, Backend::Moto];

    pub fn name(self) -> &'static str {
        match self {
            Backend::SwiftS3 => "swift-s3",
            Backend::SwiftNative => "swift-native",
            Backend::Moto => "moto",
        }
    }

    /// The store's environment, or `None` (SKIP printed) when it is not installed.
    pub fn env(self, test: &str) -> Option<&'static StoreEnv> {
        match self {
            Backend::SwiftS3 | Backend::SwiftNative => faascache_testkit::stores::swift(test),
            Backend::Moto => faascache_testkit::stores::moto(test),
        }
    }

    /// The test bucket/container.
    pub fn bucket(self, env: &StoreEnv) -> String {
        match self {
            Backend::SwiftS3 | Backend::SwiftNative => env.var("FAASCACHE_SWIFT_CONTAINER").into(),
            Backend::Moto => env.var("FAASCACHE_MOTO_BUCKET").into(),
        }
    }

    /// A store on `bucket` under `prefix`, logging in as `user`/`key` (moto takes any
    /// credentials).
    pub fn open_as(
        self,
        env: &StoreEnv,
        bucket: &str,
        prefix: &str,
        user: &str,
        key: &str,
    ) -> Arc<dyn ObjectStore> {
        let options = ClientOptions::default();
        match self {
            Backend::SwiftS3 | Backend::Moto => {
                let endpoint = if self == Backend::Moto {
                    env.var("FAASCACHE_MOTO_ENDPOINT")
                } else {
                    env.var("FAASCACHE_SWIFT_S3_ENDPOINT")
                };
                let url: StoreUrl = format!("s3://{bucket}/{prefix}").parse().unwrap();
                let s = S3Settings {
                    endpoint: Some(endpoint.into()),
                    region: Some("us-east-1".into()),
                    access_key_id: Some(user.into()),
                    secret_access_key: Some(Secret::new(key)),
                    ..Default::default()
                };
                Arc::new(S3Store::new(url, &s, &options).unwrap())
            }
            Backend::SwiftNative => {
                let url: StoreUrl = format!("swift://{bucket}/{prefix}").parse().unwrap();
                let s = SwiftSettings {
                    auth_url: Some(env.var("ST_AUTH").into()),
                    user: Some(user.into()),
                    key: Some(Secret::new(key)),
                    ..Default::default()
                };
                Arc::new(SwiftStore::new(url, &s, &options).unwrap())
            }
        }
    }

    /// The test user's credentials.
    pub fn credentials(self, env: &StoreEnv) -> (String, String) {
        match self {
            Backend::Moto => ("moto-test".into(), "moto-secret".into()),
            _ => (env.var("ST_USER").into(), env.var("ST_KEY").into()),
        }
    }

    /// The test store under a fresh prefix, or `None` (SKIP printed).
    pub fn open(self, test: &str) -> Option<Arc<dyn ObjectStore>> {
        let env = self.env(test)?;
        let (user, key) = self.credentials(env);
        Some(self.open_as(env, &self.bucket(env), &unique_prefix(test), &user, &key))
    }
}

/// A prefix no other run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// `len` bytes of a pattern that differs per `seed` (so a wrong object is caught).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}
