// The fault-injecting Backend wrapper (see faultline/faulty_backend.hpp).
#include "testing/faulty_backend.hpp"

#include <cerrno>
#include <charconv>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <stdexcept>
#include <thread>

namespace faultline {

namespace {

struct KindName {
  FaultKind kind;
  const char* canonical;
  const char* alias1;
  const char* alias2;
};
constexpr KindName kNames[] = {
    {FaultKind::ReadEio, "read:eio", "read-eio", nullptr},
    {FaultKind::ReadShort, "read:short", "read-short", "short-read"},
    {FaultKind::WriteEio, "write:eio", "write-eio", nullptr},
    {FaultKind::WriteEnospc, "write:enospc", "write-enospc", nullptr},
    {FaultKind::WriteShort, "write:short", "write-short", "short-write"},
    {FaultKind::MkwriteEio, "mkwrite:eio", "mkwrite-eio", nullptr},
    {FaultKind::MkwriteEnospc, "mkwrite:enospc", "mkwrite-enospc", nullptr},
    {FaultKind::SyncEio, "sync:eio", "sync-eio", nullptr},
    {FaultKind::DelayUs, "delay-us", "delay:us", "delay"},
};

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

uint64_t parse_u64(std::string_view s, const std::string& what) {
  uint64_t v = 0;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty())
    throw std::invalid_argument("bad number '" + std::string(s) + "' in " + what);
  return v;
}

double parse_prob(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    used = 0;
  }
  if (used != s.size() || s.empty() || !(v >= 0.0 && v <= 1.0))
    throw std::invalid_argument("bad probability '" + s + "' in " + what + " (want 0..1)");
  return v;
}

bool lookup_kind(const std::string& name, FaultKind* out) {
  for (const auto& k : kNames) {
    if (name == k.canonical || (k.alias1 && name == k.alias1) || (k.alias2 && name == k.alias2)) {
      *out = k.kind;
      return true;
    }
  }
  return false;
}

FaultInjector::Call call_of(FaultKind k) {
  switch (k) {
    case FaultKind::ReadEio:
    case FaultKind::ReadShort: return FaultInjector::Call::Read;
    case FaultKind::WriteEio:
    case FaultKind::WriteEnospc:
    case FaultKind::WriteShort: return FaultInjector::Call::Write;
    case FaultKind::MkwriteEio:
    case FaultKind::MkwriteEnospc: return FaultInjector::Call::Mkwrite;
    case FaultKind::SyncEio: return FaultInjector::Call::Sync;
    case FaultKind::DelayUs: break;
  }
  return FaultInjector::Call::Read;
}

}  // namespace

const char* fault_kind_name(FaultKind k) {
  for (const auto& n : kNames)
    if (n.kind == k) return n.canonical;
  return "?";
}

uint64_t FaultCounters::total() const {
  uint64_t t = 0;
  for (int i = 0; i < kFaultKinds; ++i)
    if (i != static_cast<int>(FaultKind::DelayUs)) t += injected[static_cast<size_t>(i)];
  return t;
}

FaultSpec FaultSpec::parse(std::string_view text) {
  FaultSpec spec;
  size_t pos = 0;
  const std::string all(text);
  while (pos <= all.size()) {
    size_t comma = all.find(',', pos);
    if (comma == std::string::npos) comma = all.size();
    const std::string item = trim(std::string_view(all).substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) {
      if (comma == all.size()) break;
      continue;
    }
    if (item.rfind("seed=", 0) == 0 || item.rfind("seed:", 0) == 0) {
      spec.seed = parse_u64(std::string_view(item).substr(5), "'" + item + "'");
      spec.has_seed = true;
      continue;
    }
    FaultRule rule;
    const std::string what = "'" + item + "'";
    // Longest kind name that prefixes the item, then the trigger.
    std::string rest;
    bool found = false;
    for (size_t len = item.size(); len > 0 && !found; --len) {
      FaultKind k;
      if (lookup_kind(item.substr(0, len), &k)) {
        rule.kind = k;
        rest = item.substr(len);
        found = true;
      }
    }
    if (!found) throw std::invalid_argument("unknown fault kind in " + what);
    if (rest.empty()) throw std::invalid_argument("missing probability or @N in " + what);
    const char sep = rest[0];
    std::string arg = rest.substr(1);
    if (rule.kind == FaultKind::DelayUs) {
      if (sep != '=' && sep != ':') throw std::invalid_argument("want delay-us=MAX in " + what);
      rule.value = parse_u64(arg, what);
      rule.when = FaultRule::When::Probability;
      rule.probability = 1.0;
    } else if (sep == '@') {
      rule.when = FaultRule::When::AtOffset;
      rule.value = parse_u64(arg, what);
    } else if (sep == '=' || sep == ':') {
      if (!arg.empty() && (arg[0] == '@' || arg[0] == '#')) {
        rule.when = FaultRule::When::NthCall;
        rule.value = parse_u64(std::string_view(arg).substr(1), what);
        if (rule.value == 0) throw std::invalid_argument("call numbers start at 1 in " + what);
      } else {
        rule.when = FaultRule::When::Probability;
        rule.probability = parse_prob(arg, what);
      }
    } else {
      throw std::invalid_argument("want KIND:P, KIND=@N or KIND@OFFSET in " + what);
    }
    spec.rules.push_back(rule);
  }
  return spec;
}

