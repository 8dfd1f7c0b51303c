//! Kernel-bypass options of `faascache coordinator` and `faascache server`: DPDK's EAL, set up
//! from flags before the first `dpdk:` locator is used (so a bad setup is reported at start, and
//! `--listen dpdk:...;tcp:...` can fall back to TCP).

use anyhow::Result;
use clap::Args;
use faascache_transport::{ServiceLocator, TransportKind};

/// DPDK EAL options (they apply with the `dpdk` build feature; see docs/transports.md).
#[derive(Debug, Clone, Args)]
pub struct EalArgs {
    /// DPDK: EAL lcore list (EAL -l); default: the first CPU this process may run on
    #[arg(long, value_name = "LIST")]
    pub dpdk_lcores: Option<String>,
    /// DPDK: memory for EAL in MB (EAL -m); default 512
    #[arg(long, value_name = "MB")]
    pub dpdk_mem: Option<usize>,
    /// DPDK: hugepages: auto (use them if enough are free, else --no-huge), on (required) or off
    /// (--no-huge: enough for memif and af_packet, not for most NICs' DMA)
    #[arg(long, value_name = "auto|on|off")]
    pub dpdk_huge: Option<String>,
    /// DPDK: further EAL arguments, whitespace-separated, e.g. "-a 0000:01:00.0" or
    /// "--vdev=net_tap0" (FAASCACHE_DPDK_EAL in the environment adds more)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub dpdk_eal: Option<String>,
    /// DPDK: the device this process's own client sessions (to the coordinator, to other
    /// servers' backups) use when it serves on a NIC or af_packet/af_xdp device, which they
    /// cannot share: e.g. "dev=0000:01:00.1" (a second port or VF) or
    /// "vdev=af_packet,iface=eth2"; FAASCACHE_DPDK_DEV in the environment does the same
    #[arg(long, value_name = "DEVICE")]
    pub dpdk_client_dev: Option<String>,
}

impl EalArgs {
    fn given(&self) -> bool {
        self.dpdk_lcores.is_some()
            || self.dpdk_mem.is_some()
            || self.dpdk_huge.is_some()
            || self.dpdk_eal.is_some()
            || self.dpdk_client_dev.is_some()
    }

    /// Initialise EAL now if `listen` (or `also`) has a `dpdk:` alternative. A failure is
    /// logged, not returned: serving then fails on that alternative with the same error and
    /// falls back to the next one (or refuses to start under `--require-bypass`).
    pub fn init(&self, listen: &ServiceLocator, also: Option<&ServiceLocator>) -> Result<()> {
        let dpdk = listen
            .alternatives()
            .iter()
            .chain(also.map(|a| a.alternatives()).unwrap_or_default())
            .find(|l| l.kind() == TransportKind::Dpdk)
            .cloned();
        self.init_for(dpdk)
    }

    #[cfg(feature = "dpdk")]
    fn init_for(&self, dpdk: Option<faascache_transport::Locator>) -> Result<()> {
        use faascache_transport::dpdk::{init_eal, EalConfig, Huge};
        let Some(loc) = dpdk else {
            if self.given() {
                tracing::warn!("--dpdk-* options given but no dpdk: locator: ignored");
            }
            return Ok(());
        };
        let mut cfg = EalConfig::from_locator(&loc)?;
        if let Some(l) = &self.dpdk_lcores {
            cfg.lcores = Some(l.clone());
        }
        if let Some(m) = self.dpdk_mem {
            cfg.memory_mb = Some(m);
        }
        if let Some(h) = &self.dpdk_huge {
            cfg.huge = match h.as_str() {
                "auto" => Huge::Auto,
                "on" | "1" | "yes" => Huge::On,
                "off" | "0" | "no" => Huge::Off,
                other => anyhow::bail!("--dpdk-huge {other}: use auto, on or off"),
            };
        }
        if let Some(e) = &self.dpdk_eal {
            cfg.extra = e.split_whitespace().map(str::to_string).collect();
        }
        if let Some(d) = &self.dpdk_client_dev {
            let dev: faascache_transport::Locator = format!("dpdk:{d}").parse().map_err(|e| {
                anyhow::anyhow!("bad --dpdk-client-dev {d:?}: {e} (e.g. dev=0000:01:00.1)")
            })?;
            faascache_transport::dpdk::set_local_device(&dev)
                .map_err(|e| anyhow::anyhow!("bad --dpdk-client-dev {d:?}: {e}"))?;
            if !d.contains("vdev=") {
                cfg.no_pci = false; // a NIC port: EAL must probe PCI
            }
        }
        if let Err(e) = init_eal(&cfg) {
            tracing::error!(error = %e, "DPDK could not start; its locator alternatives will fail");
        }
        Ok(())
    }

    #[cfg(not(feature = "dpdk"))]
    fn init_for(&self, dpdk: Option<faascache_transport::Locator>) -> Result<()> {
        if self.given() {
            anyhow::bail!(
                "--dpdk-* options need a build with DPDK: cargo build --release --features \
                 faascache-server/dpdk (needs libdpdk-dev; see docs/transports.md)"
            );
        }
        if dpdk.is_some() {
            tracing::warn!("this build has no DPDK support: dpdk: locators will fail (rebuild with --features faascache-server/dpdk)");
        }
        Ok(())
    }
}
