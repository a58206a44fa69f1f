// faultline CLI — byte sizes on the command line: "1048576", "64M", "1G",
// "4K", "2MiB" (binary multiples; K, M, G, T, optional "iB" or "B", any case).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace faultline::cli {

/// The size `text` names, or nullopt when it is not a size (or overflows).
std::optional<uint64_t> parse_size(std::string_view text);

/// "1 GiB", "64 MiB", "4 KiB", "12345 B": the largest unit that divides evenly.
std::string format_size(uint64_t bytes);

}  // namespace faultline::cli
