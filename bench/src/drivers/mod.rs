//! Drivers for the systems under test, and the factory that opens one from a [`DriverSpec`].
//! The driver trait ([`crate::driver`]) names no concrete driver; this module, above both, does.

pub mod faascache;
pub mod faascache_kv;
pub mod memcached;
pub mod redis;
pub mod util;

pub use util::{exchange, fill_process_info, is_local, port_of};

use crate::driver::{Driver, DriverSpec};
use anyhow::Result;

/// Opens the driver named by `spec`. `server_pid` overrides the server process discovery.
pub fn open(spec: &DriverSpec, server_pid: Option<u32>) -> Result<Box<dyn Driver>> {
    match spec {
        DriverSpec::Redis(a) => Ok(Box::new(redis::RedisDriver::new(a, server_pid)?)),
        DriverSpec::Memcached(a) => Ok(Box::new(memcached::MemcachedDriver::new(a, server_pid)?)),
        DriverSpec::FaasCacheCoordinator(_) | DriverSpec::FaasCacheDir(_) => {
            faascache_kv::open(spec, server_pid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faascache_driver_without_a_cluster_gives_a_clear_error() {
        let e = match open(&DriverSpec::FaasCacheDir("/nonexistent/fc-x".into()), None) {
            Ok(_) => panic!("there is no cluster in /nonexistent/fc-x"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("no cluster at /nonexistent/fc-x"), "{e}");
    }
}
