//! Object-store clients for FaaSCache's backed tables (issue 16): one blocking trait,
//! [`ObjectStore`], over
//!
//! * [`S3Store`] — S3 and S3-compatible services (AWS, Swift's `s3api`, Ceph RGW, MinIO,
//!   moto) through the `object_store` crate;
//! * [`SwiftStore`] — OpenStack Swift's native API (auth v1 / tempauth and Keystone v3),
//!   a small client of our own on `reqwest` (no maintained Rust crate speaks tempauth);
//! * [`MemoryStore`] — the reference behaviour, for unit tests and the simulator;
//! * [`Faulty`] — a fault injector in front of any of them.
//!
//! [`open`] builds a store from a backing URL and [`Settings`] (explicit values, then the
//! environment, then a config file; see [`config`]). What the trait guarantees is on
//! [`ObjectStore`]. Read-through, single flight, negative caching and the write-back queue
//! live in the server, above this crate.

#![deny(unsafe_code)]

pub mod config;
mod error;
pub mod faulty;
mod memory;
mod runtime;
mod s3;
mod s3_put;
mod store;
mod swift;
mod types;
mod upload;

/// The byte buffers of [`Payload`] and [`PutStream::write`].
pub use bytes::Bytes;
pub use config::{ClientOptions, Scheme, Secret, Settings, StoreUrl};
pub use error::{Error, Result};
pub use faulty::{Fault, Faulty, Op, RandomFaults};
pub use memory::MemoryStore;
pub use s3::S3Store;
pub use store::Buffered;
pub use store::ObjectStore;
pub use swift::SwiftStore;
pub use types::{
    validate_key, ETag, GetResult, GetStream, ListEntry, ListPage, ObjectMeta, ObjectReader,
    Payload, PutMeta, PutResult, MAX_KEY_LEN, MAX_LIST_LIMIT, MAX_PREALLOC, MAX_USER_META_BYTES,
};
pub use upload::{PutStream, MIN_PART_SIZE, PART_SIZE};

use std::sync::Arc;

/// The store a backing URL names, configured from `settings` (no request is sent: call
/// [`ObjectStore::check`] to verify the credentials and the bucket).
pub fn open(
    url: &str,
    settings: &Settings,
    options: &ClientOptions,
) -> Result<Arc<dyn ObjectStore>> {
    let url: StoreUrl = url.parse()?;
    Ok(match url.scheme {
        Scheme::S3 => Arc::new(S3Store::new(url, &settings.s3, options)?),
        Scheme::Swift => Arc::new(SwiftStore::new(url, &settings.swift, options)?),
    })
}

/// An I/O error from a body reader back as the store error it carries.
pub(crate) fn io_to_error(e: std::io::Error) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => e,
        Err(e) => Error::Unavailable {
            store: "object store".into(),
            detail: format!("reading a body: {e}"),
            retryable: true,
        },
    }
}

/// A store error as an I/O error (for [`std::io::Read`]).
pub(crate) fn error_to_io(e: Error) -> std::io::Error {
    let kind = match &e {
        Error::Timeout { .. } => std::io::ErrorKind::TimedOut,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}
