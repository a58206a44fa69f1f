// Out-of-tree C++ program on the installed C++ API: the same checks as
// c_consumer.c through faultline::Engine / File / Mapping.
#include <faultline/faultline.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

int main() {
  char path[] = "/tmp/faultline-consumer-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return 1;
  const std::size_t n = 64 * 4096 + 123;
  std::vector<unsigned char> buf(n);
  for (std::size_t i = 0; i < n; i++) buf[i] = static_cast<unsigned char>(i % 251);
  if (pwrite(fd, buf.data(), n, 0) != static_cast<ssize_t>(n)) return 1;
  int rc = 0;
  try {
    faultline::Engine engine;
    faultline::File f = engine.open(path);
    faultline::Mapping m = f.map(0, n);
    if (std::memcmp(m.data(), buf.data(), n) != 0) {
      std::fprintf(stderr, "cpp_consumer: view differs from the file\n");
      rc = 1;
    }
    m.data()[n - 1] = std::byte{0xEE};
    m.msync(m.data(), n, MS_SYNC);
    unsigned char b = 0;
    if (pread(fd, &b, 1, n - 1) != 1 || b != 0xEE) {
      std::fprintf(stderr, "cpp_consumer: store not in the file\n");
      rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpp_consumer: %s\n", e.what());
    rc = 1;
  }
  close(fd);
  unlink(path);
  if (rc == 0) std::printf("cpp_consumer: ok\n");
  return rc;
}
