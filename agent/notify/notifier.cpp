#include "jitd/notify/notifier.hpp"

#include <curl/curl.h>
#include <openssl/rand.h>
#include <sys/epoll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <optional>

#include <spdlog/spdlog.h>

#include "jitd/core/hex.hpp"
#include "jitd/sys/handle.hpp"

namespace jitd::notify {

namespace {

using EasyHandle = sys::Handle<CURL, curl_easy_cleanup>;
using MultiHandle = sys::Handle<CURLM, curl_multi_cleanup>;
using HeaderList = sys::Handle<curl_slist, curl_slist_free_all>;

std::string random_delivery_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) return {};
  return core::to_hex(bytes.data(), bytes.size());
}

std::size_t discard_body(char*, std::size_t size, std::size_t count, void*) { return size * count; }

// One attempt in flight: its easy handle (taken off the multi handle before it is freed) and
// what libcurl reads from while sending.
struct Transfer {
  Transfer(CURLM* multi_handle, EasyHandle easy_handle)
      : multi(multi_handle), easy(std::move(easy_handle)) {}
  ~Transfer() {
    if (added) curl_multi_remove_handle(multi, easy.get());
  }
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  CURLM* multi;
  EasyHandle easy;
  HeaderList headers;
  std::string body;
  std::array<char, CURL_ERROR_SIZE> error{};
  bool added = false;
};

// One configured webhook: its queue, the delivery at its head (in flight or waiting for its
// retry) and its counters. One delivery at a time keeps the receiver's order.
struct Target {
  explicit Target(Webhook webhook) : config(std::move(webhook)), queue(config.queue_limit) {
    stats.url = display_url(config.url);
  }

  Webhook config;
  DeliveryQueue queue;
  std::optional<Delivery> current;
  std::unique_ptr<Transfer> transfer;
  std::unique_ptr<Loop::Alarm> retry;
  WebhookStats stats;
  bool overflow_logged = false;

  [[nodiscard]] bool wants(Kind kind) const {
    return std::find(config.events.begin(), config.events.end(), kind) != config.events.end();
  }
};

std::uint32_t epoll_events(int what) {
  switch (what) {
    case CURL_POLL_IN: return EPOLLIN;
    case CURL_POLL_OUT: return EPOLLOUT;
    default: return EPOLLIN | EPOLLOUT;
  }
}

