// The in-memory backend: a byte vector under a reader/writer lock.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "faultline/backend.hpp"

namespace faultline {

namespace {

class MemoryBackend final : public Backend {
 public:
  MemoryBackend(std::string name, uint64_t size) : name_(std::move(name)), data_(size) {}

  std::string identity() const override { return "memory:" + name_; }
  bool writable() const override { return true; }

  int64_t size() override {
    std::shared_lock g(mu_);
    return static_cast<int64_t>(data_.size());
  }

  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    std::shared_lock g(mu_);
    if (off >= data_.size()) return 0;
    const size_t n = std::min<uint64_t>(buf.size(), data_.size() - off);
    std::memcpy(buf.data(), data_.data() + off, n);
    return static_cast<ssize_t>(n);
  }

  int write(uint64_t off, std::span<const std::byte> buf) override {
    std::unique_lock g(mu_);
    if (off + buf.size() > data_.size()) data_.resize(off + buf.size());
    std::memcpy(data_.data() + off, buf.data(), buf.size());
    return 0;
  }

  int truncate(uint64_t new_size) override {
    std::unique_lock g(mu_);
    data_.resize(new_size);
    return 0;
  }

  int punch_hole(uint64_t off, uint64_t len) override {
    std::unique_lock g(mu_);
    if (off >= data_.size()) return 0;
    const uint64_t end = std::min<uint64_t>(data_.size(), off + len);
    std::fill(data_.begin() + static_cast<ptrdiff_t>(off), data_.begin() + static_cast<ptrdiff_t>(end),
              std::byte{0});
    return 0;
  }

  int sync() override { return 0; }

 private:
  std::string name_;
  std::shared_mutex mu_;
  std::vector<std::byte> data_;
};

}  // namespace

std::shared_ptr<Backend> make_memory_backend(std::string name, uint64_t initial_size) {
  return std::make_shared<MemoryBackend>(std::move(name), initial_size);
}

}  // namespace faultline
