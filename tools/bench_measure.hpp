// faultline CLI — one timed bench measurement: read every 4 KiB page of a file
// once (one 8-byte load per page, summed so nothing is optimized out) in a
// given order, through a faultline mapping, the kernel's mmap, or pread.
// The write bench (bench_write.hpp) and the RADOS read bench (bench_rados.hpp)
// reuse these types.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "faultline/engine.hpp"
#include "faultline/stats.hpp"

namespace faultline::cli {

/// Pwrite: the write bench's pwrite row. RadosRead: direct RadosBackend::read
/// of the same objects (the RADOS bench's baseline).
enum class Method { Faultline, Mmap, Pread, Pwrite, RadosRead };
enum class Pattern { Seq, Rand };
/// NotApplicable: no kernel page cache involved (RADOS files).
enum class CacheState { Cold, Warm, NotApplicable };

const char* to_string(Method m);
const char* to_string(Pattern p);
const char* to_string(CacheState c);

/// What to read: the file, its length, the page unit and the page order.
struct ReadPlan {
  std::string path;
  uint64_t size = 0;
  std::size_t page_size = 0;            ///< the unit of one load (kBasePageSize)
  uint64_t pages = 0;                   ///< ceil(size / page_size)
  const std::vector<uint32_t>* order = nullptr;  ///< page indices; null = sequential
};

struct Sample {
  double ns = 0;             ///< the timed region, wall clock
  uint64_t word_sum = 0;     ///< sum of the first 8 bytes of every page (same for all methods)
  double resident_before = 0;  ///< kernel page cache residency set before the method
  Stats stats{};             ///< the File's counters (faultline only)
  bool data_ok = true;       ///< write bench: the file held every stamp afterwards
  uint64_t bad_pages = 0;    ///< write bench: pages whose contents were wrong
  uint64_t pages_stored = 0; ///< write bench: pages stored to (one store each)
  bool have_rados = false;   ///< RADOS bench: the counters below are set
  uint64_t rados_objects_read = 0;
  uint64_t rados_max_in_flight = 0;
};

/// A fresh Engine + File are made untimed; map + touch is timed; the Mapping,
/// File and Engine are torn down untimed. A SIGBUS during the touch becomes a
/// std::runtime_error.
Sample measure_faultline(const ReadPlan& plan, const EngineConfig& config);
/// mmap(MAP_SHARED, PROT_READ) + touch timed (no MAP_POPULATE, no madvise);
/// open and munmap untimed.
Sample measure_mmap(const ReadPlan& plan);
/// One pread of a page per page, in the plan's order, timed; open untimed.
Sample measure_pread(const ReadPlan& plan);

Sample measure(Method m, const ReadPlan& plan, const EngineConfig& config);

}  // namespace faultline::cli
