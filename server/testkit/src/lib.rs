//! What FaaSCache's tests share. Dev-only: no shipped crate depends on it.
//!
//! * [`inproc`] — a coordinator and masters in this process, over TCP on 127.0.0.1;
//! * [`zk`] — a private ZooKeeper server (Debian's package) for the coordinator HA tests.

#![forbid(unsafe_code)]

pub mod inproc;
pub mod zk;
