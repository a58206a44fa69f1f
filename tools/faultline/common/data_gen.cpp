#include "common/data_gen.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/sys_error.hpp"

namespace faultline::cli {

namespace {

constexpr std::size_t kChunkBytes = std::size_t{8} << 20;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

void write_random_bytes(int fd, uint64_t size, uint64_t seed, const std::function<void()>& poll) {
  std::vector<uint64_t> words(kChunkBytes / sizeof(uint64_t));
  uint64_t state = seed;
  uint64_t left = size;
  while (left > 0) {
    if (poll) poll();
    for (auto& w : words) w = splitmix64(state);
    const std::size_t chunk = static_cast<std::size_t>(std::min<uint64_t>(left, kChunkBytes));
    const char* p = reinterpret_cast<const char*>(words.data());
    std::size_t done = 0;
    while (done < chunk) {
      const ssize_t n = ::write(fd, p + done, chunk - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("write");
      }
      done += static_cast<std::size_t>(n);
    }
    left -= chunk;
  }
}

}  // namespace faultline::cli
