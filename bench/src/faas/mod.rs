//! `faascache-bench faas`: the FaaS evaluation harness (issue 20).
//!
//! Real functions (`bench/faas/functions/`) run in sandboxes — OpenWhisk action proxies in
//! memory cgroups ([`invoker`], [`sandbox`], [`cgroup`]) — under a multi-tenant load ([`load`]),
//! against each backend of the comparison in one run.

pub mod cgroup;
pub mod invoker;
pub mod sandbox;

use anyhow::{bail, Result};

use crate::cli::Opts;

/// Runs the harness.
pub fn run(_opts: &Opts) -> Result<()> {
    bail!("faas: not wired yet")
}
