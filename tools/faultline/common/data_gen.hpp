// faultline CLI — filling a file with pseudo-random bytes, fast (a splitmix64
// stream written with write(2) in large chunks). Deterministic for a seed.
#pragma once
#include <cstdint>
#include <functional>

namespace faultline::cli {

/// Writes `size` pseudo-random bytes at the current offset of `fd`.
/// `poll` (optional) is called between chunks, e.g. to throw on an interrupt.
/// Throws std::system_error on a write failure.
void write_random_bytes(int fd, uint64_t size, uint64_t seed,
                        const std::function<void()>& poll = {});

}  // namespace faultline::cli
