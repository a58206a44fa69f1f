// faultline verify — the runner: single-thread (deterministic: same seed, same
// ops, same injected faults) or T threads each owning a page-aligned slice;
// the final check, the summary and the report on a mismatch.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "verify/ops.hpp"
#include "verify/options.hpp"
#include "verify/report.hpp"

namespace faultline::cli {

namespace {

struct Failure {
  Mismatch m;
  std::string op;
  uint64_t n = 0;
};

void print_summary(const VerifyOptions& o, Harness& h, uint64_t ops, double secs,
                   const std::array<uint64_t, kVerifyOps>& per_op) {
  std::string s = fmt::format(
      "faultline verify: OK: {} ops in {:.2f} s ({:.0f} ops/s, {:.1f} s per million), seed {}, "
      "{} thread{}, backend {}, size {}\n",
      ops, secs, ops / secs, secs * 1e6 / static_cast<double>(ops), o.seed, o.threads,
      o.threads == 1 ? "" : "s", o.backend, o.size);
  s += "  ops:";
  for (int i = 0; i < kVerifyOps; ++i)
    s += fmt::format(" {}={}", verify_op_name(static_cast<VerifyOp>(i)), per_op[static_cast<size_t>(i)]);
  s += fmt::format("\n  checks: SIGBUS past EOF {}, SIGBUS from I/O errors {}, I/O errors {}, reopens {}\n",
                   h.sigbus_eof, h.sigbus_io, h.io_errors, h.reopens);
  if (!o.inject.empty()) {
    const auto c = h.fault_counters();
    s += fmt::format("  injected ({}):", o.inject);
    for (int k = 0; k < kFaultKinds; ++k)
      if (c.injected[static_cast<size_t>(k)])
        s += fmt::format(" {}={}", fault_kind_name(static_cast<FaultKind>(k)), c.injected[static_cast<size_t>(k)]);
    s += fmt::format(" (calls: read {}, write {}, mkwrite {}, sync {})\n", c.read_calls,
                     c.write_calls, c.mkwrite_calls, c.sync_calls);
  }
  const Stats st = h.stats();
  s += fmt::format(
      "  engine: faults missing {} minor {} wp {}, pages filled {} written back {} reclaimed {}, "
      "read errors {}, write errors {}, mkwrite errors {}, sigbus {}\n",
      st.missing_faults, st.minor_faults, st.wp_faults, st.pages_filled, st.pages_written_back,
      st.pages_reclaimed, st.read_errors, st.write_errors, st.mkwrite_errors, st.sigbus_sent);
  std::fputs(s.c_str(), stdout);
}

/// One `faultline verify` run: T workers (or the caller alone) take op
/// numbers from one counter until the last op or the first failure.
class VerifyRun {
 public:
  explicit VerifyRun(VerifyOptions& o)
      : o_(o), log_(o.keep_log), h_(o),
        corrupt_at_(o.self_test_corrupt ? std::max<uint64_t>(1, o.ops / 2) : 0),
        slice_(o.size / h_.page() / o.threads * h_.page()) {}

  /// Runs every op; the exit code (0 OK, 1 a mismatch, reported).
  int run() {
    const auto t0 = std::chrono::steady_clock::now();
    if (o_.threads == 1) {
      worker(0);
    } else {
      std::vector<std::thread> ts;
      for (unsigned i = 0; i < o_.threads; ++i) ts.emplace_back([this, i] { worker(i); });
      for (auto& th : ts) th.join();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!failure_) {
      try {
        h_.final_check();
      } catch (Mismatch& m) {
        failure_ = Failure{std::move(m), "final check (after the last op)", o_.ops};
      }
    }
    if (failure_) {
      print_mismatch(failure_->m, failure_->op, log_, replay_command(o_, failure_->n));
      return 1;
    }
    print_summary(o_, h_, std::min(o_.ops, next_op_.load()), secs, per_op_);
    return 0;
  }

 private:
  /// Worker `id`'s context: its seed and, with several threads, its slice.
  ThreadCtx thread_ctx(unsigned id) const {
    ThreadCtx t;
    t.id = o_.threads == 1 ? 0 : id + 1;
    t.rng = Rng(o_.seed + 0x1000193ull * id);
    t.lo = o_.threads == 1 ? 0 : id * slice_;
    t.hi = o_.threads == 1 ? o_.size : (id + 1 == o_.threads ? o_.size : (id + 1) * slice_);
    return t;
  }

  /// Op n (the self-test's deliberate model corruption at corrupt_at_).
  void run_op(ThreadCtx& t, uint64_t n, std::string& d) {
    if (n != corrupt_at_) return h_.run_one(t, n, d);
    h_.corrupt_model(t, d);
    log_.add(n, t.id, d);
    d = "check (whole file)";
    h_.check_all("self-test check");
  }

  /// The first failure stops every worker.
  void fail(Mismatch m, uint64_t n, const std::string& d) {
    std::lock_guard g(fail_mu_);
    if (!failure_) failure_ = Failure{std::move(m), fmt::format("{}: {}", n, d), n};
    stop_ = true;
  }

  void worker(unsigned id) {
    ThreadCtx t = thread_ctx(id);
    while (!stop_.load(std::memory_order_relaxed)) {
      const uint64_t n = next_op_.fetch_add(1) + 1;
      if (n > o_.ops) break;
      std::string d;
      const uint64_t inj = h_.injected_total();
      try {
        run_op(t, n, d);
      } catch (Mismatch& m) {
        fail(std::move(m), n, d);
        break;
      } catch (const std::exception& e) {
        fail(Mismatch{std::string("unexpected error: ") + e.what()}, n, d);
        break;
      }
      const uint64_t k = h_.injected_total() - inj;
      log_.add(n, t.id, k && o_.threads == 1 ? fmt::format("{} [injected {}]", d, k) : d);
    }
    std::lock_guard g(fail_mu_);
    for (size_t i = 0; i < per_op_.size(); ++i) per_op_[i] += t.per_op[i];
  }

  VerifyOptions& o_;  // Harness takes it non-const
  OpLog log_;
  Harness h_;
  const uint64_t corrupt_at_;
  const uint64_t slice_;
  std::mutex fail_mu_;
  std::optional<Failure> failure_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_op_{0};
  std::array<uint64_t, kVerifyOps> per_op_{};
};

}  // namespace

int run_verify(VerifyOptions& o) {
  if (std::string err = validate_verify_options(o); !err.empty()) {
    fmt::print(stderr, "faultline verify: {}\nUsage: faultline verify [--ops N] [--seed S] "
                       "[--size BYTES] [--backend file|memory] [--threads T] [--inject SPEC] "
                       "[--keep-log FILE] [--w-OP WEIGHT...] (see --help)\n", err);
    return 2;
  }
  fmt::print("faultline verify: seed {} ({} ops, size {}, backend {}, {} thread{}{})\n", o.seed,
             o.ops, o.size, o.backend, o.threads, o.threads == 1 ? "" : "s",
             o.inject.empty() ? "" : ", inject " + o.inject);
  std::fflush(stdout);
  return VerifyRun(o).run();
}

}  // namespace faultline::cli
