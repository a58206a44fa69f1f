#include "bench/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "bench/kernel_cache.hpp"
#include "bench/table.hpp"
#include "common/size_arg.hpp"

namespace faultline::cli {

namespace {

constexpr double kGiB = double(uint64_t{1} << 30);

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// Write faults: write-protect faults plus the missing/minor faults raised by
/// stores (the write bench only stores, so every fault it raises is one).
uint64_t write_faults(const Stats& s) { return s.wp_faults + s.missing_faults + s.minor_faults; }
/// 4 KiB blocks written back beyond the blocks stored to (pages_stored: one
/// store each, in the bench's 4 KiB pages): speculative dirtying, rewrites,
/// and with 2 MiB frames the untouched rest of each frame written back.
uint64_t needless_writebacks(const Stats& s, uint64_t pages_stored, std::size_t page_size) {
  const uint64_t blocks = page_size ? s.bytes_written / page_size : s.pages_written_back;
  return blocks > pages_stored ? blocks - pages_stored : 0;
}
/// Write amplification: bytes written to the backend over bytes stored to
/// (whole 4 KiB blocks: the bench stores 8 bytes into each).
double write_amplification(const Stats& s, uint64_t pages_stored, std::size_t page_size) {
  return pages_stored ? static_cast<double>(s.bytes_written) /
                            static_cast<double>(pages_stored * page_size)
                      : 0;
}

std::string ratio_key(const RunInfo& info) {
  return info.baseline == Method::Mmap ? "ratio_to_mmap"
                                       : fmt::format("ratio_to_{}", to_string(info.baseline));
}

std::size_t loads_per_huge_frame(const RunInfo& info) {
  return info.page_size ? (std::size_t{1} << 21) / info.page_size : 0;
}

/// One repetition set reduced to a row: the median time, the counters of the
/// rep whose time is the (lower) median, the data check over every rep.
Row summarize_set(const ResultSet& set, const RunInfo& info, std::optional<uint64_t> reference_sum) {
  Row r;
  r.method = set.method;
  r.pattern = set.pattern;
  r.cache = set.cache;
  r.reps = static_cast<unsigned>(set.samples.size());
  std::vector<double> ns;
  for (const auto& s : set.samples) {
    ns.push_back(s.ns);
    r.resident_before_max = std::max(r.resident_before_max, s.resident_before);
    if (info.write) {
      if (!s.data_ok) r.data_ok = false;
      r.bad_pages += s.bad_pages;
      r.pages_stored = s.pages_stored;
    } else if (reference_sum && s.word_sum != *reference_sum) {
      r.data_ok = false;
    }
  }
  r.median_ns = median(ns);
  r.ns_per_page = r.median_ns / static_cast<double>(info.pages);
  r.gib_per_s = static_cast<double>(info.size_bytes) / kGiB / (r.median_ns * 1e-9);
  std::vector<std::size_t> idx(set.samples.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(),
            [&](std::size_t a, std::size_t b) { return set.samples[a].ns < set.samples[b].ns; });
  const Sample& med = set.samples[idx[(idx.size() - 1) / 2]];
  r.store_ns = med.store_ns;
  r.msync_ns = med.msync_ns;
  r.fsync_ns = med.fsync_ns;
  if (is_faultline(set.method)) {
    r.stats = med.stats;
    r.frame_size = med.frame_size;
  }
  if (med.have_memory) {
    r.have_memory = true;
    r.mem_frames_bytes = med.mem_frames_bytes;
    r.mem_kernel_cache_bytes = med.mem_kernel_cache_bytes;
    r.hugepages_used = med.hugepages_used;
  }
  if (med.have_rados) {
    r.have_rados = true;
    r.rados_objects_read = med.rados_objects_read;
    r.rados_max_in_flight = med.rados_max_in_flight;
  }
  return r;
}

/// Each row's throughput over the baseline's (same pattern and cache; resident
/// rows, frames the engine already holds, against kernel mmap warm, pages the
/// kernel already holds) and, cold, over the device's own limit (O_DIRECT).
void set_ratios(std::vector<Row>& rows, const RunInfo& info) {
  for (auto& r : rows) {
    const CacheState bc = r.cache == CacheState::Resident ? CacheState::Warm : r.cache;
    for (const auto& m : rows)
      if (m.method == info.baseline && m.pattern == r.pattern && m.cache == bc)
        r.ratio_to_mmap = r.gib_per_s / m.gib_per_s;
    if (r.cache == CacheState::Cold && r.method != Method::Device)
      for (const auto& m : rows)
        if (m.method == Method::Device && m.pattern == r.pattern && m.cache == r.cache)
          r.ratio_to_device = r.gib_per_s / m.gib_per_s;
  }
}

// ---------------------------------------------------------------------------
// The human table: a header stating the run, a legend, then one line per row
// whose columns are described by the tables below.

using Col = Column<Row, RunInfo>;

std::string num(uint64_t v) { return fmt::format("{}", v); }
/// A faultline counter, "-" for rows without counters.
template <class F>
std::string stat_cell(const Row& r, F f) {
  return r.stats ? f(*r.stats) : std::string("-");
}

std::string method_cell(const Row& r, const RunInfo&) { return to_string(r.method); }
std::string pattern_cell(const Row& r, const RunInfo&) { return to_string(r.pattern); }
std::string cache_cell(const Row& r, const RunInfo&) { return to_string(r.cache); }
std::string kcache_cell(const Row& r, const RunInfo& info) {
  return info.rados ? std::string("n/a") : fixed(r.resident_before_max * 100, 1) + "%";
}
std::string gib_cell(const Row& r, const RunInfo&) { return fixed(r.gib_per_s, 3); }
std::string ns_cell(const Row& r, const RunInfo&) { return fixed(r.ns_per_page, 0); }
std::string ratio_cell(const Row& r, const RunInfo&) { return fixed(r.ratio_to_mmap, 2); }

/// The write bench's columns.
constexpr Col kWriteColumns[] = {
    {"method", -18, method_cell},
    {"pattern", -7, pattern_cell},
    {"cache", -5, cache_cell},
    {"kcache", 7, kcache_cell},
    {"GiB/s", 8, gib_cell},
    {"ns/page", 9, ns_cell},
    {nullptr, 13, ratio_cell},
    {"wfaults", 9,
     [](const Row& r, const RunInfo&) { return stat_cell(r, [](const Stats& s) { return num(write_faults(s)); }); }},
    {"wp", 9,
     [](const Row& r, const RunInfo&) { return stat_cell(r, [](const Stats& s) { return num(s.wp_faults); }); }},
    {"dirtied", 9,
     [](const Row& r, const RunInfo&) { return stat_cell(r, [](const Stats& s) { return num(s.pages_dirtied); }); }},
    {"wback", 9,
     [](const Row& r, const RunInfo&) {
       return stat_cell(r, [](const Stats& s) { return num(s.pages_written_back); });
     }},
    {"needless", 9,
     [](const Row& r, const RunInfo& info) {
       return stat_cell(r, [&](const Stats& s) {
         return num(needless_writebacks(s, r.pages_stored, info.page_size));
       });
     }},
    {"wamp", 5,
     [](const Row& r, const RunInfo& info) {
       return stat_cell(r, [&](const Stats& s) {
         return fixed(write_amplification(s, r.pages_stored, info.page_size), 2);
       });
     }},
    {"store/msync/fsync", 17,
     [](const Row& r, const RunInfo&) {
       return fmt::format("{:.0f}/{:.0f}/{:.0f}", r.store_ns / 1e6, r.msync_ns / 1e6, r.fsync_ns / 1e6);
     }},
};

/// The read bench's columns (every row).
constexpr Col kReadColumns[] = {
    {"method", -12, method_cell},
    {"pattern", -7, pattern_cell},
    {"cache", -8, cache_cell},
    {"kcache", 7, kcache_cell},
    {"GiB/s", 8, gib_cell},
    {"ns/page", 9, ns_cell},
    {nullptr, 13, ratio_cell},
    {"missing_faults", 14,
     [](const Row& r, const RunInfo&) { return stat_cell(r, [](const Stats& s) { return num(s.missing_faults); }); }},
    {"minor_faults", 12,
     [](const Row& r, const RunInfo&) { return stat_cell(r, [](const Stats& s) { return num(s.minor_faults); }); }},
    {"pages_filled", 12,
     [](const Row& r, const RunInfo&) { return stat_cell(r, [](const Stats& s) { return num(s.pages_filled); }); }},
};

/// RADOS files: the object reads of the median rep.
constexpr Col kRadosColumns[] = {
    {"objs", 8, [](const Row& r, const RunInfo&) { return num(r.rados_objects_read); }},
    {"inflight", 8, [](const Row& r, const RunInfo&) { return num(r.rados_max_in_flight); }},
};

/// Local files: the memory held right after the timed region.
constexpr double kMiB = double(uint64_t{1} << 20);
constexpr Col kMemoryColumns[] = {
    {"mem_MiB", 9,
     [](const Row& r, const RunInfo&) {
       return fixed(double(r.mem_frames_bytes + r.mem_kernel_cache_bytes) / kMiB, 0);
     }},
    {"kcache_MiB", 10,
     [](const Row& r, const RunInfo&) { return fixed(double(r.mem_kernel_cache_bytes) / kMiB, 0); }},
    {"huge", 5,
     [](const Row& r, const RunInfo&) {
       return r.hugepages_used >= 0 ? fmt::format("{}", r.hugepages_used) : std::string("-");
     }},
};

void print_run_header(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  fmt::print(out, "faultline bench{}: {} ({} bytes), {} pages of {}, file {} ({}{}), {} rep{} per "
                  "measurement, medians\n",
             info.write ? " --write" : "", format_size(info.size_bytes), info.size_bytes,
             info.pages, format_size(info.page_size), info.file, info.fs_type,
             info.scratch ? ", made for this run and removed" : "", info.reps,
             info.reps == 1 ? "" : "s");
  fmt::print(out, "engine config: fault_around_pages={} readahead_max_pages={} "
                  "write_around_max_pages={} fault_threads={} (frames {}, shmem THP '{}'); a fresh Engine+File per faultline measurement\n",
             info.config.fault_around_pages, info.config.readahead_max_pages,
             info.config.write_around_max_pages, info.config.fault_threads,
             std::any_of(rows.begin(), rows.end(),
                         [](const Row& r) { return r.method == Method::Faultline2M; })
                 ? fmt::format("{}; faultline-2M: 2 MiB, the same windows in bytes",
                               format_size(info.page_size))
                 : format_size(info.page_size),
             info.thp_shmem);
}

void print_rados_legend(std::FILE* out, const RunInfo& info) {
  fmt::print(out, "RADOS: {}; object size {}, backend reads split into {} pieces, at most {} "
                  "object ops in flight per Backend::read call; readahead window up to {} pages "
                  "({})\n",
             info.rados_identity, format_size(info.rados_object_size),
             format_size(info.rados_read_split), info.rados_max_in_flight,
             info.config.readahead_max_pages,
             format_size(info.config.readahead_max_pages * info.page_size));
  fmt::print(out, "kernel mmap and pread rows do not apply (a RADOS object is no local file: "
                  "there is nothing for the kernel to map or read); the baseline is rados-read, "
                  "direct RadosBackend::read calls: sequential {} per call, random one {} call "
                  "per page. kernel page cache not involved (cache n/a; the OSD's memstore "
                  "holds the objects in RAM)\n",
             "4 MiB", format_size(info.page_size));
  fmt::print(out, "timed: map + first touch of every page (one load per page); "
                  "ratio_to_rados-read = this throughput / rados-read's; objs = object read ops, "
                  "inflight = most AIO ops outstanding at once (median rep)\n\n");
}

void print_write_legend(std::FILE* out, const RunInfo& info) {
  fmt::print(out,
             "timed: first touch of every page with one 8-byte store (a stamp) per page, made "
             "durable, each method ending with one fsync(2) of the file: faultline = map "
             "(shared, read-write; page_mkwrite mode) + stores + Mapping::msync(MS_SYNC) + "
             "File::fsync (the file backend's sync is fsync(2)); mmap = mmap + stores + "
             "msync(MS_SYNC) + fsync; pwrite = one 8-byte pwrite per page (the same store; "
             "the kernel reads the page first, as the stores do) + fsync. faultline-async = "
             "as faultline with DirtyTracking::Async (WP_ASYNC + PAGEMAP_SCAN: no "
             "write-protect faults, written pages found by scan at msync)\n");
  fmt::print(out,
             "after each method the file is read back with pread: every page must hold that "
             "measurement's stamp and its other {} bytes unchanged. wfaults = wp_faults + "
             "missing_faults + minor_faults (every fault is raised by a store); wp = "
             "wp_faults; dirtied = pages_dirtied; wback = pages_written_back (in the File's pages: 2 MiB for faultline-2M); needless = "
             "4 KiB blocks written back beyond those stored to (clamped at 0); wamp = bytes "
             "written back / bytes of the 4 KiB blocks stored to (write amplification; "
             "faultline-2M = 2 MiB frames, page_mkwrite mode, whole frames written back; faultline-2M-async = "
             "the same with DirtyTracking::Async); store/msync/fsync = milliseconds of the "
             "median rep spent storing (faults, fills, write notification), in msync (write-back "
             "to the file) and in fsync (the file to disk); kcache = file fraction in the kernel "
             "page cache before the timed region (worst rep)\n\n",
             info.page_size - 8);
}

void print_read_legend(std::FILE* out, const RunInfo& info) {
  fmt::print(out, "timed: map + first touch of every page (one load per page; pread: one "
                  "{} pread per page); kcache = file fraction in the kernel page cache "
                  "before the timed region (worst rep)\n",
             format_size(info.page_size));
  fmt::print(out, "faultline-2M = a faultline File with 2 MiB frames (FrameSize::k2M, hugetlb "
                  "pool; {} loads per frame); cache resident = the engine already holds every "
                  "frame (a first Mapping touched every page, untimed, and was unmapped; timed: "
                  "a second Mapping of the same File), compared with kernel mmap warm; "
                  "mem_MiB = memory held right after the timed region: frames (faultline: "
                  "pages filled x frame size) + kcache_MiB (the file's bytes in the kernel "
                  "page cache, mincore); huge = 2 MiB pages taken from the pool\n\n",
             loads_per_huge_frame(info));
}

void print_legend(std::FILE* out, const RunInfo& info) {
  if (info.rados) return print_rados_legend(out, info);
  fmt::print(out, "kernel cache, set before each method: cold = fsync + POSIX_FADV_DONTNEED, "
                  "verified with mincore; warm = dropped as cold, then read once with read(2) "
                  "({} buffer)\n",
             format_size(kWarmReadBytes));
  if (info.write) print_write_legend(out, info);
  else print_read_legend(out, info);
}

bool all_data_ok(const std::vector<Row>& rows) {
  return std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.data_ok; });
}