std::string FaultSpec::to_string() const {
  std::string s;
  for (const auto& r : rules) {
    if (!s.empty()) s += ',';
    s += fault_kind_name(r.kind);
    if (r.kind == FaultKind::DelayUs) {
      s += '=' + std::to_string(r.value);
      continue;
    }
    switch (r.when) {
      case FaultRule::When::Probability: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", r.probability);
        s += ':';
        s += buf;
        break;
      }
      case FaultRule::When::NthCall: s += "=@" + std::to_string(r.value); break;
      case FaultRule::When::AtOffset: s += '@' + std::to_string(r.value); break;
    }
  }
  if (has_seed) s += (s.empty() ? "" : ",") + std::string("seed=") + std::to_string(seed);
  return s;
}

FaultInjector::FaultInjector(FaultSpec spec, uint64_t default_seed)
    : spec_(std::move(spec)), state_(spec_.has_seed ? spec_.seed : default_seed) {
  state_ ^= 0x9e3779b97f4a7c15ull;
}

uint64_t FaultInjector::next() {  // splitmix64
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

FaultCounters FaultInjector::counters() const {
  std::lock_guard g(mu_);
  return counters_;
}

int FaultInjector::decide(Call call, uint64_t off, uint64_t len) {
  if (suspended()) return -1;
  uint64_t delay_us = 0;
  int chosen = -1;
  {
    std::lock_guard g(mu_);
    uint64_t n = 0;
    switch (call) {
      case Call::Read: n = ++counters_.read_calls; break;
      case Call::Write: n = ++counters_.write_calls; break;
      case Call::Mkwrite: n = ++counters_.mkwrite_calls; break;
      case Call::Sync: n = ++counters_.sync_calls; break;
    }
    const uint64_t seq = ++per_offset_[{static_cast<int>(call), off}];
    auto draw = [&](size_t rule) {  // splitmix64 finaliser over the call's identity
      uint64_t z = state_ ^ (static_cast<uint64_t>(call) + 1) * 0xd1b54a32d192ed03ull ^
                   (off + 1) * 0x9e3779b97f4a7c15ull ^ seq * 0xbf58476d1ce4e5b9ull ^
                   (rule + 1) * 0x94d049bb133111ebull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    for (size_t ri = 0; ri < spec_.rules.size(); ++ri) {
      const auto& r = spec_.rules[ri];
      if (r.kind == FaultKind::DelayUs) {
        if (r.value) delay_us = draw(ri) % (r.value + 1);
        continue;
      }
      if (call_of(r.kind) != call) continue;
      bool fire = false;
      switch (r.when) {
        case FaultRule::When::Probability: {
          const double u = static_cast<double>(draw(ri) >> 11) * 0x1.0p-53;
          fire = u < r.probability;
          break;
        }
        case FaultRule::When::NthCall: fire = n == r.value; break;
        case FaultRule::When::AtOffset:
          fire = r.value >= off && r.value - off < std::max<uint64_t>(len, 1);
          break;
      }
      if (fire && chosen < 0) chosen = static_cast<int>(r.kind);
    }
    if (chosen >= 0) {
      ++counters_.injected[static_cast<size_t>(chosen)];
      total_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (delay_us) ++counters_.injected[static_cast<size_t>(FaultKind::DelayUs)];
  }
  if (delay_us) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  return chosen;
}

FaultyBackend::FaultyBackend(std::shared_ptr<Backend> inner, std::shared_ptr<FaultInjector> inj)
    : ForwardingBackend(std::move(inner)), injector_(std::move(inj)) {
  if (!inner_ || !injector_) throw std::invalid_argument("FaultyBackend: null backend or injector");
}

namespace {
// A short read: a page-aligned prefix (at least nothing), never the whole.
size_t short_len(size_t len) {
  if (len <= 4096) return 0;
  return ((len / 2) + 4095) & ~size_t{4095};
}

// One read call of [off, off+len): read:eio fails it, read:short reads only a
// prefix (`prefix(n)`), else `whole()` is the inner backend's call.
template <class Whole, class Prefix>
ssize_t inject_read(FaultInjector& inj, uint64_t off, size_t len, Whole&& whole, Prefix&& prefix) {
  switch (inj.decide(FaultInjector::Call::Read, off, len)) {
    case static_cast<int>(FaultKind::ReadEio): return -EIO;
    case static_cast<int>(FaultKind::ReadShort): {
      const size_t n = short_len(len);
      return n ? prefix(n) : 0;
    }
    default: return whole();
  }
}

// One write call: write:eio / write:enospc fail it, write:short tears it (a
// prefix lands through `prefix(n)`, then -EIO), else `whole()`.
template <class Whole, class Prefix>
int inject_write(FaultInjector& inj, uint64_t off, size_t len, Whole&& whole, Prefix&& prefix) {
  switch (inj.decide(FaultInjector::Call::Write, off, len)) {
    case static_cast<int>(FaultKind::WriteEio): return -EIO;
    case static_cast<int>(FaultKind::WriteEnospc): return -ENOSPC;
    case static_cast<int>(FaultKind::WriteShort): {
      const size_t n = short_len(len);
      if (n) (void)prefix(n);  // a torn write: a prefix lands, the call fails
      return -EIO;
    }
    default: return whole();
  }
}
}  // namespace

ssize_t FaultyBackend::read(uint64_t off, std::span<std::byte> buf) {
  return inject_read(*injector_, off, buf.size(), [&] { return inner_->read(off, buf); },
                     [&](size_t n) { return inner_->read(off, buf.subspan(0, n)); });
}

ssize_t FaultyBackend::read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) {
  // Decide only when the inner backend has the fast path; else the engine
  // falls back to read(), which decides itself (one decision per fill).
  ssize_t probe = inner_->read_into_fd(off, 0, fd, fd_off);
  if (probe == -EOPNOTSUPP) return probe;
  return inject_read(*injector_, off, len, [&] { return inner_->read_into_fd(off, len, fd, fd_off); },
                     [&](size_t n) { return inner_->read_into_fd(off, n, fd, fd_off); });
}

ssize_t FaultyBackend::read_aligned(uint64_t off, std::span<std::byte> buf) {
  // The 2 MiB fill and the UFFDIO_COPY fill: injected like read() when the
  // inner backend has the aligned path (an empty probe), else read()
  // decides (one decision per fill). A short one reads an unaligned prefix with read().
  if (inner_->read_aligned(off, buf.subspan(0, 0)) == -EOPNOTSUPP) return -EOPNOTSUPP;
  return inject_read(*injector_, off, buf.size(), [&] { return inner_->read_aligned(off, buf); },
                     [&](size_t n) { return inner_->read(off, buf.subspan(0, n)); });
}

int FaultyBackend::write(uint64_t off, std::span<const std::byte> buf) {
  return inject_write(*injector_, off, buf.size(), [&] { return inner_->write(off, buf); },
                      [&](size_t n) { return inner_->write(off, buf.subspan(0, n)); });
}

int FaultyBackend::write_aligned(uint64_t off, std::span<const std::byte> buf) {
  // 2 MiB write-back: as read_aligned (an empty probe, then one decision).
  if (inner_->write_aligned(off, buf.subspan(0, 0)) == -EOPNOTSUPP) return -EOPNOTSUPP;
  return inject_write(*injector_, off, buf.size(), [&] { return inner_->write_aligned(off, buf); },
                      [&](size_t n) { return inner_->write(off, buf.subspan(0, n)); });
}

int FaultyBackend::page_mkwrite(uint64_t off, size_t len) {
  switch (injector_->decide(FaultInjector::Call::Mkwrite, off, len)) {
    case static_cast<int>(FaultKind::MkwriteEio): return -EIO;
    case static_cast<int>(FaultKind::MkwriteEnospc): return -ENOSPC;
    default: return inner_->page_mkwrite(off, len);
  }
}

int FaultyBackend::page_mkwrite(MkwritePage& page) {
  switch (injector_->decide(FaultInjector::Call::Mkwrite, page.offset(), page.size())) {
    case static_cast<int>(FaultKind::MkwriteEio): return -EIO;
    case static_cast<int>(FaultKind::MkwriteEnospc): return -ENOSPC;
    default: return inner_->page_mkwrite(page);
  }
}

int FaultyBackend::sync() {
  if (injector_->decide(FaultInjector::Call::Sync, 0, 0) == static_cast<int>(FaultKind::SyncEio))
    return -EIO;
  return inner_->sync();
}

std::shared_ptr<FaultyBackend> make_faulty_backend(std::shared_ptr<Backend> inner,
                                                   std::string_view spec, uint64_t default_seed) {
  auto inj = std::make_shared<FaultInjector>(FaultSpec::parse(spec), default_seed);
  return std::make_shared<FaultyBackend>(std::move(inner), std::move(inj));
}

}  // namespace faultline
