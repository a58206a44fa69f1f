// faultline CLI — `bench --out-of-core`'s workloads: the names, the page
// generator (PageGen) and the offline LRU reference. One measurement of them
// is in ooc_measure.cpp.
#include "bench/ooc_workload.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "bench/words.hpp"

namespace faultline::cli {

namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // splitmix64's increment

}  // namespace

const char* to_string(OocWorkload w) {
  switch (w) {
    case OocWorkload::Uniform: return "uniform";
    case OocWorkload::Hotset: return "hotset";
    case OocWorkload::Zipf: return "zipf";
    case OocWorkload::Scan: return "scan";
    case OocWorkload::ScanHot: return "scan+hot";
  }
  return "?";
}

const char* to_string(OocMethod m) {
  switch (m) {
    case OocMethod::Faultline: return "faultline";
    case OocMethod::FaultlineSelf: return "faultline-self";
    case OocMethod::Faultline2M: return "faultline-2M";
    case OocMethod::Mmap: return "mmap";
    case OocMethod::MmapRandom: return "mmap-random";
    case OocMethod::Direct: return "direct";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// PageGen

PageGen::PageGen(OocWorkload w, uint64_t pages, uint64_t seed, bool hot_only)
    : w_(w), pages_(std::max<uint64_t>(pages, 1)), state_(mix64(seed + kGolden)), hot_only_(hot_only) {
  hot_ = std::max<uint64_t>(1, pages_ / kOocHotFraction);
  if (w_ == OocWorkload::Zipf) {
    const double n = static_cast<double>(pages_);
    for (uint64_t i = 1; i <= pages_; ++i) zetan_ += 1.0 / std::pow(static_cast<double>(i), kOocZipfTheta);
    const double zeta2 = 1.0 + std::pow(0.5, kOocZipfTheta);
    alpha_ = 1.0 / (1.0 - kOocZipfTheta);
    eta_ = (1.0 - std::pow(2.0 / n, 1.0 - kOocZipfTheta)) / (1.0 - zeta2 / zetan_);
    half_pow_ = std::pow(0.5, kOocZipfTheta);
    scatter_ = 0x9e3779b97f4a7c15ull % pages_ | 1;
    while (std::gcd(scatter_, pages_) != 1) scatter_ += 2;
  }
}

uint64_t PageGen::rnd() {
  state_ += kGolden;
  return mix64(state_ + kGolden);
}

uint64_t PageGen::hot_page(uint64_t i) const {
  const uint64_t pg = i * kOocHotFraction + mix64((i ^ 0x686f74) + kGolden) % kOocHotFraction;
  return std::min(pg, pages_ - 1);
}

uint64_t PageGen::next() {
  if (hot_only_) return hot_page(rnd() % hot_);
  switch (w_) {
    case OocWorkload::Hotset:
      if (unit() < kOocHotShare) return hot_page(rnd() % hot_);
      return rnd() % pages_;
    case OocWorkload::Zipf: {
      const double u = unit(), uz = u * zetan_;
      uint64_t rank;
      if (uz < 1.0) rank = 0;
      else if (uz < 1.0 + half_pow_) rank = 1;
      else
        rank = std::min<uint64_t>(
            pages_ - 1,
            static_cast<uint64_t>(static_cast<double>(pages_) * std::pow(eta_ * u - eta_ + 1.0, alpha_)));
      return static_cast<uint64_t>((static_cast<unsigned __int128>(rank) * scatter_) % pages_);
    }
    default:
      return rnd() % pages_;
  }
}

double offline_lru_hit_ratio(OocWorkload w, uint64_t pages, uint64_t capacity, uint64_t length) {
  if (pages == 0 || capacity == 0 || length == 0) return 0;
  constexpr uint32_t kNil = UINT32_MAX;
  std::vector<uint32_t> prev(pages, kNil), next(pages, kNil);
  std::vector<uint8_t> in(pages, 0);
  uint32_t head = kNil, tail = kNil;  // head: most recent
  uint64_t size = 0, hits = 0, counted = 0;
  auto unlink = [&](uint32_t p) {
    if (prev[p] != kNil) next[prev[p]] = next[p]; else head = next[p];
    if (next[p] != kNil) prev[next[p]] = prev[p]; else tail = prev[p];
  };
  auto push_front = [&](uint32_t p) {
    prev[p] = kNil;
    next[p] = head;
    if (head != kNil) prev[head] = p;
    head = p;
    if (tail == kNil) tail = p;
  };
  PageGen g(w, pages, 1);
  for (uint64_t i = 0; i < length; ++i) {
    const auto p = static_cast<uint32_t>(g.next());
    const bool hit = in[p];
    if (i >= length / 2) {
      ++counted;
      hits += hit;
    }
    if (hit) {
      unlink(p);
    } else {
      if (size == capacity) {
        const uint32_t v = tail;
        unlink(v);
        in[v] = 0;
        --size;
      }
      in[p] = 1;
      ++size;
    }
    push_front(p);
  }
  return counted ? static_cast<double>(hits) / static_cast<double>(counted) : 0;
}

}  // namespace faultline::cli
