#pragma once
// Webhook notifications: an audit sink that turns grants, revokes, expiries, refusals and
// tamper repairs into signed HTTP POSTs, sent by libcurl's multi interface from jitd's own
// event loop. Nothing here blocks the loop (libcurl's resolver threads touch none of jitd's
// state), so a receiver that hangs delays no grant: its deliveries wait, are retried with
// backoff and, past a bound, dropped and counted.
#include <memory>
#include <string>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/notify/loop.hpp"
#include "jitd/notify/webhook.hpp"

namespace jitd::notify {

// One webhook's counters and last outcomes, for status and metrics.
struct WebhookStats {
  std::string url;                    // display_url: no credentials or query
  std::uint64_t delivered = 0;        // answered 2xx
  std::uint64_t failed_attempts = 0;  // attempts that did not get a 2xx
  std::uint64_t given_up = 0;         // deliveries abandoned (attempts used up, 4xx, unusable)
  std::uint64_t dropped = 0;          // deliveries dropped from a full queue
  std::uint64_t queued = 0;           // waiting or in flight now
  std::string last_error;
  std::string last_error_time;  // UTC text; empty: never
  std::string last_success_time;
};

class Notifier final : public core::AuditSink {
 public:
  // Events recorded before start() wait in the queues (a start's restore audits the grants
  // that expired while jitd was down before the loop runs).
  [[nodiscard]] static core::Result<std::unique_ptr<Notifier>> create(std::vector<Webhook> webhooks,
                                                                      std::string host,
                                                                      const core::Clock& clock);
  ~Notifier() override;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Sends from here on, from `loop`, which must outlive the notifier.
  [[nodiscard]] core::Result<void> start(Loop& loop);
  void record(const core::AuditEvent& event) override;
  // A secret file read again (reload): the next attempt signs with it; an empty `unusable`
  // makes a webhook usable again.
  void update_secret(std::size_t webhook, std::string secret, std::string unusable);
  [[nodiscard]] std::vector<WebhookStats> stats() const;

 private:
  struct Impl;
  explicit Notifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitd::notify
