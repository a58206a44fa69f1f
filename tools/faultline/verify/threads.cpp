// faultline verify — the runner: single-thread (deterministic: same seed, same
// ops, same injected faults) or T threads each owning a page-aligned slice;
// the final check, the summary and the report on a mismatch.
#include <fmt/format.h>

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
  OpLog log(o.keep_log);
  Harness h(o);
  const uint64_t corrupt_at = o.self_test_corrupt ? std::max<uint64_t>(1, o.ops / 2) : 0;

  std::mutex fail_mu;
  std::optional<Failure> failure;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> next_op{0};
  std::array<uint64_t, kVerifyOps> per_op{};
  const uint64_t slice = o.size / h.page() / o.threads * h.page();

  auto worker = [&](unsigned id) {
    ThreadCtx t;
    t.id = o.threads == 1 ? 0 : id + 1;
    t.rng = Rng(o.seed + 0x1000193ull * id);
    t.lo = o.threads == 1 ? 0 : id * slice;
    t.hi = o.threads == 1 ? o.size : (id + 1 == o.threads ? o.size : (id + 1) * slice);
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t n = next_op.fetch_add(1) + 1;
      if (n > o.ops) break;
      std::string d;
      const uint64_t inj = h.injected_total();
      try {
        if (n == corrupt_at) {
          h.corrupt_model(t, d);
          log.add(n, t.id, d);
          d = "check (whole file)";
          h.check_all("self-test check");
        } else {
          h.run_one(t, n, d);
        }
      } catch (Mismatch& m) {
        std::lock_guard g(fail_mu);
        if (!failure) failure = Failure{std::move(m), fmt::format("{}: {}", n, d), n};
        stop = true;
        break;
      } catch (const std::exception& e) {
        std::lock_guard g(fail_mu);
        if (!failure) failure = Failure{Mismatch{std::string("unexpected error: ") + e.what()},
                                        fmt::format("{}: {}", n, d), n};
        stop = true;
        break;
      }
      const uint64_t k = h.injected_total() - inj;
      log.add(n, t.id, k && o.threads == 1 ? fmt::format("{} [injected {}]", d, k) : d);
    }
    std::lock_guard g(fail_mu);
    for (int i = 0; i < kVerifyOps; ++i) per_op[static_cast<size_t>(i)] += t.per_op[static_cast<size_t>(i)];
  };

  const auto t0 = std::chrono::steady_clock::now();
  if (o.threads == 1) {
    worker(0);
  } else {
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < o.threads; ++i) ts.emplace_back(worker, i);
    for (auto& th : ts) th.join();
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!failure) {
    try {
      h.final_check();
    } catch (Mismatch& m) {
      failure = Failure{std::move(m), "final check (after the last op)", o.ops};
    }
  }
  if (failure) {
    print_mismatch(failure->m, failure->op, log, replay_command(o, failure->n));
    return 1;
  }
  if (!o.quiet || true) print_summary(o, h, std::min(o.ops, next_op.load()), secs, per_op);
  return 0;
}

}  // namespace faultline::cli
