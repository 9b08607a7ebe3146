#pragma once
// What a webhook delivery is, apart from its transport: which audit events it reports, the
// JSON body, the HMAC-SHA256 signature, the retry schedule and the bounded queue. Pure logic
// (OpenSSL's HMAC aside), unit-tested; notifier.hpp sends it with libcurl.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/audit.hpp"

namespace jitd::notify {

// The kinds of event a webhook can subscribe to (jitd.yaml `events:`).
enum class Kind { grant, revoke, expire, refusal, tamper };
inline constexpr Kind all_kinds[] = {Kind::grant, Kind::revoke, Kind::expire, Kind::refusal,
                                     Kind::tamper};
[[nodiscard]] std::string_view to_string(Kind kind);
[[nodiscard]] std::optional<Kind> parse_kind(std::string_view text);
// The kind an audit event is reported as; nullopt for events no webhook reports (start, stop,
// reload, extend, ...).
[[nodiscard]] std::optional<Kind> kind_of(const core::AuditEvent& event);

// One webhook as the daemon configured it; the secret already read from its file.
struct Webhook {
  std::string url;
  std::string secret;
  std::vector<Kind> events;  // what it is sent
  unsigned max_attempts = 5;
  std::chrono::milliseconds timeout = std::chrono::seconds(5);  // per attempt
  std::size_t queue_limit = 1000;
  // Why it cannot send (its secret file was refused); its events are counted as given up.
  std::string unusable;
};

// The body of one delivery: a JSON object with the event, its outcome and the grant's facts.
[[nodiscard]] std::string payload(const core::AuditEvent& event, Kind kind, std::string_view host,
                                  std::string_view delivery_id);

// Lower-case hex HMAC-SHA256 of `timestamp` + "." + `body` under `secret`: the value of
// X-Jitd-Signature after "sha256=".
[[nodiscard]] std::string sign(std::string_view secret, std::string_view timestamp,
                               std::string_view body);
// Lower-case hex HMAC-SHA256 of `message` (exposed for the RFC 4231 test vectors).
[[nodiscard]] std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// The wait after the `failed`-th failed attempt (1-based): 1 s, 2 s, 4 s, ... at most 5 min.
[[nodiscard]] std::chrono::milliseconds backoff(unsigned failed);
// Whether an attempt that ended like this is worth another: no answer (connection refused,
// timeout, TLS failure: `http_status` 0), 5xx and 429; never other 4xx, which the next attempt
// would get again.
[[nodiscard]] bool worth_retrying(long http_status);
// The URL to show in status and logs: no user, password, query or fragment.
[[nodiscard]] std::string display_url(std::string_view url);

struct Delivery {
  std::string id;  // X-Jitd-Delivery, the same on every attempt, so receivers can dedupe
  std::string body;
  Kind kind = Kind::grant;  // also sent as X-Jitd-Event, to route on without parsing
  unsigned failed_attempts = 0;
};

// Deliveries waiting for their turn, at most `limit`: a receiver that is down for hours must
// not cost jitd memory without bound, so the oldest waiting one makes room and is counted.
class DeliveryQueue {
 public:
  explicit DeliveryQueue(std::size_t limit) : limit_(limit) {}
  // True when the oldest waiting delivery was dropped to make room.
  bool push(Delivery delivery);
  [[nodiscard]] std::optional<Delivery> pop();
  [[nodiscard]] std::size_t size() const { return waiting_.size(); }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

 private:
  std::size_t limit_;
  std::deque<Delivery> waiting_;
  std::uint64_t dropped_ = 0;
};

}  // namespace jitd::notify
