#include <gtest/gtest.h>
#include <cstring>
#include "faultline/faultline.hpp"

TEST(Smoke, MapMemoryBackend) {
  faultline::Engine eng;
  auto be = faultline::make_memory_backend("smoke", 0);
  auto f = eng.open(be);
  std::string s(100000, 'x');
  for (size_t i = 0; i < s.size(); ++i) s[i] = char('a' + i % 26);
  f.write(0, std::as_bytes(std::span(s)));
  auto m = f.map(0, s.size());
  ASSERT_EQ(0, std::memcmp(m.data(), s.data(), s.size()));
  m.data()[5] = std::byte{'Z'};
  f.sync();
  std::byte b{};
  be->read(5, std::span(&b, 1));
  EXPECT_EQ(b, std::byte{'Z'});
}
