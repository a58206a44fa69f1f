#include "bench_measure.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"
#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace faultline::cli {

namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ns(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

inline uint64_t load_word(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
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

}  // namespace

const char* to_string(Method m) {
  switch (m) {
    case Method::Faultline: return "faultline";
    case Method::Mmap: return "mmap";
    case Method::Pread: return "pread";
    case Method::Pwrite: return "pwrite";
    case Method::RadosRead: return "rados-read";
  }
  return "?";
}
const char* to_string(Pattern p) { return p == Pattern::Seq ? "seq" : "rand"; }
const char* to_string(CacheState c) {
  switch (c) {
    case CacheState::Cold: return "cold";
    case CacheState::Warm: return "warm";
    case CacheState::NotApplicable: return "n/a";
  }
  return "?";
}

Sample measure_faultline(const ReadPlan& plan, const EngineConfig& config) {
  Sample s;
  Engine engine(config);
  File file = engine.open(plan.path, /*writable=*/false);
  if (file.size() != plan.size)
    throw std::runtime_error(fmt::format("faultline sees '{}' as {} bytes, expected {}", plan.path,
                                         file.size(), plan.size));
  uint64_t sum = 0;
  const auto t0 = Clock::now();
  Mapping m = file.map(0, plan.size, Access::ReadOnly);
  const std::byte* base = m.data();
  const auto bus = guarded([&] { sum = touch_pages(base, plan); });
  const auto t1 = Clock::now();
  if (bus)
    throw std::runtime_error(
        fmt::format("SIGBUS (si_code {}) reading the faultline mapping at offset {}", bus->code,
                    static_cast<const std::byte*>(bus->addr) - base));
  s.ns = elapsed_ns(t0, t1);
  s.word_sum = sum;
  s.stats = file.stats();
  m.unmap();
  file.close();
  engine.close();
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
  ::munmap(p, plan.size);
  s.ns = elapsed_ns(t0, t1);
  s.word_sum = sum;
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
  const auto t1 = Clock::now();
  s.ns = elapsed_ns(t0, t1);
  s.word_sum = sum;
  return s;
}

Sample measure(Method m, const ReadPlan& plan, const EngineConfig& config) {
  switch (m) {
    case Method::Faultline: return measure_faultline(plan, config);
    case Method::Mmap: return measure_mmap(plan);
    case Method::Pread: return measure_pread(plan);
    default: break;
  }
  throw std::logic_error(std::string("measure: not a read method of a local file: ") + to_string(m));
}

}  // namespace faultline::cli