void print_write_rows(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  const std::string rk = ratio_key(info);
  fmt::print(out, "{}\n", column_titles(kWriteColumns, rk));
  for (const auto& r : rows)
    fmt::print(out, "{}{}\n", column_cells(kWriteColumns, r, info, rk),
               r.data_ok ? "" : fmt::format("  DATA MISMATCH ({} bad pages)", r.bad_pages));
  fmt::print(out, "\ndata check: {}\n",
             all_data_ok(rows)
                 ? "after every method every page held its stamp and was otherwise unchanged"
                 : "MISMATCH: some method left wrong data in the file (see rows above)");
}

void print_read_rows(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  const std::string rk = ratio_key(info);
  fmt::print(out, "{}{}{}\n", column_titles(kReadColumns, rk),
             info.rados ? column_titles(kRadosColumns, {}, true) : "",
             info.rados ? "" : column_titles(kMemoryColumns, {}, true));
  for (const auto& r : rows)
    fmt::print(out, "{}{}{}{}\n", column_cells(kReadColumns, r, info, rk),
               r.have_rados ? column_cells(kRadosColumns, r, info, {}, true) : "",
               r.have_memory ? column_cells(kMemoryColumns, r, info, {}, true) : "",
               r.data_ok ? "" : "  DATA MISMATCH");
}

