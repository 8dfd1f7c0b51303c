//! The opaque handle C holds (a leaf module: the others refer to it).

/// A connection to a FaaSCache cluster (opaque). Create with `faascache_connect` or
/// `faascache_connect_dir`, release with `faascache_free`. Thread-safe.
#[derive(Debug)]
pub struct faascache_client {
    pub(crate) inner: ::faascache_client::Client,
}
