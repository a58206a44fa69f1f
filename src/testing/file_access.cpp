// Test support: faultline::testing::FileAccess (src/testing/testing.hpp).
#include <sys/stat.h>

#include "mm/file_impl.hpp"
#include "os/sys_error.hpp"
#include "testing/testing.hpp"

namespace faultline::testing {

uint64_t FileAccess::frame_bytes(const File& f) {
  struct stat st {};
  if (::fstat(f.impl().memfd(), &st) != 0) detail::throw_errno("faultline: fstat(memfd)");
  return static_cast<uint64_t>(st.st_size);
}

void FileAccess::age(File& f, uint64_t ahead) { f.impl().age(ahead); }

}  // namespace faultline::testing
