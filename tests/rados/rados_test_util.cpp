#include "rados_test_util.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace rt {

static std::string env(const char* k) {
  const char* v = std::getenv(k);
  if (v && *v) return v;
  if (std::string_view(k) == "FAULTLINE_CEPH_SCRIPT") return FAULTLINE_CEPH_SCRIPT_DEFAULT;
  if (std::string_view(k) == "FAULTLINE_RADOS_POOL") return FAULTLINE_RADOS_POOL_DEFAULT;
  return "";
}

std::string conf() {
  auto c = env("FAULTLINE_RADOS_CONF");
  if (c.empty()) ADD_FAILURE() << "FAULTLINE_RADOS_CONF is not set: no test cluster (run through ctest)";
  else if (::access(c.c_str(), R_OK) != 0)
    ADD_FAILURE() << "test cluster conf " << c << " missing: the rados.cluster.start fixture failed";
  return c;
}

std::string pool() {
  auto p = env("FAULTLINE_RADOS_POOL");
  return p.empty() ? "faultline" : p;
}

std::string unique_name(const std::string& tag) {
  const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("t/") + (t ? t->name() : "x") + "/" + tag + "." + std::to_string(::getpid());
}

faultline::RadosOptions options(const std::string& name, uint64_t object_size) {
  faultline::RadosOptions o;
  o.conf = conf();
  o.pool = pool();
  o.name = name;
  o.object_size = object_size;
  o.create = true;
  o.op_timeout_s = 20;
  o.connect_timeout_s = 10;
  return o;
}

int sh(const std::string& cmd, std::string* out) {
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  const int st = ::pclose(f);
  if (out) *out = s;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static std::string q(const std::string& s) {  // shell quoting
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

bool rados_get(const std::string& conf, const std::string& pool, const std::string& oid,
               std::vector<std::byte>& out) {
  char tmpl[] = "/tmp/fl-rados-get.XXXXXX";
  const int fd = ::mkstemp(tmpl);
  if (fd < 0) return false;
  ::close(fd);
  std::string msg;
  const int rc = sh("rados -c " + q(conf) + " -p " + q(pool) + " get " + q(oid) + " " + tmpl, &msg);
  out.clear();
  if (rc == 0) {
    std::ifstream in(tmpl, std::ios::binary);
    std::vector<char> v((std::istreambuf_iterator<char>(in)), {});
    out.resize(v.size());
    std::memcpy(out.data(), v.data(), v.size());
  } else if (msg.find("No such file") == std::string::npos) {
    ADD_FAILURE() << "rados get " << oid << ": " << msg;
  }
  ::unlink(tmpl);
  return rc == 0;
}

std::vector<std::byte> rados_get_file(const faultline::RadosBackend& b, uint64_t size) {
  std::vector<std::byte> all(size);
  const uint64_t os = b.object_size();
  for (uint64_t i = 0; i * os < size; ++i) {
    std::vector<std::byte> obj;
    if (!rados_get(b.options().conf, b.options().pool, b.chunk_object(i), obj)) continue;
    const uint64_t n = std::min<uint64_t>(obj.size(), size - i * os);
    std::memcpy(all.data() + i * os, obj.data(), n);
  }
  return all;
}

void remove_file(const faultline::RadosBackend& b, uint64_t size) {
  std::string cmd = "rados -c " + q(b.options().conf) + " -p " + q(b.options().pool) + " rm " +
                    q(b.header_object());
  for (uint64_t i = 0; i * b.object_size() < size; ++i) cmd += " " + q(b.chunk_object(i));
  sh(cmd);
}

std::byte pat(uint64_t off, uint32_t seed) {
  uint64_t x = off * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<std::byte>(x & 0xff);
}

std::vector<std::byte> pattern(uint64_t off, std::size_t len, uint32_t seed) {
  std::vector<std::byte> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = pat(off + i, seed);
  return v;
}

int64_t first_diff(const std::byte* a, const std::byte* b, std::size_t len) {
  for (size_t i = 0; i < len; ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

bool all_zero(const std::byte* p, std::size_t len) {
  for (size_t i = 0; i < len; ++i)
    if (p[i] != std::byte{0}) return false;
  return true;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

PrivateCluster::PrivateCluster(const std::string& tag, uint64_t memstore_bytes) {
  const std::string script = env("FAULTLINE_CEPH_SCRIPT");
  if (script.empty()) {
    ADD_FAILURE() << "FAULTLINE_CEPH_SCRIPT is not set (run through ctest)";
    return;
  }
  char tmpl[] = "/tmp/fl-ceph.XXXXXX";
  if (!::mkdtemp(tmpl)) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = std::string(tmpl) + "/" + tag;
  conf_ = dir_ + "/ceph.conf";
  std::string out;
  const double t0 = now_s();
  const int rc = sh("CEPH_MEMSTORE_BYTES=" + std::to_string(memstore_bytes) + " " + q(script) +
                        " start " + q(dir_),
                    &out);
  start_s_ = now_s() - t0;
  up_ = rc == 0;
  if (!up_) ADD_FAILURE() << "private cluster did not start: " << out;
}

void PrivateCluster::kill_osd() {
  sh(q(env("FAULTLINE_CEPH_SCRIPT")) + " kill-osd " + q(dir_));
}

void PrivateCluster::pause_osd() {
  sh(q(env("FAULTLINE_CEPH_SCRIPT")) + " pause-osd " + q(dir_));
}

void PrivateCluster::resume_osd() {
  sh(q(env("FAULTLINE_CEPH_SCRIPT")) + " resume-osd " + q(dir_));
}

PrivateCluster::~PrivateCluster() {
  if (dir_.empty()) return;
  sh(q(env("FAULTLINE_CEPH_SCRIPT")) + " stop " + q(dir_));
  sh("rm -rf " + q(dir_.substr(0, dir_.rfind('/'))));
}

}  // namespace rt
