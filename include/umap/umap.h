/* UMap's API (LLNL UMap: umap(), uunmap(), umap_flush(), umap_prefetch(),
 * umapcfg_get_*(), Umap::umap_ex with a Store) served by the faultline engine.
 * Written from UMap's documentation; programs written for UMap build and run
 * unchanged with `#include <umap/umap.h>` and `-lumap` (libumap is a link to
 * libfaultline-umap; pkg-config faultline-umap; CMake faultline::umap).
 *
 * Settings (read once, at the first call; invalid values are reported on
 * stderr and the default is used):
 *   UMAP_PAGESIZE    bytes, a multiple of the system page size (default: the
 *                    system page size). 2 MiB: the region's file is cached in
 *                    2 MiB frames when the huge page pool (or overcommit
 *                    headroom) allows, else in 4 KiB frames (a warning says
 *                    so). Any size: the engine fills at least one UMap page
 *                    per fault (its fault-around window).
 *   UMAP_BUFSIZE     UMap pages the buffer may hold (default: 90% of free
 *                    memory): the engine's memory limit is
 *                    UMAP_BUFSIZE x UMAP_PAGESIZE x HIGH_WATER / 100.
 *   UMAP_PAGE_FILLERS            fault-handler threads (default: the CPUs).
 *   UMAP_PAGE_EVICTORS           accepted; the engine has one flusher thread
 *                                that writes back and evicts, and
 *                                umapcfg_get_num_evictors() reports 1.
 *   UMAP_EVICT_HIGH_WATER_THRESHOLD  % of the buffer at which eviction
 *                                starts (default 90).
 *   UMAP_EVICT_LOW_WATER_THRESHOLD   accepted (0..HIGH); the engine evicts to
 *                                15/16 of its limit, which
 *                                umapcfg_get_evict_low_water_threshold()
 *                                reports.
 *   UMAP_READ_AHEAD  UMap pages of sequential readahead (default: the
 *                    engine's, 4 MiB).
 *   FAULTLINE_FAULT_MODE  "handler" (default: UMAP_PAGE_FILLERS threads
 *                    resolve faults) or "thread": each faulting thread
 *                    resolves its own faults (faultline/engine.hpp
 *                    FaultMode::FaultingThread: no hand-off, faster random
 *                    misses; kernel-mode accesses to pages not yet touched,
 *                    e.g. read(2) into a region, then fail with EFAULT).
 *
 * Semantics, where faultline's are stronger than UMap's:
 *  - UMAP_PRIVATE regions are not copy-on-write (as in UMap): their stores are
 *    written back to the file (by the flusher, umap_flush() and uunmap()).
 *    They are shared writable views of the engine's cache of the file, so two
 *    regions of one file, and read(2)-style access through the engine, are
 *    coherent; MAP_SHARED is accepted as a synonym.
 *  - Errors are reported: umap() returns UMAP_FAILED with errno (EINVAL for a
 *    zero length, bad prot or flags, an offset not aligned to the frame size;
 *    EBADF for an fd that is not open; EACCES for an fd that is not a regular
 *    file, not open for reading, or PROT_WRITE on an fd not open O_RDWR, as
 *    mmap(2)); a write-back failure makes umap_flush() / uunmap() return -1
 *    with errno. A load or store past the page holding EOF, or a page whose
 *    read failed, raises SIGBUS (as mmap), not silent zeros.
 *  - The offset argument is honoured (a multiple of the frame size).
 *  - UMAP_FIXED is not supported (EINVAL): the engine chooses the address.
 *  - uunmap() takes the region's start address and unmaps the whole region.
 */
#ifndef UMAP_UMAP_H_FAULTLINE
#define UMAP_UMAP_H_FAULTLINE

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
#include "umap/store/Store.hpp"
#else
#include <stddef.h>
#include <stdint.h>
#endif
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __cplusplus
namespace Umap {
/* umap() of a region served by `store` (read_from_store / write_to_store at
 * offsets offset .. offset+length); store NULL: as umap() of fd. The store
 * must outlive the region: a region still mapped at exit is written back to
 * its store by an exit handler, so uunmap() it before destroying the store.
 * Regions on one store share one cache, which grows to cover the furthest. */
void *umap_ex(void *addr, std::size_t length, int prot, int flags, int fd, off_t offset,
              Store *store);
}  // namespace Umap
extern "C" {
#endif

/* Maps [offset, offset+length) of the regular file open on fd. Returns the
 * region's address, or UMAP_FAILED with errno set. addr is a hint (ignored). */
void *umap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
/* Writes the region's dirty pages back and unmaps it. addr: the address umap
 * returned. 0, or -1 with errno (EINVAL: not a region; a write-back error:
 * the region is unmapped all the same). */
int uunmap(void *addr, size_t length);
/* Writes every region's dirty pages back and waits. 0, or -1 with errno
 * (the first write-back error). */
int umap_flush(void);

struct umap_prefetch_item {
  void *page_base_addr; /* a UMap page of a region */
};
/* Reads the listed pages into the cache (synchronously) so that the accesses
 * that follow do not wait for the file. Items outside every region are
 * skipped. */
void umap_prefetch(int npages, struct umap_prefetch_item *page_array);
/* Reads [paddr, paddr+size) into the cache. Pages are not pinned: they may be
 * evicted under the memory limit like any other (read back on access). */
void umap_fetch_and_pin(char *paddr, uint64_t size);
/* 1: regions are writable (stores are written back). */
int umap_has_write_support(void);

long umapcfg_get_system_page_size(void);
uint64_t umapcfg_get_umap_page_size(void);
uint64_t umapcfg_get_max_pages_in_buffer(void);
uint64_t umapcfg_get_num_fillers(void);
uint64_t umapcfg_get_num_evictors(void);
/* Fault events handled at once: one per fault-handler thread. */
uint64_t umapcfg_get_max_fault_events(void);
uint64_t umapcfg_get_read_ahead(void);
int umapcfg_get_evict_low_water_threshold(void);
int umapcfg_get_evict_high_water_threshold(void);

#ifdef __cplusplus
}
#endif

#define UMAP_PRIVATE MAP_PRIVATE
#define UMAP_FIXED MAP_FIXED
#define UMAP_FAILED ((void *)-1)

#endif /* UMAP_UMAP_H_FAULTLINE */
