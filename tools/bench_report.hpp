// faultline CLI — the bench's results: per (method, pattern, cache) the
// samples of every repetition, reduced to medians, printed as a human table or
// as JSON lines (one object per result, nothing else).
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "bench_measure.hpp"
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
  double ratio_to_mmap = 0;   ///< this throughput / kernel mmap's (same pattern and cache)
  double resident_before_max = 0;  ///< kernel page cache residency before, worst rep
  bool data_ok = true;        ///< every rep read the same page words as pread
  std::optional<Stats> stats; ///< faultline only: the counters of the median rep
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
};

/// Medians and ratios. `reference_sum` is the page-word sum every sample must
/// have read (from pread); nullopt skips the check.
std::vector<Row> summarize(const std::vector<ResultSet>& sets, const RunInfo& info,
                           std::optional<uint64_t> reference_sum);

void print_table(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info);
void print_json_lines(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info);

}  // namespace faultline::cli
