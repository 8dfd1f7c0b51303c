/* The C shim: DPDK's fast-path functions are `static inline` in its headers, so Rust cannot
 * call them directly; each `fc_*` function here wraps one of them (or a macro) unchanged. */
#ifndef FAASCACHE_DPDK_SHIM_H
#define FAASCACHE_DPDK_SHIM_H

#include <stdint.h>

#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* rte_eth_rx_burst */
uint16_t fc_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
/* rte_eth_tx_burst */
uint16_t fc_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
/* rte_pktmbuf_alloc_bulk: 0 on success (all `n` allocated), negative if the pool is short. */
int fc_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned n);
/* rte_pktmbuf_free (the whole chain) */
void fc_pktmbuf_free(struct rte_mbuf *m);
/* rte_pktmbuf_append: pointer to `len` new bytes at the end, NULL if the mbuf has no room. */
char *fc_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/* rte_pktmbuf_pkt_len */
uint32_t fc_pktmbuf_pkt_len(const struct rte_mbuf *m);
/* rte_pktmbuf_read: pointer to `len` bytes at `off` (in the mbuf, or copied into `buf` when the
 * packet is segmented); NULL if the packet is shorter than off + len. */
const void *fc_pktmbuf_read(const struct rte_mbuf *m, uint32_t off, uint32_t len, void *buf);
/* rte_errno (a per-thread variable behind a macro) */
int fc_errno(void);
/* Link status without waiting: 1 up, 0 down, negative errno-style on a bad port. */
int fc_link_up(uint16_t port);

#endif
