// UMap's Store interface (Umap::umap_ex): an object a region's pages are read
// from and written back to. On faultline a Store is adapted onto a Backend:
// read_from_store fills frames, write_to_store receives write-back.
#ifndef UMAP_STORE_HPP_FAULTLINE
#define UMAP_STORE_HPP_FAULTLINE
#include <cstddef>
#include <cstdint>
#include <sys/types.h>

namespace Umap {
class Store {
 public:
  virtual ~Store() = default;
  /// A Store over the regular file open on fd (pread / pwrite). Returns
  /// nullptr (errno set) for a bad fd. Free with delete.
  static Store* make_store(void* region, std::size_t rsize, std::size_t alignsize, int fd);
  /// Reads nb bytes at off into buf; returns the bytes read (short only at
  /// the store's end) or -1.
  virtual ssize_t read_from_store(char* buf, std::size_t nb, off_t off) = 0;
  /// Writes nb bytes from buf at off; returns nb or -1.
  virtual ssize_t write_to_store(char* buf, std::size_t nb, off_t off) = 0;
};
}  // namespace Umap
#endif
