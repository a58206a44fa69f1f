// faultline — named constants. The page size is a property of a File
// (File::page_size()); this is the only place the base page size is spelled.
#pragma once
#include <cstddef>

namespace faultline {

/// The base (small) page size: the unit of 4 KiB frames and of the CPU's PTEs.
inline constexpr std::size_t kBasePageSize = std::size_t{1} << 12;
inline constexpr unsigned kBasePageShift = 12;
/// The huge frame size of FrameSize::k2M Files (hugetlb, x86-64 PMD).
inline constexpr std::size_t kHugePageSize = std::size_t{1} << 21;
inline constexpr unsigned kHugePageShift = 21;

}  // namespace faultline
