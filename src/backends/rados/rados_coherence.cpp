// Coherence across engines: a RADOS watch on the header object receives the
// other engines' sync notifications (changed ranges, size) and feeds them to
// the engine's ChangeSink on a dispatcher thread, acknowledging each only after
// the sink ran; sync() sends them (see the consistency model in
// faultline/rados_backend.hpp).
#include <algorithm>
#include <cerrno>
#include <chrono>

#include "os/thread_name.hpp"
#include "backends/rados/rados_impl.hpp"

namespace faultline {

int RadosBackend::Impl::notify_peers(uint64_t sz, std::vector<std::pair<uint64_t, uint64_t>> ranges) {
  const std::string payload = rados::encode_notice({token, sz, std::move(ranges)});
  char* reply = nullptr;
  size_t reply_len = 0;
  const int r = rados_notify2(io, hdr_oid.c_str(), payload.data(), payload.size(),
                              opt.notify_timeout_ms, &reply, &reply_len);
  ctr.notifies_sent++;
  const bool peers_timed_out = r == -ETIMEDOUT && reply != nullptr;
  if (reply) rados_buffer_free(reply);
  if (peers_timed_out) {
    // Some watcher did not acknowledge in time (crashed / partitioned peer):
    // the data is durable; its watch breaks and it drops its whole cache.
    ctr.notify_timeouts++;
    return 0;
  }
  return r < 0 ? r : 0;
}

void RadosBackend::Impl::on_notify(void* arg, uint64_t notify_id, uint64_t cookie, uint64_t,
                                   void* data, size_t len) {
  auto* m = static_cast<Impl*>(arg);
  auto n = rados::decode_notice(data, len);
  if (!n || n->sender == m->token) {
    // Our own sync (or a message we do not understand): nothing to drop.
    if (n) m->ctr.notifies_own++;
    rados_notify_ack(m->io, m->hdr_oid.c_str(), notify_id, cookie, nullptr, 0);
    return;
  }
  std::lock_guard l(m->watch_mu);
  m->events.push_back({Event::Notify, notify_id, cookie, std::move(*n)});
  m->watch_cv.notify_all();
}

void RadosBackend::Impl::on_watch_error(void* arg, uint64_t cookie, int) {
  auto* m = static_cast<Impl*>(arg);
  std::lock_guard l(m->watch_mu);
  m->events.push_back({Event::WatchError, 0, cookie, {}});
  m->watch_cv.notify_all();
}

static uint32_t watch_timeout_s(double op_timeout) {
  return static_cast<uint32_t>(std::clamp(op_timeout, 5.0, 30.0));
}

void RadosBackend::Impl::dispatch_loop() {
  detail::set_thread_name("fl-rados");
  for (;;) {
    Event ev;
    Backend::ChangeSink s;
    {
      std::unique_lock l(watch_mu);
      watch_cv.wait(l, [&] { return !events.empty(); });
      ev = std::move(events.front());
      events.pop_front();
      s = sink;
    }
    switch (ev.kind) {
      case Event::Stop: return;
      case Event::Refresh: on_refresh(s); break;
      case Event::Notify: on_peer_notify(ev, s); break;
      case Event::WatchError: on_lost_watch(ev, s); break;
    }
  }
}

void RadosBackend::Impl::on_refresh(const Backend::ChangeSink& s) {
  rados::Header h;
  if (read_header(h) != 0) return;
  bool resized = false;
  {
    std::lock_guard l(mu);
    if (size.load() != h.size && active_writes == 0 && changed.empty()) {
      size = h.size;
      header_size = h.size;
      resized = true;
    }
  }
  try {
    if (resized && s.resized) s.resized(h.size);
  } catch (...) {
  }
}

void RadosBackend::Impl::on_peer_notify(const Event& ev, const Backend::ChangeSink& s) {
  ctr.notifies_received++;
  try {
    const uint64_t new_size = ev.notice.size;
    bool resized = false;
    {
      std::lock_guard l(mu);
      if (size.load() != new_size) {
        size = new_size;
        resized = true;
      }
      header_size = new_size;  // the header holds the peer's size now
    }
    if (resized && s.resized) s.resized(new_size);
    for (auto [o, n] : ev.notice.ranges) {
      ctr.ranges_received++;
      if (s.changed) s.changed(o, std::min<uint64_t>(n, ~uint64_t{0} - o));
    }
  } catch (...) {
    // A sink that throws must not leave the notifier waiting.
  }
  // A failed ack is not ours to handle: the notifier's wait times out
  // (opt.op_timeout_s) and its sync reports that.
  (void)rados_notify_ack(io, hdr_oid.c_str(), ev.notify_id, ev.cookie, nullptr, 0);
}

void RadosBackend::Impl::on_lost_watch(const Event& ev, const Backend::ChangeSink& s) {
  // Watch error: notifications may have been missed. Re-watch, then drop
  // the whole clean cache and take the header's size.
  ctr.watch_errors++;
  uint64_t old_cookie;
  {
    std::lock_guard l(watch_mu);
    if (!watching || ev.cookie != watch_cookie) return;
    old_cookie = watch_cookie;
    watch_cookie = 0;  // each cookie is unwatched exactly once (here or in stop_watch)
  }
  rewatch(old_cookie);
  rados::Header h;
  try {
    if (read_header(h) == 0) {
      uint64_t old_size;
      {
        std::lock_guard l(mu);
        old_size = size.exchange(h.size);
        header_size = h.size;
      }
      if (old_size != h.size && s.resized) s.resized(h.size);
      if (s.changed) s.changed(0, std::max(old_size, h.size));
    } else if (s.changed) {
      s.changed(0, size.load());
    }
  } catch (...) {
  }
}

void RadosBackend::Impl::rewatch(uint64_t old_cookie) {
  // The watch is already broken: unwatching it only frees its handle, and a
  // failure leaves nothing to undo.
  if (old_cookie) (void)rados_unwatch2(io, old_cookie);
  for (;;) {
    uint64_t c = 0;
    const int r = rados_watch3(io, hdr_oid.c_str(), &c, &Impl::on_notify, &Impl::on_watch_error,
                               watch_timeout_s(opt.op_timeout_s), this);
    std::unique_lock l(watch_mu);
    if (r == 0) {
      if (!watching) {  // detached meanwhile
        l.unlock();
        (void)rados_unwatch2(io, c);  // as above: nothing to undo
        return;
      }
      watch_cookie = c;
      return;
    }
    if (!watching) return;
    // Stop events wake us early; otherwise retry each second.
    if (watch_cv.wait_for(l, std::chrono::seconds(1),
                          [&] { return !events.empty() && events.back().kind == Event::Stop; }))
      return;
  }
}

void RadosBackend::Impl::start_watch() {
  uint64_t c = 0;
  if (int r = rados_watch3(io, hdr_oid.c_str(), &c, &Impl::on_notify, &Impl::on_watch_error,
                           watch_timeout_s(opt.op_timeout_s), this);
      r < 0) {
    // No watch: this engine will not hear of remote changes. Report it the way
    // a lost watch is handled: retried by the dispatcher.
    std::lock_guard l(watch_mu);
    events.push_back({Event::WatchError, 0, 0, {}});
  }
  {
    std::lock_guard l(watch_mu);
    watching = true;
    watch_cookie = c;
    if (!events.empty()) events.back().cookie = c;  // the retry above targets this cookie
    dispatcher = std::thread([this] { dispatch_loop(); });
  }
  // A sync between open and the watch: the dispatcher rereads the header
  // (never the sink from inside attach: the engine may hold its locks).
  std::lock_guard l(watch_mu);
  events.push_back({Event::Refresh, 0, 0, {}});
  watch_cv.notify_all();
}

void RadosBackend::Impl::stop_watch() {
  uint64_t c;
  {
    std::lock_guard l(watch_mu);
    if (!watching) return;
    watching = false;
    c = watch_cookie;
    watch_cookie = 0;
  }
  if (c) rados_unwatch2(io, c);
  rados_watch_flush(cluster);  // no callback runs after this
  {
    std::lock_guard l(watch_mu);
    events.push_back({Event::Stop, 0, 0, {}});
    watch_cv.notify_all();
  }
  if (dispatcher.joinable()) dispatcher.join();
  std::lock_guard l(watch_mu);
  events.clear();
  sink = {};
}

void RadosBackend::attach(ChangeSink s) {
  detach();
  {
    std::lock_guard l(impl_->watch_mu);
    impl_->sink = std::move(s);
  }
  impl_->start_watch();
}

void RadosBackend::detach() { impl_->stop_watch(); }

bool RadosBackend::attached() const {
  std::lock_guard l(impl_->watch_mu);
  return impl_->watching;
}

}  // namespace faultline