int curl_select(std::uint32_t events) {
  int flags = 0;
  if (events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
  if (events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
  if (events & EPOLLERR) flags |= CURL_CSELECT_ERR;
  return flags;
}

}  // namespace

struct Notifier::Impl {
  Impl(std::string host_name, const core::Clock& wall_clock, MultiHandle multi_handle)
      : host(std::move(host_name)), clock(wall_clock), multi(std::move(multi_handle)) {}

  ~Impl() {
    for (const auto& target : targets) {
      const auto lost = target->queue.size() + (target->current ? 1 : 0);
      if (lost > 0) {
        spdlog::warn("webhook {}: {} delivery(ies) not sent: jitd is stopping", target->stats.url,
                     lost);
      }
    }
    // libcurl closes its sockets while it lets go of them: off the loop first, while open.
    for (auto& [fd, watch] : watches) watch->stop();
    curl_multi_setopt(multi.get(), CURLMOPT_SOCKETFUNCTION, nullptr);
    curl_multi_setopt(multi.get(), CURLMOPT_TIMERFUNCTION, nullptr);
    for (auto& target : targets) target->transfer.reset();
    multi.reset();
  }

  std::string host;
  const core::Clock& clock;
  MultiHandle multi;
  std::vector<std::unique_ptr<Target>> targets;
  Loop* loop = nullptr;
  std::unique_ptr<Loop::Alarm> curl_timer;
  std::map<curl_socket_t, std::unique_ptr<Loop::Watch>> watches;
  // Watches libcurl let go of, stopped and freed at the next entry (one of them may be the
  // source whose handler is running when libcurl lets go).
  std::vector<std::unique_ptr<Loop::Watch>> retired;

  void enqueue(Target& target, Delivery delivery) {
    if (target.queue.push(std::move(delivery))) {
      target.stats.dropped = target.queue.dropped();
      if (!target.overflow_logged) {
        spdlog::warn("webhook {}: queue full ({} deliveries): dropping the oldest",
                     target.stats.url, target.config.queue_limit);
        target.overflow_logged = true;
      }
    }
    pump(target);
  }

  // Starts the next delivery when none is at the head.
  void pump(Target& target) {
    if (loop == nullptr || target.current) return;
    target.current = target.queue.pop();
    if (target.current) send(target);
  }

  void note_failure(Target& target, std::string error) {
    ++target.stats.failed_attempts;
    target.stats.last_error = std::move(error);
    target.stats.last_error_time = core::format_utc(clock.now());
  }

  void send(Target& target) {
    auto transfer = prepare(target);
    if (!transfer) {
      note_failure(target, transfer.error().message);
      finish_attempt(target, 0);
      return;
    }
    target.transfer = std::move(*transfer);
  }

  core::Result<std::unique_ptr<Transfer>> prepare(Target& target) {
    EasyHandle easy(curl_easy_init());
    if (!easy) return core::fail(core::ErrorCode::io, "webhook: cannot create a libcurl handle");
    auto transfer = std::make_unique<Transfer>(multi.get(), std::move(easy));
    const auto& delivery = *target.current;
    const auto timestamp = std::to_string(
        std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count());
    transfer->body = delivery.body;
    const std::string headers[] = {
        "Content-Type: application/json", "X-Jitd-Event: " + std::string(to_string(delivery.kind)),
        "X-Jitd-Delivery: " + delivery.id, "X-Jitd-Timestamp: " + timestamp,
        "X-Jitd-Signature: sha256=" + sign(target.config.secret, timestamp, delivery.body),
        // No "100 Continue" round trip: bodies are small.
        "Expect:"};
    for (const auto& header : headers) {
      auto* appended = curl_slist_append(transfer->headers.get(), header.c_str());
      if (appended == nullptr) return core::fail(core::ErrorCode::io, "webhook: out of memory");
      (void)transfer->headers.release();
      transfer->headers.reset(appended);
    }
    CURL* curl = transfer->easy.get();
    const auto timeout_ms = static_cast<long>(target.config.timeout.count());
    curl_easy_setopt(curl, CURLOPT_URL, target.config.url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, transfer->headers.get());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(transfer->body.size()));
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, transfer->body.c_str());
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "jitd/" JITD_VERSION);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &discard_body);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, transfer->error.data());
    curl_easy_setopt(curl, CURLOPT_PRIVATE, &target);
    if (const auto added = curl_multi_add_handle(multi.get(), curl); added != CURLM_OK) {
      return core::fail(
          core::ErrorCode::io,
          std::string("webhook: libcurl refused the transfer: ") + curl_multi_strerror(added));
    }
    transfer->added = true;
    return transfer;
  }

  // After an attempt that did not succeed (its failure already noted): again after a backoff,
  // or given up.
  void finish_attempt(Target& target, long http_status) {
    auto& delivery = *target.current;
    ++delivery.failed_attempts;
    if (worth_retrying(http_status) && delivery.failed_attempts < target.config.max_attempts) {
      target.retry->arm(backoff(delivery.failed_attempts));
      return;
    }
    ++target.stats.given_up;
    spdlog::warn("webhook {}: delivery {} given up after {} attempt(s): {}", target.stats.url,
                 delivery.id, delivery.failed_attempts, target.stats.last_error);
    target.current.reset();
    pump(target);
  }

  void completed(CURL* easy, CURLcode result) {
    Target* found = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &found);
    if (found == nullptr) return;
    auto& target = *found;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    std::string error;
    if (result != CURLE_OK) {
      error = target.transfer->error[0] != '\0' ? target.transfer->error.data()
                                                : curl_easy_strerror(result);
      status = 0;
    } else if (status < 200 || status > 299) {
      error = "HTTP " + std::to_string(status);
    }
    target.transfer.reset();
    if (error.empty()) {
      ++target.stats.delivered;
      target.stats.last_success_time = core::format_utc(clock.now());
      target.overflow_logged = false;
      target.current.reset();
      pump(target);
      return;
    }
    note_failure(target, std::move(error));
    finish_attempt(target, status);
  }

  void drain_completed() {
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi.get(), &left)) {
      if (message->msg == CURLMSG_DONE) completed(message->easy_handle, message->data.result);
    }
  }

  void act(curl_socket_t fd, int flags) {
    retired.clear();
    int running = 0;
    curl_multi_socket_action(multi.get(), fd, flags, &running);
    drain_completed();
  }

  int on_socket(curl_socket_t fd, int what) {
    const auto found = watches.find(fd);
    if (what == CURL_POLL_REMOVE) {
      if (found != watches.end()) {
        found->second->stop();
        retired.push_back(std::move(found->second));
        watches.erase(found);
      }
      return 0;
    }
    if (found != watches.end()) {
      found->second->set_events(epoll_events(what));
      return 0;
    }
    auto watch = loop->watch(fd, epoll_events(what), "webhook connection",
                             [this, fd](std::uint32_t events) { act(fd, curl_select(events)); });
    if (!watch) {
      spdlog::error("webhook: {}", watch.error().message);
      return -1;
    }
    watches.emplace(fd, std::move(*watch));
    return 0;
  }

  static int socket_callback(CURL*, curl_socket_t fd, int what, void* self, void*) {
    return static_cast<Impl*>(self)->on_socket(fd, what);
  }

  static int timer_callback(CURLM*, long timeout_ms, void* self) {
    auto& impl = *static_cast<Impl*>(self);
    if (timeout_ms < 0) {
      impl.curl_timer->disarm();
    } else {
      // libcurl must not be called back from within this callback: from the loop instead.
      impl.curl_timer->arm(std::chrono::milliseconds(timeout_ms));
    }
    return 0;
  }
};

