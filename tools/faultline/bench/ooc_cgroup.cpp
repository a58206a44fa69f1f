#include "bench/ooc_cgroup.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "faultline/cgroup.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace faultline::cli {

namespace {

/// The memory cgroup of this process: {directory, v2}; empty if none (the
/// library's one reader, faultline/cgroup.hpp).
std::pair<std::string, bool> own_memory_cgroup(std::string& why) {
  const MemoryCgroupInfo own = memory_cgroup();
  if (own.dir.empty())
    why = "no memory cgroup controller found for this process (/proc/self/cgroup, "
          "/proc/self/mountinfo)";
  return {own.dir, own.v2};
}

bool write_file(const std::string& path, const std::string& value, int* err = nullptr) {
  FILE* f = std::fopen(path.c_str(), "we");
  if (!f) {
    if (err) *err = errno;
    return false;
  }
  const bool ok = std::fputs(value.c_str(), f) >= 0;
  int e = ok ? 0 : errno;
  if (std::fclose(f) != 0 && e == 0) e = errno;  // the kernel reports a bad value at close
  if (err) *err = e;
  return ok && e == 0;
}

int64_t read_number(const std::string& path) {
  std::ifstream f(path);
  int64_t v = -1;
  if (!(f >> v)) return -1;
  return v;
}

/// The value of `key` in a "key value" per line file (memory.events, oom_control).
int64_t read_key(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string k;
  int64_t v;
  while (f >> k >> v)
    if (k == key) return v;
  return -1;
}

}  // namespace

std::unique_ptr<MemoryCgroup> MemoryCgroup::make(const std::string& name, uint64_t limit_bytes,
                                                 std::string& why) {
  if (::geteuid() != 0) {
    why = "not root: a memory cgroup cannot be created";
    return nullptr;
  }
  auto [parent, v2] = own_memory_cgroup(why);
  if (parent.empty()) return nullptr;
  if (v2) {
    // The child needs the memory controller enabled in the parent's subtree.
    std::ifstream sc(parent + "/cgroup.subtree_control");
    std::string on;
    std::getline(sc, on);
    if ((" " + on + " ").find(" memory ") == std::string::npos) {
      int e = 0;
      if (!write_file(parent + "/cgroup.subtree_control", "+memory", &e)) {
        why = fmt::format("cgroup v2 {}: cannot enable the memory controller for children ({}; "
                          "a cgroup with processes of its own cannot delegate it)",
                          parent, std::strerror(e));
        return nullptr;
      }
    }
  }
  const std::string dir = parent + "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    why = fmt::format("mkdir {}: {}", dir, std::strerror(errno));
    return nullptr;
  }
  std::unique_ptr<MemoryCgroup> cg(new MemoryCgroup(dir, v2));
  int e = 0;
  const std::string limit = fmt::format("{}", limit_bytes);
  if (v2) {
    if (!write_file(dir + "/memory.max", limit, &e)) {
      why = fmt::format("{}/memory.max: {}", dir, std::strerror(e));
      return nullptr;
    }
    (void)write_file(dir + "/memory.swap.max", "0");  // absent without swap accounting: fine
  } else {
    if (!write_file(dir + "/memory.limit_in_bytes", limit, &e)) {
      why = fmt::format("{}/memory.limit_in_bytes: {}", dir, std::strerror(e));
      return nullptr;
    }
    // memsw (memory + swap) exists only with swap accounting; no swap here is fine.
    (void)write_file(dir + "/memory.memsw.limit_in_bytes", limit);
  }
  return cg;
}

MemoryCgroup::~MemoryCgroup() {
  // Empty now (the child exited). v1 moves the remaining charges (the file's
  // page cache) to the parent on rmdir; force_empty first frees what it can.
  if (!v2_) (void)write_file(path_ + "/memory.force_empty", "0");
  for (int i = 0; i < 50 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the exiting task leaves it
}

int MemoryCgroup::enter(pid_t pid) const {
  int e = 0;
  const std::string who = fmt::format("{}", pid == 0 ? ::getpid() : pid);
  if (!write_file(path_ + "/cgroup.procs", who, &e)) return e ? e : EIO;
  return 0;
}

int64_t MemoryCgroup::peak_bytes() const {
  return read_number(path_ + (v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes"));
}

int64_t MemoryCgroup::oom_kills() const {
  return v2_ ? read_key(path_ + "/memory.events", "oom_kill")
             : read_key(path_ + "/memory.oom_control", "oom_kill");
}

}  // namespace faultline::cli
