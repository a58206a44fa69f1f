#include "bench/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "bench/kernel_cache.hpp"
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
    // The counters of the rep whose time is the (lower) median.
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
    rows.push_back(r);
  }
  // Resident rows (frames the engine already holds) compare with kernel mmap
  // warm (pages the kernel already holds).
  for (auto& r : rows) {
    const CacheState bc = r.cache == CacheState::Resident ? CacheState::Warm : r.cache;
    for (const auto& m : rows)
      if (m.method == info.baseline && m.pattern == r.pattern && m.cache == bc)
        r.ratio_to_mmap = r.gib_per_s / m.gib_per_s;
    // Cold reads also against the device's own limit (O_DIRECT, no cache).
    if (r.cache == CacheState::Cold && r.method != Method::Device)
      for (const auto& m : rows)
        if (m.method == Method::Device && m.pattern == r.pattern && m.cache == r.cache)
          r.ratio_to_device = r.gib_per_s / m.gib_per_s;
  }
  return rows;
}

void print_table(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
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
  if (info.rados) {
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
  } else {
    fmt::print(out, "kernel cache, set before each method: cold = fsync + POSIX_FADV_DONTNEED, "
                    "verified with mincore; warm = dropped as cold, then read once with read(2) "
                    "({} buffer)\n",
               format_size(kWarmReadBytes));
    if (info.write) {
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
    } else {
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
  }

  const std::string rk = ratio_key(info);
  bool all_ok = true;
  if (info.write) {
    fmt::print(out,
               "{:<18} {:<7} {:<5} {:>7} {:>8} {:>9} {:>13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>17}\n",
               "method", "pattern", "cache", "kcache", "GiB/s", "ns/page", rk, "wfaults", "wp",
               "dirtied", "wback", "needless", "wamp", "store/msync/fsync");
    for (const auto& r : rows) {
      std::string wf = "-", wp = "-", di = "-", wb = "-", nd = "-", wa = "-";
      if (r.stats) {
        wf = fmt::format("{}", write_faults(*r.stats));
        wp = fmt::format("{}", r.stats->wp_faults);
        di = fmt::format("{}", r.stats->pages_dirtied);
        wb = fmt::format("{}", r.stats->pages_written_back);
        nd = fmt::format("{}", needless_writebacks(*r.stats, r.pages_stored, info.page_size));
        wa = fmt::format("{:.2f}", write_amplification(*r.stats, r.pages_stored, info.page_size));
      }
      fmt::print(out,
                 "{:<18} {:<7} {:<5} {:>6.1f}% {:>8.3f} {:>9.0f} {:>13.2f} {:>9} {:>9} {:>9} {:>9} "
                 "{:>9} {:>5} {:>17}{}\n",
                 to_string(r.method), to_string(r.pattern), to_string(r.cache),
                 r.resident_before_max * 100, r.gib_per_s, r.ns_per_page, r.ratio_to_mmap, wf, wp,
                 di, wb, nd, wa,
                 fmt::format("{:.0f}/{:.0f}/{:.0f}", r.store_ns / 1e6, r.msync_ns / 1e6,
                             r.fsync_ns / 1e6),
                 r.data_ok ? "" : fmt::format("  DATA MISMATCH ({} bad pages)", r.bad_pages));
      all_ok = all_ok && r.data_ok;
    }
    fmt::print(out, "\ndata check: {}\n",
               all_ok ? "after every method every page held its stamp and was otherwise unchanged"
                      : "MISMATCH: some method left wrong data in the file (see rows above)");
    return;
  }

  const std::size_t rw = std::max<std::size_t>(13, rk.size());
  fmt::print(out, "{:<12} {:<7} {:<8} {:>7} {:>8} {:>9} {:>{}} {:>14} {:>12} {:>12}{}{}\n",
             "method", "pattern", "cache", "kcache", "GiB/s", "ns/page", rk, rw, "missing_faults",
             "minor_faults", "pages_filled",
             info.rados ? fmt::format(" {:>8} {:>8}", "objs", "inflight") : "",
             info.rados ? "" : fmt::format(" {:>9} {:>10} {:>5}", "mem_MiB", "kcache_MiB", "huge"));
  for (const auto& r : rows) {
    std::string mf = "-", mi = "-", pf = "-";
    if (r.stats) {
      mf = fmt::format("{}", r.stats->missing_faults);
      mi = fmt::format("{}", r.stats->minor_faults);
      pf = fmt::format("{}", r.stats->pages_filled);
    }
    const std::string kc =
        info.rados ? std::string("n/a") : fmt::format("{:.1f}%", r.resident_before_max * 100);
    std::string mem;
    if (r.have_memory) {
      const double mib = double(uint64_t{1} << 20);
      mem = fmt::format(" {:>9.0f} {:>10.0f} {:>5}",
                        double(r.mem_frames_bytes + r.mem_kernel_cache_bytes) / mib,
                        double(r.mem_kernel_cache_bytes) / mib,
                        r.hugepages_used >= 0 ? fmt::format("{}", r.hugepages_used) : "-");
    }
    fmt::print(out,
               "{:<12} {:<7} {:<8} {:>7} {:>8.3f} {:>9.0f} {:>{}.2f} {:>14} {:>12} {:>12}{}{}{}\n",
               to_string(r.method), to_string(r.pattern), to_string(r.cache), kc, r.gib_per_s,
               r.ns_per_page, r.ratio_to_mmap, rw, mf, mi, pf,
               r.have_rados ? fmt::format(" {:>8} {:>8}", r.rados_objects_read,
                                          r.rados_max_in_flight)
                            : "",
               mem, r.data_ok ? "" : "  DATA MISMATCH");
    all_ok = all_ok && r.data_ok;
  }
  if (!info.frames2m_skipped.empty())
    fmt::print(out, "\nfaultline-2M rows skipped: {}\n", info.frames2m_skipped);
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
  std::string dev;
  for (const auto& r : rows)
    if (r.ratio_to_device > 0)
      dev += fmt::format("{}{} {} {:.2f}", dev.empty() ? "" : ", ", to_string(r.method),
                         to_string(r.pattern), r.ratio_to_device);
  if (!dev.empty())
    fmt::print(out, "\nratio to the device (cold; device = O_DIRECT, {} reads of {} in flight, "
                    "no page cache): {}\n",
               kDeviceInFlight, format_size(kDeviceReadBytes), dev);
  const char* ref = info.rados ? "rados-read" : "pread";
  fmt::print(out, "\ndata check: {}\n",
             all_ok ? fmt::format("every method read the same page words as {}", ref)
                    : fmt::format("MISMATCH: some method read different data than {} (see rows "
                                  "above)",
                                  ref));
}

void print_json_lines(std::FILE* out, const std::vector<Row>& rows, const RunInfo& info) {
  const std::string rk = ratio_key(info);
  for (const auto& r : rows) {
    std::string line = fmt::format(
        "{{\"op\":\"{}\",\"method\":\"{}\",\"pattern\":\"{}\",\"cache\":\"{}\",\"gib_per_s\":{:.6g},"
        "\"ns_per_page\":{:.6g},\"{}\":{:.6g},\"ratio_baseline\":\"{}\",\"reps\":{},"
        "\"size_bytes\":{},\"pages\":{},\"page_size\":{},\"kernel_resident_before\":{:.6g},"
        "\"data_ok\":{},\"fault_around_pages\":{},\"readahead_max_pages\":{},\"fault_threads\":{},"
        "\"write_around_max_pages\":{}",
        info.write ? "write" : "read", to_string(r.method), to_string(r.pattern),
        to_string(r.cache), r.gib_per_s, r.ns_per_page, rk, r.ratio_to_mmap,
        to_string(info.baseline), r.reps, info.size_bytes, info.pages, info.page_size,
        r.resident_before_max, r.data_ok ? "true" : "false", info.config.fault_around_pages,
        info.config.readahead_max_pages, info.config.fault_threads,
        info.config.write_around_max_pages);
    if (r.ratio_to_device > 0) line += fmt::format(",\"ratio_to_device\":{:.6g}", r.ratio_to_device);
    if (info.write)
      line += fmt::format(",\"pages_stored\":{},\"bad_pages\":{},\"sync\":\"fsync\","
                          "\"store_ms\":{:.3f},\"msync_ms\":{:.3f},\"fsync_ms\":{:.3f}",
                          r.pages_stored, r.bad_pages, r.store_ns / 1e6, r.msync_ns / 1e6,
                          r.fsync_ns / 1e6);
    if (r.stats) {
      const Stats& s = *r.stats;
      line += fmt::format(
          ",\"missing_faults\":{},\"minor_faults\":{},\"pages_filled\":{},\"pages_installed\":{},"
          "\"pages_fault_around\":{},\"bytes_read\":{},\"read_errors\":{},\"sigbus_sent\":{},"
          "\"fill_ns\":{},\"install_ns\":{},\"stores_throttled\":{}",
          s.missing_faults, s.minor_faults, s.pages_filled, s.pages_installed,
          s.pages_fault_around, s.bytes_read, s.read_errors, s.sigbus_sent, s.fill_ns,
          s.install_ns, s.stores_throttled);
      if (info.write)
        line += fmt::format(
            ",\"write_faults\":{},\"wp_faults\":{},\"pages_dirtied\":{},\"pages_written_back\":{},"
            "\"needless_writebacks\":{},\"write_amplification\":{:.4f},\"bytes_written\":{},"
            "\"write_errors\":{},\"mkwrite_errors\":{}",
            write_faults(s), s.wp_faults, s.pages_dirtied, s.pages_written_back,
            needless_writebacks(s, r.pages_stored, info.page_size),
            write_amplification(s, r.pages_stored, info.page_size), s.bytes_written, s.write_errors,
            s.mkwrite_errors);
    }
    if (r.frame_size) line += fmt::format(",\"frame_size\":{}", r.frame_size);
    if (r.have_memory) {
      line += fmt::format(",\"mem_bytes\":{},\"mem_frames_bytes\":{},\"mem_kernel_cache_bytes\":{}",
                          r.mem_frames_bytes + r.mem_kernel_cache_bytes, r.mem_frames_bytes,
                          r.mem_kernel_cache_bytes);
      if (r.hugepages_used >= 0) line += fmt::format(",\"hugepages_used\":{}", r.hugepages_used);
    }
    if (r.have_rados)
      line += fmt::format(",\"rados_objects_read\":{},\"rados_max_in_flight\":{},"
                          "\"rados_object_size\":{},\"rados_in_flight_limit\":{}",
                          r.rados_objects_read, r.rados_max_in_flight, info.rados_object_size,
                          info.rados_max_in_flight);
    line += "}\n";
    std::fputs(line.c_str(), out);
  }
  std::fflush(out);
}

}  // namespace faultline::cli
