// Contents through a faultline mapping vs `rados get`; stores + fsync; truncate
// and punch_hole; sequential read throughput against direct librados AIO.
#include <rados/librados.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <system_error>

#include "rados_test_util.hpp"

using namespace rt;
using faultline::Access;

namespace {

// Writes pattern(seed) into [off, off+len) through the backend directly.
void fill(faultline::RadosBackend& b, uint64_t off, uint64_t len, uint32_t seed) {
  auto data = pattern(off, len, seed);
  ASSERT_EQ(b.write(off, data), 0);
}

}  // namespace

TEST(RadosIo, MappingMatchesRadosGet) {
  ASSERT_FALSE(conf().empty());
  const std::string name = unique_name("f");
  const uint64_t os = 1 * kMiB, size = 10 * kMiB + kMiB / 2 + 123;
  {
    auto w = faultline::make_rados_backend(options(name, os));
    // Chunks 0-2 full, chunk 3 a hole (absent), chunk 4 short (half written),
    // the rest up to EOF written, the last chunk partial.
    fill(*w, 0, 3 * os, 1);
    fill(*w, 4 * os, os / 2, 1);
    fill(*w, 5 * os, size - 5 * os, 1);
    ASSERT_EQ(w->sync(), 0);
  }
  auto b = faultline::make_rados_backend(options(name, 4 * kMiB));  // layout from the header
  EXPECT_EQ(b->object_size(), os);
  EXPECT_EQ(b->size(), static_cast<int64_t>(size));
  faultline::Engine eng;
  auto f = eng.open(b);
  EXPECT_EQ(f.size(), size);
  auto m = f.map(0, size, Access::ReadOnly);
  const auto expect = rados_get_file(*b, size);
  // Spot checks of the expected layout, then the whole file.
  EXPECT_TRUE(all_zero(expect.data() + 3 * os, os));
  EXPECT_TRUE(all_zero(expect.data() + 4 * os + os / 2, os / 2));
  EXPECT_EQ(first_diff(expect.data(), pattern(0, 3 * os, 1).data(), 3 * os), -1);
  EXPECT_EQ(first_diff(m.data(), expect.data(), size), -1);
  std::vector<std::byte> rd(size);
  EXPECT_EQ(f.read(0, rd), size);
  EXPECT_EQ(first_diff(rd.data(), expect.data(), size), -1);
  EXPECT_GE(b->counters().max_in_flight, 2u) << "object reads were not issued in parallel";
  m.unmap();
  f.close();
  remove_file(*b, size);
}

TEST(RadosIo, StoresAndFsyncReachRados) {
  ASSERT_FALSE(conf().empty());
  const std::string name = unique_name("f");
  const uint64_t os = 1 * kMiB, size = 3 * os + 5000;
  auto b = faultline::make_rados_backend(options(name, os));
  faultline::Engine eng;
  auto f = eng.open(b);
  f.truncate(size);
  auto m = f.map(0, size);
  auto p1 = pattern(10 * kPage, 3 * kPage, 7);
  auto p2 = pattern(2 * os - kPage, 2 * kPage, 8);  // straddles chunks 1 and 2
  std::memcpy(m.data() + 10 * kPage, p1.data(), p1.size());
  std::memcpy(m.data() + 2 * os - kPage, p2.data(), p2.size());
  m.data()[size - 1] = std::byte{0x5a};
  f.fsync();
  auto got = rados_get_file(*b, size);
  EXPECT_EQ(first_diff(got.data() + 10 * kPage, p1.data(), p1.size()), -1);
  EXPECT_EQ(first_diff(got.data() + 2 * os - kPage, p2.data(), p2.size()), -1);
  EXPECT_EQ(got[size - 1], std::byte{0x5a});
  EXPECT_TRUE(all_zero(got.data(), 10 * kPage));
  std::vector<std::byte> hdr;
  ASSERT_TRUE(rados_get(b->options().conf, b->options().pool, b->header_object(), hdr));
  EXPECT_NE(std::string(reinterpret_cast<char*>(hdr.data()), hdr.size()).find("size " + std::to_string(size)),
            std::string::npos);
  // A fresh backend (another engine) sees the size.
  auto o = options(name, os);
  o.create = false;
  EXPECT_EQ(faultline::make_rados_backend(o)->size(), static_cast<int64_t>(size));
  m.unmap();
  f.close();
  remove_file(*b, size);
}

