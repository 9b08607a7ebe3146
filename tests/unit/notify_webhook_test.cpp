// Webhook deliveries apart from their transport: which events go out, their body, the
// signature, the retry schedule, the bounded queue; and the `webhooks:` config.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "jitd/config/config.hpp"
#include "jitd/notify/webhook.hpp"
#include "jitd/sys/file_safety.hpp"

namespace jitd::notify {
namespace {

using namespace std::chrono_literals;

TEST(WebhookSignature, Rfc4231TestVectors) {
  // RFC 4231, test cases 1 and 2 (HMAC-SHA-256).
  EXPECT_EQ(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(WebhookSignature, CoversTimestampDotBody) {
  EXPECT_EQ(sign("Jefe", "what do ya want", " for nothing?"),
            hmac_sha256_hex("Jefe", "what do ya want. for nothing?"));
  const auto signed_body = sign("s3cret", "1700000000", R"({"event":"grant"})");
  EXPECT_NE(signed_body, sign("s3cret", "1700000001", R"({"event":"grant"})"))
      << "a replayed body with a new timestamp needs a new signature";
  EXPECT_NE(signed_body, sign("s3cret", "1700000000", R"({"event":"revoke"})"));
  EXPECT_NE(signed_body, sign("other", "1700000000", R"({"event":"grant"})"));
}

core::AuditEvent audit(std::string event, std::string outcome) {
  core::AuditEvent audited;
  audited.event = std::move(event);
  audited.outcome = std::move(outcome);
  return audited;
}

TEST(WebhookEvents, AuditEventsMapToTheKindsSubscribedTo) {
  const std::vector<std::tuple<std::string, std::string, std::optional<Kind>>> cases = {
      {"request", "granted", Kind::grant},
      {"request", "pending", Kind::grant},
      {"start", "granted", Kind::grant},
      {"request", "refused", Kind::refusal},
      {"revoke", "refused", Kind::refusal},
      {"extend", "refused", Kind::refusal},
      {"revoke", "revoked", Kind::revoke},
      {"deny", "revoked", Kind::revoke},
      {"expire", "expired", Kind::expire},
      {"expire", "revoked", Kind::expire},  // an approval that lapsed
      {"tamper", "restored", Kind::tamper},
      {"tamper", "failed", Kind::tamper},
      {"request", "failed", std::nullopt},
      {"start", "ok", std::nullopt},
      {"stop", "ok", std::nullopt},
      {"reload", "applied", std::nullopt},
      {"extend", "extended", std::nullopt},
      {"approve", "approved", std::nullopt},
  };
  for (const auto& [event, outcome, kind] : cases) {
    EXPECT_EQ(kind_of(audit(event, outcome)), kind) << event << " " << outcome;
  }
}

TEST(WebhookEvents, NamesRoundTripAndMatchTheConfig) {
  for (const auto kind : all_kinds) EXPECT_EQ(parse_kind(to_string(kind)), kind);
  EXPECT_EQ(parse_kind("granted"), std::nullopt);
  ASSERT_EQ(std::size(config::webhook_events), std::size(all_kinds));
  for (const auto name : config::webhook_events) EXPECT_TRUE(parse_kind(name)) << name;
}

TEST(WebhookPayload, CarriesTheGrantsFacts) {
  auto event = audit("request", "granted");
  event.time = core::TimePoint(std::chrono::milliseconds(1700000000123));
  event.grant_id = "g-1";
  event.uid = 1000;
  event.user = "alice";
  event.source = "10.0.0.7";
  event.ports = {{22, core::ProtocolSpec::tcp}, {53, core::ProtocolSpec::any}};
  event.end_time = "2023-11-14T23:13:20Z";
  event.justification = "deploy";
  const auto body = nlohmann::json::parse(payload(event, Kind::grant, "host1", "d-1"));
  EXPECT_EQ(body, nlohmann::json::parse(R"({
    "event": "grant", "auditEvent": "request", "outcome": "granted",
    "time": "2023-11-14T22:13:20.123Z", "grantId": "g-1", "user": "alice", "uid": 1000,
    "source": "10.0.0.7",
    "ports": [{"number": 22, "protocol": "tcp"}, {"number": 53, "protocol": "*"}],
    "endTimeUtc": "2023-11-14T23:13:20Z", "reason": "", "code": "", "justification": "deploy",
    "host": "host1", "deliveryId": "d-1"})"));

  auto refused = audit("request", "refused");
  refused.reason = "port 23/tcp is not protected";
  refused.code = "PortNotInPolicy";
  refused.justification = std::string("bad \xff utf-8");
  const auto refusal = nlohmann::json::parse(payload(refused, Kind::refusal, "h", "d-2"));
  EXPECT_EQ(refusal["event"], "refusal");
  EXPECT_EQ(refusal["code"], "PortNotInPolicy");
  EXPECT_EQ(refusal["reason"], "port 23/tcp is not protected");
  EXPECT_EQ(refusal["justification"], "bad \xef\xbf\xbd utf-8") << "replaced, not unsendable";
}

TEST(WebhookRetries, BackoffDoublesFromOneSecondAndIsCapped) {
  EXPECT_EQ(backoff(1), 1s);
  EXPECT_EQ(backoff(2), 2s);
  EXPECT_EQ(backoff(3), 4s);
  EXPECT_EQ(backoff(4), 8s);
  EXPECT_EQ(backoff(9), 256s);
  EXPECT_EQ(backoff(10), 5min);
  EXPECT_EQ(backoff(1000), 5min);
}

TEST(WebhookRetries, OnlyWhatAnotherAttemptCouldChange) {
  EXPECT_TRUE(worth_retrying(0)) << "no answer: refused, timed out, TLS failed";
  EXPECT_TRUE(worth_retrying(500));
  EXPECT_TRUE(worth_retrying(503));
  EXPECT_TRUE(worth_retrying(429));
  EXPECT_FALSE(worth_retrying(400));
  EXPECT_FALSE(worth_retrying(401));
  EXPECT_FALSE(worth_retrying(404));
  EXPECT_FALSE(worth_retrying(301));
}

TEST(WebhookQueue, OverflowDropsTheOldestAndCountsIt) {
  DeliveryQueue queue(3);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(queue.push({std::to_string(i), "", Kind::grant, 0}), i > 3) << i;
  }
  EXPECT_EQ(queue.size(), 3u);
  EXPECT_EQ(queue.dropped(), 2u);
  for (const auto* expected : {"3", "4", "5"}) EXPECT_EQ(queue.pop()->id, expected);
  EXPECT_FALSE(queue.pop());
}

TEST(WebhookUrl, ShownWithoutCredentialsQueryOrFragment) {
  EXPECT_EQ(display_url("https://user:pw@hooks.example/x/y?token=abc#f"),
            "https://hooks.example/x/y");
  EXPECT_EQ(display_url("http://127.0.0.1:8080/hook"), "http://127.0.0.1:8080/hook");
  EXPECT_EQ(display_url("https://hooks.example?key=1"), "https://hooks.example");
  EXPECT_EQ(display_url("https://a@b.example/p@q"), "https://b.example/p@q");
}

}  // namespace
}  // namespace jitd::notify

namespace jitd::config {
namespace {

std::vector<std::string> errors_of(const std::string& text) {
  std::vector<std::string> lines;
  for (const auto& error : parse_main_config_text(text, "jitd.yaml").errors) {
    lines.push_back(error.to_string());
  }
  return lines;
}

TEST(ConfigWebhooks, OffByDefaultAndReadWithDefaults) {
  EXPECT_TRUE(parse_main_config_text("logLevel: info\n", "jitd.yaml").value.webhooks.empty());
  const auto loaded = parse_main_config_text(
      "webhooks:\n"
      "  - url: https://hooks.example/jitd\n"
      "    secretFile: /etc/jitd/webhook.secret\n"
      "  - url: http://127.0.0.1:9000/\n"
      "    secretFile: /etc/jitd/other.secret\n"
      "    events: [grant, tamper]\n"
      "    maxAttempts: 3\n"
      "    timeout: 2s\n",
      "jitd.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors.front().to_string();
  ASSERT_EQ(loaded.value.webhooks.size(), 2u);
  const auto& first = loaded.value.webhooks[0];
  EXPECT_EQ(first.url, "https://hooks.example/jitd");
  EXPECT_EQ(first.secret_file, "/etc/jitd/webhook.secret");
  EXPECT_EQ(first.events,
            (std::vector<std::string>{"grant", "revoke", "expire", "refusal", "tamper"}));
  EXPECT_EQ(first.max_attempts, 5u);
  EXPECT_EQ(first.timeout, std::chrono::seconds(5));
  const auto& second = loaded.value.webhooks[1];
  EXPECT_EQ(second.events, (std::vector<std::string>{"grant", "tamper"}));
  EXPECT_EQ(second.max_attempts, 3u);
  EXPECT_EQ(second.timeout, std::chrono::seconds(2));
}

TEST(ConfigWebhooks, ErrorsSayWhereAndWhy) {
  EXPECT_EQ(errors_of("webhooks:\n"
                      "  - url: file:///etc/shadow\n"
                      "    secretFile: relative.secret\n"
                      "    events: [grant, granted, grant]\n"
                      "    maxAttempts: 0\n"
                      "    timeout: 5m\n"
                      "    secret: inline\n"
                      "  - secretFile: /etc/jitd/s\n"
                      "  - url: 'https:// x'\n"
                      "    secretFile: /etc/jitd/s\n"
                      "    events: []\n"),
            (std::vector<std::string>{
                "jitd.yaml:2:10: 'file:///etc/shadow' is not an http:// or https:// URL",
                "jitd.yaml:3:17: 'relative.secret' is not an absolute path",
                "jitd.yaml:4:21: 'granted' is not a webhook event; expected one of: grant, "
                "revoke, expire, refusal, tamper",
                "jitd.yaml:4:30: event 'grant' is listed twice",
                "jitd.yaml:5:18: '0' is not a number of attempts; expected 1 to 20",
                "jitd.yaml:6:14: '5m' is longer than PT1M, the bounds of one webhook attempt (a "
                "hanging receiver holds a delivery that long)",
                "jitd.yaml:7:5: unknown key 'secret' in webhook; expected one of: url, "
                "secretFile, events, maxAttempts, timeout",
                "jitd.yaml:8:5: webhook is missing 'url'",
                "jitd.yaml:9:10: 'https:// x' is not a URL jitd sends to: it needs a host, and "
                "no blanks or control characters",
                "jitd.yaml:11:13: \"events\" lists none; leave it out to send every event",
            }));
}

}  // namespace
}  // namespace jitd::config

namespace jitd::sys {
namespace {

TEST(SecretFile, ReadableByItsOwnerAlone) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("jitd-secret-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "webhook.secret";
  std::ofstream(file) << "s3cret\n";
  ::chmod(file.c_str(), 0600);
  EXPECT_EQ(read_secret(file, 64, "secret").value_or("(refused)"), "s3cret\n");
  ::chmod(file.c_str(), 0640);
  const auto readable = read_secret(file, 64, "secret");
  ASSERT_FALSE(readable);
  EXPECT_EQ(readable.error().message,
            "secret: mode 0640 lets others read it; a secret must be mode 0600 or 0400");
  ::chmod(file.c_str(), 0600);
  std::filesystem::create_symlink(file, dir / "link");
  EXPECT_FALSE(read_secret(dir / "link", 64, "secret")) << "never through a link";
  EXPECT_FALSE(read_secret(file, 3, "secret")) << "bounded";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace jitd::sys
