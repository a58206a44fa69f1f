// faultline verify — the operation log and the failure report.
#include "verify/report.hpp"

#include <fmt/format.h>

#include <stdexcept>

#include "common/path_arg.hpp"
#include "common/sys_error.hpp"

namespace faultline::cli {

OpLog::OpLog(const std::string& keep_path) {
  if (!keep_path.empty()) {
    try {
      keep_ = open_log_file(keep_path);  // never blocks on a FIFO, never writes into /proc
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("--keep-log ") + e.what());
    }
  }
}

OpLog::~OpLog() {
  if (keep_) std::fclose(keep_);
}

void OpLog::add(uint64_t n, unsigned thread, const std::string& text) {
  std::string line = thread ? fmt::format("{:>8} t{} {}", n, thread, text)
                            : fmt::format("{:>8} {}", n, text);
  std::lock_guard g(mu_);
  if (keep_) std::fprintf(keep_, "%s\n", line.c_str());
  ring_.push_back(std::move(line));
  if (ring_.size() > kKeep) ring_.pop_front();
}

std::vector<std::string> OpLog::last() const {
  std::lock_guard g(mu_);
  if (keep_) std::fflush(keep_);
  return {ring_.begin(), ring_.end()};
}

std::string hex_dump(const Mismatch& m) {
  auto row = [&](const std::vector<int>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) {
      if (i && i % 16 == 0) s += "\n                    ";
      s += v[i] < 0 ? " --" : fmt::format(" {:02x}", v[i]);
    }
    return s;
  };
  return fmt::format("  at 0x{:x}: expected{}\n  at 0x{:x}: actual  {}\n", m.dump_start,
                     row(m.expected), m.dump_start, row(m.actual));
}

void print_mismatch(const Mismatch& m, const std::string& failing_op, const OpLog& log,
                    const std::string& replay) {
  std::string out = fmt::format("\nfaultline verify: MISMATCH in op {}\n  {}\n", failing_op, m.what);
  if (m.has_offset) {
    out += fmt::format("  first differing offset: {} (0x{:x}), page {}\n", m.offset, m.offset,
                       m.offset / 4096);
    out += hex_dump(m);
  }
  const auto ops = log.last();
  out += fmt::format("last {} operations:\n", ops.size());
  for (const auto& l : ops) out += "  " + l + "\n";
  out += "replay: " + replay + "\n";
  std::fputs(out.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace faultline::cli
