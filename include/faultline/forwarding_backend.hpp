// faultline — ForwardingBackend: a Backend that forwards every call to
// another (LevelDB's EnvWrapper). Wrappers (fault injection, read-only views,
// tracing) derive from it and override only what they change, so none drops
// an optional path (read_aligned, write_aligned, will_need, readahead_bytes,
// can_punch_hole, the page_mkwrite forms) by omission: a wrapped backend
// takes the same fill and write-back paths as the backend it wraps — but
// read_aligned_streaming, left at its default (one read_aligned, then one
// hand-over) so that a wrapper's read_aligned sees every aligned read: a
// wrapped file backend reads a readahead window whole, not in pieces.
#pragma once
#include <memory>
#include <utility>

#include "faultline/backend.hpp"

namespace faultline {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::shared_ptr<Backend> inner) : inner_(std::move(inner)) {}

  std::string identity() const override { return inner_->identity(); }
  bool writable() const override { return inner_->writable(); }
  int64_t size() override { return inner_->size(); }
  ssize_t read(uint64_t off, std::span<std::byte> buf) override { return inner_->read(off, buf); }
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override {
    return inner_->read_into_fd(off, len, fd, fd_off);
  }
  ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) override {
    return inner_->read_aligned(off, buf);
  }
  void will_need(uint64_t off, uint64_t len) override { inner_->will_need(off, len); }
  uint64_t readahead_bytes() const override { return inner_->readahead_bytes(); }
  int write(uint64_t off, std::span<const std::byte> buf) override { return inner_->write(off, buf); }
  int write_aligned(uint64_t off, std::span<const std::byte> buf) override {
    return inner_->write_aligned(off, buf);
  }
  int page_mkwrite(uint64_t off, size_t len) override { return inner_->page_mkwrite(off, len); }
  int page_mkwrite(MkwritePage& page) override { return inner_->page_mkwrite(page); }
  void update_time() override { inner_->update_time(); }
  int truncate(uint64_t new_size) override { return inner_->truncate(new_size); }
  int punch_hole(uint64_t off, uint64_t len) override { return inner_->punch_hole(off, len); }
  bool can_punch_hole() const override { return inner_->can_punch_hole(); }
  int sync() override { return inner_->sync(); }
  void attach(ChangeSink sink) override { inner_->attach(std::move(sink)); }
  void detach() override { inner_->detach(); }

  Backend& inner() const { return *inner_; }

 protected:
  std::shared_ptr<Backend> inner_;
};

}  // namespace faultline