/// Where faultline's time went: the fill and CONTINUE cost per page.
void print_fault_path_cost(std::FILE* out, const std::vector<Row>& rows) {
  std::string cost;
  for (const auto& r : rows)
    if (r.stats && r.stats->pages_filled && r.stats->pages_installed && r.frame_size)
      cost += fmt::format("\n  {} {} {}: fill {:.1f} us + CONTINUE {:.1f} us per {} page = "
                          "{:.0f}% of the timed region",
                          to_string(r.method), to_string(r.pattern), to_string(r.cache),
                          double(r.stats->fill_ns) / 1e3 / double(r.stats->pages_filled),
                          double(r.stats->install_ns) / 1e3 / double(r.stats->pages_installed),
                          format_size(r.frame_size),
                          100.0 * double(r.stats->fill_ns + r.stats->install_ns) / r.median_ns);
  if (!cost.empty())
    fmt::print(out, "\nwhere faultline's time went (fault path; the rest: fault round trips, "
                    "waiting, first touch of the mapped pages):{}\n",
               cost);
}

void print_device_ratios(std::FILE* out, const std::vector<Row>& rows) {
  std::string dev;
  for (const auto& r : rows)
    if (r.ratio_to_device > 0)
      dev += fmt::format("{}{} {} {:.2f}", dev.empty() ? "" : ", ", to_string(r.method),
                         to_string(r.pattern), r.ratio_to_device);
  if (!dev.empty())
    fmt::print(out, "\nratio to the device (cold; device = O_DIRECT, {} reads of {} in flight, "
                    "no page cache): {}\n",
               kDeviceInFlight, format_size(kDeviceReadBytes), dev);
}

