#include "bench/measure.hpp"

#include "faultline/hugepages.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "bench/direct_io.hpp"
#include "bench/kernel_cache.hpp"
#include "bench/words.hpp"
#include "faultline/backend.hpp"
#include "faultline/constants.hpp"
#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"
#include "umap/umap.h"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ns(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}


/// The first touch of every page: one load per page, in plan order. A page
/// start is aligned, so the 8-byte load never crosses into the next page.
uint64_t touch_pages(const std::byte* base, const ReadPlan& plan) {
  uint64_t sum = 0;
  const std::size_t ps = plan.page_size;
  if (plan.order == nullptr) {
    for (uint64_t i = 0; i < plan.pages; ++i) sum += load_word(base + i * ps);
  } else {
    for (uint32_t idx : *plan.order) sum += load_word(base + uint64_t{idx} * ps);
  }
  return sum;
}

UniqueFd open_read_only(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open '" + path + "'");
  return fd;
}

/// The file's bytes in the kernel page cache now (mincore; clipped to size).
uint64_t kernel_cache_bytes(const std::string& path, uint64_t size) {
  UniqueFd fd = open_read_only(path);
  const double f = resident_fraction(fd.get(), size);
  return std::min<uint64_t>(size, static_cast<uint64_t>(f * static_cast<double>(size) + 0.5));
}

/// After a timed region [t0, t1) that read `sum`: the time, the sum, and the
/// file's bytes in the kernel's page cache (memory held, with the frames).
void set_timed_read(Sample& s, const ReadPlan& plan, Clock::time_point t0, Clock::time_point t1,
                    uint64_t sum) {
  s.ns = elapsed_ns(t0, t1);
  s.word_sum = sum;
  s.have_memory = true;
  s.mem_kernel_cache_bytes = kernel_cache_bytes(plan.path, plan.size);
}

/// a - b, counter by counter (dirty_pages is a level: a's).
Stats stats_since(const Stats& a, const Stats& b) {
  Stats d = a;
  d.missing_faults -= b.missing_faults;
  d.minor_faults -= b.minor_faults;
  d.wp_faults -= b.wp_faults;
  d.pages_filled -= b.pages_filled;
  d.pages_installed -= b.pages_installed;
  d.pages_fault_around -= b.pages_fault_around;
  d.pages_dirtied -= b.pages_dirtied;
  d.pages_written_back -= b.pages_written_back;
  d.bytes_read -= b.bytes_read;
  d.bytes_written -= b.bytes_written;
  d.read_errors -= b.read_errors;
  d.write_errors -= b.write_errors;
  d.mkwrite_errors -= b.mkwrite_errors;
  d.sigbus_sent -= b.sigbus_sent;
  d.pages_invalidated -= b.pages_invalidated;
  d.invalidate_conflicts -= b.invalidate_conflicts;
  d.pages_truncated -= b.pages_truncated;
  d.pages_punched -= b.pages_punched;
  d.pages_laundered -= b.pages_laundered;
  d.pages_write_around -= b.pages_write_around;
  d.fault_retries -= b.fault_retries;
  d.fill_ns -= b.fill_ns;
  d.install_ns -= b.install_ns;
  d.stores_throttled -= b.stores_throttled;
  return d;
}

/// Frames the File holds: pages filled, net of pages dropped (a read bench
/// drops none), times the frame size.
uint64_t frames_held(const Stats& s, std::size_t frame_size) {
  const uint64_t dropped = s.pages_invalidated + s.pages_truncated + s.pages_punched;
  return (s.pages_filled > dropped ? s.pages_filled - dropped : 0) * frame_size;
}

}  // namespace

int64_t hugepages_free() {
  const HugePagePool pool = hugepage_pool();  // free unreserved + overcommit headroom
  return pool.readable ? pool.available() : -1;
}

const char* to_string(Method m) {
  switch (m) {
    case Method::Faultline: return "faultline";
    case Method::Mmap: return "mmap";
    case Method::Pread: return "pread";
    case Method::Pwrite: return "pwrite";
    case Method::RadosRead: return "rados-read";
    case Method::Faultline2M: return "faultline-2M";
    case Method::FaultlineAsync: return "faultline-async";
    case Method::Device: return "device";
    case Method::Faultline2MAsync: return "faultline-2M-async";
    case Method::UmapApi: return "umap-api";
  }
  return "?";
}
const char* to_string(Pattern p) { return p == Pattern::Seq ? "seq" : "rand"; }
const char* to_string(CacheState c) {
  switch (c) {
    case CacheState::Cold: return "cold";
    case CacheState::Warm: return "warm";
    case CacheState::NotApplicable: return "n/a";
    case CacheState::Resident: return "resident";
  }
  return "?";
}

