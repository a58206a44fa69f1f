// faultline-gen-test-file PATH PAGES [DELTA]: writes PAGES * kBasePageSize +
// DELTA bytes (DELTA may be negative) of pseudo-random data to PATH, for the
// CLI's tests (sizes around page boundaries without spelling the page size).
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <exception>
#include <string_view>

#include "common/data_gen.hpp"
#include "faultline/constants.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace {

bool parse_int(std::string_view s, int64_t& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace faultline::cli;
  int64_t pages = 0, delta = 0;
  if (argc < 3 || argc > 4 || !parse_int(argv[2], pages) || (argc == 4 && !parse_int(argv[3], delta))) {
    fmt::print(stderr, "usage: {} PATH PAGES [DELTA]\n", argv[0]);
    return 2;
  }
  const int64_t size = pages * static_cast<int64_t>(faultline::kBasePageSize) + delta;
  if (pages < 0 || size < 0) {
    fmt::print(stderr, "{}: size {} is negative\n", argv[0], size);
    return 2;
  }
  try {
    UniqueFd fd(::open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw_errno(argv[1]);
    write_random_bytes(fd.get(), static_cast<uint64_t>(size), static_cast<uint64_t>(size) * 31 + 7);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", argv[0], e.what());
    return 2;
  }
  return 0;
}
