// Helpers for the RADOS tests: the shared test cluster (from the CTest
// fixture's environment), private clusters, the `rados` CLI, data patterns.
#pragma once
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "faultline/faultline.hpp"
#include "faultline/rados_backend.hpp"

namespace rt {

inline constexpr std::size_t kPage = faultline::kBasePageSize;
inline constexpr uint64_t kMiB = 1u << 20;

/// The shared cluster's ceph.conf and pool (FAULTLINE_RADOS_CONF /
/// FAULTLINE_RADOS_POOL, set by CTest). A missing cluster is a test FAILURE:
/// these call ADD_FAILURE and return "" when the variable is unset.
std::string conf();
std::string pool();
/// A file name unique to this test and process.
std::string unique_name(const std::string& tag);
/// Options for `name` on the shared cluster (create = true).
faultline::RadosOptions options(const std::string& name, uint64_t object_size = 4 * kMiB);

/// Runs a shell command; returns its exit status (stdout/stderr to `out` when given).
int sh(const std::string& cmd, std::string* out = nullptr);
/// `rados get` of one object into memory: nullopt-like empty + false when absent.
bool rados_get(const std::string& conf, const std::string& pool, const std::string& oid,
               std::vector<std::byte>& out);
/// The file's bytes [0, size) as `rados get` of its chunk objects shows them
/// (absent or short objects read as zeros).
std::vector<std::byte> rados_get_file(const faultline::RadosBackend& b, uint64_t size);
/// Removes every object of the file (best effort).
void remove_file(const faultline::RadosBackend& b, uint64_t size);

std::byte pat(uint64_t off, uint32_t seed);
std::vector<std::byte> pattern(uint64_t off, std::size_t len, uint32_t seed);
int64_t first_diff(const std::byte* a, const std::byte* b, std::size_t len);
bool all_zero(const std::byte* p, std::size_t len);
double now_s();

/// A private cluster in a temp directory (tests that kill the OSD).
class PrivateCluster {
 public:
  explicit PrivateCluster(const std::string& tag, uint64_t memstore_bytes = 512 * kMiB);
  ~PrivateCluster();
  bool up() const { return up_; }
  const std::string& conf() const { return conf_; }
  double start_seconds() const { return start_s_; }
  void kill_osd();
  void pause_osd();   // SIGSTOP: unreachable, data kept
  void resume_osd();  // SIGCONT

 private:
  std::string dir_, conf_;
  bool up_ = false;
  double start_s_ = 0;
};

}  // namespace rt
