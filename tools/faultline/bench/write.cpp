#include "bench/write.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "bench/words.hpp"
#include "faultline/constants.hpp"
#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kStampSeed = 0x73746d70'77726974ull;  // "stmpwrit"
constexpr std::size_t kVerifyChunk = std::size_t{4} << 20;

double elapsed_ns(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}


/// Hash of [p+8, p+n) (n a multiple of 8).
uint64_t tail_hash(const std::byte* p, std::size_t n) {
  uint64_t h = 0x6661756c746c696eull;
  for (std::size_t i = 8; i + 8 <= n; i += 8) {
    h = (h ^ load_word(p + i)) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  }
  return h;
}

/// Runs `fn(page)` for every page in plan order.
template <class Fn>
void for_each_page(const WritePlan& plan, Fn&& fn) {
  if (plan.order == nullptr) {
    for (uint64_t i = 0; i < plan.pages; ++i) fn(i);
  } else {
    for (uint32_t idx : *plan.order) fn(uint64_t{idx});
  }
}

void store_pages(std::byte* base, const WritePlan& plan) {
  const std::size_t ps = plan.page_size;
  for_each_page(plan, [&](uint64_t i) {
    const uint64_t v = page_stamp(plan.generation, i);
    std::memcpy(base + i * ps, &v, sizeof v);
  });
}

/// Reads [off, off+len) fully with pread (EINTR and short reads retried).
void pread_full(int fd, std::byte* buf, std::size_t len, uint64_t off, const std::string& path) {
  std::size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(fmt::format("pread '{}' at {}", path, off + done));
    }
    if (n == 0)
      throw std::runtime_error(fmt::format("'{}' ends at {} (expected {} more bytes)", path,
                                           off + done, len - done));
    done += static_cast<std::size_t>(n);
  }
}

template <class Fn>
void for_each_chunk(const std::string& path, uint64_t size, Fn&& fn) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open '" + path + "'");
  std::vector<std::byte> buf(kVerifyChunk);
  for (uint64_t off = 0; off < size; off += kVerifyChunk) {
    const std::size_t len = static_cast<std::size_t>(std::min<uint64_t>(kVerifyChunk, size - off));
    pread_full(fd.get(), buf.data(), len, off, path);
    fn(off, buf.data(), len);
  }
}

UniqueFd open_rw(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) throw_errno("open '" + path + "' read-write");
  return fd;
}

}  // namespace

uint64_t page_stamp(uint64_t generation, uint64_t page) {
  return mix64(kStampSeed ^ (generation << 40) ^ page);
}

std::vector<uint64_t> page_tail_hashes(const std::string& path, uint64_t size,
                                       std::size_t page_size) {
  std::vector<uint64_t> out;
  out.reserve(size / page_size);
  for_each_chunk(path, size, [&](uint64_t, const std::byte* p, std::size_t len) {
    for (std::size_t o = 0; o < len; o += page_size) out.push_back(tail_hash(p + o, page_size));
  });
  return out;
}

std::string verify_written(const WritePlan& plan, const std::vector<uint64_t>& tails, Sample& s) {
  const std::size_t ps = plan.page_size;
  uint64_t bad = 0;
  std::string first;
  for_each_chunk(plan.path, plan.size, [&](uint64_t off, const std::byte* p, std::size_t len) {
    for (std::size_t o = 0; o < len; o += ps) {
      const uint64_t page = (off + o) / ps;
      const uint64_t want = page_stamp(plan.generation, page);
      const uint64_t got = load_word(p + o);
      const bool stamp_ok = got == want;
      const bool tail_ok = page < tails.size() && tail_hash(p + o, ps) == tails[page];
      if (stamp_ok && tail_ok) continue;
      if (bad++ == 0)
        first = stamp_ok ? fmt::format("page {}: bytes 8..{} changed (the store must change only "
                                       "the first 8)",
                                       page, ps)
                         : fmt::format("page {}: first 8 bytes {:016x}, stored {:016x}", page, got,
                                       want);
    }
  });
  s.bad_pages = bad;
  s.data_ok = bad == 0;
  return first;
}