void print_read_footer(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  if (!info.frames2m_skipped.empty())
    fmt::print(out, "\nfaultline-2M rows skipped: {}\n", info.frames2m_skipped);
  print_fault_path_cost(out, rows);
  print_device_ratios(out, rows);
  const char* ref = info.rados ? "rados-read" : "pread";
  fmt::print(out, "\ndata check: {}\n",
             all_data_ok(rows) ? fmt::format("every method read the same page words as {}", ref)
                               : fmt::format("MISMATCH: some method read different data than {} "
                                             "(see rows above)",
                                             ref));
}

// ---------------------------------------------------------------------------
// JSON lines: one object per row, the groups of keys a row has.

std::string json_common(const Row& r, const RunInfo& info) {
  return fmt::format(
      "{{\"op\":\"{}\",\"method\":\"{}\",\"pattern\":\"{}\",\"cache\":\"{}\",\"gib_per_s\":{:.6g},"
      "\"ns_per_page\":{:.6g},\"{}\":{:.6g},\"ratio_baseline\":\"{}\",\"reps\":{},"
      "\"size_bytes\":{},\"pages\":{},\"page_size\":{},\"kernel_resident_before\":{:.6g},"
      "\"data_ok\":{},\"fault_around_pages\":{},\"readahead_max_pages\":{},\"fault_threads\":{},"
      "\"write_around_max_pages\":{}",
      info.write ? "write" : "read", to_string(r.method), to_string(r.pattern),
      to_string(r.cache), r.gib_per_s, r.ns_per_page, ratio_key(info), r.ratio_to_mmap,
      to_string(info.baseline), r.reps, info.size_bytes, info.pages, info.page_size,
      r.resident_before_max, r.data_ok ? "true" : "false", info.config.fault_around_pages,
      info.config.readahead_max_pages, info.config.fault_threads,
      info.config.write_around_max_pages);
}

