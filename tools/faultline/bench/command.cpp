#include "bench/command.hpp"
#include "common/path_arg.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "bench/measure.hpp"
#include "bench/out_of_core.hpp"
#include "bench/report.hpp"
#include "bench/summary.hpp"
#include "bench/write.hpp"
#ifdef FAULTLINE_HAVE_RADOS
#include "bench/rados.hpp"
#include "faultline/rados_backend.hpp"
#endif
#include "common/data_gen.hpp"
#include "faultline/constants.hpp"
#include "common/interrupt.hpp"
#include "bench/kernel_cache.hpp"
#include "common/scratch_file.hpp"
#include "common/size_arg.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

constexpr const char* kScratchParent = "/var/tmp";
constexpr uint64_t kDataSeed = 0x66617574'6c696e65ull;  // "faultline"
constexpr uint64_t kOrderSeed = 0x5eed0f9a9e5ull;

/// The engine's log, each distinct message once (a fresh Engine is made per
/// measurement; its start-up warnings would repeat).
void log_once(std::string_view msg) {
  static std::mutex mu;
  static std::set<std::string, std::less<>> seen;
  std::lock_guard lock(mu);
  if (seen.insert(std::string(msg)).second) fmt::print(stderr, "{}\n", msg);
}

std::string read_thp_shmem() {
  std::FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
  if (!f) return "unknown";
  char buf[256] = {};
  const bool ok = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  if (!ok) return "unknown";
  std::string_view s(buf);
  const auto l = s.find('['), r = s.find(']');
  if (l != std::string_view::npos && r != std::string_view::npos && r > l)
    return std::string(s.substr(l + 1, r - l - 1));
  return "unknown";
}

template <class E>
std::vector<E> selection(const std::string& which, E a, E b) {
  if (which == "both") return {a, b};
  return {which == to_string(a) ? a : b};
}

std::vector<uint32_t> random_order(uint64_t pages) {
  std::vector<uint32_t> order(pages);
  std::iota(order.begin(), order.end(), uint32_t{0});
  std::mt19937_64 rng(kOrderSeed);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool looks_like_rados_uri(std::string_view s) { return s.starts_with("rados://"); }

/// Prints the table or the JSON lines and the data-check verdict; the exit code.
int report(const std::vector<ResultSet>& sets, const RunInfo& info, bool json,
           std::optional<uint64_t> reference_sum) {
  const auto rows = summarize(sets, info, reference_sum);
  if (json) print_json_lines(stdout, rows, info);
  else print_table(stdout, rows, info);
  if (!json) {
    if (const std::string line = one_line_summary(rows, info); !line.empty()) fmt::print("{}\n", line);
  }
  const bool ok = std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.data_ok; });
  if (!ok)
    fmt::print(stderr, "faultline bench: error: {} (rows marked data_ok=false / DATA MISMATCH)\n",
               info.write ? "a method left wrong data in the file"
                          : "a method read different page data than the reference");
  return ok ? 0 : 1;
}

