// faultline CLI — `faultline bench`'s options: what is measured (the file, the
// store or read bench, order, cache state, frame size), the engine's windows,
// and the --out-of-core bench's own options (each needs --out-of-core).
#include "bench/command.hpp"

#include <fmt/format.h>

#include <cctype>
#include <cstddef>
#include <string>

#ifdef FAULTLINE_HAVE_RADOS
#include "faultline/rados_backend.hpp"
#endif
#include "common/size_arg.hpp"
#include "faultline/engine.hpp"

namespace faultline::cli {

namespace {

/// A size in bytes (or with a K/M/G/T suffix), more than 0.
std::string check_size(std::string& s) {
  auto v = parse_size(s);
  if (!v) return "'" + s + "' is not a size (e.g. 1073741824, 64M, 1G)";
  if (*v == 0) return "the size must be more than 0 bytes";
  return {};
}

/// An existing file, or a RADOS URI this build can open.
std::string check_file(std::string& s) {
  if (s.starts_with("rados://")) {
#ifdef FAULTLINE_HAVE_RADOS
    try {
      (void)parse_rados_uri(s);
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
#else
    return "'" + s + "': this faultline was built without librados (RADOS URIs unsupported)";
#endif
  }
  return CLI::ExistingFile(s);
}

/// One thread count or a comma list of them (run_bench / run_ooc_bench read it).
std::string check_thread_list(std::string& s) {
  for (char ch : s)
    if (!std::isdigit(static_cast<unsigned char>(ch)) && ch != ',')
      return "'" + s + "' is not a thread count or a comma list of them";
  return {};
}

/// --frames 4k / 2m / BOTH: as 4K, 2M, both.
std::string frames_upper(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s == "BOTH" ? std::string("both") : s;
}

/// The EngineConfig windows the bench sets, each with its default.
struct WindowOption {
  const char* name;
  std::size_t BenchOptions::*value;
  std::size_t EngineConfig::*config;
  const char* help;
  std::size_t max = std::size_t{1} << 20;
};
constexpr WindowOption kWindowOptions[] = {
    {"--fault-around", &BenchOptions::fault_around, &EngineConfig::fault_around_pages,
     "EngineConfig.fault_around_pages: pages installed per non-sequential fault"},
    {"--readahead-max", &BenchOptions::readahead_max, &EngineConfig::readahead_max_pages,
     "EngineConfig.readahead_max_pages: largest sequential window"},
    {"--readahead-windows", &BenchOptions::readahead_windows, &EngineConfig::readahead_windows,
     "EngineConfig.readahead_windows: windows a sequential stream keeps read ahead (1-8)", 8},
    {"--write-around-max", &BenchOptions::write_around_max, &EngineConfig::write_around_max_pages,
     "EngineConfig.write_around_max_pages: largest write-around (pages made writable and dirty "
     "ahead of a sequential store stream; --write)"},
};

/// --size, --file, --umap-api, --write. Returns --size and --file (which
/// --out-of-core excludes).
std::pair<CLI::Option*, CLI::Option*> add_input_options(CLI::App* cmd, BenchOptions& o,
                                                        const CLI::Validator& size_check,
                                                        const CLI::Validator& file_check) {
  auto* size = cmd->add_option("--size", o.size,
                               "Size of the file the bench makes in a temporary directory under "
                               "/var/tmp (bytes, or with K/M/G/T suffix)")
                   ->type_name("BYTES")
                   ->check(size_check)
                   ->capture_default_str();
  auto* file = cmd->add_option("--file", o.file,
                               "Read this existing file instead of making one (it is not modified "
                               "or removed); or a RADOS file, rados://POOL/NAME?conf=PATH: then a "
                               "faultline mapping is compared with direct backend reads (kernel "
                               "mmap and pread do not apply)")
                   ->type_name("PATH|URI")
                   ->check(file_check)
                   ->excludes(size);
  cmd->add_flag("--umap-api", o.umap_api,
                "Add umap-api rows: the same loop through UMap's API (umap() / uunmap(), "
                "umap/umap.h) on faultline, with the settings a UMap program gets from the UMAP_* "
                "environment (UMAP_PAGESIZE=2097152: 2 MiB frames); read bench only");
  cmd->add_flag("--write", o.write,
                "Store bench instead of reads: one 8-byte store per page (sequential/random) to a "
                "scratch file, made durable (msync MS_SYNC + fsync), through a faultline mapping "
                "(method faultline: page_mkwrite mode; faultline-async: WP_ASYNC + PAGEMAP_SCAN "
                "dirty tracking), kernel mmap and pwrite; the file is read back and checked "
                "after each method")
      ->excludes(file);
  return {size, file};
}

/// --pattern, --cache, --frames, --json, --reps.
void add_run_options(CLI::App* cmd, BenchOptions& o) {
  cmd->add_option("--pattern", o.pattern, "Access order: sequential, random permutation of pages, or both")
      ->check(CLI::IsMember({"seq", "rand", "both"}))
      ->capture_default_str();
  cmd->add_option("--cache", o.cache,
                  "Cache state before each method: cold (kernel page cache dropped), warm (read "
                  "once with read(2)), resident (faultline-2M only: the engine already holds every "
                  "frame, a second Mapping of the File is timed; compared with kernel mmap warm), "
                  "both (cold and warm) or all (cold, warm and resident)")
      ->check(CLI::IsMember({"cold", "warm", "resident", "both", "all"}))
      ->capture_default_str();
  cmd->add_option("--frames", o.frames,
                  "Frame size of the faultline rows: 4K (method faultline), 2M (method "
                  "faultline-2M: hugetlb frames, needs a pool of free 2 MiB huge pages, "
                  "scripts/setup.sh --hugepages N), or both. Without a big enough pool the 2M rows "
                  "are skipped, saying why")
      ->transform(frames_upper)
      ->check(CLI::IsMember({"4K", "2M", "both"}))
      ->capture_default_str();
  cmd->add_flag("--json", o.json,
                "Print one JSON object per result on stdout instead of the table (progress stays on "
                "stderr)");
  cmd->add_option("--reps", o.reps, "Repetitions per measurement (methods alternate; medians reported)")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
}

/// The engine's windows (kWindowOptions) and --threads, defaults from EngineConfig.
void add_engine_options(CLI::App* cmd, BenchOptions& o, const EngineConfig& defaults) {
  for (const WindowOption& w : kWindowOptions) {
    o.*w.value = defaults.*w.config;
    cmd->add_option(w.name, o.*w.value, w.help)
        ->check(CLI::Range(std::size_t{1}, w.max))
        ->capture_default_str();
  }
  o.threads = defaults.fault_threads;
  cmd->add_option("--threads", o.threads_arg,
                  fmt::format("EngineConfig.fault_threads: fault-handler threads (default {}); "
                              "with --out-of-core: touching threads, a comma list (default 1,2)",
                              o.threads))
      ->type_name("N[,N...]")
      ->check(CLI::Validator(check_thread_list, "N[,N...]"));
}

/// --out-of-core and the options only it takes (bench/out_of_core.cpp).
void add_out_of_core_options(CLI::App* cmd, BenchOptions& o, CLI::Option* size, CLI::Option* file,
                             const CLI::Validator& size_check) {
  auto* ooc = cmd->add_flag(
      "--out-of-core", o.out_of_core,
      "Out-of-core bench: a scratch file --file-size (default 8 x --limit) touched by --threads "
      "threads for --seconds per run (workloads uniform, hotset = 90% on 1/16 of the pages, zipf "
      "0.99, scan, scan+hot = a scan beside a hot-set thread); methods faultline (memory limit = "
      "--limit; 4 KiB and 2 MiB frames, default config), kernel mmap and mmap-random "
      "(MADV_RANDOM) in a memory cgroup of --limit bytes (root; else skipped, saying why), and "
      "direct (O_DIRECT); cold start for every run, each in a child process");
  ooc->excludes(size)->excludes(file);
  auto need_ooc = [&](CLI::Option* opt) { opt->needs(ooc); };
  need_ooc(cmd->add_option("--file-size", o.file_size, "--out-of-core: file size (default 8 x --limit)")
               ->type_name("BYTES")
               ->check(size_check));
  need_ooc(cmd->add_option("--limit", o.limit,
                           "--out-of-core: the memory allowed (faultline's memory_limit_pages; the "
                           "kernel's memory cgroup)")
               ->type_name("BYTES")
               ->check(size_check)
               ->capture_default_str());
  need_ooc(cmd->add_option("--seconds", o.seconds, "--out-of-core: seconds per run")
               ->check(CLI::Range(0.05, 3600.0))
               ->capture_default_str());
  need_ooc(cmd->add_option("--workload", o.workload,
                           "--out-of-core: comma list of uniform, hotset, zipf, scan, scan+hot, or all")
               ->capture_default_str());
  need_ooc(cmd->add_option("--method", o.methods,
                           "--out-of-core: comma list of faultline, faultline-self (4 KiB "
                           "frames, FaultMode::FaultingThread: each touching thread resolves its "
                           "own faults), faultline-2M, mmap, mmap-random, direct, or all")
               ->capture_default_str());
  need_ooc(cmd->add_option("--fault-poll-us", o.fault_poll_us,
                           "--out-of-core: EngineConfig.fault_poll_us for the faultline rows "
                           "(a handler polls for the next fault this long before it sleeps; 0: off)")
               ->check(CLI::Range(0u, 10000u))
               ->capture_default_str());
  need_ooc(cmd->add_option("--direct-depth", o.direct_depth,
                           "--out-of-core: O_DIRECT 4 KiB reads in flight for the direct rows "
                           "(default: the device's queue depth, at most 32)")
               ->check(CLI::Range(1u, 1024u)));
  need_ooc(cmd->add_flag("--faultline-in-cgroup", o.faultline_in_cgroup,
                         "--out-of-core: run the faultline rows in the memory cgroup too (an "
                         "engine that passes its limit is then OOM-killed: reported as a failed "
                         "row)"));
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  const EngineConfig defaults;
  auto* cmd = app.add_subcommand(
      "bench",
      "Compare a faultline mapping with the kernel's mmap and with pread: first touch of every "
      "page of a file, sequential and random order, kernel page cache cold and warm");
  const CLI::Validator size_check(check_size, "SIZE");
  const CLI::Validator file_check(check_file, "PATH|URI");
  const auto [size, file] = add_input_options(cmd, o, size_check, file_check);
  add_run_options(cmd, o);
  add_engine_options(cmd, o, defaults);
  add_out_of_core_options(cmd, o, size, file, size_check);
  return cmd;
}

}  // namespace faultline::cli
