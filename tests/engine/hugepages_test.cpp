// The 2 MiB huge page pool as the engine counts it (faultline/hugepages.hpp):
// free unreserved pages plus the overcommit headroom. Against a fake sysfs
// directory, so each case is exact whatever the machine's pool.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "faultline/hugepages.hpp"

namespace {

class FakeSysfs {
 public:
  FakeSysfs(int64_t free, int64_t resv, int64_t over, int64_t surp) {
    char tmpl[] = "/tmp/faultline-hugepages-XXXXXX";
    dir_ = mkdtemp(tmpl);
    put("free_hugepages", free);
    put("resv_hugepages", resv);
    put("nr_overcommit_hugepages", over);
    put("surplus_hugepages", surp);
  }
  ~FakeSysfs() { std::filesystem::remove_all(dir_); }
  const std::string& dir() const { return dir_; }

 private:
  void put(const char* name, int64_t v) { std::ofstream(dir_ + "/" + name) << v << "\n"; }
  std::string dir_;
};

TEST(HugePagePool, CountsOvercommitHeadroom) {
  // No standing pool, overcommit 10 with 2 surplus pages in use: 8 more can
  // be allocated on demand (a check of free - reserved alone saw 0).
  FakeSysfs s(0, 0, 10, 2);
  const auto p = faultline::hugepage_pool(s.dir());
  EXPECT_TRUE(p.readable);
  EXPECT_EQ(p.overcommit, 10);
  EXPECT_EQ(p.surplus, 2);
  EXPECT_EQ(p.available(), 8);
}

TEST(HugePagePool, FreeSurplusPagesAreNotCountedTwice) {
  // 3 surplus pages allocated, of which 3 free and 1 reserved: the free ones
  // are in free_hugepages; the headroom is overcommit - surplus.
  FakeSysfs s(3, 1, 5, 3);
  EXPECT_EQ(faultline::hugepage_pool(s.dir()).available(), 2 + 2);
}

TEST(HugePagePool, StandingPoolWithoutOvercommit) {
  FakeSysfs s(64, 4, 0, 0);
  EXPECT_EQ(faultline::hugepage_pool(s.dir()).available(), 60);
}

TEST(HugePagePool, SurplusAboveOvercommitGivesNoHeadroom) {
  // Lowering nr_overcommit_hugepages below the surplus in use leaves surplus > overcommit.
  FakeSysfs s(5, 0, 1, 4);
  EXPECT_EQ(faultline::hugepage_pool(s.dir()).available(), 5);
}

TEST(HugePagePool, ThisMachineMatchesMeminfo) {
  // The real pool: the default directory agrees with /proc/meminfo's counters
  // (2 MiB is the default huge page size on x86-64).
  const auto p = faultline::hugepage_pool();
  ASSERT_TRUE(p.readable);
  std::ifstream m("/proc/meminfo");
  std::string k;
  int64_t fr = -1, rs = -1, su = -1, v = 0;
  while (m >> k) {
    if (k == "HugePages_Free:" && (m >> v)) fr = v;
    else if (k == "HugePages_Rsvd:" && (m >> v)) rs = v;
    else if (k == "HugePages_Surp:" && (m >> v)) su = v;
  }
  int64_t over = 0;
  std::ifstream("/proc/sys/vm/nr_overcommit_hugepages") >> over;
  // The counters may move between the two reads if another process uses the
  // pool; a stable machine (the test's) gives equal values.
  EXPECT_EQ(p.available(), fr - rs + (over > su ? over - su : 0));
}

TEST(ThpSetting, ReadsTheSelectedMode) {
  // The engine's THP warning and the bench's report read the selected word.
  FakeSysfs s(0, 0, 0, 0);
  std::ofstream(s.dir() + "/shmem_enabled") << "always [within_size] advise never deny force\n";
  std::ofstream(s.dir() + "/enabled") << "[always] madvise never\n";
  EXPECT_EQ(faultline::thp_setting("shmem_enabled", s.dir()), "within_size");
  EXPECT_EQ(faultline::thp_setting("enabled", s.dir()), "always");
  EXPECT_EQ(faultline::thp_setting("defrag", s.dir()), "");  // unreadable: empty
}

}  // namespace
