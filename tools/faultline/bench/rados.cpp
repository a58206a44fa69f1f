#include "bench/rados.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"
#include "faultline/rados_backend.hpp"

namespace faultline::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<RadosBackend> open_read_only(const std::string& uri) {
  RadosOptions o = parse_rados_uri(uri);
  o.writable = false;
  o.create = false;
  return make_rados_backend(o);
}

inline uint64_t load_word(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void read_or_throw(RadosBackend& b, uint64_t off, std::span<std::byte> buf, const std::string& uri) {
  const ssize_t n = b.read(off, buf);
  if (n < 0)
    throw std::system_error(static_cast<int>(-n), std::generic_category(),
                            fmt::format("RadosBackend::read of '{}' at {}", uri, off));
  if (static_cast<std::size_t>(n) < buf.size())
    std::memset(buf.data() + n, 0, buf.size() - static_cast<std::size_t>(n));  // as the engine does
}

}  // namespace

RadosFileInfo rados_file_info(const std::string& uri) {
  auto b = open_read_only(uri);
  const int64_t size = b->size();
  if (size < 0)
    throw std::system_error(static_cast<int>(-size), std::generic_category(),
                            "size of '" + uri + "'");
  return {static_cast<uint64_t>(size), b->object_size(), b->options().read_split,
          b->options().max_in_flight, b->identity()};
}

Sample measure_rados_faultline(const ReadPlan& plan, const EngineConfig& config,
                               FrameSize frame_size) {
  Sample s;
  auto backend = open_read_only(plan.path);
  Engine engine(config);
  FileOptions fo;
  fo.frame_size = frame_size;
  File file = engine.open(backend, fo);
  if (file.size() != plan.size)
    throw std::runtime_error(fmt::format("faultline sees '{}' as {} bytes, expected {}", plan.path,
                                         file.size(), plan.size));
  uint64_t sum = 0;
  const std::size_t ps = plan.page_size;
  const auto t0 = Clock::now();
  Mapping m = file.map(0, plan.size, Access::ReadOnly);
  const std::byte* base = m.data();
  const auto bus = guarded([&] {
    if (plan.order == nullptr) {
      for (uint64_t i = 0; i < plan.pages; ++i) sum += load_word(base + i * ps);
    } else {
      for (uint32_t idx : *plan.order) sum += load_word(base + uint64_t{idx} * ps);
    }
  });
  const auto t1 = Clock::now();
  if (bus)
    throw std::runtime_error(fmt::format(
        "SIGBUS (si_code {}) reading the faultline mapping of '{}' at offset {}", bus->code,
        plan.path, static_cast<const std::byte*>(bus->addr) - base));
  s.ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  s.word_sum = sum;
  s.stats = file.stats();
  const RadosCounters c = backend->counters();
  s.have_rados = true;
  s.rados_objects_read = c.objects_read;
  s.rados_max_in_flight = c.max_in_flight;
  m.unmap();
  file.close();
  engine.close();
  return s;
}

Sample measure_rados_direct(const ReadPlan& plan) {
  Sample s;
  auto backend = open_read_only(plan.path);
  const std::size_t ps = plan.page_size;
  uint64_t sum = 0;
  std::vector<std::byte> buf(plan.order == nullptr ? kRadosSeqReadBytes : ps);
  const auto t0 = Clock::now();
  if (plan.order == nullptr) {
    for (uint64_t off = 0; off < plan.size; off += buf.size()) {
      const std::size_t len = static_cast<std::size_t>(
          std::min<uint64_t>(buf.size(), plan.pages * ps - off));
      read_or_throw(*backend, off, std::span(buf.data(), len), plan.path);
      for (std::size_t o = 0; o < len; o += ps) sum += load_word(buf.data() + o);
    }
  } else {
    for (uint32_t idx : *plan.order) {
      read_or_throw(*backend, uint64_t{idx} * ps, std::span(buf.data(), ps), plan.path);
      sum += load_word(buf.data());
    }
  }
  const auto t1 = Clock::now();
  s.ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  s.word_sum = sum;
  const RadosCounters c = backend->counters();
  s.have_rados = true;
  s.rados_objects_read = c.objects_read;
  s.rados_max_in_flight = c.max_in_flight;
  return s;
}

}  // namespace faultline::cli
