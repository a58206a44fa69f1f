// faultline CLI — 64-bit FNV-1a, incremental (feed any split of the bytes and
// get the same digest).
#pragma once
#include <cstddef>
#include <cstdint>

namespace faultline::cli {

class Fnv1a64 {
 public:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ull;
  static constexpr uint64_t kPrime = 0x100000001b3ull;

  void update(const std::byte* p, std::size_t n) noexcept {
    uint64_t h = h_;
    for (std::size_t i = 0; i < n; ++i) {
      h ^= static_cast<uint8_t>(p[i]);
      h *= kPrime;
    }
    h_ = h;
  }
  uint64_t digest() const noexcept { return h_; }

 private:
  uint64_t h_ = kOffsetBasis;
};

}  // namespace faultline::cli
