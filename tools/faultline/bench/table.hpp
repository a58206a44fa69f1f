// faultline CLI — the benches' human tables: a table is an array of columns
// (title, width, how a row's cell reads), printed by one loop for the titles
// and one per row.
#pragma once
#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace faultline::cli {

/// One column of a table of `Row`s; `Ctx` is what every cell may read besides
/// its row (the run's settings). width < 0: left-aligned in -width. A null
/// title is the table's one named-at-run-time column (its title `dynamic`,
/// at least `width` wide).
template <class Row, class Ctx>
struct Column {
  const char* title;
  int width;
  std::string (*cell)(const Row&, const Ctx&);
};

/// v with `decimals` digits after the point (a cell before padding).
inline std::string fixed(double v, int decimals) { return fmt::format("{:.{}f}", v, decimals); }

inline std::string pad(std::string_view s, int width) {
  return width < 0 ? fmt::format("{:<{}}", s, -width) : fmt::format("{:>{}}", s, width);
}

inline int column_width(int width, const char* title, std::string_view dynamic) {
  return title ? width : std::max<int>(width, static_cast<int>(dynamic.size()));
}

/// The titles, space-separated (lead: a space before the first too, for a
/// group of columns that follows others).
template <class Row, class Ctx, std::size_t N>
std::string column_titles(const Column<Row, Ctx> (&cols)[N], std::string_view dynamic = {},
                          bool lead = false) {
  std::string line;
  for (const auto& c : cols) {
    if (lead || !line.empty()) line += ' ';
    line += pad(c.title ? std::string_view(c.title) : dynamic, column_width(c.width, c.title, dynamic));
  }
  return line;
}

/// One row's cells, aligned under column_titles.
template <class Row, class Ctx, std::size_t N>
std::string column_cells(const Column<Row, Ctx> (&cols)[N], const Row& row, const Ctx& ctx,
                         std::string_view dynamic = {}, bool lead = false) {
  std::string line;
  for (const auto& c : cols) {
    if (lead || !line.empty()) line += ' ';
    line += pad(c.cell(row, ctx), column_width(c.width, c.title, dynamic));
  }
  return line;
}

}  // namespace faultline::cli
