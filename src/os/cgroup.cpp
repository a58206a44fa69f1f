// The process's memory cgroup and its limit (include/faultline/cgroup.hpp):
// the one place they are read.
#include "faultline/cgroup.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

namespace faultline {

namespace {
// v1 reports "no limit" as PAGE_COUNTER_MAX pages (~2^63 bytes); anything
// this large is no limit.
constexpr uint64_t kNoLimit = uint64_t{1} << 62;

struct Mount {
  std::string root, point, fstype, superopts;
};

std::vector<Mount> cgroup_mounts(const std::string& mountinfo) {
  std::vector<Mount> out;
  std::ifstream f(mountinfo);
  for (std::string line; std::getline(f, line);) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
    std::istringstream ss(line);
    std::vector<std::string> w;
    for (std::string x; ss >> x;) w.push_back(x);
    const auto dash = std::find(w.begin(), w.end(), "-");
    if (w.size() < 5 || dash == w.end() || w.end() - dash < 4) continue;
    const std::string& type = dash[1];
    if (type != "cgroup" && type != "cgroup2") continue;
    out.push_back({w[3], w[4], type, dash[3]});
  }
  return out;
}

bool has_word(const std::string& list, char sep, const std::string& word) {
  std::stringstream ss(list);
  for (std::string x; std::getline(ss, x, sep);)
    if (x == word) return true;
  return false;
}

/// The cgroup's directory under a mount: `path` is relative to the
/// hierarchy's root, which the mount may show from below (its `root`).
std::string dir_under(const Mount& m, const std::string& path) {
  std::string rel = path;
  if (m.root != "/" && rel.compare(0, m.root.size(), m.root) == 0) rel = rel.substr(m.root.size());
  if (rel == "/") rel.clear();
  return m.point + rel;
}

/// A limit file's value in bytes; 0 for none ("max", missing, unlimited).
uint64_t read_limit(const std::string& path) {
  std::ifstream f(path);
  uint64_t v = 0;
  if (!(f >> v) || v >= kNoLimit) return 0;  // "max" fails the read: no limit
  return v;
}

uint64_t tighter(uint64_t a, uint64_t b) { return a == 0 ? b : b == 0 ? a : std::min(a, b); }
}  // namespace

MemoryCgroupInfo memory_cgroup(const std::string& proc_cgroup, const std::string& mountinfo) {
  MemoryCgroupInfo info;
  std::string v1_path, v2_path;
  bool have_v1 = false, have_v2 = false;
  std::ifstream f(proc_cgroup);
  for (std::string line; std::getline(f, line);) {
    // "hierarchy-id:controller-list:path"
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (has_word(ctrls, ',', "memory")) have_v1 = true, v1_path = path;
    if (line.compare(0, 3, "0::") == 0) have_v2 = true, v2_path = path;
  }
  const auto mounts = cgroup_mounts(mountinfo);
  if (have_v1)
    for (const Mount& m : mounts)
      if (m.fstype == "cgroup" && has_word(m.superopts, ',', "memory")) {
        info.dir = dir_under(m, v1_path);
        info.mount = m.point;
        // hierarchical_memory_limit: the tightest limit of the cgroup and its
        // ancestors, as the kernel enforces it.
        std::ifstream st(info.dir + "/memory.stat");
        std::string k;
        uint64_t v = 0;
        bool found = false;
        while (st >> k >> v)
          if (k == "hierarchical_memory_limit") {
            info.limit_bytes = v >= kNoLimit ? 0 : v;
            found = true;
            break;
          }
        if (!found) info.limit_bytes = read_limit(info.dir + "/memory.limit_in_bytes");
        return info;
      }
  if (have_v2)
    for (const Mount& m : mounts) {
      if (m.fstype != "cgroup2") continue;
      const std::string dir = dir_under(m, v2_path);
      std::ifstream c(dir + "/cgroup.controllers");
      std::string all;
      if (!c || !std::getline(c, all) || !has_word(all, ' ', "memory")) continue;
      info.dir = dir;
      info.mount = m.point;
      info.v2 = true;
      // memory.max from the cgroup up to (not including) the mount's root,
      // which has none.
      for (std::string d = dir; d.size() > m.point.size(); d = d.substr(0, d.rfind('/')))
        info.limit_bytes = tighter(info.limit_bytes, read_limit(d + "/memory.max"));
      return info;
    }
  return info;
}

}  // namespace faultline
