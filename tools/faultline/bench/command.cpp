// faultline CLI — `faultline bench` on a local file (the read bench and
// --write) or a RADOS file: which runs to make, the file, the alternating
// repetition loop, and the report. Its options are in bench/options.cpp, the
// out-of-core bench in bench/out_of_core.cpp.
#include "bench/command.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "bench/kernel_cache.hpp"
#include "bench/measure.hpp"
#include "bench/out_of_core.hpp"
#include "bench/report.hpp"
#include "bench/summary.hpp"
#include "bench/write.hpp"
#ifdef FAULTLINE_HAVE_RADOS
#include "bench/rados.hpp"
#endif
#include "common/interrupt.hpp"
#include "common/path_arg.hpp"
#include "common/scratch_file.hpp"
#include "common/size_arg.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"
#include "faultline/constants.hpp"
#include "faultline/hugepages.hpp"

namespace faultline::cli {

namespace {

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
  const std::string s = faultline::thp_setting("shmem_enabled");  // the library's reader
  return s.empty() ? "unknown" : s;
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

double gib_per_s(uint64_t bytes, double ns) {
  return double(bytes) / double(uint64_t{1} << 30) / (ns * 1e-9);
}

/// The read counters a progress line shows for a faultline method.
std::string read_counters(const Stats& s) {
  return fmt::format("  missing={} minor={} filled={}", s.missing_faults, s.minor_faults,
                     s.pages_filled);
}

// ---------------------------------------------------------------------------
// The runs: per cache state, the methods; every (cache, pattern, method)
// measured once per repetition, methods alternating.

struct Step {
  CacheState cache;
  std::vector<Method> methods;
};

std::vector<ResultSet> result_sets(const std::vector<Step>& steps,
                                   const std::vector<Pattern>& patterns) {
  std::vector<ResultSet> sets;
  for (const auto& st : steps)
    for (auto p : patterns)
      for (auto m : st.methods) sets.push_back({m, p, st.cache, {}});
  return sets;
}

ResultSet& set_of(std::vector<ResultSet>& sets, Method m, Pattern p, CacheState c) {
  for (auto& s : sets)
    if (s.method == m && s.pattern == p && s.cache == c) return s;
  throw std::logic_error("no result set");
}

/// Calls fn(rep, cache, pattern, method) for every measurement, in run order:
/// per repetition, per step, per pattern the step's methods, each rep starting
/// with the next one (so no method always runs right after the same neighbour).
template <class Fn>
void for_each_measurement(unsigned reps, const std::vector<Step>& steps,
                          const std::vector<Pattern>& patterns, Fn&& fn) {
  for (unsigned rep = 0; rep < reps; ++rep)
    for (const auto& st : steps)
      for (auto p : patterns)
        for (std::size_t k = 0; k < st.methods.size(); ++k)
          fn(rep, st.cache, p, st.methods[(k + rep) % st.methods.size()]);
}

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

/// 2 MiB huge pages a File of `bytes` needs.
uint64_t huge_pages_for(uint64_t bytes) { return (bytes + kHugePageSize - 1) / kHugePageSize; }

#ifdef FAULTLINE_HAVE_RADOS
// ---------------------------------------------------------------------------
// `bench --file rados://...`: faultline mapping vs direct RadosBackend reads.

/// The RADOS file's size and layout into `info`, said on stderr.
void describe_rados_file(const BenchOptions& o, RunInfo& info) {
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
}

/// faultline (4 KiB frames), faultline-2M when asked for and a pool of 2 MiB
/// pages is there, and the baseline rados-read.
std::vector<Method> rados_methods(const BenchOptions& o, const RunInfo& info) {
  std::vector<Method> methods;
  if (o.frames != "2M") methods.push_back(Method::Faultline);
  if (o.frames != "4K") {
    const uint64_t need = huge_pages_for(info.size_bytes);
    if (hugepages_free() >= static_cast<int64_t>(need))
      methods.push_back(Method::Faultline2M);
    else
      fmt::print(stderr, "faultline bench: no faultline-2M rows: {} free 2 MiB huge pages needed "
                         "(reserve with `scripts/setup.sh --hugepages {}`)\n", need, need);
  }
  methods.push_back(Method::RadosRead);
  return methods;
}

int run_rados_bench(const BenchOptions& o, RunInfo info) {
  if (o.cache != BenchOptions{}.cache)
    fmt::print(stderr, "faultline bench: note: --cache does not apply to a RADOS file (no kernel "
                       "page cache involved); ignored\n");
  describe_rados_file(o, info);
  const std::vector<uint32_t> order = random_order(info.pages);
  const auto patterns = selection(o.pattern, Pattern::Seq, Pattern::Rand);
  const std::vector<Step> steps{{CacheState::NotApplicable, rados_methods(o, info)}};
  std::vector<ResultSet> sets = result_sets(steps, patterns);
  const std::size_t total = sets.size() * o.reps;
  std::size_t done = 0;
  std::optional<uint64_t> reference_sum;
  for_each_measurement(o.reps, steps, patterns, [&](unsigned rep, CacheState c, Pattern p, Method m) {
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
               gib_per_s(info.size_bytes, s.ns), s.ns / double(info.pages), s.rados_objects_read,
               s.rados_max_in_flight, m != Method::RadosRead ? read_counters(s.stats) : "");
    set_of(sets, m, p, c).samples.push_back(s);
  });
  return report(sets, info, o.json, reference_sum);
}
#endif

// ---------------------------------------------------------------------------
// The read and write benches on a local file.

/// --threads without --out-of-core: one fault-thread count (default: EngineConfig's).
unsigned fault_threads_arg(const BenchOptions& o) {
  if (o.threads_arg.empty()) return o.threads;
  unsigned long v = 0;
  try {
    v = std::stoul(o.threads_arg);
  } catch (const std::exception&) {
  }
  if (o.threads_arg.find(',') != std::string::npos || v < 1 || v > 256)
    throw std::runtime_error("--threads " + o.threads_arg +
                             ": one fault-thread count in 1..256 (a list only with --out-of-core)");
  return static_cast<unsigned>(v);
}

RunInfo run_info(const BenchOptions& o) {
  EngineConfig config;
  config.fault_around_pages = o.fault_around;
  config.readahead_max_pages = o.readahead_max;
  config.readahead_windows = o.readahead_windows;
  config.write_around_max_pages = o.write_around_max;
  config.fault_threads = fault_threads_arg(o);
  config.log = log_once;
  RunInfo info;
  info.page_size = kBasePageSize;
  info.reps = o.reps;
  info.config = config;
  info.thp_shmem = read_thp_shmem();
  return info;
}

/// The file a bench touches: the user's, or one made here and removed by
/// ScratchFile's destructor on every way out of run_bench; `control` sets its
/// kernel cache state.
struct BenchFile {
  std::optional<ScratchFile> scratch;
  UniqueFd control;
};

void open_user_file(const BenchOptions& o, RunInfo& info, BenchFile& f) {
  f.control = open_regular_file(o.file, O_RDONLY);  // no FIFO, device or /proc file
  struct stat st {};
  if (::fstat(f.control.get(), &st) != 0) throw_errno("stat '" + o.file + "'");
  if (st.st_size == 0) throw std::runtime_error("'" + o.file + "' is empty: nothing to read");
  info.file = o.file;
  info.size_bytes = static_cast<uint64_t>(st.st_size);
  info.fs_type = fs_type_name(o.file);
  if (on_memory_fs(o.file))
    fmt::print(stderr,
               "faultline bench: warning: '{}' is on {}: kernel cache 'cold' cannot be set "
               "there; compare with care\n",
               o.file, info.fs_type);
}

void make_scratch_file(const BenchOptions& o, RunInfo& info, BenchFile& f) {
  info.size_bytes = *parse_size(o.size);
  if (o.write && info.size_bytes % info.page_size != 0)
    throw std::runtime_error(fmt::format("--write: the size must be a multiple of {} (one store "
                                         "per whole page), not {}",
                                         format_size(info.page_size), info.size_bytes));
  f.scratch.emplace(kScratchParent, info.size_bytes);
  info.file = f.scratch->path();
  info.scratch = true;
  info.fs_type = fs_type_name(info.file);
  const double secs = fill_with_random_data(*f.scratch, info.size_bytes, kDataSeed,
                                            [] { throw_if_interrupted(); });
  fmt::print(stderr, "faultline bench: written and synced in {:.2f} s\n", secs);
  f.control.reset(::open(info.file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f.control) throw_errno("open '" + info.file + "'");
}

void open_bench_file(const BenchOptions& o, RunInfo& info, BenchFile& f) {
  if (o.file.empty()) make_scratch_file(o, info, f);
  else open_user_file(o, info, f);
  info.pages = (info.size_bytes + info.page_size - 1) / info.page_size;
  if (info.pages > UINT32_MAX)
    throw std::runtime_error(fmt::format("{} is too large for the bench ({} pages; at most {})",
                                         format_size(info.size_bytes), info.pages, UINT32_MAX));
}

/// What --cache and --frames ask for, after the huge page pool's answer.
struct Wanted {
  bool cold, warm, resident, k4, k2m;
  bool write, umap;
};

/// vm.nr_hugepages as text ("?" when unreadable).
std::string nr_hugepages_text() {
  const HugePagePool pool = hugepage_pool();
  return pool.readable ? fmt::format("{}", pool.nr) : std::string("?");
}

/// Whether the pool can give the 2 MiB frames of the whole file; if not, why
/// (into info.frames2m_skipped, and on stderr).
bool pool_holds_file(RunInfo& info) {
  const uint64_t need = huge_pages_for(info.size_bytes);
  const int64_t free = hugepages_free();
  if (free >= static_cast<int64_t>(need)) return true;
  info.frames2m_skipped = fmt::format(
      "{} of 2 MiB frames need {} free 2 MiB huge pages, the pool can give {} (free - reserved "
      "+ vm.nr_overcommit_hugepages headroom; vm.nr_hugepages = {}): as root, "
      "scripts/demo.sh raises vm.nr_overcommit_hugepages (pages allocated on demand), or "
      "reserve a pool with `scripts/setup.sh --hugepages {}`",
      format_size(info.size_bytes), need, free < 0 ? std::string("none") : fmt::format("{}", free),
      nr_hugepages_text(), need);
  fmt::print(stderr, "faultline bench: skipping the faultline-2M rows: {}\n", info.frames2m_skipped);
  return false;
}

Wanted wanted_runs(const BenchOptions& o, RunInfo& info) {
  const bool all = o.cache == "all";
  Wanted w{};
  w.write = o.write;
  w.umap = o.umap_api;
  w.cold = all || o.cache == "both" || o.cache == "cold";
  w.warm = all || o.cache == "both" || o.cache == "warm";
  w.resident = !o.write && (all || o.cache == "resident");
  if (o.write && o.umap_api)
    throw std::runtime_error("--umap-api applies to the read bench only (not --write)");
  if (o.write && o.cache == "resident")
    throw std::runtime_error("--cache resident applies to the read bench only (not --write)");
  w.k4 = o.frames != "2M";
  w.k2m = o.frames != "4K" && pool_holds_file(info);
  if (w.resident && !w.k2m) {
    if (o.cache == "resident" || o.frames == "2M" || !info.frames2m_skipped.empty())
      fmt::print(stderr, "faultline bench: note: no 'resident' rows: they measure 2 MiB frames "
                         "(faultline-2M){}\n",
                 info.frames2m_skipped.empty() ? " and --frames 4K was asked for"
                                               : ", which were skipped");
    w.resident = false;
  }
  return w;
}

/// The methods of a cold or warm step, in run order, each with when it runs.
struct MethodSpec {
  Method method;
  bool (*runs)(const Wanted&);
};
constexpr MethodSpec kMethods[] = {
    {Method::Faultline, [](const Wanted& w) { return w.k4; }},
    {Method::FaultlineAsync, [](const Wanted& w) { return w.k4 && w.write; }},
    {Method::Faultline2M, [](const Wanted& w) { return w.k2m; }},
    {Method::Faultline2MAsync, [](const Wanted& w) { return w.k2m && w.write; }},
    {Method::UmapApi, [](const Wanted& w) { return w.umap && !w.write; }},
    {Method::Mmap, [](const Wanted&) { return true; }},
    {Method::Pread, [](const Wanted& w) { return !w.write; }},
    {Method::Pwrite, [](const Wanted& w) { return w.write; }},
};

std::vector<Method> step_methods(const Wanted& w) {
  std::vector<Method> ms;
  for (const MethodSpec& spec : kMethods)
    if (spec.runs(w)) ms.push_back(spec.method);
  return ms;
}

/// The device's own limit beside the cold rows (read bench, local files whose
/// filesystem takes O_DIRECT).
bool device_rows_possible(const std::string& file) {
  UniqueFd direct(::open(file.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (direct) return true;
  fmt::print(stderr, "faultline bench: no device rows: O_DIRECT open of '{}' failed: {}\n", file,
             std::strerror(errno));
  return false;
}

std::vector<Step> plan_steps(const BenchOptions& o, const RunInfo& info, const Wanted& w) {
  std::vector<Step> steps;
  if (w.cold) {
    steps.push_back({CacheState::Cold, step_methods(w)});
    if (!w.write && device_rows_possible(info.file)) steps.back().methods.push_back(Method::Device);
  }
  const Method kernel_other = w.write ? Method::Pwrite : Method::Pread;
  if (w.warm) steps.push_back({CacheState::Warm, step_methods(w)});
  // resident's baseline is kernel mmap warm: measured even when warm was not asked for.
  else if (w.resident) steps.push_back({CacheState::Warm, {Method::Mmap, kernel_other}});
  if (w.resident) steps.push_back({CacheState::Resident, {Method::Faultline2M}});
  if (steps.empty())
    throw std::runtime_error("nothing to measure with --cache " + o.cache + " --frames " + o.frames);
  return steps;
}

/// The kernel cache state before a measurement: warm (read once), else
/// dropped (cold; resident: the engine then fills its frames, untimed, from
/// the device and holds the only copy).
CacheResult set_cache_state(int fd, uint64_t size, CacheState c) {
  if (c == CacheState::Warm) return warm_page_cache(fd, size);
  const CacheResult cr = drop_from_page_cache(fd, size);
  if (cr.resident > kColdThreshold)
    fmt::print(stderr,
               "faultline bench: warning: {:.1f}% of the file stays in the kernel page "
               "cache after {} drop attempts\n",
               cr.resident * 100, cr.attempts);
  return cr;
}

/// What one local measurement needs besides its method, pattern and cache.
struct LocalBench {
  const BenchOptions& o;
  const RunInfo& info;
  std::vector<uint32_t> order;  ///< the random pattern's page order
  std::vector<uint64_t> tails;  ///< write bench: each page's bytes after the stamp
};

/// One measurement; a write one is read back and checked (`bad`: the first
/// bad page, empty when all are right).
Sample measure_local(const LocalBench& b, Method m, Pattern p, CacheState c, std::size_t generation,
                     std::string& bad) {
  const RunInfo& info = b.info;
  const auto* order = p == Pattern::Rand ? &b.order : nullptr;
  if (!b.o.write)
    return measure(m, ReadPlan{info.file, info.size_bytes, info.page_size, info.pages, order},
                   info.config, c);
  WritePlan plan{info.file, info.size_bytes, info.page_size, info.pages, order, generation};
  Sample s = measure_write(m, plan, info.config);
  bad = verify_written(plan, b.tails, s);
  return s;
}

std::string local_counters(const Sample& s, Method m, bool write) {
  if (!is_faultline(m)) return {};
  if (!write) return read_counters(s.stats);
  return fmt::format("  missing={} minor={} wp={} dirtied={} written_back={}",
                     s.stats.missing_faults, s.stats.minor_faults, s.stats.wp_faults,
                     s.stats.pages_dirtied, s.stats.pages_written_back);
}

std::vector<uint64_t> write_bench_tails(const RunInfo& info) {
  const auto t0 = std::chrono::steady_clock::now();
  auto tails = page_tail_hashes(info.file, info.size_bytes, info.page_size);
  fmt::print(stderr, "faultline bench: page hashes of the original data taken in {:.2f} s\n",
             seconds_since(t0));
  return tails;
}

int run_local_bench(const BenchOptions& o, RunInfo info) {
  info.write = o.write;
  if (o.write && !o.file.empty())
    throw std::runtime_error("--write stores to the file: it runs on a scratch file only (no --file)");
  BenchFile file;
  open_bench_file(o, info, file);
  LocalBench bench{o, info, random_order(info.pages), {}};
  const auto patterns = selection(o.pattern, Pattern::Seq, Pattern::Rand);
  const std::vector<Step> steps = plan_steps(o, info, wanted_runs(o, info));
  if (o.write) bench.tails = write_bench_tails(info);

  std::vector<ResultSet> sets = result_sets(steps, patterns);
  const std::size_t total = sets.size() * o.reps;
  std::size_t done = 0;
  std::optional<uint64_t> reference_sum;  // pread's page-word sum: the ground truth
  for_each_measurement(o.reps, steps, patterns, [&](unsigned rep, CacheState c, Pattern p, Method m) {
    throw_if_interrupted();
    const CacheResult cr = set_cache_state(file.control.get(), info.size_bytes, c);
    std::string bad;
    Sample s = measure_local(bench, m, p, c, done + 1, bad);
    s.resident_before = cr.resident;
    if (m == Method::Pread && !reference_sum) reference_sum = s.word_sum;
    ++done;
    fmt::print(stderr,
               "[{:>3}/{}] rep {}/{} {:<8} {:<4} {:<12} {:>7.3f} GiB/s {:>8.0f} ns/page  "
               "(kernel cache {:.1f}% resident before{}){}\n",
               done, total, rep + 1, o.reps, to_string(c), to_string(p), to_string(m),
               gib_per_s(info.size_bytes, s.ns), s.ns / double(info.pages), cr.resident * 100,
               cr.attempts > 1 ? fmt::format(", {} drop attempts", cr.attempts) : "",
               local_counters(s, m, o.write));
    if (!bad.empty())
      fmt::print(stderr, "faultline bench: error: after {} {} {}: {} bad pages; first: {}\n",
                 to_string(m), to_string(p), to_string(c), s.bad_pages, bad);
    set_of(sets, m, p, c).samples.push_back(s);
  });
  return report(sets, info, o.json, o.write ? std::nullopt : reference_sum);
}

}  // namespace

int run_bench(const BenchOptions& o) {
  if (o.out_of_core) return run_ooc_bench(o);
  RunInfo info = run_info(o);  // checks --threads
  InterruptGuard interrupts;
  if (looks_like_rados_uri(o.file)) {
#ifdef FAULTLINE_HAVE_RADOS
    return run_rados_bench(o, info);
#else
    throw std::runtime_error("this faultline was built without librados: RADOS URIs unsupported");
#endif
  }
  return run_local_bench(o, info);
}

}  // namespace faultline::cli
