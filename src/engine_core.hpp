// Internal: the engine's shared state — userfaultfd, handler threads, the
// registry of views (address -> Mapping) and of open Files (identity -> File).
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "counters.hpp"
#include "faultline/engine.hpp"
#include "uffd.hpp"

namespace faultline::detail {

class FileImpl;
class MappingImpl;

class EngineCore : public std::enable_shared_from_this<EngineCore> {
 public:
  explicit EngineCore(EngineConfig cfg);
  ~EngineCore();

  void start();
  void close();
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  /// Throws ESHUTDOWN once close() has begun.
  void check_open() const;
  void log(std::string_view msg) const;

  std::shared_ptr<FileImpl> open(std::shared_ptr<Backend> backend);
  void forget_file(const std::string& key, const FileImpl* f);

  void add_mapping(const std::shared_ptr<MappingImpl>& m);
  /// Removes m from the registry; returns false if it was not there.
  bool remove_mapping(MappingImpl* m);

  EngineConfig cfg;
  Userfaultfd uffd;
  KernelFeatures feats;
  Counters stats;

 private:
  void handler_loop();
  void dispatch(uintptr_t addr, uint64_t flags);
  /// The live view containing addr, with an in-flight reference taken.
  std::shared_ptr<MappingImpl> lookup(uintptr_t addr);

  std::atomic<bool> closed_{false};
  std::mutex close_mu_;
  std::shared_mutex maps_mu_;
  std::map<uintptr_t, std::shared_ptr<MappingImpl>> maps_;  // by start address
  std::mutex files_mu_;
  std::map<std::string, std::weak_ptr<FileImpl>> files_;
  std::vector<std::thread> threads_;
  int stop_fd_ = -1;  // eventfd that stops the handler threads
};

}  // namespace faultline::detail
