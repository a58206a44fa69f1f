// RadosBackend's state, shared by rados_backend.cpp (connection, I/O, sync)
// and rados_coherence.cpp (watch / notify).
#pragma once
#include <rados/librados.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "faultline/rados_backend.hpp"
#include "backends/rados/rados_format.hpp"

namespace faultline {

struct RadosBackend::Impl {
  RadosOptions opt;
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  std::string fsid;
  std::string hdr_oid;
  uint64_t obj_size = 0;
  uint64_t token = 0;  // stamps our notifications (ignored when they come back)

  std::atomic<uint64_t> size{0};

  // Reads and writes hold it shared, truncate and punch_hole exclusive (a chunk
  // is never removed under an in-flight write to it).
  std::shared_mutex layout_mu;

  // Writes in flight (sync waits for them), the ranges written since the last
  // sync, and the size the header object holds.
  std::mutex mu;
  std::condition_variable idle_cv;
  unsigned active_writes = 0;
  rados::RangeSet changed;
  uint64_t header_size = 0;
  bool header_dirty = false;  // the size changed (truncate): tell the peers at sync

  // Objects whose last op timed out, and until when (steady seconds): further
  // ops on them fail at once with -ETIMEDOUT, so a caller that retries a
  // batch page by page does not wait one op timeout per page.
  std::mutex dead_mu;
  std::map<uint64_t, double> dead_until;
  bool is_dead(uint64_t index);
  void mark(uint64_t index, int r);

  struct {
    std::atomic<uint64_t> objects_read{0}, objects_written{0}, max_in_flight{0}, notifies_sent{0},
        notify_timeouts{0}, notifies_received{0}, notifies_own{0}, ranges_received{0},
        watch_errors{0};
  } ctr;

  // Coherence (rados_coherence.cpp).
  struct Event {
    enum Kind { Notify, WatchError, Refresh, Stop } kind;
    uint64_t notify_id = 0, cookie = 0;
    rados::Notice notice;
  };
  std::mutex watch_mu;  // guards everything below
  std::condition_variable watch_cv;
  std::deque<Event> events;
  bool watching = false;
  uint64_t watch_cookie = 0;
  Backend::ChangeSink sink;
  std::thread dispatcher;

  explicit Impl(const RadosOptions& o);
  ~Impl();
  // The constructor's steps (each throws; the constructor disconnects).
  /// Makes `cluster` (options, conf, connect) and `io` (the pool).
  void connect();
  /// Reads the header object into h, creating it first if asked (opt.create).
  void open_header(rados::Header& h);
  /// Drops io and cluster (either may be unset).
  void disconnect();

  // One AIO operation: issue() starts it on the completion, done() sees the
  // return value and returns 0 or a negative errno.
  struct Op {
    std::function<int(rados_completion_t)> issue;
    std::function<int(int)> done;
  };
  /// Runs ops with at most opt.max_in_flight outstanding; returns the first error.
  int run(std::vector<Op>& ops);

  /// Rewrites the header object with `sz`. 0 or a negative errno.
  int write_header(uint64_t sz);
  /// Reads and decodes the header: 0, -ENOENT, -EINVAL (bad format) or an errno.
  int read_header(rados::Header& h);

  /// Sends the notify for a sync (size, changed ranges); waits for the acks.
  int notify_peers(uint64_t sz, std::vector<std::pair<uint64_t, uint64_t>> ranges);
  void start_watch();
  void stop_watch();
  /// The dispatcher thread: takes events off `events` until Stop, and hands
  /// each to the sink outside every lock.
  void dispatch_loop();
  // dispatch_loop's events (sink: a copy taken under watch_mu).
  void on_refresh(const Backend::ChangeSink& sink);
  void on_peer_notify(const Event& ev, const Backend::ChangeSink& sink);
  void on_lost_watch(const Event& ev, const Backend::ChangeSink& sink);
  /// Watches the header again after a watch error, old_cookie (taken out of
  /// watch_cookie under watch_mu) unwatched first; retries each second until
  /// it succeeds, the backend detaches, or a Stop is queued.
  void rewatch(uint64_t old_cookie);
  static void on_notify(void* arg, uint64_t notify_id, uint64_t cookie, uint64_t notifier,
                        void* data, size_t len);
  static void on_watch_error(void* arg, uint64_t cookie, int err);
};

}  // namespace faultline
