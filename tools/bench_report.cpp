#include "bench_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "kernel_cache.hpp"
#include "size_arg.hpp"

namespace faultline::cli {

namespace {

constexpr double kGiB = double(uint64_t{1} << 30);

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

std::vector<Row> summarize(const std::vector<ResultSet>& sets, const RunInfo& info,
                           std::optional<uint64_t> reference_sum) {
  std::vector<Row> rows;
  for (const auto& set : sets) {
    if (set.samples.empty()) continue;
    Row r;
    r.method = set.method;
    r.pattern = set.pattern;
    r.cache = set.cache;
    r.reps = static_cast<unsigned>(set.samples.size());
    std::vector<double> ns;
    for (const auto& s : set.samples) {
      ns.push_back(s.ns);
      r.resident_before_max = std::max(r.resident_before_max, s.resident_before);
      if (reference_sum && s.word_sum != *reference_sum) r.data_ok = false;
    }
    r.median_ns = median(ns);
    r.ns_per_page = r.median_ns / static_cast<double>(info.pages);
    r.gib_per_s = static_cast<double>(info.size_bytes) / kGiB / (r.median_ns * 1e-9);
    if (set.method == Method::Faultline) {
      // The counters of the rep whose time is the (lower) median.
      std::vector<std::size_t> idx(set.samples.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(),
                [&](std::size_t a, std::size_t b) { return set.samples[a].ns < set.samples[b].ns; });
      r.stats = set.samples[idx[(idx.size() - 1) / 2]].stats;
    }
    rows.push_back(r);
  }
  for (auto& r : rows) {
    for (const auto& m : rows)
      if (m.method == Method::Mmap && m.pattern == r.pattern && m.cache == r.cache)
        r.ratio_to_mmap = r.gib_per_s / m.gib_per_s;
  }
  return rows;
}

void print_table(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  fmt::print(out, "faultline bench: {} ({} bytes), {} pages of {}, file {} ({}{}), {} rep{} per "
                  "measurement, medians\n",
             format_size(info.size_bytes), info.size_bytes, info.pages, format_size(info.page_size),
             info.file, info.fs_type, info.scratch ? ", made for this run and removed" : "",
             info.reps, info.reps == 1 ? "" : "s");
  fmt::print(out, "engine config: fault_around_pages={} readahead_max_pages={} fault_threads={} "
                  "(frames {}, shmem THP '{}'); a fresh Engine+File per faultline measurement\n",
             info.config.fault_around_pages, info.config.readahead_max_pages,
             info.config.fault_threads, format_size(info.page_size), info.thp_shmem);
  fmt::print(out, "kernel cache, set before each method: cold = fsync + POSIX_FADV_DONTNEED, "
                  "verified with mincore; warm = dropped as cold, then read once with read(2) "
                  "({} buffer)\n",
             format_size(kWarmReadBytes));
  fmt::print(out, "timed: map + first touch of every page (one load per page; pread: one "
                  "{} pread per page); kcache = file fraction in the kernel page cache "
                  "before the timed region (worst rep)\n\n",
             format_size(info.page_size));

  fmt::print(out, "{:<10} {:<7} {:<5} {:>7} {:>8} {:>9} {:>13} {:>14} {:>12} {:>12}\n", "method",
             "pattern", "cache", "kcache", "GiB/s", "ns/page", "ratio_to_mmap", "missing_faults",
             "minor_faults", "pages_filled");
  bool all_ok = true;
  for (const auto& r : rows) {
    std::string mf = "-", mi = "-", pf = "-";
    if (r.stats) {
      mf = fmt::format("{}", r.stats->missing_faults);
      mi = fmt::format("{}", r.stats->minor_faults);
      pf = fmt::format("{}", r.stats->pages_filled);
    }
    fmt::print(out, "{:<10} {:<7} {:<5} {:>6.1f}% {:>8.3f} {:>9.0f} {:>13.2f} {:>14} {:>12} {:>12}{}\n",
               to_string(r.method), to_string(r.pattern), to_string(r.cache),
               r.resident_before_max * 100, r.gib_per_s, r.ns_per_page, r.ratio_to_mmap, mf, mi, pf,
               r.data_ok ? "" : "  DATA MISMATCH");
    all_ok = all_ok && r.data_ok;
  }
  fmt::print(out, "\ndata check: {}\n",
             all_ok ? "every method read the same page words as pread"
                    : "MISMATCH: some method read different data than pread (see rows above)");
}

void print_json_lines(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  for (const auto& r : rows) {
    std::string line = fmt::format(
        "{{\"method\":\"{}\",\"pattern\":\"{}\",\"cache\":\"{}\",\"gib_per_s\":{:.6g},"
        "\"ns_per_page\":{:.6g},\"ratio_to_mmap\":{:.6g},\"reps\":{},\"size_bytes\":{},"
        "\"pages\":{},\"page_size\":{},\"kernel_resident_before\":{:.6g},\"data_ok\":{},"
        "\"fault_around_pages\":{},\"readahead_max_pages\":{},\"fault_threads\":{}",
        to_string(r.method), to_string(r.pattern), to_string(r.cache), r.gib_per_s, r.ns_per_page,
        r.ratio_to_mmap, r.reps, info.size_bytes, info.pages, info.page_size,
        r.resident_before_max, r.data_ok ? "true" : "false", info.config.fault_around_pages,
        info.config.readahead_max_pages, info.config.fault_threads);
    if (r.stats) {
      const Stats& s = *r.stats;
      line += fmt::format(
          ",\"missing_faults\":{},\"minor_faults\":{},\"pages_filled\":{},\"pages_installed\":{},"
          "\"pages_fault_around\":{},\"bytes_read\":{},\"read_errors\":{},\"sigbus_sent\":{}",
          s.missing_faults, s.minor_faults, s.pages_filled, s.pages_installed,
          s.pages_fault_around, s.bytes_read, s.read_errors, s.sigbus_sent);
    }
    line += "}\n";
    std::fputs(line.c_str(), out);
  }
  std::fflush(out);
}

}  // namespace faultline::cli
