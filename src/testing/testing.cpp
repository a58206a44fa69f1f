// The race harness: schedule points and rule breakers (faultline/testing.hpp).
// Compiled only with FAULTLINE_TESTING (OFF by default). Nothing here reads the
// environment: only test code can break a rule (break_rules) or arm a point.
#include "testing/testing.hpp"

#include <array>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>

#include "testing/sched.hpp"

namespace faultline::detail {

std::atomic<int> g_points_live{0};
std::atomic<uint32_t> g_broken_rules[32] = {};

namespace {
struct Point {
  int armed = 0;    // threads still to park
  int parked = 0;   // threads parked now (release() and reset() count them out at once)
  int hits = 0;
  uint64_t epoch = 0;  // bumped by release()
};
std::mutex g_mu;
std::condition_variable g_cv;
std::map<std::string, Point> g_points;

// "R1a,R7" -> per rule the bits of sched.hpp (bit 0 whole rule, bit k guard
// 'a' + k - 1). Unknown tokens are ignored.
std::array<uint32_t, 32> parse_rules(const std::string& list) {
  std::array<uint32_t, 32> bits{};
  std::stringstream ss(list);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.size() < 2 || (tok[0] != 'R' && tok[0] != 'r')) continue;
    char* end = nullptr;
    const long n = std::strtol(tok.c_str() + 1, &end, 10);
    if (n <= 0 || n >= 32) continue;
    if (*end == '\0') bits[n] |= 1u;
    else if (*end >= 'a' && *end <= 'z' && end[1] == '\0') bits[n] |= 1u << (*end - 'a' + 1);
  }
  return bits;
}
}  // namespace

namespace {
std::map<std::string, std::pair<int, int>> g_faults;  // site -> {errno, times left}
}  // namespace

int injected_error(const char* site) {
  std::lock_guard g(g_mu);
  auto it = g_faults.find(site);
  if (it == g_faults.end() || it->second.second <= 0) return 0;
  --it->second.second;
  return it->second.first;
}

void sched_point(const char* name) {
  std::unique_lock g(g_mu);
  Point& p = g_points[name];
  ++p.hits;
  g_cv.notify_all();  // wait_reached() callers count hits
  if (p.armed <= 0) return;
  --p.armed;
  ++p.parked;
  const uint64_t e = p.epoch;
  g_cv.notify_all();
  g_cv.wait(g, [&] { return p.epoch != e; });
  // Not parked any more since the release (it set parked to 0): a thread
  // released but not yet running must not count as parked for the next
  // arm()'s wait_parked().
}

}  // namespace faultline::detail

namespace faultline::testing {

using namespace faultline::detail;

void arm(const std::string& point, int count) {
  std::lock_guard g(g_mu);
  g_points[point].armed += count;
  g_points_live.store(1);
}

bool wait_parked(const std::string& point, std::chrono::milliseconds timeout, int n) {
  std::unique_lock g(g_mu);
  return g_cv.wait_for(g, timeout, [&] { return g_points[point].parked >= n; });
}

void release(const std::string& point) {
  std::lock_guard g(g_mu);
  Point& p = g_points[point];
  p.armed = 0;
  p.parked = 0;
  ++p.epoch;
  g_cv.notify_all();
}

void fail_next(const std::string& site, int err, int count) {
  std::lock_guard g(g_mu);
  g_faults[site] = {err, count};
  g_points_live.store(1);
}

void reset() {
  std::lock_guard g(g_mu);
  g_faults.clear();
  g_points_live.store(1);  // count hits from now on (reached(), wait_reached())
  for (auto& [name, p] : g_points) {
    p.armed = 0;
    p.parked = 0;
    p.hits = 0;
    ++p.epoch;
  }
  g_cv.notify_all();
}

int hits(const std::string& point) {
  std::lock_guard g(g_mu);
  return g_points[point].hits;
}

namespace {
int reached_locked(const std::string& prefix) {
  int n = 0;
  for (auto it = g_points.lower_bound(prefix);
       it != g_points.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    n += it->second.hits;
  return n;
}
}  // namespace

int reached(const std::string& prefix) {
  std::lock_guard g(g_mu);
  return reached_locked(prefix);
}

Reach wait_reached(const std::string& prefix, int n, const std::function<bool()>& stop,
                   std::chrono::milliseconds timeout) {
  std::unique_lock g(g_mu);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (reached_locked(prefix) >= n) return Reach::reached;
    if (stop && stop()) {
      // stop() may have turned true because the thread passed the point and
      // finished: the count decides first.
      return reached_locked(prefix) >= n ? Reach::reached : Reach::stopped;
    }
    if (g_cv.wait_until(g, deadline) == std::cv_status::timeout) {
      if (reached_locked(prefix) >= n) return Reach::reached;
      return stop && stop() ? Reach::stopped : Reach::timed_out;
    }
  }
}

void notify() {
  std::lock_guard g(g_mu);
  g_cv.notify_all();
}

bool rule_broken(int n) { return n > 0 && n < 32 && (g_broken_rules[n].load() & 1u); }

void break_rules(const std::string& list) {
  const auto bits = parse_rules(list);
  for (size_t n = 0; n < bits.size(); ++n) g_broken_rules[n].store(bits[n]);
}

}  // namespace faultline::testing
