// faultline CLI — `faultline bench`: faultline mapping vs kernel mmap vs pread,
// first touch of every page, sequential and random, kernel cache cold and warm.
// `--write`: stores + msync/fsync vs kernel mmap + msync vs pwrite.
// `--file rados://...`: a RADOS file through a mapping vs direct backend reads.
#pragma once
#include <cstddef>
#include <string>

#include <CLI/CLI.hpp>

#include "faultline/engine.hpp"

namespace faultline::cli {

struct BenchOptions {
  std::string size = "1G";
  std::string file;
  std::string pattern = "both";
  std::string cache = "all";      ///< cold, warm, resident, both (cold+warm), all
  std::string frames = "both";    ///< 4K, 2M or both: faultline rows with 4 KiB / 2 MiB frames
  bool json = false;
  unsigned reps = 3;
  std::size_t fault_around = 0;  ///< 0 until add_bench_command sets EngineConfig's default
  std::size_t readahead_max = 0;
  std::size_t readahead_windows = 0;
  std::size_t write_around_max = 0;
  unsigned threads = 0;
  /// --threads as given: one number (EngineConfig.fault_threads), or with
  /// --out-of-core a comma list of touching-thread counts.
  std::string threads_arg;
  bool write = false;  ///< --write: the store bench instead of the read bench
  bool umap_api = false;  ///< --umap-api: add the umap-api rows (read bench)
  // --out-of-core (bench/out_of_core.hpp)
  bool out_of_core = false;
  std::string file_size;         ///< default: 8 x the limit
  std::string limit = "256M";
  double seconds = 10;
  std::string workload = "all";  ///< comma list of uniform, hotset, zipf, scan, scan+hot
  std::string methods = "all";   ///< comma list of faultline, faultline-self, faultline-2M, mmap, mmap-random, direct
  unsigned direct_depth = 0;     ///< 0: the device's queue depth (sysfs), at most 32
  unsigned fault_poll_us = EngineConfig{}.fault_poll_us;  ///< --fault-poll-us
  bool faultline_in_cgroup = false;
};

/// Adds the `bench` subcommand (options bound to `opts`) to `app`.
CLI::App* add_bench_command(CLI::App& app, BenchOptions& opts);

/// Runs it. Returns the exit code (0 ok, 1 a method read different data);
/// throws on errors (the caller prints them and exits 2).
int run_bench(const BenchOptions& opts);

}  // namespace faultline::cli
