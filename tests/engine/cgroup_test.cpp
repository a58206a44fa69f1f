// The process's memory cgroup and its limit (faultline/cgroup.hpp), and the
// engine's default memory limit taken from it (issue 16 item 4: the engine
// reclaims before the cgroup's OOM killer acts). The reader runs against fake
// /proc and sysfs trees, so each case is exact whatever the machine; one test
// runs a child process in a real child cgroup with a limit (root only).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "faultline/cgroup.hpp"
#include "faultline/constants.hpp"
#include "faultline/engine.hpp"

namespace {

namespace fl = faultline;
namespace fs = std::filesystem;

/// A fake /proc/self/cgroup + /proc/self/mountinfo and the cgroup mounts
/// they name, under one temporary directory.
class FakeCgroups {
 public:
  FakeCgroups() {
    char tmpl[] = "/tmp/faultline-cgroup-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~FakeCgroups() { fs::remove_all(root_); }
  void proc_cgroup(const std::string& text) { put("proc_cgroup", text); }
  /// A mount of `type` (cgroup / cgroup2) at <root>/<point> with `opts`.
  void mount(const std::string& point, const std::string& type, const std::string& opts) {
    fs::create_directories(root_ + "/" + point);
    mounts_ += "35 31 0:32 / " + root_ + "/" + point + " rw,relatime shared:9 - " + type + " " +
               type + " " + opts + "\n";
    put("mountinfo", mounts_);
  }
  void put(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(root_ + "/" + rel).parent_path());
    std::ofstream(root_ + "/" + rel) << text;
  }
  fl::MemoryCgroupInfo read() const {
    return fl::memory_cgroup(root_ + "/proc_cgroup", root_ + "/mountinfo");
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_, mounts_;
};

TEST(MemoryCgroup, V1HierarchicalLimit) {
  FakeCgroups c;
  c.proc_cgroup("5:devices:/a\n4:memory:/a/b\n0::/\n");
  c.mount("cg/memory", "cgroup", "rw,memory");
  c.mount("cg/unified", "cgroup2", "rw");
  c.put("cg/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
  // The parent's limit applies: memory.stat says so.
  c.put("cg/memory/a/b/memory.stat", "cache 0\nhierarchical_memory_limit 268435456\n");
  const auto i = c.read();
  EXPECT_EQ(i.dir, c.root() + "/cg/memory/a/b");
  EXPECT_FALSE(i.v2);
  EXPECT_EQ(i.limit_bytes, uint64_t{256} << 20);
}

TEST(MemoryCgroup, V1UnlimitedIsNoLimitAndLimitInBytesIsTheFallback) {
  FakeCgroups c;
  c.proc_cgroup("4:memory:/x\n");
  c.mount("memory", "cgroup", "rw,memory");
  c.put("memory/x/memory.stat", "hierarchical_memory_limit 9223372036854771712\n");
  EXPECT_EQ(c.read().limit_bytes, 0u);
  fs::remove(c.root() + "/memory/x/memory.stat");
  c.put("memory/x/memory.limit_in_bytes", "1073741824\n");
  EXPECT_EQ(c.read().limit_bytes, uint64_t{1} << 30);
}

TEST(MemoryCgroup, V2TightestMemoryMaxUpToTheMount) {
  FakeCgroups c;
  c.proc_cgroup("0::/x/y\n");
  c.mount("cg", "cgroup2", "rw,nsdelegate");
  c.put("cg/x/y/cgroup.controllers", "cpu io memory pids\n");
  c.put("cg/x/y/memory.max", "max\n");
  c.put("cg/x/memory.max", "536870912\n");
  const auto i = c.read();
  EXPECT_EQ(i.dir, c.root() + "/cg/x/y");
  EXPECT_TRUE(i.v2);
  EXPECT_EQ(i.limit_bytes, uint64_t{512} << 20);
  c.put("cg/x/y/memory.max", "134217728\n");
  EXPECT_EQ(c.read().limit_bytes, uint64_t{128} << 20);
}

TEST(MemoryCgroup, NoMemoryControllerIsNoCgroupAndNoLimit) {
  FakeCgroups c;
  c.proc_cgroup("0::/x\n");
  c.mount("cg", "cgroup2", "rw");
  c.put("cg/x/cgroup.controllers", "cpu pids\n");
  c.put("cg/x/memory.max", "1048576\n");
  const auto i = c.read();
  EXPECT_TRUE(i.dir.empty());
  EXPECT_EQ(i.limit_bytes, 0u);
}

/// Makes a child of the process's own memory cgroup limited to `bytes`;
/// empty (and `why`) when it cannot.
std::string make_child_cgroup(uint64_t bytes, std::string& why) {
  if (::geteuid() != 0) {
    why = "not root: a memory cgroup cannot be created";
    return {};
  }
  const fl::MemoryCgroupInfo own = fl::memory_cgroup();
  if (own.dir.empty()) {
    why = "no memory cgroup controller for this process";
    return {};
  }
  if (own.v2) {
    std::ofstream sc(own.dir + "/cgroup.subtree_control");
    sc << "+memory";
  }
  const std::string dir = own.dir + "/faultline-test-" + std::to_string(::getpid());
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    why = "mkdir " + dir + ": " + std::strerror(errno);
    return {};
  }
  std::ofstream lim(dir + (own.v2 ? "/memory.max" : "/memory.limit_in_bytes"));
  lim << bytes;
  lim.close();
  if (!lim) {
    why = "cannot set the limit of " + dir;
    ::rmdir(dir.c_str());
    return {};
  }
  return dir;
}

// A process in a memory cgroup limited to 256 MiB gets half of it as its
// engine's default memory limit (Engine::config() shows the limit in effect),
// so the engine reclaims before the cgroup's OOM killer would act.
TEST(MemoryCgroup, DefaultLimitIsHalfTheCgroups) {
  constexpr uint64_t kCgroupBytes = uint64_t{256} << 20;
  std::string why;
  const std::string dir = make_child_cgroup(kCgroupBytes, why);
  if (dir.empty()) GTEST_SKIP() << "no child memory cgroup: " << why;
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(p[0]);
    uint64_t out[3] = {~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}};
    {
      std::ofstream procs(dir + "/cgroup.procs");
      procs << ::getpid();
    }
    try {
      out[0] = fl::memory_cgroup().limit_bytes;
      out[1] = fl::EngineConfig{}.memory_limit_pages;
      fl::Engine eng;
      out[2] = eng.config().memory_limit_pages;
    } catch (...) {
    }
    (void)!::write(p[1], out, sizeof out);
    ::_exit(0);
  }
  ::close(p[1]);
  uint64_t got[3] = {};
  size_t n = 0;
  for (ssize_t r; n < sizeof got && (r = ::read(p[0], reinterpret_cast<char*>(got) + n, sizeof got - n)) > 0;)
    n += static_cast<size_t>(r);
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  for (int i = 0; i < 50 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(n, sizeof got) << "the child gave no answer";
  EXPECT_EQ(got[0], kCgroupBytes) << "the child's cgroup limit";
  EXPECT_EQ(got[1], kCgroupBytes / 2 / fl::kBasePageSize) << "EngineConfig's default";
  EXPECT_EQ(got[2], kCgroupBytes / 2 / fl::kBasePageSize) << "the engine's limit in effect";
}

// Outside a limit (or under one at least as large as physical memory) the
// default stays 0: no limit, as before.
TEST(MemoryCgroup, DefaultLimitFollowsTheProcesssOwnCgroup) {
  const uint64_t cg = fl::memory_cgroup().limit_bytes;
  const long pages = ::sysconf(_SC_PHYS_PAGES), psz = ::sysconf(_SC_PAGESIZE);
  const uint64_t ram = static_cast<uint64_t>(pages) * static_cast<uint64_t>(psz);
  const uint64_t want =
      cg == 0 || cg >= ram ? 0 : std::max<uint64_t>(256, cg / 2 / fl::kBasePageSize);
  EXPECT_EQ(fl::default_memory_limit_pages(), want);
  EXPECT_EQ(fl::EngineConfig{}.memory_limit_pages, want);
}

}  // namespace