std::string json_write(const Row& r) {
  return fmt::format(",\"pages_stored\":{},\"bad_pages\":{},\"sync\":\"fsync\","
                     "\"store_ms\":{:.3f},\"msync_ms\":{:.3f},\"fsync_ms\":{:.3f}",
                     r.pages_stored, r.bad_pages, r.store_ns / 1e6, r.msync_ns / 1e6,
                     r.fsync_ns / 1e6);
}

std::string json_stats(const Row& r, const RunInfo& info) {
  const Stats& s = *r.stats;
  std::string line = fmt::format(
      ",\"missing_faults\":{},\"minor_faults\":{},\"pages_filled\":{},\"pages_installed\":{},"
      "\"pages_fault_around\":{},\"bytes_read\":{},\"read_errors\":{},\"sigbus_sent\":{},"
      "\"fill_ns\":{},\"install_ns\":{},\"stores_throttled\":{}",
      s.missing_faults, s.minor_faults, s.pages_filled, s.pages_installed, s.pages_fault_around,
      s.bytes_read, s.read_errors, s.sigbus_sent, s.fill_ns, s.install_ns, s.stores_throttled);
  if (info.write)
    line += fmt::format(
        ",\"write_faults\":{},\"wp_faults\":{},\"pages_dirtied\":{},\"pages_written_back\":{},"
        "\"needless_writebacks\":{},\"write_amplification\":{:.4f},\"bytes_written\":{},"
        "\"write_errors\":{},\"mkwrite_errors\":{}",
        write_faults(s), s.wp_faults, s.pages_dirtied, s.pages_written_back,
        needless_writebacks(s, r.pages_stored, info.page_size),
        write_amplification(s, r.pages_stored, info.page_size), s.bytes_written, s.write_errors,
        s.mkwrite_errors);
  return line;
}

