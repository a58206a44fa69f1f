// The RADOS backend's on-the-wire formats: object names, the header object,
// the notify message carrying changed ranges, and the range set that collects
// them between syncs.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace faultline::rados {

/// Checks a file name: non-empty, at most kMaxName bytes, no NUL or control
/// characters. Returns "" or what is wrong.
inline constexpr size_t kMaxName = 400;
std::string check_name(const std::string& name);
std::string header_name(const std::string& name);
std::string chunk_name(const std::string& name, uint64_t index);

struct Header {
  uint64_t object_size = 0;
  uint64_t size = 0;
};
std::string encode_header(const Header& h);
/// nullopt when `text` is not a version-1 faultline header.
std::optional<Header> decode_header(const std::string& text);

/// Byte ranges [off, end), merged when they touch or overlap.
class RangeSet {
 public:
  void add(uint64_t off, uint64_t len);
  bool empty() const { return r_.empty(); }
  size_t count() const { return r_.size(); }
  void clear() { r_.clear(); }
  /// (off, len) pairs in order.
  std::vector<std::pair<uint64_t, uint64_t>> ranges() const;

 private:
  std::map<uint64_t, uint64_t> r_;  // off -> end
};

/// A notify: who sent it, the size after the sync, the changed ranges. More
/// than kMaxRanges ranges collapse into one covering them all.
inline constexpr size_t kMaxRanges = 4096;
struct Notice {
  uint64_t sender = 0;
  uint64_t size = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
};
std::string encode_notice(const Notice& n);
std::optional<Notice> decode_notice(const void* data, size_t len);

}  // namespace faultline::rados