Notifier::Notifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Notifier::~Notifier() = default;

core::Result<std::unique_ptr<Notifier>> Notifier::create(std::vector<Webhook> webhooks,
                                                         std::string host,
                                                         const core::Clock& clock) {
  // Before any resolver thread exists; a no-op when jitd already did it.
  if (const auto initialised = curl_global_init(CURL_GLOBAL_DEFAULT); initialised != CURLE_OK) {
    return core::fail(core::ErrorCode::io, std::string("webhooks: initialise libcurl: ") +
                                               curl_easy_strerror(initialised));
  }
  MultiHandle multi(curl_multi_init());
  if (!multi) return core::fail(core::ErrorCode::io, "webhooks: cannot create a libcurl handle");
  auto impl = std::make_unique<Impl>(std::move(host), clock, std::move(multi));
  for (auto& webhook : webhooks) {
    impl->targets.push_back(std::make_unique<Target>(std::move(webhook)));
  }
  CURLM* handle = impl->multi.get();
  curl_multi_setopt(handle, CURLMOPT_SOCKETFUNCTION, &Impl::socket_callback);
  curl_multi_setopt(handle, CURLMOPT_SOCKETDATA, impl.get());
  curl_multi_setopt(handle, CURLMOPT_TIMERFUNCTION, &Impl::timer_callback);
  curl_multi_setopt(handle, CURLMOPT_TIMERDATA, impl.get());
  return std::unique_ptr<Notifier>(new Notifier(std::move(impl)));
}

core::Result<void> Notifier::start(Loop& loop) {
  auto& impl = *impl_;
  auto timer = loop.alarm("webhook timeouts", [&impl] { impl.act(CURL_SOCKET_TIMEOUT, 0); });
  if (!timer) return tl::unexpected(timer.error());
  impl.curl_timer = std::move(*timer);
  for (auto& target : impl.targets) {
    Target* retried = target.get();
    auto retry = loop.alarm("webhook retry " + target->stats.url, [&impl, retried] {
      impl.retired.clear();
      impl.send(*retried);
    });
    if (!retry) return tl::unexpected(retry.error());
    target->retry = std::move(*retry);
  }
  impl.loop = &loop;
  for (auto& target : impl.targets) impl.pump(*target);
  return {};
}

void Notifier::record(const core::AuditEvent& event) {
  const auto kind = kind_of(event);
  if (!kind) return;
  for (auto& target : impl_->targets) {
    if (!target->wants(*kind)) continue;
    if (!target->config.unusable.empty()) {
      ++target->stats.given_up;
      target->stats.last_error = target->config.unusable;
      target->stats.last_error_time = core::format_utc(impl_->clock.now());
      continue;
    }
    auto id = random_delivery_id();
    auto body = payload(event, *kind, impl_->host, id);
    impl_->enqueue(*target, Delivery{std::move(id), std::move(body), *kind, 0});
  }
}

void Notifier::update_secret(std::size_t webhook, std::string secret, std::string unusable) {
  if (webhook >= impl_->targets.size()) return;
  auto& config = impl_->targets[webhook]->config;
  config.secret = std::move(secret);
  config.unusable = std::move(unusable);
}

std::vector<WebhookStats> Notifier::stats() const {
  std::vector<WebhookStats> all;
  for (const auto& target : impl_->targets) {
    auto stats = target->stats;
    stats.queued = target->queue.size() + (target->current ? 1 : 0);
    all.push_back(std::move(stats));
  }
  return all;
}

}  // namespace jitd::notify
