// Shared set-ups for the engine tests (tests/support): the file behind a
// counting wrapper that the write-back tests start from, and a mapped
// pattern file in an engine of its own.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "test_util.hpp"

namespace ft {

/// A fixture: a file of pattern bytes in a temporary directory behind a
/// counting WrapBackend (writes() tells which pages reached the file).
struct WrappedFileTest : ::testing::Test {
  TempDir dir;
  std::string path;
  std::shared_ptr<WrapBackend> wrap;
  /// A file `name` of `size` pattern bytes behind a counting wrapper.
  std::shared_ptr<WrapBackend> make(uint64_t size, const std::string& name = "wb") {
    path = dir.make_file(name, size);
    wrap = std::make_shared<WrapBackend>(faultline::make_file_backend(path));
    return wrap;
  }
  /// The pages the successful writes covered.
  std::set<uint64_t> written() const {
    auto v = wrap->written_pages();
    return {v.begin(), v.end()};
  }
};

/// A file of `pages` pages of pattern(seed) in a temporary directory, opened
/// in an engine of its own and mapped whole. Bind its parts by name:
///   ft::MappedFile t(pages, seed, {.cfg = cfg, .access = Access::ReadOnly});
///   auto& [dir, path, eng, f, m] = t;
struct MappedFile {
  struct Options {
    faultline::EngineConfig cfg{};
    faultline::Access access = faultline::Access::ReadWrite;
    faultline::Sharing sharing = faultline::Sharing::Shared;
    bool writable = true;             ///< the file backend opened read-write
    faultline::FileOptions file{};
  };
  MappedFile(uint64_t pages, uint32_t seed, const Options& o)
      : path(dir.make_file("f", pages * kPage, seed)),
        eng(o.cfg),
        f(eng.open(faultline::make_file_backend(path, o.writable), o.file)),
        m(f.map(0, pages * kPage, o.access, o.sharing)) {}

  TempDir dir;
  std::string path;
  faultline::Engine eng;
  faultline::File f;
  faultline::Mapping m;
};

/// The same for a backend the test made: an engine of its own, `be` opened
/// in it and a view of its first `len` bytes.
///   ft::ViewedFile t(be, len, {.cfg = cfg, .file = opts});
///   auto& [eng, f, m] = t;
struct ViewedFile {
  ViewedFile(std::shared_ptr<faultline::Backend> be, uint64_t len, const MappedFile::Options& o)
      : eng(o.cfg), f(eng.open(std::move(be), o.file)), m(f.map(0, len, o.access, o.sharing)) {}

  faultline::Engine eng;
  faultline::File f;
  faultline::Mapping m;
};

}  // namespace ft
