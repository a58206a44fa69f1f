// Object names, the header object's text format, the notify message, RangeSet.
#include "backends/rados/rados_format.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace faultline::rados {

std::string check_name(const std::string& name) {
  if (name.empty()) return "empty name";
  if (name.size() > kMaxName) return "name longer than " + std::to_string(kMaxName) + " bytes";
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return "name contains a NUL or control character";
  return "";
}

std::string header_name(const std::string& name) { return name + ".hdr"; }

std::string chunk_name(const std::string& name, uint64_t index) {
  char buf[24];
  std::snprintf(buf, sizeof buf, ".%016" PRIx64, index);
  return name + buf;
}

static constexpr char kMagic[] = "faultline-rados 1\n";

std::string encode_header(const Header& h) {
  return std::string(kMagic) + "object_size " + std::to_string(h.object_size) + "\nsize " +
         std::to_string(h.size) + "\n";
}

std::optional<Header> decode_header(const std::string& text) {
  if (text.size() > 4096 || !text.starts_with(kMagic)) return std::nullopt;
  Header h;
  bool have_os = false, have_size = false;
  size_t pos = sizeof kMagic - 1;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) return std::nullopt;
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    const auto sp = line.find(' ');
    if (sp == std::string::npos) return std::nullopt;
    const std::string k = line.substr(0, sp), v = line.substr(sp + 1);
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 19)
      return std::nullopt;
    const uint64_t n = std::stoull(v);
    if (k == "object_size") h.object_size = n, have_os = true;
    else if (k == "size") h.size = n, have_size = true;
    // unknown keys: ignored (forward compatible)
  }
  if (!have_os || !have_size || h.object_size == 0 || h.object_size % 4096) return std::nullopt;
  return h;
}

void RangeSet::add(uint64_t off, uint64_t len) {
  if (len == 0) return;
  uint64_t end = off + len < off ? ~uint64_t{0} : off + len;
  auto it = r_.upper_bound(off);
  if (it != r_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= off) {
      off = prev->first;
      end = std::max(end, prev->second);
      it = r_.erase(prev);
    }
  }
  while (it != r_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = r_.erase(it);
  }
  r_.emplace(off, end);
}

std::vector<std::pair<uint64_t, uint64_t>> RangeSet::ranges() const {
  std::vector<std::pair<uint64_t, uint64_t>> v;
  v.reserve(r_.size());
  for (auto [o, e] : r_) v.emplace_back(o, e - o);
  return v;
}

static constexpr uint32_t kNoticeMagic = 0x464c4e31;  // "FLN1"

static void put64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }

std::string encode_notice(const Notice& n) {
  auto ranges = n.ranges;
  if (ranges.size() > kMaxRanges) {
    const uint64_t lo = ranges.front().first;
    const uint64_t hi = ranges.back().first + ranges.back().second;
    ranges = {{lo, hi - lo}};
  }
  std::string s;
  const uint32_t magic = kNoticeMagic, cnt = static_cast<uint32_t>(ranges.size());
  s.append(reinterpret_cast<const char*>(&magic), 4);
  s.append(reinterpret_cast<const char*>(&cnt), 4);
  put64(s, n.sender);
  put64(s, n.size);
  for (auto [o, l] : ranges) put64(s, o), put64(s, l);
  return s;
}

std::optional<Notice> decode_notice(const void* data, size_t len) {
  const auto* p = static_cast<const char*>(data);
  if (len < 24) return std::nullopt;
  uint32_t magic, cnt;
  std::memcpy(&magic, p, 4);
  std::memcpy(&cnt, p + 4, 4);
  if (magic != kNoticeMagic || cnt > kMaxRanges || len != 24 + size_t{cnt} * 16) return std::nullopt;
  Notice n;
  std::memcpy(&n.sender, p + 8, 8);
  std::memcpy(&n.size, p + 16, 8);
  for (uint32_t i = 0; i < cnt; ++i) {
    uint64_t o, l;
    std::memcpy(&o, p + 24 + 16 * i, 8);
    std::memcpy(&l, p + 32 + 16 * i, 8);
    n.ranges.emplace_back(o, l);
  }
  return n;
}

}  // namespace faultline::rados