#ifdef FAULTLINE_HAVE_RADOS
/// `bench --file rados://...`: faultline mapping vs direct RadosBackend reads.
int run_rados_bench(const BenchOptions& o, RunInfo info) {
  if (o.cache != BenchOptions{}.cache)
    fmt::print(stderr, "faultline bench: note: --cache does not apply to a RADOS file (no kernel "
                       "page cache involved); ignored\n");
  const RadosFileInfo fi = rados_file_info(o.file);
  if (fi.size == 0) throw std::runtime_error("'" + o.file + "' is empty: nothing to read");
  info.file = o.file;
  info.fs_type = "rados";
  info.rados = true;
  info.baseline = Method::RadosRead;
  info.size_bytes = fi.size;
  info.rados_object_size = fi.object_size;
  info.rados_read_split = fi.read_split;
  info.rados_max_in_flight = fi.max_in_flight;
  info.rados_identity = fi.identity;
  info.pages = (info.size_bytes + info.page_size - 1) / info.page_size;
  if (info.pages > UINT32_MAX)
    throw std::runtime_error(fmt::format("{} is too large for the bench", format_size(fi.size)));
  fmt::print(stderr,
             "faultline bench: {} is a RADOS file ({}, objects of {}): kernel mmap and pread do "
             "not apply; comparing with direct RadosBackend reads (rados-read)\n",
             o.file, format_size(fi.size), format_size(fi.object_size));

  const std::vector<uint32_t> order = random_order(info.pages);
  const auto patterns = selection(o.pattern, Pattern::Seq, Pattern::Rand);
  // faultline-2M rows when asked for and a pool of 2 MiB pages is there.
  std::vector<Method> methods;
  if (o.frames != "2M") methods.push_back(Method::Faultline);
  if (o.frames != "4K") {
    const uint64_t need = (info.size_bytes + kHugePageSize - 1) / kHugePageSize;
    if (hugepages_free() >= static_cast<int64_t>(need))
      methods.push_back(Method::Faultline2M);
    else
      fmt::print(stderr, "faultline bench: no faultline-2M rows: {} free 2 MiB huge pages needed "
                         "(reserve with `scripts/setup.sh --hugepages {}`)\n", need, need);
  }
  methods.push_back(Method::RadosRead);
  constexpr CacheState c = CacheState::NotApplicable;
  std::vector<ResultSet> sets;
  for (auto p : patterns)
    for (auto m : methods) sets.push_back({m, p, c, {}});
  const std::size_t total = sets.size() * o.reps;
  std::size_t done = 0;
  std::optional<uint64_t> reference_sum;
  for (unsigned rep = 0; rep < o.reps; ++rep) {
    for (auto p : patterns) {
      for (std::size_t k = 0; k < methods.size(); ++k) {
        const Method m = methods[(k + rep) % methods.size()];
        throw_if_interrupted();
        ReadPlan plan{o.file, info.size_bytes, info.page_size, info.pages,
                      p == Pattern::Rand ? &order : nullptr};
        Sample s = m == Method::RadosRead ? measure_rados_direct(plan)
                   : measure_rados_faultline(plan, info.config,
                                             m == Method::Faultline2M ? FrameSize::k2M : FrameSize::k4K);
        if (m == Method::RadosRead && !reference_sum) reference_sum = s.word_sum;
        ++done;
        fmt::print(stderr,
                   "[{:>3}/{}] rep {}/{} {:<4} {:<10} {:>7.3f} GiB/s {:>8.0f} ns/page  objects "
                   "read {}, most in flight {}{}\n",
                   done, total, rep + 1, o.reps, to_string(p), to_string(m),
                   double(info.size_bytes) / double(uint64_t{1} << 30) / (s.ns * 1e-9),
                   s.ns / double(info.pages), s.rados_objects_read, s.rados_max_in_flight,
                   m != Method::RadosRead
                       ? fmt::format("  missing={} minor={} filled={}", s.stats.missing_faults,
                                     s.stats.minor_faults, s.stats.pages_filled)
                       : "");
        for (auto& set : sets)
          if (set.method == m && set.pattern == p) set.samples.push_back(s);
      }
    }
  }
  return report(sets, info, o.json, reference_sum);
}
#endif

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  const EngineConfig defaults;
  o.fault_around = defaults.fault_around_pages;
  o.readahead_max = defaults.readahead_max_pages;
  o.write_around_max = defaults.write_around_max_pages;
  o.threads = defaults.fault_threads;

  auto* cmd = app.add_subcommand(
      "bench",
      "Compare a faultline mapping with the kernel's mmap and with pread: first touch of every "
      "page of a file, sequential and random order, kernel page cache cold and warm");
  const CLI::Validator size_check(
      [](std::string& s) -> std::string {
        auto v = parse_size(s);
        if (!v) return "'" + s + "' is not a size (e.g. 1073741824, 64M, 1G)";
        if (*v == 0) return "the size must be more than 0 bytes";
        return {};
      },
      "SIZE");
  auto* size = cmd->add_option("--size", o.size,
                               "Size of the file the bench makes in a temporary directory under "
                               "/var/tmp (bytes, or with K/M/G/T suffix)")
                   ->type_name("BYTES")
                   ->check(size_check)
                   ->capture_default_str();
  const CLI::Validator file_check(
      [](std::string& s) -> std::string {
        if (looks_like_rados_uri(s)) {
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
      },
      "PATH|URI");
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
      ->transform([](std::string s) {
        for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        return s == "BOTH" ? std::string("both") : s;
      })
      ->check(CLI::IsMember({"4K", "2M", "both"}))
      ->capture_default_str();
  cmd->add_flag("--json", o.json,
                "Print one JSON object per result on stdout instead of the table (progress stays on "
                "stderr)");
  cmd->add_option("--reps", o.reps, "Repetitions per measurement (methods alternate; medians reported)")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  cmd->add_option("--fault-around", o.fault_around,
                  "EngineConfig.fault_around_pages: pages installed per non-sequential fault")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--readahead-max", o.readahead_max,
                  "EngineConfig.readahead_max_pages: largest sequential window")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--write-around-max", o.write_around_max,
                  "EngineConfig.write_around_max_pages: largest write-around (pages made "
                  "writable and dirty ahead of a sequential store stream; --write)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--threads", o.threads_arg,
                  fmt::format("EngineConfig.fault_threads: fault-handler threads (default {}); "
                              "with --out-of-core: touching threads, a comma list (default 1,2)",
                              o.threads))
      ->type_name("N[,N...]")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            for (char ch : s)
              if (!std::isdigit(static_cast<unsigned char>(ch)) && ch != ',')
                return "'" + s + "' is not a thread count or a comma list of them";
            return {};
          },
          "N[,N...]"));
  // --out-of-core (bench/out_of_core.cpp)
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
                           "--out-of-core: comma list of faultline, faultline-2M, mmap, "
                           "mmap-random, direct, or all")
               ->capture_default_str());
  need_ooc(cmd->add_option("--direct-depth", o.direct_depth,
                           "--out-of-core: O_DIRECT 4 KiB reads in flight for the direct rows "
                           "(default: the device's queue depth, at most 32)")
               ->check(CLI::Range(1u, 1024u)));
  need_ooc(cmd->add_flag("--faultline-in-cgroup", o.faultline_in_cgroup,
                         "--out-of-core: run the faultline rows in the memory cgroup too (an "
                         "engine that passes its limit is then OOM-killed: reported as a failed "
                         "row)"));
  return cmd;
}

