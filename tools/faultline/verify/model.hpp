// faultline verify — the model: what the file, each view and each private
// copy must hold, and the size.
//
// Rules (DESIGN.md, file.hpp, mapping.hpp):
//  - Bytes past EOF read as zeros: in the page holding EOF through a view, and
//    after any extend (junk stored past EOF through a view never shows up once
//    the size changes). Until then, junk stored past EOF in that page is "don't
//    care" through views (eof_junk).
//  - Pages at or past eof_pages() get SIGBUS (BUS_ADRERR) in every view.
//  - A private view's page follows the file until the first store through
//    that view copies it; truncate drops copies of pages past the new EOF page
//    (the kernel's shmem truncate unmaps COW copies), punch and invalidate keep
//    them.
//  - A read error or refused page_mkwrite poisons that page in that view: it
//    keeps raising SIGBUS until the range is invalidated, punched or truncated.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace faultline::cli {

enum class ViewKind { SharedRO, SharedRW, Private };
const char* view_kind_name(ViewKind k);

struct PrivPage {
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> known;  ///< 0: don't care (junk past EOF copied with the page)
};

struct ViewModel {
  ViewKind kind = ViewKind::SharedRO;
  uint64_t off = 0, len = 0;  ///< file range of the view (page aligned, len rounded up)
  std::vector<std::unique_ptr<PrivPage>> priv;  ///< by file page (Private views)
  std::vector<uint8_t> poisoned;                ///< by file page
  bool covers(uint64_t pg, uint64_t page) const { return pg * page >= off && pg * page < off + len; }
  void reset(uint64_t pages);
};

/// Expected outcome of one byte through a view.
struct Expect {
  enum What { Byte, DontCare, SigbusEof, SigbusPoison } what = Byte;
  uint8_t value = 0;
};

class Model {
 public:
  Model(uint64_t max_size, uint64_t page);
  uint64_t page() const { return page_; }
  uint64_t pages() const { return max_pages_; }
  uint64_t max_size() const { return max_size_; }
  uint64_t size() const { return size_; }
  uint64_t eof_pages() const { return (size_ + page_ - 1) / page_; }
  const uint8_t* data() const { return data_.data(); }
  uint8_t* mutable_data() { return data_.data(); }
  bool eof_junk() const { return eof_junk_; }
  void set_eof_junk() { eof_junk_ = true; }

  /// File::write: bytes land, the size grows to cover them.
  void write(uint64_t off, const uint8_t* p, uint64_t n);
  /// The size changes (truncate, or an extend by a write that failed later).
  void truncate(uint64_t new_size, std::vector<ViewModel*>& views);
  void punch(uint64_t off, uint64_t len, std::vector<ViewModel*>& views);
  /// Invalidate [off, off+len): poison cleared except on pages that failed.
  void invalidate(uint64_t off, uint64_t len, const std::vector<uint64_t>& failed_offsets,
                  std::vector<ViewModel*>& views);

  /// What a load at file offset `o` through view `v` must see.
  Expect expect(const ViewModel& v, uint64_t o, bool ignore_poison = false) const;
  /// A store through a private view: copy the page first if it follows the file.
  void private_store(ViewModel& v, uint64_t o, const uint8_t* p, uint64_t n);
  /// A store through a shared view inside EOF.
  void shared_store(uint64_t o, const uint8_t* p, uint64_t n) { write(o, p, n); }

 private:
  void zero(uint64_t from, uint64_t to);
  uint64_t page_, max_size_, max_pages_;
  uint64_t size_ = 0;
  bool eof_junk_ = false;
  std::vector<uint8_t> data_;  // max_size + a page; bytes at or past size are 0
};

}  // namespace faultline::cli
