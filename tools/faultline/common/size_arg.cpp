#include "common/size_arg.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>

namespace faultline::cli {

std::optional<uint64_t> parse_size(std::string_view text) {
  uint64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc{} || ptr == first) return std::nullopt;
  std::string suffix;
  for (const char* p = ptr; p != last; ++p) suffix += static_cast<char>(std::tolower(*p));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "b") shift = 0;
  else if (suffix == "k" || suffix == "kb" || suffix == "kib") shift = 10;
  else if (suffix == "m" || suffix == "mb" || suffix == "mib") shift = 20;
  else if (suffix == "g" || suffix == "gb" || suffix == "gib") shift = 30;
  else if (suffix == "t" || suffix == "tb" || suffix == "tib") shift = 40;
  else return std::nullopt;
  if (shift != 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  unsigned u = 0;
  while (u + 1 < std::size(kUnits) && bytes != 0 && (bytes & 1023) == 0) {
    bytes >>= 10;
    ++u;
  }
  return fmt::format("{} {}", bytes, kUnits[u]);
}

}  // namespace faultline::cli
