//! Build script: with feature `link`, find DPDK with pkg-config, generate the binding with
//! bindgen over an allowlist, and compile the C shim. Without it, do nothing (the crate is empty).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "link")]
    link::run();
}

#[cfg(feature = "link")]
mod link {
    use std::path::PathBuf;
    use std::process::Command;

    const FIX: &str =
        "install DPDK's development files (Debian 12: `apt-get install -y libdpdk-dev \
                       pkg-config libclang-dev clang`; `.ci/run` does this), or build without \
                       `--features dpdk`";

    fn fail(what: &str) -> ! {
        eprintln!("error: the DPDK transport cannot be built: {what}\n  fix: {FIX}");
        std::process::exit(1);
    }

    /// `pkg-config --cflags libdpdk`, split (DPDK's flags hold no quoted spaces).
    fn cflags() -> Vec<String> {
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .unwrap_or_else(|e| fail(&format!("pkg-config could not be run ({e})")));
        if !out.status.success() {
            fail("pkg-config does not know libdpdk");
        }
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    pub fn run() {
        println!("cargo:rerun-if-changed=src/shim.c");
        println!("cargo:rerun-if-changed=src/shim.h");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        let lib = pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| fail(&format!("libdpdk >= 22.11 not found by pkg-config: {e}")));
        let flags = cflags();

        let mut cc = cc::Build::new();
        cc.file("src/shim.c").opt_level(2).warnings(false);
        for f in &flags {
            cc.flag(f);
        }
        cc.compile("faascache_dpdk_shim");

        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let bindings = bindgen::Builder::default()
            .header("src/shim.h")
            .clang_args(&flags)
            .allowlist_function("fc_.*")
            .allowlist_function("rte_eal_init")
            .allowlist_function("rte_eal_cleanup")
            .allowlist_function("rte_strerror")
            .allowlist_function("rte_vdev_init")
            .allowlist_function("rte_vdev_uninit")
            .allowlist_function("rte_pktmbuf_pool_create")
            .allowlist_function("rte_mempool_free")
            .allowlist_function("rte_eth_dev_count_avail")
            .allowlist_function("rte_eth_dev_is_valid_port")
            .allowlist_function("rte_eth_dev_get_port_by_name")
            .allowlist_function("rte_eth_dev_get_name_by_port")
            .allowlist_function("rte_eth_dev_socket_id")
            .allowlist_function("rte_eth_dev_info_get")
            .allowlist_function("rte_eth_dev_configure")
            .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc")
            .allowlist_function("rte_eth_rx_queue_setup")
            .allowlist_function("rte_eth_tx_queue_setup")
            .allowlist_function("rte_eth_dev_start")
            .allowlist_function("rte_eth_dev_stop")
            .allowlist_function("rte_eth_dev_close")
            .allowlist_function("rte_eth_macaddr_get")
            .allowlist_function("rte_eth_promiscuous_enable")
            .allowlist_function("rte_eth_dev_set_mtu")
            .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
            .allowlist_var("RTE_PKTMBUF_HEADROOM")
            // Only ever behind pointers: keep their (large, bitfield-heavy) layouts out.
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .derive_default(true)
            .derive_debug(true)
            .layout_tests(false)
            .generate_comments(false)
            .generate()
            .unwrap_or_else(|e| fail(&format!("bindgen failed on DPDK's headers ({e})")));
        bindings
            .write_to_file(out.join("bindings.rs"))
            .unwrap_or_else(|e| fail(&format!("cannot write bindings.rs ({e})")));
        // rte_vdev_init lives in the vdev bus driver, which libdpdk.pc's shared-library list
        // leaves out. The PMDs (memif, af_packet, af_xdp, NIC drivers) are plugins EAL loads at
        // run time from its driver directory.
        for dir in &lib.link_paths {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
    }
}
