// faultline — a fault-injecting Backend wrapper (for tests and `faultline
// verify --inject`). Wraps any Backend and makes some of its calls fail.
//
// Spec: comma-separated rules, plus an optional `seed=N`. A rule names a KIND
// and when it fires:
//   KIND:P  or KIND=P        with probability P (0..1) per call
//   KIND=@N or KIND:#N       at the Nth call of that kind's call class (1-based)
//   KIND@OFFSET              at every call whose byte range covers OFFSET
// KIND is `op:err` or `op-err` (both spellings): read:eio, read:short,
// write:eio, write:enospc, write:short (a torn write: a prefix is written, then
// -EIO), mkwrite:eio, mkwrite:enospc, sync:eio; the aliases short-read,
// short-write; and delay-us=MAX (a random delay up to MAX microseconds before
// every call). Example: "read:eio:0.01,write:enospc:0.005,mkwrite:eio:0.01,seed=7".
//
// Determinism: a probabilistic decision is a hash of the seed, the rule, the
// call class, the call's offset and how many calls of that class that offset
// has had before. So the same seed and the same calls per offset give the same
// faults, whatever order the engine's threads (fault handlers, async
// readahead, flusher) make them in. `=@N` counts calls of a class in arrival
// order. Counters say how many were injected.
//
// "read:short" returns fewer bytes than asked for in the middle of the object,
// which breaks the Backend contract (short only at the end): it tests whether
// the engine notices. Reads through read_into_fd are injected like read().
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <map>
#include <mutex>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "faultline/forwarding_backend.hpp"

namespace faultline {

enum class FaultKind : int {
  ReadEio,
  ReadShort,
  WriteEio,
  WriteEnospc,
  WriteShort,
  MkwriteEio,
  MkwriteEnospc,
  SyncEio,
  DelayUs,
};
inline constexpr int kFaultKinds = 9;
/// "read:eio", "write:enospc", ... (the canonical spelling).
const char* fault_kind_name(FaultKind k);

struct FaultRule {
  FaultKind kind = FaultKind::ReadEio;
  enum class When { Probability, NthCall, AtOffset } when = When::Probability;
  double probability = 0;  ///< When::Probability
  uint64_t value = 0;      ///< the call number (NthCall), the offset (AtOffset), MAX us (DelayUs)
};

struct FaultSpec {
  std::vector<FaultRule> rules;
  uint64_t seed = 0;
  bool has_seed = false;
  /// Parses a spec; throws std::invalid_argument naming what is wrong.
  static FaultSpec parse(std::string_view text);
  /// The canonical text (parse(to_string()) gives the same spec).
  std::string to_string() const;
  bool empty() const { return rules.empty(); }
};

struct FaultCounters {
  std::array<uint64_t, kFaultKinds> injected{};  ///< per FaultKind
  uint64_t read_calls = 0, write_calls = 0, mkwrite_calls = 0, sync_calls = 0;
  uint64_t total() const;  ///< injected faults (delays excluded)
};

/// The decision state, shareable between several FaultyBackends (e.g. the
/// handles of one object across close/reopen), so the sequence continues.
class FaultInjector {
 public:
  explicit FaultInjector(FaultSpec spec, uint64_t default_seed = 0);
  const FaultSpec& spec() const { return spec_; }
  FaultCounters counters() const;
  /// Injected faults so far (delays excluded); cheap.
  uint64_t injected_total() const { return total_.load(std::memory_order_acquire); }
  /// While suspended no faults are injected and no decisions are drawn.
  void suspend(bool on) { suspended_.store(on, std::memory_order_release); }
  bool suspended() const { return suspended_.load(std::memory_order_acquire); }

  enum class Call { Read, Write, Mkwrite, Sync };
  /// Decides one call over [off, off+len): the fault to inject (or -1 for
  /// none). Sleeps first when a delay rule applies.
  int decide(Call call, uint64_t off, uint64_t len);

 private:
  uint64_t next();
  std::map<std::pair<int, uint64_t>, uint64_t> per_offset_;  // calls per (class, offset)
  FaultSpec spec_;
  mutable std::mutex mu_;
  uint64_t state_;
  FaultCounters counters_;
  std::atomic<uint64_t> total_{0};
  std::atomic<bool> suspended_{false};
};

/// Injects into read, read_into_fd, read_aligned (the 2 MiB fill), write,
/// write_aligned (2 MiB write-back), page_mkwrite and sync; every other call,
/// optional paths included, is forwarded as is (ForwardingBackend), so the
/// engine takes the same paths as over the inner backend.
class FaultyBackend final : public ForwardingBackend {
 public:
  FaultyBackend(std::shared_ptr<Backend> inner, std::shared_ptr<FaultInjector> injector);

  ssize_t read(uint64_t off, std::span<std::byte> buf) override;
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override;
  ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) override;
  int write(uint64_t off, std::span<const std::byte> buf) override;
  int write_aligned(uint64_t off, std::span<const std::byte> buf) override;
  int page_mkwrite(uint64_t off, size_t len) override;
  int page_mkwrite(MkwritePage& page) override;
  int sync() override;

  FaultInjector& injector() const { return *injector_; }
  FaultCounters counters() const { return injector_->counters(); }

 private:
  std::shared_ptr<FaultInjector> injector_;
};

/// Wraps `inner` with a fresh injector for `spec` (seed from the spec, else
/// `default_seed`). Throws std::invalid_argument for a bad spec.
std::shared_ptr<FaultyBackend> make_faulty_backend(std::shared_ptr<Backend> inner,
                                                   std::string_view spec,
                                                   uint64_t default_seed = 0);

}  // namespace faultline