Sample measure_faultline(const ReadPlan& plan, const EngineConfig& config, FrameSize frame_size,
                         bool resident) {
  Sample s;
  const int64_t pool_before = frame_size == FrameSize::k2M ? hugepages_free() : -1;
  Engine engine(config);
  FileOptions fo;
  fo.frame_size = frame_size;
  File file = engine.open(make_file_backend(plan.path, /*writable=*/false), fo);
  if (file.size() != plan.size)
    throw std::runtime_error(fmt::format("faultline sees '{}' as {} bytes, expected {}", plan.path,
                                         file.size(), plan.size));
  const auto throw_bus = [](const auto& bus, const std::byte* base, const char* what) {
    throw std::runtime_error(
        fmt::format("SIGBUS (si_code {}) reading the {} faultline mapping at offset {}", bus->code,
                    what, static_cast<const std::byte*>(bus->addr) - base));
  };
  Stats before{};
  if (resident) {
    // The untimed first Mapping: every frame filled and held by the File.
    Mapping first = file.map(0, plan.size, Access::ReadOnly);
    const std::byte* base = first.data();
    ReadPlan seq = plan;
    seq.order = nullptr;
    uint64_t first_sum = 0;
    if (const auto bus = guarded([&] { first_sum = touch_pages(base, seq); }))
      throw_bus(bus, base, "first");
    (void)first_sum;
    first.unmap();
    before = file.stats();
  }
  uint64_t sum = 0;
  const auto t0 = Clock::now();
  Mapping m = file.map(0, plan.size, Access::ReadOnly);
  const std::byte* base = m.data();
  const auto bus = guarded([&] { sum = touch_pages(base, plan); });
  const auto t1 = Clock::now();
  if (bus) throw_bus(bus, base, resident ? "second" : "");
  const Stats total = file.stats();
  s.stats = resident ? stats_since(total, before) : total;
  s.frame_size = file.page_size();
  s.mem_frames_bytes = frames_held(total, file.page_size());
  set_timed_read(s, plan, t0, t1, sum);
  if (pool_before >= 0) {
    const int64_t now = hugepages_free();
    if (now >= 0) s.hugepages_used = pool_before - now;
  }
  m.unmap();
  file.close();
  engine.close();
  return s;
}

Sample measure_umap_api(const ReadPlan& plan) {
  Sample s;
  UniqueFd fd = open_read_only(plan.path);
  const auto t0 = Clock::now();
  void* p = umap(nullptr, plan.size, PROT_READ, UMAP_PRIVATE, fd.get(), 0);
  if (p == UMAP_FAILED) throw_errno("umap '" + plan.path + "'");
  const auto* base = static_cast<const std::byte*>(p);
  uint64_t sum = 0;
  const auto bus = guarded([&] { sum = touch_pages(base, plan); });
  const auto t1 = Clock::now();
  // Frames held: the region's pages resident in the engine's memfd.
  std::vector<unsigned char> vec((plan.size + kBasePageSize - 1) / kBasePageSize);
  if (::mincore(p, plan.size, vec.data()) == 0)
    for (unsigned char v : vec) s.mem_frames_bytes += (v & 1) ? kBasePageSize : 0;
  set_timed_read(s, plan, t0, t1, sum);
  if (uunmap(p, plan.size) != 0) throw_errno("uunmap '" + plan.path + "'");
  if (bus)
    throw std::runtime_error(fmt::format("SIGBUS (si_code {}) reading the umap region at offset {}",
                                         bus->code, static_cast<const std::byte*>(bus->addr) - base));
  return s;
}

Sample measure_mmap(const ReadPlan& plan) {
  Sample s;
  UniqueFd fd = open_read_only(plan.path);
  const auto t0 = Clock::now();
  void* p = ::mmap(nullptr, plan.size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) throw_errno("mmap '" + plan.path + "'");
  const uint64_t sum = touch_pages(static_cast<const std::byte*>(p), plan);
  const auto t1 = Clock::now();
  set_timed_read(s, plan, t0, t1, sum);
  ::munmap(p, plan.size);
  return s;
}

