// faultline CLI — the benches' word helpers: the 8-byte load a touch makes,
// and splitmix64's finalizer (page stamps, page choice).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace faultline::cli {

/// The 8 bytes at p (any alignment).
inline uint64_t load_word(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// splitmix64's output function: a well-mixed 64-bit hash of z.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace faultline::cli