int run_bench(const BenchOptions& o) {
  if (o.out_of_core) return run_ooc_bench(o);
  unsigned fault_threads = o.threads;
  if (!o.threads_arg.empty()) {
    unsigned long v = 0;
    try {
      v = std::stoul(o.threads_arg);
    } catch (const std::exception&) {
    }
    if (o.threads_arg.find(',') != std::string::npos || v < 1 || v > 256)
      throw std::runtime_error("--threads " + o.threads_arg +
                               ": one fault-thread count in 1..256 (a list only with --out-of-core)");
    fault_threads = static_cast<unsigned>(v);
  }
  InterruptGuard interrupts;
  const auto poll = [] { throw_if_interrupted(); };

  EngineConfig config;
  config.fault_around_pages = o.fault_around;
  config.readahead_max_pages = o.readahead_max;
  config.write_around_max_pages = o.write_around_max;
  config.fault_threads = fault_threads;
  config.log = log_once;

  RunInfo info;
  info.page_size = kBasePageSize;
  info.reps = o.reps;
  info.config = config;
  info.thp_shmem = read_thp_shmem();

  // The file: the user's, or one made here and removed by ScratchFile's
  // destructor on every way out of this function.
  if (looks_like_rados_uri(o.file)) {
#ifdef FAULTLINE_HAVE_RADOS
    return run_rados_bench(o, info);
#else
    throw std::runtime_error("this faultline was built without librados: RADOS URIs unsupported");
#endif
  }
  info.write = o.write;
  if (o.write && !o.file.empty())
    throw std::runtime_error("--write stores to the file: it runs on a scratch file only (no --file)");

  std::optional<ScratchFile> scratch;
  UniqueFd control;  // for setting the kernel cache state
  if (!o.file.empty()) {
    control = open_regular_file(o.file, O_RDONLY);  // no FIFO, device or /proc file
    struct stat st {};
    if (::fstat(control.get(), &st) != 0) throw_errno("stat '" + o.file + "'");
    if (st.st_size == 0) throw std::runtime_error("'" + o.file + "' is empty: nothing to read");
    info.file = o.file;
    info.size_bytes = static_cast<uint64_t>(st.st_size);
    info.fs_type = fs_type_name(o.file);
    if (on_memory_fs(o.file))
      fmt::print(stderr,
                 "faultline bench: warning: '{}' is on {}: kernel cache 'cold' cannot be set "
                 "there; compare with care\n",
                 o.file, info.fs_type);
  } else {
    info.size_bytes = *parse_size(o.size);
    if (o.write && info.size_bytes % info.page_size != 0)
      throw std::runtime_error(fmt::format("--write: the size must be a multiple of {} (one store "
                                           "per whole page), not {}",
                                           format_size(info.page_size), info.size_bytes));
    scratch.emplace(kScratchParent, info.size_bytes);
    info.file = scratch->path();
    info.scratch = true;
    info.fs_type = fs_type_name(info.file);
    fmt::print(stderr, "faultline bench: writing {} of pseudo-random data to {} ({})\n",
               format_size(info.size_bytes), info.file, info.fs_type);
    const auto t0 = std::chrono::steady_clock::now();
    write_random_bytes(scratch->fd(), info.size_bytes, kDataSeed, poll);
    if (::fsync(scratch->fd()) != 0) throw_errno("fsync '" + info.file + "'");
    fmt::print(stderr, "faultline bench: written and synced in {:.2f} s\n", seconds_since(t0));
    control.reset(::open(info.file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!control) throw_errno("open '" + info.file + "'");
  }
  info.pages = (info.size_bytes + info.page_size - 1) / info.page_size;
  if (info.pages > UINT32_MAX)
    throw std::runtime_error(fmt::format("{} is too large for the bench ({} pages; at most {})",
                                         format_size(info.size_bytes), info.pages, UINT32_MAX));

  const std::vector<uint32_t> order = random_order(info.pages);
  const auto patterns = selection(o.pattern, Pattern::Seq, Pattern::Rand);

  // What to run: per cache state, the methods (alternating within a pattern).
  const bool all = o.cache == "all";
  const bool cold = all || o.cache == "both" || o.cache == "cold";
  const bool warm = all || o.cache == "both" || o.cache == "warm";
  bool resident = !o.write && (all || o.cache == "resident");
  if (o.write && o.umap_api)
    throw std::runtime_error("--umap-api applies to the read bench only (not --write)");
  if (o.write && o.cache == "resident")
    throw std::runtime_error("--cache resident applies to the read bench only (not --write)");
  const bool want4k = o.frames != "2M";
  bool want2m = o.frames != "4K";
  if (want2m) {
    const uint64_t need = (info.size_bytes + kHugePageSize - 1) / kHugePageSize;
    const int64_t free = hugepages_free();
    if (free < static_cast<int64_t>(need)) {
      want2m = false;
      info.frames2m_skipped = fmt::format(
          "{} of 2 MiB frames need {} free 2 MiB huge pages, the pool can give {} (free - reserved "
          "+ vm.nr_overcommit_hugepages headroom; vm.nr_hugepages = {}): as root, "
          "scripts/demo.sh raises vm.nr_overcommit_hugepages (pages allocated on demand), or "
          "reserve a pool with `scripts/setup.sh --hugepages {}`",
          format_size(info.size_bytes), need, free < 0 ? std::string("none") : fmt::format("{}", free),
          [] {
            std::FILE* f = std::fopen("/proc/sys/vm/nr_hugepages", "re");
            long v = -1;
            if (f) {
              if (std::fscanf(f, "%ld", &v) != 1) v = -1;
              std::fclose(f);
            }
            return v < 0 ? std::string("?") : fmt::format("{}", v);
          }(),
          need);
      fmt::print(stderr, "faultline bench: skipping the faultline-2M rows: {}\n",
                 info.frames2m_skipped);
    }
  }
  if (resident && !want2m) {
    if (o.cache == "resident" || o.frames == "2M" || !info.frames2m_skipped.empty())
      fmt::print(stderr, "faultline bench: note: no 'resident' rows: they measure 2 MiB frames "
                         "(faultline-2M){}\n",
                 info.frames2m_skipped.empty() ? " and --frames 4K was asked for"
                                               : ", which were skipped");
    resident = false;
  }
  struct Step {
    CacheState cache;
    std::vector<Method> methods;
  };
  std::vector<Step> steps;
  const Method kernel_other = o.write ? Method::Pwrite : Method::Pread;
  const auto full = [&] {
    std::vector<Method> ms;
    if (want4k) ms.push_back(Method::Faultline);
    if (want4k && o.write) ms.push_back(Method::FaultlineAsync);
    if (want2m) ms.push_back(Method::Faultline2M);
    if (want2m && o.write) ms.push_back(Method::Faultline2MAsync);
    if (o.umap_api && !o.write) ms.push_back(Method::UmapApi);
    ms.push_back(Method::Mmap);
    ms.push_back(kernel_other);
    return ms;
  };
  if (cold) {
    steps.push_back({CacheState::Cold, full()});
    // The device's own limit beside them (read bench, local files whose
    // filesystem takes O_DIRECT).
    if (!o.write) {
      UniqueFd direct(::open(info.file.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
      if (direct)
        steps.back().methods.push_back(Method::Device);
      else
        fmt::print(stderr, "faultline bench: no device rows: O_DIRECT open of '{}' failed: {}\n",
                   info.file, std::strerror(errno));
    }
  }
  if (warm) steps.push_back({CacheState::Warm, full()});
  // resident's baseline is kernel mmap warm: measured even when warm was not asked for.
  else if (resident) steps.push_back({CacheState::Warm, {Method::Mmap, kernel_other}});
  if (resident) steps.push_back({CacheState::Resident, {Method::Faultline2M}});
  if (steps.empty())
    throw std::runtime_error("nothing to measure with --cache " + o.cache + " --frames " + o.frames);

  // The write bench's ground truth: each page's bytes after the stamp.
  std::vector<uint64_t> tails;
  if (o.write) {
    const auto t0 = std::chrono::steady_clock::now();
    tails = page_tail_hashes(info.file, info.size_bytes, info.page_size);
    fmt::print(stderr, "faultline bench: page hashes of the original data taken in {:.2f} s\n",
               seconds_since(t0));
  }

  std::vector<ResultSet> sets;
  for (const auto& st : steps)
    for (auto p : patterns)
      for (auto m : st.methods) sets.push_back({m, p, st.cache, {}});
  const auto set_of = [&](Method m, Pattern p, CacheState c) -> ResultSet& {
    for (auto& s : sets)
      if (s.method == m && s.pattern == p && s.cache == c) return s;
    throw std::logic_error("no result set");
  };

  const std::size_t total = sets.size() * o.reps;
  std::size_t done = 0;
  std::optional<uint64_t> reference_sum;  // pread's page-word sum: the ground truth
  for (unsigned rep = 0; rep < o.reps; ++rep) {
    for (const auto& st : steps) {
      const CacheState c = st.cache;
      const auto& methods = st.methods;
      for (auto p : patterns) {
        // Methods alternate; each rep starts with the next one, so no method
        // always runs right after the same neighbour.
        for (std::size_t k = 0; k < methods.size(); ++k) {
          const Method m = methods[(k + rep) % methods.size()];
          throw_if_interrupted();
          // resident: the kernel cache dropped; the engine fills its frames
          // (untimed) from the device and holds the only copy.
          const CacheResult cr = c != CacheState::Warm
                                     ? drop_from_page_cache(control.get(), info.size_bytes)
                                     : warm_page_cache(control.get(), info.size_bytes);
          if (c != CacheState::Warm && cr.resident > kColdThreshold)
            fmt::print(stderr,
                       "faultline bench: warning: {:.1f}% of the file stays in the kernel page "
                       "cache after {} drop attempts\n",
                       cr.resident * 100, cr.attempts);
          Sample s;
          std::string bad;
          if (o.write) {
            WritePlan plan{info.file, info.size_bytes, info.page_size, info.pages,
                           p == Pattern::Rand ? &order : nullptr, done + 1};
            s = measure_write(m, plan, config);
            bad = verify_written(plan, tails, s);
          } else {
            ReadPlan plan{info.file, info.size_bytes, info.page_size, info.pages,
                          p == Pattern::Rand ? &order : nullptr};
            s = measure(m, plan, config, c);
          }
          s.resident_before = cr.resident;
          if (m == Method::Pread && !reference_sum) reference_sum = s.word_sum;
          ++done;
          fmt::print(stderr,
                     "[{:>3}/{}] rep {}/{} {:<8} {:<4} {:<12} {:>7.3f} GiB/s {:>8.0f} ns/page  "
                     "(kernel cache {:.1f}% resident before{}){}\n",
                     done, total, rep + 1, o.reps, to_string(c), to_string(p), to_string(m),
                     double(info.size_bytes) / double(uint64_t{1} << 30) / (s.ns * 1e-9),
                     s.ns / double(info.pages), cr.resident * 100,
                     cr.attempts > 1 ? fmt::format(", {} drop attempts", cr.attempts) : "",
                     !is_faultline(m) ? std::string()
                     : o.write
                         ? fmt::format("  missing={} minor={} wp={} dirtied={} written_back={}",
                                       s.stats.missing_faults, s.stats.minor_faults,
                                       s.stats.wp_faults, s.stats.pages_dirtied,
                                       s.stats.pages_written_back)
                         : fmt::format("  missing={} minor={} filled={}", s.stats.missing_faults,
                                       s.stats.minor_faults, s.stats.pages_filled));
          if (!bad.empty())
            fmt::print(stderr, "faultline bench: error: after {} {} {}: {} bad pages; first: {}\n",
                       to_string(m), to_string(p), to_string(c), s.bad_pages, bad);
          set_of(m, p, c).samples.push_back(s);
        }
      }
    }
  }

  return report(sets, info, o.json, o.write ? std::nullopt : reference_sum);
}

}  // namespace faultline::cli
