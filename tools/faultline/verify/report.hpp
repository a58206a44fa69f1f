// faultline verify — the operation log (last 50 ops, --keep-log) and the
// mismatch report.
#pragma once
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace faultline::cli {

/// A check that failed: thrown by an operation, reported by the runner.
struct Mismatch {
  Mismatch() = default;
  explicit Mismatch(std::string w) : what(std::move(w)) {}
  std::string what;              ///< one line: what was wrong
  bool has_offset = false;
  uint64_t offset = 0;           ///< first differing file offset
  std::vector<int> expected;     ///< bytes from `dump_start` (-1 = don't care / SIGBUS)
  std::vector<int> actual;       ///< -1 = not read (SIGBUS)
  uint64_t dump_start = 0;
};

class OpLog {
 public:
  static constexpr size_t kKeep = 50;
  explicit OpLog(const std::string& keep_path);
  ~OpLog();
  void add(uint64_t n, unsigned thread, const std::string& text);
  std::vector<std::string> last() const;

 private:
  mutable std::mutex mu_;
  std::deque<std::string> ring_;
  std::FILE* keep_ = nullptr;
};

/// Prints the failure report to stderr: the failing op, the mismatch with a
/// hex dump, the last ops, and the replay line.
void print_mismatch(const Mismatch& m, const std::string& failing_op, const OpLog& log,
                    const std::string& replay);

/// A short hex dump line set around a difference.
std::string hex_dump(const Mismatch& m);

}  // namespace faultline::cli