Sample measure_pread(const ReadPlan& plan) {
  Sample s;
  UniqueFd fd = open_read_only(plan.path);
  const std::size_t ps = plan.page_size;
  void* raw = nullptr;
  if (int e = ::posix_memalign(&raw, ps, ps); e != 0) throw_errno(e, "posix_memalign");
  std::unique_ptr<std::byte, decltype(&::free)> buf(static_cast<std::byte*>(raw), &::free);
  std::memset(buf.get(), 0, ps);
  const auto read_page = [&](uint64_t idx) -> uint64_t {
    const off_t off = static_cast<off_t>(idx * ps);
    ssize_t n;
    do n = ::pread(fd.get(), buf.get(), ps, off);
    while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno(fmt::format("pread '{}' at {}", plan.path, off));
    if (static_cast<std::size_t>(n) < ps) std::memset(buf.get() + n, 0, ps - n);  // EOF page
    return load_word(buf.get());
  };
  uint64_t sum = 0;
  const auto t0 = Clock::now();
  if (plan.order == nullptr) {
    for (uint64_t i = 0; i < plan.pages; ++i) sum += read_page(i);
  } else {
    for (uint32_t idx : *plan.order) sum += read_page(idx);
  }
  set_timed_read(s, plan, t0, Clock::now(), sum);
  return s;
}

Sample measure_device(const ReadPlan& plan) {
  // O_DIRECT: what the device gives with no page cache at all — the limit a
  // cold read can reach. kDeviceReadBytes reads, kDeviceInFlight of them in
  // flight (one thread each), in file order or in a random order of chunks.
  Sample s;
  UniqueFd fd(::open(plan.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (!fd) throw_errno("open '" + plan.path + "' with O_DIRECT");
  const uint64_t chunk = kDeviceReadBytes;
  const uint64_t chunks = (plan.size + chunk - 1) / chunk;
  std::vector<uint64_t> order(chunks);
  std::iota(order.begin(), order.end(), 0);
  if (plan.order != nullptr) std::shuffle(order.begin(), order.end(), std::mt19937_64(0x5eed));
  std::atomic<uint64_t> next{0}, sum{0};
  std::atomic<int> error{0};
  const std::size_t ps = plan.page_size;
  auto worker = [&] {
    std::optional<DirectBuffer> buf;
    try {
      buf.emplace(chunk, /*huge=*/true);  // as faultline-2M's frames
    } catch (const std::system_error& e) {
      error = e.code().value();
      return;
    }
    uint64_t local = 0;
    for (uint64_t i; (i = next.fetch_add(1)) < chunks && error == 0;) {
      const uint64_t off = order[i] * chunk;
      const uint64_t want = std::min<uint64_t>(chunk, plan.size - off);
      const int64_t got = pread_upto(fd.get(), buf->get(), chunk, want, off);
      if (got < 0) {
        error = static_cast<int>(-got);
        return;
      }
      std::memset(buf->get() + got, 0, chunk - static_cast<uint64_t>(got));  // the EOF page: zeros, as pread's
      for (uint64_t o = 0; o < want; o += ps) local += load_word(buf->get() + o);
    }
    sum += local;
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kDeviceInFlight; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const auto t1 = Clock::now();
  if (error != 0) throw_errno(error, "O_DIRECT read of '" + plan.path + "'");
  set_timed_read(s, plan, t0, t1, sum);
  return s;
}

Sample measure(Method m, const ReadPlan& plan, const EngineConfig& config, CacheState cache) {
  const bool resident = cache == CacheState::Resident;
  if (resident && !is_faultline(m))
    throw std::logic_error("measure: cache state resident is for faultline methods only");
  switch (m) {
    case Method::Faultline: return measure_faultline(plan, config, FrameSize::k4K, resident);
    case Method::Faultline2M: return measure_faultline(plan, config, FrameSize::k2M, resident);
    case Method::Mmap: return measure_mmap(plan);
    case Method::Pread: return measure_pread(plan);
    case Method::Device: return measure_device(plan);
    case Method::UmapApi: return measure_umap_api(plan);
    default: break;
  }
  throw std::logic_error(std::string("measure: not a read method of a local file: ") + to_string(m));
}

}  // namespace faultline::cli