Sample measure_write_faultline(const WritePlan& plan, const EngineConfig& config,
                               DirtyTracking tracking, FrameSize frames) {
  Sample s;
  Engine engine(config);
  FileOptions opts;
  opts.dirty_tracking = tracking;  // faultline-async: WP_ASYNC + PAGEMAP_SCAN
  opts.frame_size = frames;        // faultline-2M: 2 MiB frames (page_mkwrite mode)
  s.frame_size = frames == FrameSize::k2M ? kHugePageSize : kBasePageSize;
  File file = engine.open(make_file_backend(plan.path, /*writable=*/true), opts);
  if (file.size() != plan.size)
    throw std::runtime_error(fmt::format("faultline sees '{}' as {} bytes, expected {}", plan.path,
                                         file.size(), plan.size));
  const auto t0 = Clock::now();
  Mapping m = file.map(0, plan.size, Access::ReadWrite, Sharing::Shared);
  std::byte* base = m.data();
  const auto bus = guarded([&] { store_pages(base, plan); });
  if (bus)
    throw std::runtime_error(
        fmt::format("SIGBUS (si_code {}) storing to the faultline mapping at offset {}", bus->code,
                    static_cast<const std::byte*>(bus->addr) - base));
  const auto t_stored = Clock::now();
  m.msync(base, plan.size, MS_SYNC);
  const auto t_msynced = Clock::now();
  file.fsync();
  const auto t1 = Clock::now();
  s.ns = elapsed_ns(t0, t1);
  s.store_ns = elapsed_ns(t0, t_stored);
  s.msync_ns = elapsed_ns(t_stored, t_msynced);
  s.fsync_ns = elapsed_ns(t_msynced, t1);
  s.stats = file.stats();
  s.pages_stored = plan.pages;
  m.unmap();
  file.close();
  engine.close();
  return s;
}

Sample measure_write_mmap(const WritePlan& plan) {
  Sample s;
  UniqueFd fd = open_rw(plan.path);
  const auto t0 = Clock::now();
  void* p = ::mmap(nullptr, plan.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) throw_errno("mmap '" + plan.path + "'");
  store_pages(static_cast<std::byte*>(p), plan);
  const auto t_stored = Clock::now();
  if (::msync(p, plan.size, MS_SYNC) != 0) {
    const int err = errno;
    ::munmap(p, plan.size);
    throw_errno(err, "msync '" + plan.path + "'");
  }
  const auto t_msynced = Clock::now();
  if (::fsync(fd.get()) != 0) {
    const int err = errno;
    ::munmap(p, plan.size);
    throw_errno(err, "fsync '" + plan.path + "'");
  }
  const auto t1 = Clock::now();
  ::munmap(p, plan.size);
  s.ns = elapsed_ns(t0, t1);
  s.store_ns = elapsed_ns(t0, t_stored);
  s.msync_ns = elapsed_ns(t_stored, t_msynced);
  s.fsync_ns = elapsed_ns(t_msynced, t1);
  s.pages_stored = plan.pages;
  return s;
}

Sample measure_write_pwrite(const WritePlan& plan) {
  Sample s;
  UniqueFd fd = open_rw(plan.path);
  const std::size_t ps = plan.page_size;
  const auto t0 = Clock::now();
  for_each_page(plan, [&](uint64_t i) {
    const uint64_t v = page_stamp(plan.generation, i);
    const off_t off = static_cast<off_t>(i * ps);
    ssize_t n;
    do n = ::pwrite(fd.get(), &v, sizeof v, off);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof v))
      throw_errno(n < 0 ? errno : EIO, fmt::format("pwrite '{}' at {}", plan.path, off));
  });
  const auto t_stored = Clock::now();
  if (::fsync(fd.get()) != 0) throw_errno("fsync '" + plan.path + "'");
  const auto t1 = Clock::now();
  s.ns = elapsed_ns(t0, t1);
  s.store_ns = elapsed_ns(t0, t_stored);
  s.fsync_ns = elapsed_ns(t_stored, t1);
  s.pages_stored = plan.pages;
  return s;
}

Sample measure_write(Method m, const WritePlan& plan, const EngineConfig& config) {
  switch (m) {
    case Method::Faultline:
      return measure_write_faultline(plan, config, DirtyTracking::Mkwrite, FrameSize::k4K);
    case Method::FaultlineAsync:
      return measure_write_faultline(plan, config, DirtyTracking::Async, FrameSize::k4K);
    case Method::Faultline2M:
      return measure_write_faultline(plan, config, DirtyTracking::Mkwrite, FrameSize::k2M);
    case Method::Faultline2MAsync:
      return measure_write_faultline(plan, config, DirtyTracking::Async, FrameSize::k2M);
    case Method::Mmap: return measure_write_mmap(plan);
    case Method::Pwrite: return measure_write_pwrite(plan);
    default: break;
  }
  throw std::logic_error(std::string("measure_write: not a write method: ") + to_string(m));
}

}  // namespace faultline::cli
