// The rados:// URI: rados://POOL/NAME?conf=PATH[&cluster=..][&object_size=..]...
#include <cerrno>
#include <charconv>
#include <string>
#include <system_error>

#include "faultline/rados_backend.hpp"

namespace faultline {

namespace {

[[noreturn]] void bad(std::string_view uri, const std::string& why) {
  throw std::system_error(EINVAL, std::generic_category(),
                          "rados: bad URI '" + std::string(uri) + "': " + why);
}

std::string decode(std::string_view uri, std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    unsigned v = 0;
    if (i + 2 >= s.size()) bad(uri, "truncated %-escape");
    auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (r.ec != std::errc() || r.ptr != s.data() + i + 3) bad(uri, "bad %-escape");
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

uint64_t parse_bytes(std::string_view uri, std::string_view key, std::string_view v) {
  uint64_t n = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), n);
  if (r.ec != std::errc() || r.ptr == v.data()) bad(uri, std::string(key) + " is not a number");
  std::string_view suf(r.ptr, v.data() + v.size() - r.ptr);
  unsigned shift = 0;
  if (suf == "" ) shift = 0;
  else if (suf == "K" || suf == "k" || suf == "KiB") shift = 10;
  else if (suf == "M" || suf == "MiB") shift = 20;
  else if (suf == "G" || suf == "GiB") shift = 30;
  else bad(uri, std::string(key) + " has an unknown suffix '" + std::string(suf) + "'");
  if (shift && n > (~uint64_t{0} >> shift)) bad(uri, std::string(key) + " overflows");
  return n << shift;
}

bool parse_bool(std::string_view uri, std::string_view key, std::string_view v) {
  if (v == "1" || v == "true" || v == "yes" || v.empty()) return true;
  if (v == "0" || v == "false" || v == "no") return false;
  bad(uri, std::string(key) + " must be 0 or 1");
}

}  // namespace

bool is_rados_uri(std::string_view s) { return s.starts_with("rados://"); }

RadosOptions parse_rados_uri(std::string_view uri) {
  if (!is_rados_uri(uri)) bad(uri, "does not start with rados://");
  std::string_view rest = uri.substr(8);
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) bad(uri, "expected rados://POOL/NAME");
  RadosOptions o;
  o.pool = decode(uri, rest.substr(0, slash));
  o.name = decode(uri, rest.substr(slash + 1));
  if (o.pool.empty()) bad(uri, "empty pool name");
  if (o.name.empty()) bad(uri, "empty object name");
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (kv.empty()) continue;
    const auto eq = kv.find('=');
    std::string_view k = kv.substr(0, eq);
    const std::string v = eq == std::string_view::npos ? std::string() : decode(uri, kv.substr(eq + 1));
    if (k == "conf") o.conf = v;
    else if (k == "cluster") o.cluster = v;
    else if (k == "user" || k == "id") o.user = v.find('.') == std::string::npos ? "client." + v : v;
    else if (k == "object_size") o.object_size = parse_bytes(uri, k, v);
    else if (k == "create") o.create = parse_bool(uri, k, v);
    else if (k == "readonly") o.writable = !parse_bool(uri, k, v);
    else if (k == "in_flight") o.max_in_flight = static_cast<unsigned>(parse_bytes(uri, k, v));
    else if (k == "timeout") {
      try {
        o.op_timeout_s = std::stod(v);
      } catch (...) {
        bad(uri, "timeout is not a number");
      }
      if (!(o.op_timeout_s > 0)) bad(uri, "timeout must be > 0");
      o.connect_timeout_s = o.op_timeout_s;
    } else {
      bad(uri, "unknown parameter '" + std::string(k) + "'");
    }
  }
  if (o.max_in_flight == 0) bad(uri, "in_flight must be > 0");
  return o;
}

}  // namespace faultline
