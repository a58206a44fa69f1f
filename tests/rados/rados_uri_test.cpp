// rados:// URI parsing and bad input (no cluster needed for parsing).
#include <cerrno>
#include <system_error>

#include "rados_test_util.hpp"

using faultline::parse_rados_uri;

static int code_of(const std::function<void()>& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const std::system_error& e) {
    if (what) *what = e.what();
    return e.code().value();
  }
  return 0;
}

TEST(RadosUri, Parses) {
  auto o = parse_rados_uri("rados://pool1/dir/file.bin?conf=/etc/ceph/x.conf&cluster=c2&object_size=1M");
  EXPECT_EQ(o.pool, "pool1");
  EXPECT_EQ(o.name, "dir/file.bin");
  EXPECT_EQ(o.conf, "/etc/ceph/x.conf");
  EXPECT_EQ(o.cluster, "c2");
  EXPECT_EQ(o.object_size, 1u << 20);
  auto d = parse_rados_uri("rados://p/n");
  EXPECT_EQ(d.object_size, 4u << 20);
  EXPECT_EQ(d.cluster, "ceph");
  EXPECT_TRUE(d.writable);
  EXPECT_FALSE(d.create);
  auto e = parse_rados_uri("rados://p/a%20b?create=1&readonly=0&timeout=2.5&user=bob&object_size=65536");
  EXPECT_EQ(e.name, "a b");
  EXPECT_TRUE(e.create);
  EXPECT_DOUBLE_EQ(e.op_timeout_s, 2.5);
  EXPECT_EQ(e.user, "client.bob");
  EXPECT_EQ(e.object_size, 65536u);
}

TEST(RadosUri, RejectsBadUris) {
  for (const char* u : {"file:///x", "rados://", "rados://pool", "rados://pool/", "rados:///name",
                        "rados://p/n?bogus=1", "rados://p/n?object_size=abc", "rados://p/n?object_size=1X",
                        "rados://p/n?timeout=-1", "rados://p/n%2"}) {
    std::string what;
    EXPECT_EQ(code_of([&] { parse_rados_uri(u); }, &what), EINVAL) << u;
    EXPECT_NE(what.find("bad URI"), std::string::npos) << what;
  }
}

TEST(RadosBadInput, NamesWhatIsWrong) {
  const std::string c = rt::conf();
  ASSERT_FALSE(c.empty());
  std::string what;
  // Missing pool.
  auto o = rt::options("x");
  o.pool = "no-such-pool";
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), ENOENT);
  EXPECT_NE(what.find("no-such-pool"), std::string::npos) << what;
  // Missing file without create.
  o = rt::options(rt::unique_name("absent"));
  o.create = false;
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), ENOENT);
  EXPECT_NE(what.find("header object"), std::string::npos) << what;
  // A name RADOS-side tools cannot handle (control characters) / empty / too long.
  o = rt::options(std::string("bad\x01name"));
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), EINVAL);
  EXPECT_NE(what.find("control"), std::string::npos) << what;
  o = rt::options(std::string(500, 'n'));
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), EINVAL);
  o = rt::options("x", 1000);
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), EINVAL);
  EXPECT_NE(what.find("object_size"), std::string::npos) << what;
  // A header object of the wrong format.
  const std::string name = rt::unique_name("garbage");
  ASSERT_EQ(rt::sh("echo 'not a header' | rados -c " + c + " -p " + rt::pool() + " put '" + name +
                   ".hdr' -"),
            0);
  o = rt::options(name);
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), EINVAL);
  EXPECT_NE(what.find("not a faultline-rados header"), std::string::npos) << what;
  rt::sh("rados -c " + c + " -p " + rt::pool() + " rm '" + name + ".hdr'");
  // A missing conf file.
  o = rt::options("x");
  o.conf = "/nonexistent/ceph.conf";
  EXPECT_EQ(code_of([&] { faultline::make_rados_backend(o); }, &what), ENOENT);
  EXPECT_NE(what.find("/nonexistent/ceph.conf"), std::string::npos) << what;
}

TEST(RadosBadInput, UnreachableClusterTimesOut) {
  // A conf whose monitor port nobody listens on: ETIMEDOUT after the connect
  // timeout, no hang.
  char tmpl[] = "/tmp/fl-noceph.XXXXXX";
  const int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  const std::string text = "[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n"
                           "auth supported = none\nlog file = /dev/null\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  faultline::RadosOptions o;
  o.conf = tmpl;
  o.pool = "p";
  o.name = "n";
  o.connect_timeout_s = 2;
  o.op_timeout_s = 2;
  std::string what;
  const double t0 = rt::now_s();
  const int code = code_of([&] { faultline::make_rados_backend(o); }, &what);
  const double dt = rt::now_s() - t0;
  ::unlink(tmpl);
  EXPECT_TRUE(code == ETIMEDOUT || code == ECONNREFUSED) << code << " " << what;
  EXPECT_NE(what.find("cannot connect"), std::string::npos) << what;
  EXPECT_LT(dt, 15.0);
}
