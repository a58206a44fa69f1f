// Internal: statistics counters (atomics) behind faultline::Stats snapshots.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>

#include "faultline/stats.hpp"

namespace faultline::detail {

struct Counters {
  std::atomic<uint64_t> missing_faults{0}, minor_faults{0}, wp_faults{0}, pages_filled{0},
      pages_installed{0}, pages_fault_around{0}, pages_dirtied{0}, pages_written_back{0},
      bytes_read{0}, bytes_written{0}, read_errors{0}, write_errors{0}, mkwrite_errors{0},
      sigbus_sent{0}, pages_invalidated{0}, invalidate_conflicts{0}, pages_truncated{0},
      pages_punched{0}, pages_laundered{0}, fault_retries{0}, pages_write_around{0},
      pages_scan_written{0}, pagemap_scans{0}, pagemap_scan_pages{0}, pagemap_scan_ns{0}, stores_throttled{0}, fill_ns{0}, install_ns{0}, pages_reclaimed{0},
      cache_hits{0}, cache_misses{0}, reclaim_runs{0}, readaround_hits{0}, readaround_misses{0},
      readaround_off{0}, pages_read_around{0},
      pages_sampled{0}, async_readahead_pages{0}, faults_polled{0},
      faults_in_thread{0}, pages_copied{0}, install_calls{0};

  Stats snapshot() const {
    Stats s;
    s.missing_faults = missing_faults.load();
    s.minor_faults = minor_faults.load();
    s.wp_faults = wp_faults.load();
    s.pages_filled = pages_filled.load();
    s.pages_installed = pages_installed.load();
    s.pages_fault_around = pages_fault_around.load();
    s.pages_dirtied = pages_dirtied.load();
    s.pages_written_back = pages_written_back.load();
    s.bytes_read = bytes_read.load();
    s.bytes_written = bytes_written.load();
    s.read_errors = read_errors.load();
    s.write_errors = write_errors.load();
    s.mkwrite_errors = mkwrite_errors.load();
    s.sigbus_sent = sigbus_sent.load();
    s.pages_invalidated = pages_invalidated.load();
    s.invalidate_conflicts = invalidate_conflicts.load();
    s.pages_truncated = pages_truncated.load();
    s.pages_punched = pages_punched.load();
    s.pages_laundered = pages_laundered.load();
    s.fault_retries = fault_retries.load();
    s.pages_write_around = pages_write_around.load();
    s.pages_scan_written = pages_scan_written.load();
    s.pagemap_scans = pagemap_scans.load();
    s.pagemap_scan_pages = pagemap_scan_pages.load();
    s.pagemap_scan_ns = pagemap_scan_ns.load();
    s.stores_throttled = stores_throttled.load();
    s.fill_ns = fill_ns.load();
    s.install_ns = install_ns.load();
    s.pages_reclaimed = pages_reclaimed.load();
    s.cache_hits = cache_hits.load();
    s.cache_misses = cache_misses.load();
    s.reclaim_runs = reclaim_runs.load();
    s.readaround_hits = readaround_hits.load();
    s.readaround_misses = readaround_misses.load();
    s.readaround_off = readaround_off.load();
    s.pages_read_around = pages_read_around.load();
    s.pages_sampled = pages_sampled.load();
    s.async_readahead_pages = async_readahead_pages.load();
    s.faults_polled = faults_polled.load();
    s.faults_in_thread = faults_in_thread.load();
    s.pages_copied = pages_copied.load();
    s.install_calls = install_calls.load();
    return s;
  }
};

using Counter = std::atomic<uint64_t> Counters::*;

/// Nanoseconds since t0 (for the *_ns counters).
inline uint64_t ns_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now() - t0)
                                   .count());
}

}  // namespace faultline::detail
