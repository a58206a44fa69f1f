// faultline CLI — `bench --out-of-core`: the access patterns (which 4 KiB page
// each touch goes to; ooc_workload.cpp) and one measurement of one method on
// one pattern (ooc_measure.cpp), run inside a child process (out_of_core.cpp
// forks it, in a memory cgroup for the kernel's mmap) and reported back as a
// plain struct.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "faultline/engine.hpp"

namespace faultline::cli {

enum class OocWorkload { Uniform, Hotset, Zipf, Scan, ScanHot };
/// FaultlineSelf: 4 KiB frames, FaultMode::FaultingThread (each touching
/// thread resolves its own faults).
enum class OocMethod { Faultline, FaultlineSelf, Faultline2M, Mmap, MmapRandom, Direct };

const char* to_string(OocWorkload w);
const char* to_string(OocMethod m);

/// One touch in this many is timed (latency percentiles).
inline constexpr unsigned kOocLatencyEvery = 64;
/// The hot set: one page in this many (hotset, scan+hot).
inline constexpr uint64_t kOocHotFraction = 16;
/// hotset: this share of touches goes to the hot set, the rest anywhere.
inline constexpr double kOocHotShare = 0.9;
inline constexpr double kOocZipfTheta = 0.99;
/// direct, scan: O_DIRECT reads of this size, kOocScanDepth of them in flight.
inline constexpr uint64_t kOocScanReadBytes = uint64_t{2} << 20;
inline constexpr unsigned kOocScanDepth = 4;

/// The page touched by successive touches of one thread: uniform, hot set
/// (90% on 1/16 of the pages: one page of each aligned group of 16, at a
/// pseudo-random place in it, so no read-around window holds two), Zipf 0.99
/// over every page (ranks scattered over the file), or only the hot set
/// (hot = true: scan+hot's hot thread). Deterministic for a seed.
class PageGen {
 public:
  PageGen(OocWorkload w, uint64_t pages, uint64_t seed, bool hot_only = false);
  uint64_t next();
  /// The i-th hot page (i < hot_pages()).
  uint64_t hot_page(uint64_t i) const;
  uint64_t hot_pages() const { return hot_; }

 private:
  uint64_t rnd();
  double unit() { return static_cast<double>(rnd() >> 11) * 0x1.0p-53; }
  OocWorkload w_;
  uint64_t pages_, hot_, state_;
  bool hot_only_;
  // Zipf (Gray et al., "Quickly generating billion-record synthetic databases")
  double zetan_ = 0, eta_ = 0, alpha_ = 0, half_pow_ = 0;
  uint64_t scatter_ = 1;  // rank -> page: (rank * scatter_) mod pages, a bijection
};

/// Hit ratio of an offline LRU cache of `capacity` pages over `length` touches
/// of one PageGen stream (counted over the second half: steady state). The
/// reference the engine's policy is compared with (hotset, zipf, uniform).
double offline_lru_hit_ratio(OocWorkload w, uint64_t pages, uint64_t capacity, uint64_t length);

struct OocPlan {
  std::string path;
  uint64_t size = 0;      ///< bytes
  uint64_t pages = 0;     ///< 4 KiB pages
  uint64_t limit_bytes = 0;
  OocWorkload workload = OocWorkload::Uniform;
  OocMethod method = OocMethod::Faultline;
  unsigned threads = 1;   ///< touching threads (scan+hot: scan threads beside one hot thread)
  double seconds = 1;
  unsigned direct_depth = 1;  ///< direct: 4 KiB reads in flight (random workloads)
  EngineConfig config;    ///< faultline: memory_limit_pages set from limit_bytes
};

/// What a measurement found; a plain struct (sent from the child through a pipe).
struct OocResult {
  int failed = 0;          ///< 1: error[] says why (the row is reported as failed)
  int skipped = 0;         ///< 1: error[] says why (a stated skip: no pool, no userfaultfd)
  char error[512] = {};
  double measured_s = 0;   ///< the measured window (second half; scan: the whole scan)
  uint64_t touches = 0;    ///< in the measured window
  double touches_per_s = 0;
  uint64_t device_read_bytes = 0;  ///< /proc/self/io read_bytes over the window
  uint64_t misses = 0;     ///< touches that read the device (faultline: Stats::cache_misses;
                           ///< kernel: major faults; direct: every touch)
  double hit_ratio = 0;    ///< 1 - misses / touches
  uint64_t peak_frames_bytes = 0;  ///< engine frames (Stats::cached_pages) at the peak sample
  uint64_t peak_kcache_bytes = 0;  ///< the file in the kernel's page cache at the peak sample
  uint64_t peak_mem_bytes = 0;     ///< max over samples of frames + kernel cache of the file
  uint64_t mem_samples = 0;
  double p50_ns = 0, p99_ns = 0;   ///< touch latency (one touch in kOocLatencyEvery timed)
  double hot_before_per_s = 0, hot_during_per_s = 0, hot_kept = 0;  ///< scan+hot
  double scan_gib_s = 0;   ///< scan, scan+hot: the scan's rate
  unsigned depth = 0;      ///< direct: reads in flight
  // faultline: engine counters over the window
  uint64_t cache_hits = 0, cache_misses = 0, pages_reclaimed = 0, reclaim_runs = 0,
           missing_faults = 0, minor_faults = 0, engine_bytes_read = 0,
           pages_filled = 0, readaround_hits = 0, readaround_misses = 0, readaround_off = 0,
           pages_read_around = 0, pages_copied = 0;
  uint64_t peak_fault_threads = 0, peak_fills_in_flight = 0;  ///< over the whole run
  int have_engine = 0;
};

/// Runs one measurement in the calling process (the child). Never throws:
/// errors go to OocResult::failed / skipped.
OocResult run_ooc_measurement(const OocPlan& plan);

}  // namespace faultline::cli
