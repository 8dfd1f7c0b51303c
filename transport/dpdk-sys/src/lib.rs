//! Thin FFI binding to DPDK 22.11 for FaaSCache's DPDK transport: bindgen output over an
//! allowlist (EAL init, vdev hot-plug, mbuf pools, ethdev configuration) plus the `fc_*` C shim
//! for DPDK's inline fast-path functions (rx/tx burst, mbuf alloc/free/append/read, `rte_errno`).
//!
//! Empty unless feature `link` is on (it needs `libdpdk-dev`, `pkg-config` and libclang at build
//! time); the safe layer is `faascache_transport::dpdk`.

#![cfg_attr(
    feature = "link",
    allow(non_camel_case_types, non_snake_case, non_upper_case_globals)
)]
#![cfg_attr(feature = "link", allow(missing_debug_implementations, clippy::all))]

#[cfg(feature = "link")]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
