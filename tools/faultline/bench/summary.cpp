#include "bench/summary.hpp"

#include <fmt/format.h>

namespace faultline::cli {

std::string one_line_summary(const std::vector<Row>& rows, const RunInfo& info) {
  std::string wins, loses;
  const char* base = to_string(info.baseline);
  for (CacheState c : {CacheState::Cold, CacheState::Warm, CacheState::Resident, CacheState::NotApplicable}) {
    for (Pattern p : {Pattern::Seq, Pattern::Rand}) {
      const Row* best = nullptr;
      for (const Row& r : rows)
        if ((is_faultline(r.method) || r.method == Method::UmapApi) && r.cache == c && r.pattern == p && r.ratio_to_mmap > 0 &&
            (!best || r.ratio_to_mmap > best->ratio_to_mmap))
          best = &r;
      if (!best) continue;
      // Resident rows (frames the engine already holds) compare with the
      // kernel's warm cache.
      const std::string where = c == CacheState::NotApplicable ? to_string(p)
                                : c == CacheState::Resident
                                    ? fmt::format("{} resident (vs warm)", to_string(p))
                                    : fmt::format("{} {}", to_string(p), to_string(c));
      std::string& list = best->ratio_to_mmap >= 1.0 ? wins : loses;
      list += fmt::format("{}{} ({} {:.2f}x)", list.empty() ? "" : ", ", where, to_string(best->method),
                          best->ratio_to_mmap);
    }
  }
  if (wins.empty() && loses.empty()) return {};
  std::string s = fmt::format(
      "summary: the fastest faultline method against {} in the same run (>1x: faultline faster): ", base);
  if (!wins.empty()) s += "faultline wins " + wins;
  if (!loses.empty()) s += fmt::format("{}{} wins {}", wins.empty() ? "" : "; ", base, loses);
  if (!info.frames2m_skipped.empty())
    s += "; faultline-2M rows skipped (no huge page pool: run scripts/demo.sh as root)";
  return s;
}

}  // namespace faultline::cli
