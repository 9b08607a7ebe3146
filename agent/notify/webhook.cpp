#include "jitd/notify/webhook.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>

#include <nlohmann/json.hpp>

#include "jitd/core/hex.hpp"

namespace jitd::notify {

namespace {

constexpr std::array<std::string_view, 5> kind_names = {"grant", "revoke", "expire", "refusal",
                                                        "tamper"};
constexpr auto longest_backoff = std::chrono::minutes(5);

}  // namespace

std::string_view to_string(Kind kind) { return kind_names[static_cast<std::size_t>(kind)]; }

std::optional<Kind> parse_kind(std::string_view text) {
  const auto found = std::find(kind_names.begin(), kind_names.end(), text);
  if (found == kind_names.end()) return std::nullopt;
  return static_cast<Kind>(found - kind_names.begin());
}

std::optional<Kind> kind_of(const core::AuditEvent& event) {
  // A refusal of anything (a request, a revoke, an extension) is one kind, whatever was asked.
  if (event.outcome == "refused") return Kind::refusal;
  if (event.event == "tamper") return Kind::tamper;
  // A request granted at once, one waiting for approval, and a scheduled start that began.
  if ((event.event == "request" || event.event == "start") &&
      (event.outcome == "granted" || event.outcome == "pending")) {
    return Kind::grant;
  }
  // A lapsed approval is audited as "expire" with outcome "revoked": it expired all the same.
  if (event.event == "expire") return Kind::expire;
  if ((event.event == "revoke" || event.event == "deny") && event.outcome == "revoked") {
    return Kind::revoke;
  }
  return std::nullopt;
}

std::string payload(const core::AuditEvent& event, Kind kind, std::string_view host,
                    std::string_view delivery_id) {
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& port : event.ports) {
    ports.push_back({{"number", port.number}, {"protocol", core::to_string(port.protocol)}});
  }
  nlohmann::json body = {{"event", to_string(kind)},
                         {"auditEvent", event.event},
                         {"outcome", event.outcome},
                         {"time", core::format_utc(event.time)},
                         {"grantId", event.grant_id},
                         {"user", event.user},
                         {"uid", event.uid},
                         {"source", event.source},
                         {"ports", std::move(ports)},
                         {"endTimeUtc", event.end_time},
                         {"reason", event.reason},
                         {"code", event.code},
                         {"justification", event.justification},
                         {"host", host},
                         {"deliveryId", delivery_id}};
  // Invalid UTF-8 in a justification must not make the event unsendable.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  // One-shot HMAC: no context to own; it fails only when OpenSSL cannot allocate.
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data(),
           &size) == nullptr) {
    return {};
  }
  return core::to_hex(digest.data(), size);
}

std::string sign(std::string_view secret, std::string_view timestamp, std::string_view body) {
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(timestamp).append(".").append(body);
  return hmac_sha256_hex(secret, message);
}

std::chrono::milliseconds backoff(unsigned failed) {
  const unsigned doublings = std::min(failed == 0 ? 0U : failed - 1, 16U);
  return std::min<std::chrono::milliseconds>(std::chrono::seconds(1) * (1LL << doublings),
                                             longest_backoff);
}

bool worth_retrying(long http_status) {
  return http_status == 0 || http_status == 429 || (http_status >= 500 && http_status <= 599);
}

std::string display_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  const auto authority_start = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  const auto cut = url.find_first_of("?#", authority_start);
  const auto kept = url.substr(0, cut);
  const auto path_start = kept.find('/', authority_start);
  const auto authority = kept.substr(authority_start, path_start == std::string_view::npos
                                                          ? std::string_view::npos
                                                          : path_start - authority_start);
  const auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(kept);
  return std::string(kept.substr(0, authority_start)) +
         std::string(kept.substr(authority_start + at + 1));
}

bool DeliveryQueue::push(Delivery delivery) {
  const bool full = limit_ > 0 && waiting_.size() >= limit_;
  if (full) {
    waiting_.pop_front();
    ++dropped_;
  }
  waiting_.push_back(std::move(delivery));
  return full;
}

std::optional<Delivery> DeliveryQueue::pop() {
  if (waiting_.empty()) return std::nullopt;
  auto next = std::move(waiting_.front());
  waiting_.pop_front();
  return next;
}

}  // namespace jitd::notify
