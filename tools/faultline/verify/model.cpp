// faultline verify — the model (see verify/model.hpp for the rules).
#include "verify/model.hpp"

#include <algorithm>
#include <cstring>

namespace faultline::cli {

const char* view_kind_name(ViewKind k) {
  switch (k) {
    case ViewKind::SharedRO: return "shared-ro";
    case ViewKind::SharedRW: return "shared-rw";
    case ViewKind::Private: return "private";
  }
  return "?";
}

void ViewModel::reset(uint64_t pages) {
  priv.clear();
  priv.resize(pages + 1);
  poisoned.assign(pages + 1, 0);
}

Model::Model(uint64_t max_size, uint64_t page)
    : page_(page), max_size_(max_size), max_pages_(max_size / page), data_(max_size + page, 0) {}

void Model::zero(uint64_t from, uint64_t to) {
  to = std::min<uint64_t>(to, data_.size());
  if (from < to) std::memset(data_.data() + from, 0, to - from);
}

void Model::write(uint64_t off, const uint8_t* p, uint64_t n) {
  std::memcpy(data_.data() + off, p, n);
  if (off + n > size_) {
    size_ = off + n;
    eof_junk_ = false;  // extend zeroes the old EOF page's tail
  }
}

void Model::truncate(uint64_t new_size, std::vector<ViewModel*>& views) {
  if (new_size == size_) {
    // The engine's extend path returns early: nothing changes, junk included.
    return;
  }
  if (new_size < size_) {
    zero(new_size, size_);
    const uint64_t keep = (new_size + page_ - 1) / page_;
    for (ViewModel* v : views) {
      for (uint64_t pg = keep; pg < v->priv.size(); ++pg) v->priv[pg].reset();
      // Poison past the new EOF goes with the PTEs; the engine also clears
      // the page holding the new EOF (truncate.cpp: clear_poison(keep-1, keep)).
      for (uint64_t pg = keep ? keep - 1 : 0; pg < v->poisoned.size(); ++pg) v->poisoned[pg] = 0;
    }
  }
  size_ = new_size;
  eof_junk_ = false;
}

void Model::punch(uint64_t off, uint64_t len, std::vector<ViewModel*>& views) {
  const uint64_t end = std::min<uint64_t>(off + len, size_);
  if (off >= end) return;
  zero(off, end);
  // Pages whose frames are dropped or zeroed lose poison ("cleared in the range").
  for (ViewModel* v : views)
    for (uint64_t pg = off / page_; pg <= (end - 1) / page_ && pg < v->poisoned.size(); ++pg)
      v->poisoned[pg] = 0;
  // Junk past EOF may or may not survive a punch of the EOF page (dropped when
  // the page is punched whole, kept when it is zeroed in place): eof_junk stays.
}

void Model::invalidate(uint64_t off, uint64_t len, const std::vector<uint64_t>& failed,
                       std::vector<ViewModel*>& views) {
  const uint64_t first = off / page_;
  // A range to 2^64 - 1 (or past it) means "to the end", as the engine clamps it.
  const uint64_t end = len > ~uint64_t{0} - off ? ~uint64_t{0} : off + len;
  const uint64_t last = std::min<uint64_t>(end / page_ + (end % page_ != 0), max_pages_ + 1);
  for (ViewModel* v : views) {
    for (uint64_t pg = first; pg < last && pg < v->poisoned.size(); ++pg) {
      (void)failed;  // kept-dirty pages lose their poison too (file.hpp: "cleared")
      v->poisoned[pg] = 0;
    }
  }
}

Expect Model::expect(const ViewModel& v, uint64_t o, bool ignore_poison) const {
  const uint64_t pg = o / page_;
  if (pg >= eof_pages()) return {Expect::SigbusEof, 0};
  if (!ignore_poison && pg < v.poisoned.size() && v.poisoned[pg]) return {Expect::SigbusPoison, 0};
  if (v.kind == ViewKind::Private && pg < v.priv.size() && v.priv[pg]) {
    const PrivPage& pp = *v.priv[pg];
    const uint64_t i = o - pg * page_;
    if (!pp.known[i]) return {Expect::DontCare, 0};
    return {Expect::Byte, pp.bytes[i]};
  }
  if (o < size_) return {Expect::Byte, data_[o]};
  return eof_junk_ ? Expect{Expect::DontCare, 0} : Expect{Expect::Byte, 0};
}

void Model::private_store(ViewModel& v, uint64_t o, const uint8_t* p, uint64_t n) {
  while (n) {
    const uint64_t pg = o / page_;
    const uint64_t in = o - pg * page_;
    const uint64_t k = std::min<uint64_t>(n, page_ - in);
    auto& slot = v.priv[pg];
    if (!slot) {
      slot = std::make_unique<PrivPage>();
      slot->bytes.assign(data_.begin() + static_cast<ptrdiff_t>(pg * page_),
                         data_.begin() + static_cast<ptrdiff_t>((pg + 1) * page_));
      slot->known.assign(page_, 1);
      if (eof_junk_ && size_ > pg * page_ && size_ < (pg + 1) * page_)
        for (uint64_t i = size_ - pg * page_; i < page_; ++i) slot->known[i] = 0;
    }
    std::memcpy(slot->bytes.data() + in, p, k);
    std::memset(slot->known.data() + in, 1, k);
    o += k;
    p += k;
    n -= k;
  }
}

}  // namespace faultline::cli
