// faultline — the Ceph RADOS backend: a faultline file that lives in a RADOS
// pool, mapped coherently by engines on many machines.
//
// Layout. A file `NAME` in pool `POOL` is
//   NAME.hdr               the header object: a few lines of text
//                            "faultline-rados 1\nobject_size N\nsize S\n"
//   NAME.%016x             chunk objects, chunk i holding bytes
//                            [i*N, (i+1)*N) of the file (N = object_size)
// A chunk that does not exist, or is shorter than N, reads as zeros there
// (holes). The layout (object_size) is fixed when the header is created; the
// options' object_size only applies to new files.
//
// I/O. read() and write() split a batch into per-object extents and issue them
// all through librados AIO at once (at most `max_in_flight` ops outstanding per
// call); write() returns when every extent is on the OSDs (so a write-back
// error reaches the engine's errseq for exactly the pages of that batch, R8).
// truncate() removes whole chunks past the new EOF, truncates the one holding
// it and rewrites the header; punch_hole() removes whole chunks inside the
// range and zeroes partial ones. sync() waits for every write in flight,
// rewrites the header when the size changed, then notifies the other engines
// (below). Errors are negative errnos from librados (-ETIMEDOUT after
// `op_timeout_s` when an OSD or the mon is gone, never a hang).
//
// Consistency model: fsync-to-read (like NFS close-to-open).
//  - After File::fsync() returns on engine A (Backend::sync), every other
//    engine B that has the file open (its backend was attach()ed: it holds a
//    RADOS watch on the header object) has been told which byte ranges A wrote
//    since A's previous sync, and the size: sync() sends a RADOS notify on the
//    header carrying them and waits for every watcher's acknowledgement (up to
//    `notify_timeout_ms`); B acknowledges only after its ChangeSink ran, i.e.
//    after B dropped its clean pages in those ranges. B's next read of them
//    fetches A's data.
//  - Without a sync there is no promise: B may see A's stores early (A's
//    write-back ran) or keep old clean pages until A syncs.
//  - Two engines storing to the same page without syncing in between: each
//    keeps its own dirty copy (a remote change hitting a dirty page keeps it,
//    counted in Stats::invalidate_conflicts); the page's content in RADOS is
//    that of whichever engine's write-back reached the OSD last, normally the
//    last one to fsync: last fsync wins, per page (never a mix within a page,
//    since pages are written whole).
//  - A notify that times out (a peer crashed or is partitioned) does not fail
//    sync(): the data is durable; such a peer's watch breaks, and on
//    reconnecting it drops its whole clean cache (changed(0, size)).
//  - Size: the header holds the size of the last sync/truncate. Size changes
//    travel in the notify as well (ChangeSink::resized).
// An engine ignores its own notifications (each backend instance stamps its
// messages with a random 64-bit id).
//
// Errors from make_rados_backend (std::system_error with the errno and a
// message naming the culprit): EINVAL bad URI / object name / header format,
// ENOENT missing pool or file (without `create`), ETIMEDOUT unreachable cluster.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "faultline/backend.hpp"

namespace faultline {

struct RadosOptions {
  std::string pool;                  ///< RADOS pool holding the objects
  std::string name;                  ///< the file's name (object name prefix)
  std::string conf;                  ///< ceph.conf path ("" = librados' default search)
  std::string cluster = "ceph";      ///< cluster name
  std::string user = "client.admin"; ///< RADOS user (entity name)
  uint64_t object_size = 4u << 20;   ///< chunk size for new files (multiple of 4 KiB)
  bool writable = true;
  bool create = false;               ///< create the file (header object) when missing
  unsigned max_in_flight = 16;       ///< AIO ops outstanding per read/write call
  uint64_t read_split = 256u << 10;  ///< largest single object read (bytes), for parallelism
  double op_timeout_s = 30;          ///< OSD / mon op timeout (librados rados_osd_op_timeout)
  double connect_timeout_s = 10;     ///< mon connect timeout (client_mount_timeout)
  unsigned notify_timeout_ms = 10000;  ///< how long sync() waits for peers to acknowledge
};

/// Parses `rados://POOL/NAME?conf=PATH[&cluster=NAME][&user=ID][&object_size=BYTES]
/// [&create=0|1][&readonly=0|1][&timeout=SECONDS][&in_flight=N]` (NAME may contain
/// '/'; %XX escapes are decoded). BYTES accepts K/M/G suffixes (powers of 1024).
/// Throws std::system_error(EINVAL) naming what is wrong.
RadosOptions parse_rados_uri(std::string_view uri);
/// Whether `s` starts with "rados://".
bool is_rados_uri(std::string_view s);

/// Counters of one RadosBackend (for tests and the bench).
struct RadosCounters {
  uint64_t objects_read = 0;       ///< object read ops issued
  uint64_t objects_written = 0;    ///< object write ops issued
  uint64_t max_in_flight = 0;      ///< most AIO ops outstanding at once
  uint64_t notifies_sent = 0;
  uint64_t notify_timeouts = 0;    ///< notifies some watcher did not acknowledge in time
  uint64_t notifies_received = 0;  ///< from other engines (own ones excluded)
  uint64_t notifies_own = 0;       ///< own notifications seen and ignored
  uint64_t ranges_received = 0;    ///< changed ranges passed to the ChangeSink
  uint64_t watch_errors = 0;       ///< watch disconnects (whole cache invalidated)
};

class RadosBackend : public Backend {
 public:
  explicit RadosBackend(const RadosOptions& options);  ///< connects; throws std::system_error
  ~RadosBackend() override;

  std::string identity() const override;  ///< "rados:<fsid>/<pool>/<name>"
  bool writable() const override;
  int64_t size() override;
  ssize_t read(uint64_t off, std::span<std::byte> buf) override;
  int write(uint64_t off, std::span<const std::byte> buf) override;
  int truncate(uint64_t new_size) override;
  int punch_hole(uint64_t off, uint64_t len) override;
  int sync() override;
  /// Four objects: enough reads in flight to keep the OSDs busy (measured:
  /// 2 MiB frames reach ~0.9x of direct AIO reads with it, ~0.8x with 8 MiB).
  uint64_t readahead_bytes() const override;
  void attach(ChangeSink sink) override;  ///< watches the header object
  void detach() override;

  uint64_t object_size() const;
  const RadosOptions& options() const;
  RadosCounters counters() const;
  bool attached() const;
  /// The names of the header object and of chunk `index`.
  std::string header_object() const;
  std::string chunk_object(uint64_t index) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Connects and opens (or creates, with options.create) the file.
std::shared_ptr<RadosBackend> make_rados_backend(const RadosOptions& options);
/// make_rados_backend(parse_rados_uri(uri)).
std::shared_ptr<RadosBackend> make_rados_backend(std::string_view uri);

}  // namespace faultline
