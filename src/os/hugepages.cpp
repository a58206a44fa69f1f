// The 2 MiB huge page pool, counted with its overcommit headroom, and the
// transparent huge page settings (include/faultline/hugepages.hpp): the one
// place either is read.
#include "faultline/hugepages.hpp"

#include <fstream>
#include <string>

namespace faultline {

namespace {
int64_t read_num(const std::string& path) {
  std::ifstream f(path);
  int64_t v = -1;
  if (!(f >> v)) return -1;
  return v;
}
}  // namespace

HugePagePool hugepage_pool(const std::string& sysfs_dir) {
  HugePagePool p;
  const int64_t fr = read_num(sysfs_dir + "/free_hugepages");
  const int64_t rs = read_num(sysfs_dir + "/resv_hugepages");
  const int64_t oc = read_num(sysfs_dir + "/nr_overcommit_hugepages");
  const int64_t su = read_num(sysfs_dir + "/surplus_hugepages");
  const int64_t nr = read_num(sysfs_dir + "/nr_hugepages");
  if (fr >= 0 && rs >= 0) {
    p = {fr, rs, oc < 0 ? 0 : oc, su < 0 ? 0 : su, nr < 0 ? 0 : nr, true};
    return p;
  }
  std::ifstream m("/proc/meminfo");
  std::string k;
  while (m >> k) {
    int64_t v = 0;
    if (k == "HugePages_Free:" && (m >> v)) p.free = v, p.readable = true;
    else if (k == "HugePages_Rsvd:" && (m >> v)) p.reserved = v;
    else if (k == "HugePages_Surp:" && (m >> v)) p.surplus = v;
    else if (k == "HugePages_Total:" && (m >> v)) p.nr = v;
  }
  p.nr = p.nr > p.surplus ? p.nr - p.surplus : 0;
  const int64_t o = read_num("/proc/sys/vm/nr_overcommit_hugepages");
  p.overcommit = o < 0 ? 0 : o;
  return p;
}

std::string thp_setting(const std::string& name, const std::string& sysfs_dir) {
  std::ifstream f(sysfs_dir + "/" + name);
  std::string line;
  if (!std::getline(f, line)) return {};
  const auto a = line.find('['), b = line.find(']');
  if (a == std::string::npos || b == std::string::npos || b < a) return line;
  return line.substr(a + 1, b - a - 1);
}

}  // namespace faultline
