// faultline verify — the harness: the File under test, its views, the model,
// and one function per operation. Operations throw Mismatch when the engine
// disagrees with the model.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "faultline/engine.hpp"
#include "testing/faulty_backend.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"
#include "verify/model.hpp"
#include "verify/options.hpp"
#include "verify/report.hpp"

namespace faultline::cli {

class ScratchFile;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 0x1234567) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  bool one_in(uint64_t n) { return below(n) == 0; }
  void fill(uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint64_t v = next();
      __builtin_memcpy(p + i, &v, 8);
    }
    if (i < n) {
      const uint64_t v = next();
      __builtin_memcpy(p + i, &v, n - i);
    }
  }
};

struct ThreadCtx {
  unsigned id = 0;  ///< 0 in single-thread mode, else 1..T
  Rng rng{0};
  uint64_t lo = 0, hi = 0;  ///< the slice this thread's data ops stay in
  std::vector<uint8_t> buf, data, old;
  uint64_t ops = 0;
  std::array<uint64_t, kVerifyOps> per_op{};
};

struct View {
  ViewModel model;
  Mapping map;
};

class Harness {
 public:
  explicit Harness(VerifyOptions& opts);
  ~Harness();

  /// Chooses and runs one operation; returns its description (logged by the
  /// caller). Throws Mismatch; `desc` holds the failing op's description.
  void run_one(ThreadCtx& t, uint64_t n, std::string& desc);
  /// Reads the whole file with File::read and compares it with the model.
  void check_all(const char* why);
  /// After the run: fsync (injection off), then the backend itself must equal
  /// the model.
  void final_check();
  /// Flips one model byte (the hidden --self-test-corrupt).
  void corrupt_model(ThreadCtx& t, std::string& desc);

  uint64_t injected_total() const { return injector_ ? injector_->injected_total() : 0; }
  FaultCounters fault_counters() const { return injector_ ? injector_->counters() : FaultCounters{}; }
  Stats stats() const { return engine_->stats(); }
  uint64_t page() const { return page_; }
  std::string backend_desc() const;
  // Counted by every thread: atomics.
  std::atomic<uint64_t> reopens{0}, sigbus_eof{0}, sigbus_io{0}, io_errors{0};

 private:
  // Operations (verify/ops.cpp).
  void op_read(ThreadCtx& t, std::string& d);
  void op_write(ThreadCtx& t, std::string& d);
  void op_mapread(ThreadCtx& t, std::string& d);
  void op_mapwrite(ThreadCtx& t, std::string& d);
  void op_truncate(ThreadCtx& t, std::string& d);
  void op_punch(ThreadCtx& t, std::string& d);
  void op_invalidate(ThreadCtx& t, std::string& d);
  void op_sync(ThreadCtx& t, std::string& d);
  void op_dropcache(ThreadCtx& t, std::string& d);
  void op_reopen(ThreadCtx& t, std::string& d);
  void op_remap(ThreadCtx& t, std::string& d);
  void op_eofjunk(ThreadCtx& t, std::string& d);
  void op_reclaim(ThreadCtx& t, std::string& d);
  void op_teardown(ThreadCtx& t, std::string& d);

  // Helpers.
  std::shared_ptr<Backend> open_backend();
  void map_view(View& v);
  std::vector<ViewModel*> view_models();
  /// Whether a fault may have been injected during the current op.
  bool injected_since(uint64_t before) const;
  uint64_t write_faults() const;
  /// Checks a load of [fo, fo+n) through view v that copied `done` bytes into
  /// buf before `err` (if any); records observed poison.
  void check_load(View& v, uint64_t fo, uint64_t n, const uint8_t* buf, uint64_t done,
                  const std::optional<BusError>& err, bool may_inject, const char* what);
  /// After a SIGBUS at file offset `fo` in view v: is it allowed? Records poison.
  void check_bus(View& v, uint64_t fo, const BusError& e, bool may_inject, const char* what);
  void do_sync(bool fsync, uint64_t inj_before, std::string& d);
  /// Single thread, no injection: throws Mismatch if a page is dirty.
  void check_clean_after_sync(const char* what);
  void resolve_failed_write(uint64_t off, uint64_t len, const uint8_t* old, const uint8_t* neu);
  void extend_for_store(uint64_t end, std::string& d);
  bool multi() const { return opts_.threads > 1; }

  VerifyOptions& opts_;
  uint64_t page_;          ///< the File's page size (--frames)
  FileOptions fopts_;      ///< frame_size from --frames
  std::unique_ptr<ScratchFile> scratch_;
  std::shared_ptr<Backend> memory_inner_;  // the memory backend (survives reopen)
  std::shared_ptr<FaultInjector> injector_;
  EngineConfig ecfg_;  ///< for the Engine made again by reopen (engine close)
  std::unique_ptr<Engine> engine_;
  File file_;
  Model model_;
  std::vector<View> views_;
  std::shared_mutex big_;  // harness-level lock: whole-file ops exclusive
  bool wb_error_pending_ = false;  // an injected write-back error not yet reported by sync (R8)
  uint64_t wb_faults_seen_ = 0;
};

}  // namespace faultline::cli
