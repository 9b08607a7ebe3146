#pragma once
// The daemon's side of webhook notifications: the configured webhooks with their secrets read
// from their files, the event loop as notify::Loop, and the webhooks' section of GET /v1/status.
#include <nlohmann/json.hpp>
#include <vector>

#include "jitd/config/config.hpp"
#include "jitd/daemon/event_loop.hpp"
#include "jitd/metrics/exposition.hpp"
#include "jitd/notify/loop.hpp"
#include "jitd/notify/notifier.hpp"

namespace jitd::daemon {

// One per configured webhook, in order. A secret file that cannot be read safely makes its
// webhook unusable (said in its status and logged), never stops jitd: notifications must not
// cost enforcement.
[[nodiscard]] std::vector<notify::Webhook> configured_webhooks(
    const std::vector<config::WebhookSettings>& settings);
// The secret files read again (reload), so a rotated secret needs no restart.
void reread_webhook_secrets(const std::vector<config::WebhookSettings>& settings,
                            notify::Notifier& notifier);
[[nodiscard]] nlohmann::json webhooks_json(const std::vector<notify::WebhookStats>& stats);
// The webhooks' series for GET /metrics: deliveries by outcome, failed attempts, queued.
void append_webhook_families(const std::vector<notify::WebhookStats>& stats,
                             std::vector<metrics::Family>& families);

class NotifyLoop final : public notify::Loop {
 public:
  explicit NotifyLoop(EventLoop& loop) : loop_(loop) {}
  [[nodiscard]] core::Result<std::unique_ptr<Watch>> watch(
      int fd, std::uint32_t events, std::string description,
      std::function<void(std::uint32_t events)> handler) override;
  [[nodiscard]] core::Result<std::unique_ptr<Alarm>> alarm(std::string description,
                                                           std::function<void()> handler) override;

 private:
  EventLoop& loop_;
};

}  // namespace jitd::daemon