TEST(RadosIo, TruncateAndPunchHole) {
  ASSERT_FALSE(conf().empty());
  const std::string name = unique_name("f");
  const uint64_t os = 1 * kMiB, size = 8 * os;
  auto b = faultline::make_rados_backend(options(name, os));
  faultline::Engine eng;
  auto f = eng.open(b);
  auto data = pattern(0, size, 3);
  f.write(0, data);
  f.fsync();
  auto exists = [&](uint64_t i) {
    std::vector<std::byte> v;
    return rados_get(b->options().conf, b->options().pool, b->chunk_object(i), v) ? int64_t(v.size()) : -1;
  };
  for (uint64_t i = 0; i < 8; ++i) EXPECT_EQ(exists(i), int64_t(os)) << i;

  // Shrink to 5.5 chunks: chunks 6, 7 removed, chunk 5 truncated, header updated.
  const uint64_t small = 5 * os + os / 2;
  auto m = f.map(0, size);
  f.truncate(small);
  EXPECT_EQ(b->size(), int64_t(small));
  EXPECT_EQ(exists(6), -1);
  EXPECT_EQ(exists(7), -1);
  EXPECT_EQ(exists(5), int64_t(os / 2));
  auto bus = faultline::guarded([&] { (void)*(volatile std::byte*)(m.data() + small + kPage); });
  EXPECT_TRUE(bus.has_value()) << "access past EOF after truncate did not SIGBUS";
  EXPECT_EQ(first_diff(m.data(), data.data(), small), -1);
  // Extend again: the new range reads zeros, in RADOS too.
  f.truncate(size);
  EXPECT_TRUE(all_zero(m.data() + small, size - small));
  f.fsync();
  auto got = rados_get_file(*b, size);
  EXPECT_TRUE(all_zero(got.data() + small, size - small));

  // Punch [1 MiB + 0, 3 MiB + 3 pages): chunks 1, 2 removed, chunk 3's head zeroed.
  const uint64_t poff = os, plen = 2 * os + 3 * kPage;
  f.punch_hole(poff, plen);
  EXPECT_EQ(exists(1), -1);
  EXPECT_EQ(exists(2), -1);
  EXPECT_EQ(exists(3), int64_t(os));
  EXPECT_TRUE(all_zero(m.data() + poff, plen));
  EXPECT_EQ(first_diff(m.data() + poff + plen, data.data() + poff + plen, small - poff - plen), -1);
  got = rados_get_file(*b, size);
  EXPECT_TRUE(all_zero(got.data() + poff, plen));
  EXPECT_EQ(first_diff(got.data(), data.data(), poff), -1);
  EXPECT_EQ(first_diff(got.data() + poff + plen, data.data() + poff + plen, small - poff - plen), -1);
  // Unaligned punch inside a page (zeroes part of an object).
  f.punch_hole(5 * os + 100, 200);
  f.fsync();
  got = rados_get_file(*b, size);
  EXPECT_TRUE(all_zero(got.data() + 5 * os + 100, 200));
  EXPECT_EQ(got[5 * os + 99], data[5 * os + 99]);
  EXPECT_EQ(got[5 * os + 300], data[5 * os + 300]);
  m.unmap();
  f.close();
  remove_file(*b, size);
}

// Sequential first-touch read of a 64 MiB file through a mapping vs direct
// librados AIO reads of the same objects with the same parallelism (and the
// `rados get` CLI), same run. Prints the numbers; asserts only sanity.
TEST(RadosIo, SequentialReadThroughput) {
  ASSERT_FALSE(conf().empty());
  const std::string name = unique_name("bench");
  const uint64_t os = 4 * kMiB, size = 64 * kMiB;
  auto w = faultline::make_rados_backend(options(name, os));
  fill(*w, 0, size, 9);
  ASSERT_EQ(w->sync(), 0);

  // Direct librados: 1 MiB reads, 16 in flight (the backend's defaults).
  rados_t cl;
  rados_ioctx_t io;
  ASSERT_EQ(rados_create2(&cl, "ceph", "client.admin", 0), 0);
  ASSERT_EQ(rados_conf_read_file(cl, conf().c_str()), 0);
  ASSERT_EQ(rados_connect(cl), 0);
  ASSERT_EQ(rados_ioctx_create(cl, pool().c_str(), &io), 0);
  std::vector<char> buf(size);
  double t0 = now_s();
  std::deque<rados_completion_t> q;
  const uint64_t piece = 1 * kMiB;
  for (uint64_t off = 0; off < size; off += piece) {
    if (q.size() >= 16) {
      rados_aio_wait_for_complete(q.front());
      EXPECT_EQ(rados_aio_get_return_value(q.front()), int(piece));
      rados_aio_release(q.front());
      q.pop_front();
    }
    rados_completion_t c;
    rados_aio_create_completion2(nullptr, nullptr, &c);
    rados_aio_read(io, w->chunk_object(off / os).c_str(), c, buf.data() + off, piece, off % os);
    q.push_back(c);
  }
  while (!q.empty()) {
    rados_aio_wait_for_complete(q.front());
    rados_aio_release(q.front());
    q.pop_front();
  }
  const double direct = now_s() - t0;
  rados_ioctx_destroy(io);
  rados_shutdown(cl);

  t0 = now_s();
  auto cli = rados_get_file(*w, size);
  const double cli_s = now_s() - t0;

  auto b = faultline::make_rados_backend(options(name, os));
  faultline::Engine eng;
  auto f = eng.open(b);
  auto m = f.map(0, size, Access::ReadOnly);
  t0 = now_s();
  uint64_t sum = 0;
  for (uint64_t off = 0; off < size; off += kPage)
    sum += uint64_t(*reinterpret_cast<volatile std::byte*>(m.data() + off));
  const double mapped = now_s() - t0;
  EXPECT_EQ(first_diff(m.data(), reinterpret_cast<std::byte*>(buf.data()), size), -1);
  EXPECT_EQ(first_diff(m.data(), cli.data(), size), -1);
  (void)sum;
  const double mb = double(size) / kMiB;
  const auto st = f.stats();
  std::printf("rados seq read %.0f MiB: direct librados AIO (1 MiB x16) %.0f MiB/s, "
              "faultline mapping %.0f MiB/s (%.2fx; %llu object reads, max %llu in flight, "
              "%llu faults), rados get CLI %.0f MiB/s\n",
              mb, mb / direct, mb / mapped, direct / mapped,
              (unsigned long long)b->counters().objects_read,
              (unsigned long long)b->counters().max_in_flight,
              (unsigned long long)(st.missing_faults + st.minor_faults), mb / cli_s);
  RecordProperty("direct_MiBps", std::to_string(mb / direct));
  RecordProperty("mapping_MiBps", std::to_string(mb / mapped));
  RecordProperty("rados_get_MiBps", std::to_string(mb / cli_s));
  m.unmap();
  f.close();
  remove_file(*w, size);
}
