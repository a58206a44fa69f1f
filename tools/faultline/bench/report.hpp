// faultline CLI — the bench's results: per (method, pattern, cache) the
// samples of every repetition, reduced to medians, printed as a human table or
// as JSON lines (one object per result, nothing else).
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "bench/measure.hpp"
#include "faultline/engine.hpp"

namespace faultline::cli {

struct ResultSet {
  Method method;
  Pattern pattern;
  CacheState cache;
  std::vector<Sample> samples;  ///< one per repetition
};

struct Row {
  Method method = Method::Faultline;
  Pattern pattern = Pattern::Seq;
  CacheState cache = CacheState::Cold;
  unsigned reps = 0;
  double median_ns = 0;       ///< median of the timed regions
  double ns_per_page = 0;
  double gib_per_s = 0;
  double ratio_to_device = 0; ///< cold rows: this throughput / the device row's (O_DIRECT), same pattern; 0 = none
  double ratio_to_mmap = 0;   ///< this throughput / the baseline's (RunInfo::baseline; kernel
                              ///< mmap for local files), same pattern and cache
  double resident_before_max = 0;  ///< kernel page cache residency before, worst rep
  double store_ns = 0, msync_ns = 0, fsync_ns = 0;  ///< write bench phases of the median rep
  bool data_ok = true;        ///< read: every rep read the same page words as the reference;
                              ///< write: the file held every stamp after every rep
  uint64_t bad_pages = 0;     ///< write: wrong pages, summed over reps
  uint64_t pages_stored = 0;  ///< write: pages stored to per rep
  std::optional<Stats> stats; ///< faultline only: the counters of the median rep
  bool have_rados = false;    ///< RADOS bench: counters of the median rep
  uint64_t rados_objects_read = 0;
  uint64_t rados_max_in_flight = 0;
  bool have_memory = false;          ///< memory of the median rep (Sample::mem_*)
  uint64_t mem_frames_bytes = 0;
  uint64_t mem_kernel_cache_bytes = 0;
  int64_t hugepages_used = -1;
  std::size_t frame_size = 0;        ///< faultline rows: the File's frame size
};

/// What the table's header states about the run.
struct RunInfo {
  std::string file;
  std::string fs_type;
  bool scratch = false;  ///< the bench made (and removes) the file
  uint64_t size_bytes = 0;
  uint64_t pages = 0;
  std::size_t page_size = 0;
  unsigned reps = 0;
  EngineConfig config;
  std::string thp_shmem;
  bool write = false;              ///< the write bench (--write)
  Method baseline = Method::Mmap;  ///< what ratio_to_mmap divides by
  bool rados = false;              ///< a RADOS file (plan paths are URIs)
  uint64_t rados_object_size = 0;
  uint64_t rados_read_split = 0;
  unsigned rados_max_in_flight = 0;
  std::string rados_identity;
  /// Why the faultline-2M rows were skipped (empty: they ran or were not asked for).
  std::string frames2m_skipped;
};

/// Medians and ratios. `reference_sum` is the page-word sum every read sample
/// must have read (from pread / rados-read); nullopt skips the check. Write
/// samples carry their own data_ok (from verify_written).
std::vector<Row> summarize(const std::vector<ResultSet>& sets, const RunInfo& info,
                           std::optional<uint64_t> reference_sum);

void print_table(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info);
void print_json_lines(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info);

}  // namespace faultline::cli
