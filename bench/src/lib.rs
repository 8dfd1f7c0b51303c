//! FaaSCache benchmark harness: ClusterPerf-style latency/throughput tests, YCSB core workloads,
//! plain-socket floors, a memory-efficiency test and a client-churn program ([`churn`]), run against pluggable [`driver::Driver`]s
//! (Redis and memcached now; FaaSCache echo/KV drivers plug in through the same trait).
//!
//! Every system measured goes through the same key/value generator ([`keys`]), the same load
//! engine ([`load`]) and the same HdrHistogram timing ([`hist`]).

#![deny(unsafe_code)]

pub mod backed;
pub mod churn;
pub mod cli;
pub mod driver;
pub mod drivers;
pub mod faas;
pub mod floor;
pub mod hist;
pub mod keys;
pub mod load;
pub mod local_cluster;
pub mod memory;
pub mod net;
pub mod plot;
pub mod procinfo;
pub mod proto;
pub mod recovery_reads;
pub mod report;
pub mod suite;
pub mod workloads;
