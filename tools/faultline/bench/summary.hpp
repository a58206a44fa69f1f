// faultline CLI — the bench's one-line summary for a newcomer: per cache
// state and pattern, the fastest faultline method against kernel mmap.
#pragma once
#include <string>
#include <vector>

#include "bench/report.hpp"

namespace faultline::cli {

/// "summary: ..." (no newline); empty when no row has a ratio to compare.
std::string one_line_summary(const std::vector<Row>& rows, const RunInfo& info);

}  // namespace faultline::cli