std::string json_memory(const Row& r) {
  std::string line =
      fmt::format(",\"mem_bytes\":{},\"mem_frames_bytes\":{},\"mem_kernel_cache_bytes\":{}",
                  r.mem_frames_bytes + r.mem_kernel_cache_bytes, r.mem_frames_bytes,
                  r.mem_kernel_cache_bytes);
  if (r.hugepages_used >= 0) line += fmt::format(",\"hugepages_used\":{}", r.hugepages_used);
  return line;
}

std::string json_rados(const Row& r, const RunInfo& info) {
  return fmt::format(",\"rados_objects_read\":{},\"rados_max_in_flight\":{},"
                     "\"rados_object_size\":{},\"rados_in_flight_limit\":{}",
                     r.rados_objects_read, r.rados_max_in_flight, info.rados_object_size,
                     info.rados_max_in_flight);
}

}  // namespace

std::vector<Row> summarize(const std::vector<ResultSet>& sets, const RunInfo& info,
                           std::optional<uint64_t> reference_sum) {
  std::vector<Row> rows;
  for (const auto& set : sets)
    if (!set.samples.empty()) rows.push_back(summarize_set(set, info, reference_sum));
  set_ratios(rows, info);
  return rows;
}

void print_table(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  print_run_header(out, rows, info);
  print_legend(out, info);
  if (info.write) return print_write_rows(out, rows, info);
  print_read_rows(out, rows, info);
  print_read_footer(out, rows, info);
}

void print_json_lines(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  for (const auto& r : rows) {
    std::string line = json_common(r, info);
    if (r.ratio_to_device > 0) line += fmt::format(",\"ratio_to_device\":{:.6g}", r.ratio_to_device);
    if (info.write) line += json_write(r);
    if (r.stats) line += json_stats(r, info);
    if (r.frame_size) line += fmt::format(",\"frame_size\":{}", r.frame_size);
    if (r.have_memory) line += json_memory(r);
    if (r.have_rados) line += json_rados(r, info);
    line += "}\n";
    std::fputs(line.c_str(), out);
  }
  std::fflush(out);
}

}  // namespace faultline::cli
