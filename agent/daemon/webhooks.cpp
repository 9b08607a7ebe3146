#include "jitd/daemon/webhooks.hpp"

#include <spdlog/spdlog.h>

#include "jitd/sys/file_safety.hpp"

namespace jitd::daemon {

namespace {

// A signing key, not a document: a few dozen bytes in practice.
constexpr std::size_t max_secret_bytes = 4096;

struct Secret {
  std::string value;
  std::string unusable;  // why there is none
};

Secret read_secret(const config::WebhookSettings& webhook) {
  auto text = sys::read_secret(webhook.secret_file, max_secret_bytes,
                               "webhook secret " + webhook.secret_file.string());
  if (!text) {
    spdlog::error("webhook {}: {}; its events are not sent", notify::display_url(webhook.url),
                  text.error().message);
    return {{}, text.error().message};
  }
  // `echo secret > file` leaves a line end that nobody means as part of the key.
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  if (text->empty()) {
    auto why = "webhook secret " + webhook.secret_file.string() + ": is empty";
    spdlog::error("webhook {}: {}; its events are not sent", notify::display_url(webhook.url), why);
    return {{}, std::move(why)};
  }
  return {std::move(*text), {}};
}

class WatchOnLoop final : public notify::Loop::Watch {
 public:
  explicit WatchOnLoop(std::unique_ptr<IoWatch> watch) : watch_(std::move(watch)) {}
  void set_events(std::uint32_t events) override { watch_->set_events(events); }
  void stop() override { watch_->stop(); }

 private:
  std::unique_ptr<IoWatch> watch_;
};

class AlarmOnLoop final : public notify::Loop::Alarm {
 public:
  explicit AlarmOnLoop(std::unique_ptr<Timer> timer) : timer_(std::move(timer)) {}
  void arm(std::chrono::microseconds delay) override { timer_->arm(delay); }
  void disarm() override { timer_->disarm(); }

 private:
  std::unique_ptr<Timer> timer_;
};

}  // namespace

std::vector<notify::Webhook> configured_webhooks(
    const std::vector<config::WebhookSettings>& settings) {
  std::vector<notify::Webhook> webhooks;
  for (const auto& configured : settings) {
    notify::Webhook webhook;
    webhook.url = configured.url;
    for (const auto& name : configured.events) {
      // The config accepts only notify's names (unit-tested), so none is skipped.
      if (const auto kind = notify::parse_kind(name)) webhook.events.push_back(*kind);
    }
    webhook.max_attempts = configured.max_attempts;
    webhook.timeout = configured.timeout;
    auto secret = read_secret(configured);
    webhook.secret = std::move(secret.value);
    webhook.unusable = std::move(secret.unusable);
    webhooks.push_back(std::move(webhook));
  }
  return webhooks;
}

void reread_webhook_secrets(const std::vector<config::WebhookSettings>& settings,
                            notify::Notifier& notifier) {
  for (std::size_t i = 0; i < settings.size(); ++i) {
    auto secret = read_secret(settings[i]);
    notifier.update_secret(i, std::move(secret.value), std::move(secret.unusable));
  }
}

nlohmann::json webhooks_json(const std::vector<notify::WebhookStats>& stats) {
  auto webhooks = nlohmann::json::array();
  for (const auto& webhook : stats) {
    const auto or_null = [](const std::string& text) {
      return text.empty() ? nlohmann::json() : nlohmann::json(text);
    };
    webhooks.push_back({{"url", webhook.url},
                        {"delivered", webhook.delivered},
                        {"failedAttempts", webhook.failed_attempts},
                        {"givenUp", webhook.given_up},
                        {"dropped", webhook.dropped},
                        {"queued", webhook.queued},
                        {"lastError", or_null(webhook.last_error)},
                        {"lastErrorTime", or_null(webhook.last_error_time)},
                        {"lastSuccessTime", or_null(webhook.last_success_time)}});
  }
  return webhooks;
}

core::Result<std::unique_ptr<notify::Loop::Watch>> NotifyLoop::watch(
    int fd, std::uint32_t events, std::string description,
    std::function<void(std::uint32_t events)> handler) {
  auto watch = loop_.watch_io(fd, events, std::move(description), std::move(handler));
  if (!watch) return tl::unexpected(watch.error());
  return std::make_unique<WatchOnLoop>(std::move(*watch));
}

core::Result<std::unique_ptr<notify::Loop::Alarm>> NotifyLoop::alarm(
    std::string description, std::function<void()> handler) {
  auto timer = loop_.make_timer(std::move(description), std::move(handler));
  if (!timer) return tl::unexpected(timer.error());
  return std::make_unique<AlarmOnLoop>(std::move(*timer));
}

void append_webhook_families(const std::vector<notify::WebhookStats>& stats,
                             std::vector<metrics::Family>& families) {
  metrics::Family deliveries{"jitd_webhook_deliveries_total",
                             "Webhook deliveries by outcome: delivered (2xx), given_up (attempts "
                             "used up or refused), dropped (from a full queue).",
                             metrics::Type::counter};
  metrics::Family failed{"jitd_webhook_failed_attempts_total",
                         "Webhook attempts that got no 2xx answer (each retry counts).",
                         metrics::Type::counter};
  metrics::Family queued{"jitd_webhook_queued_deliveries",
                         "Webhook deliveries waiting or in flight.", metrics::Type::gauge};
  for (const auto& webhook : stats) {
    for (const auto& [outcome, count] :
         {std::pair{"delivered", webhook.delivered}, std::pair{"given_up", webhook.given_up},
          std::pair{"dropped", webhook.dropped}}) {
      deliveries.samples.push_back(
          {{{"url", webhook.url}, {"outcome", outcome}}, static_cast<double>(count)});
    }
    failed.samples.push_back(
        {{{"url", webhook.url}}, static_cast<double>(webhook.failed_attempts)});
    queued.samples.push_back({{{"url", webhook.url}}, static_cast<double>(webhook.queued)});
  }
  families.push_back(std::move(deliveries));
  families.push_back(std::move(failed));
  families.push_back(std::move(queued));
}

}  // namespace jitd::daemon
