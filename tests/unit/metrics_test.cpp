// Metrics: the exposition format (golden text), kernel counters kept monotonic across a
// counter's restart and across a restart of jitd (the saved state), the audit recorder, day
// buckets on a fake clock, and the scrape of a real engine on a fake kernel.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "fake_backend.hpp"
#include "jitd/metrics/activity.hpp"
#include "jitd/metrics/exposition.hpp"
#include "jitd/metrics/metrics.hpp"
#include "state_test_files.hpp"

namespace {

using namespace jitd;
using namespace std::chrono_literals;
using metrics::Activity;
using metrics::Family;
using metrics::Type;

const core::PortKey ssh{core::Protocol::tcp, 22};
const core::PortKey dns_udp{core::Protocol::udp, 53};
const core::TimePoint monday{std::chrono::sys_days{std::chrono::year{2026} / 11 / 23} + 10h};

std::string golden(const std::string& name) {
  std::ifstream file(std::string(JITD_GOLDEN_DIR) + "/metrics/" + name);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

core::AuditEvent event(std::string name, std::string outcome, std::string code = {},
                       std::vector<core::PortSpec> ports = {}, core::TimePoint time = monday,
                       std::string user = "alice") {
  core::AuditEvent audit;
  audit.time = time;
  audit.event = std::move(name);
  audit.outcome = std::move(outcome);
  audit.code = std::move(code);
  audit.ports = std::move(ports);
  audit.user = std::move(user);
  return audit;
}

core::PortCounters reading(core::PortKey port, std::uint64_t dropped, std::uint64_t admitted = 0) {
  return {port, dropped, dropped / 2, admitted, 0};
}

TEST(MetricsExposition, GoldenText) {
  metrics::Histogram latency({0.005, 0.1, 1});
  latency.observe({{"route", "/v1/status"}}, 0.002);
  latency.observe({{"route", "/v1/status"}}, 0.05);
  latency.observe({{"route", "/v1/status"}}, 3);
  latency.observe({{"route", "/v1/grants"}}, 0.1);  // on a bound: counted in it (le)
  const std::vector<Family> families = {
      {"jitd_example_total",
       "Help with a \\ backslash\nand a new line.",
       Type::counter,
       {{{}, 42}},
       {}},
      {"jitd_labelled",
       "Gauge.",
       Type::gauge,
       {{{{"port", "22"}, {"note", "quote \" backslash \\ line\nend"}}, 1.5},
        {{{"port", "53"}, {"note", ""}}, -2}},
       {}},
      {"jitd_empty_total", "A family without samples is left out.", Type::counter, {}, {}},
      latency.family("jitd_latency_seconds", "Latency."),
  };
  EXPECT_EQ(metrics::render(families), golden("exposition.prom"));
}

TEST(MetricsExposition, Values) {
  EXPECT_EQ(metrics::format_value(0), "0");
  EXPECT_EQ(metrics::format_value(18446744073709.0), "18446744073709");
  EXPECT_EQ(metrics::format_value(0.0005), "0.0005");
  EXPECT_EQ(metrics::format_value(1.7e300), "1.7e+300");
  EXPECT_EQ(metrics::format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(metrics::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(metrics::format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsExposition, RegistryAppendsCollectorsInOrder) {
  metrics::Registry registry;
  registry.add([](std::vector<Family>& families) {
    families.push_back({"a_total", "A.", Type::counter, {{{}, 1}}, {}});
  });
  registry.add([](std::vector<Family>& families) {
    families.push_back({"b", "B.", Type::gauge, {{{}, 2}}, {}});
  });
  EXPECT_EQ(registry.scrape(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
            "# HELP b B.\n# TYPE b gauge\nb 2\n");
}

TEST(MetricsCarriedCounter, RestartAtZeroIsCarried) {
  metrics::CarriedCounter counter;
  EXPECT_TRUE(counter.observe(10));
  EXPECT_FALSE(counter.observe(10));
  EXPECT_TRUE(counter.observe(3));  // the table was re-created: it counts from zero again
  EXPECT_EQ(counter.total(), 13u);
  EXPECT_TRUE(counter.observe(0));
  EXPECT_EQ(counter.total(), 13u);
  EXPECT_TRUE(counter.observe(5));
  EXPECT_EQ(counter.total(), 18u);
}

TEST(MetricsActivity, KernelTotalsSurviveResetsAndRestarts) {
  Activity activity;
  activity.observe_kernel({reading(ssh, 10), reading(dns_udp, 4)}, monday);
  activity.observe_kernel({reading(ssh, 2), reading(dns_udp, 6)}, monday + 10s);  // ssh reset
  EXPECT_EQ(activity.ports().at(ssh).kernel.dropped_packets.total(), 12u);
  EXPECT_EQ(activity.ports().at(ssh).kernel.dropped_connections.total(), 6u);  // 5 + 1
  EXPECT_EQ(activity.ports().at(dns_udp).kernel.dropped_packets.total(), 6u);
  EXPECT_TRUE(activity.take_dirty());

  // jitd restarts: the saved state, then a first reading of a re-created table.
  auto restored = Activity::from_json(nlohmann::json::parse(activity.to_json().dump()));
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_FALSE(restored->dirty());
  restored->observe_kernel({reading(ssh, 1)}, monday + 20s);
  EXPECT_EQ(restored->ports().at(ssh).kernel.dropped_packets.total(), 13u);
  // A port missing from a reading (no longer protected) keeps its total.
  EXPECT_EQ(restored->ports().at(dns_udp).kernel.dropped_packets.total(), 6u);
}

TEST(MetricsActivity, LastAccessIsTheReadingThatSawANewConnection) {
  Activity activity;
  activity.observe_kernel({reading(ssh, 0, 0)}, monday);
  EXPECT_FALSE(activity.ports().at(ssh).last_access);
  activity.observe_kernel({reading(ssh, 0, 2)}, monday + 10s);
  EXPECT_EQ(activity.ports().at(ssh).last_access, monday + 10s);
  activity.observe_kernel({reading(ssh, 5, 2)}, monday + 20s);  // drops only
  EXPECT_EQ(activity.ports().at(ssh).last_access, monday + 10s);
  activity.observe_kernel({reading(ssh, 5, 1)}, monday + 30s);  // re-created, one since
  EXPECT_EQ(activity.ports().at(ssh).last_access, monday + 30s);
  EXPECT_EQ(activity.ports().at(ssh).kernel.admitted_connections.total(), 3u);
}

TEST(MetricsActivity, RecorderCountsDecisions) {
  Activity activity;
  const std::vector<core::PortSpec> dns{{53, core::ProtocolSpec::any}};
  activity.record(event("request", "granted", {}, dns));
  activity.record(event("start", "granted", {}, {{22, core::ProtocolSpec::tcp}}, monday, "bob"));
  activity.record(event("request", "pending"));  // counted once it starts
  activity.record(event("request", "refused", "PortNotInPolicy"));
  activity.record(event("request", "refused", "PortNotInPolicy"));
  activity.record(event("request", "refused", "Forbidden"));
  activity.record(event("read", "refused", "Forbidden"));  // not a grant request
  activity.record(event("request", "failed", "Io"));
  activity.record(event("expire", "expired"));
  activity.record(event("expire", "revoked"));  // nobody approved in time
  activity.record(event("revoke", "revoked"));
  activity.record(event("deny", "revoked"));
  activity.record(event("tamper", "restored"));
  activity.record(event("tamper", "failed", "Kernel"));
  activity.record(event("sessions", "failed"));
  const auto& counted = activity.decisions();
  EXPECT_EQ(counted.issued, 2u);
  EXPECT_EQ(counted.expired, 1u);
  EXPECT_EQ(counted.approvals_lapsed, 1u);
  EXPECT_EQ(counted.revoked, 1u);
  EXPECT_EQ(counted.denied, 1u);
  EXPECT_EQ(counted.refused,
            (std::map<std::string, std::uint64_t>{{"Forbidden", 1}, {"PortNotInPolicy", 2}}));
  EXPECT_EQ(counted.tamper, (std::map<std::string, std::uint64_t>{{"failed", 1}, {"restored", 1}}));
  using Key = std::pair<std::string, std::string>;
  EXPECT_EQ(counted.failures, (std::map<Key, std::uint64_t>{{Key{"request", "Io"}, 1},
                                                            {Key{"sessions", "Unknown"}, 1},
                                                            {Key{"tamper", "Kernel"}, 1}}));
  // Both protocols of "53/*", and the user of each port's last grant.
  EXPECT_EQ(activity.issued_in_last_days(dns_udp, monday), 1u);
  EXPECT_EQ(activity.issued_in_last_days({core::Protocol::tcp, 53}, monday), 1u);
  EXPECT_EQ(activity.ports().at(dns_udp).last_user, "alice");
  EXPECT_EQ(activity.ports().at(ssh).last_user, "bob");

  auto restored = Activity::from_json(activity.to_json());
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(restored->to_json(), activity.to_json());
}

TEST(MetricsActivity, DayBucketsCoverTheLastSevenDays) {
  Activity activity;
  const std::vector<core::PortSpec> port{{22, core::ProtocolSpec::tcp}};
  // Two grants on Monday (one just before midnight UTC), one on Tuesday, one nine days later.
  activity.record(event("request", "granted", {}, port, monday));
  activity.record(event("request", "granted", {}, port, monday + 13h + 59min));
  activity.record(event("request", "granted", {}, port, monday + 14h));
  EXPECT_EQ(activity.issued_in_last_days(ssh, monday + 14h), 3u);
  EXPECT_EQ(activity.issued_in_last_days(ssh, monday + 14h, 1), 1u);  // today only
  // Monday is the 7th day back on the next Sunday, and out of the week on Monday after.
  EXPECT_EQ(activity.issued_in_last_days(ssh, monday + std::chrono::days(6)), 3u);
  EXPECT_EQ(activity.issued_in_last_days(ssh, monday + std::chrono::days(7)), 1u);
  EXPECT_EQ(activity.issued_in_last_days(ssh, monday + std::chrono::days(8) + 14h), 0u);
  activity.record(event("request", "granted", {}, port, monday + std::chrono::days(9)));
  // Days that no week can ask for again are dropped from the state.
  EXPECT_EQ(activity.ports().at(ssh).issued_by_day.size(), 1u);
}

TEST(MetricsActivity, InvalidStateIsRefusedWithItsReason) {
  EXPECT_FALSE(Activity::from_json(nlohmann::json::parse(R"({"format":2})")));
  const auto missing = Activity::from_json(nlohmann::json::parse(R"({"format":1})"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("metrics state"), std::string::npos);
  auto saved = Activity().to_json();
  saved["ports"] = nlohmann::json::array(
      {{{"number", 22}, {"protocol", "sctp"}, {"issuedByDay", nlohmann::json::object()}}});
  const auto protocol = Activity::from_json(saved);
  ASSERT_FALSE(protocol);
  EXPECT_NE(protocol.error().message.find("sctp"), std::string::npos);
}

TEST(MetricsRoutes, CallerTextBecomesFewLabelValues) {
  EXPECT_EQ(metrics::route_of("/v1/status", 200), "/v1/status");
  EXPECT_EQ(metrics::route_of("/v1/grants/abc123", 404), "/v1/grants/{id}");
  EXPECT_EQ(metrics::route_of("/v1/grants/abc123/extend", 200), "/v1/grants/{id}/extend");
  EXPECT_EQ(metrics::route_of("/v1/grants/abc123/nonsense", 404), "unmatched");
  EXPECT_EQ(metrics::route_of("/anything/a/caller/sends", 404), "unmatched");
}

// A kernel whose counters a test sets; the engine's calls go to the fake backend.
class FakeKernel final : public core::KernelBackend {
 public:
  explicit FakeKernel(core::Backend& engine_side) : engine_side_(engine_side) {}
  core::Result<std::vector<core::PortCounters>> reading = std::vector<core::PortCounters>{};

  core::Result<void> install(const core::EnforcementSpec& spec) override {
    return engine_side_.install(spec);
  }
  core::Result<void> apply(const core::ElementChanges& changes) override {
    return engine_side_.apply(changes);
  }
  core::Result<core::KernelSnapshot> snapshot() override { return engine_side_.snapshot(); }
  core::Result<void> uninstall() override { return engine_side_.uninstall(); }
  std::string_view name() const override { return "nftables"; }
  std::string where() const override { return "table inet jitd"; }
  std::string protection() const override { return {}; }
  std::vector<std::pair<std::string, std::string>> features() const override { return {}; }
  core::Result<bool> installed() override { return true; }
  core::Result<std::vector<core::PortCounters>> counters() override { return reading; }
  core::Result<std::vector<core::WouldBlock>> would_block() override {
    return std::vector<core::WouldBlock>{};
  }
  core::Result<std::unique_ptr<core::ChangeWatch>> watch() override {
    return core::fail(core::ErrorCode::kernel, "no watch in tests");
  }

 private:
  core::Backend& engine_side_;
};

core::Policy ssh_policy() {
  core::PortRule rule;
  rule.port = {22, core::ProtocolSpec::tcp};
  rule.any_source = true;
  rule.max_duration = 3h;
  core::Policy policy;
  policy.rules = {rule};
  return policy;
}

class MetricsScrape : public ::testing::Test, protected test::FakeEngine {
 protected:
  MetricsScrape() : FakeEngine(ssh_policy(), monday) {}
  test::TempDir dir;
  FakeKernel kernel{backend};
  std::filesystem::path state = dir.file("metrics.json");
  std::optional<metrics::Metrics> scraped;

  metrics::Metrics& start() {
    scraped.emplace(engine, kernel, clock, state, metrics::BuildInfo{"1.2.3", "nftables"});
    EXPECT_TRUE(scraped->load());
    return *scraped;
  }

  void grant(const std::string& source) {
    core::GrantRequest request;
    request.ports = {{22, core::ProtocolSpec::tcp}};
    request.source = *core::SourceSpec::parse(source);
    request.duration = 30min;
    const core::Caller root{0, 0, "root", true, {}};
    ASSERT_TRUE(engine.request(root, request));
  }

  // The audit events since the last call, to the recorder as the daemon's fanout would.
  void feed(metrics::Metrics& into) {
    for (; fed_ < audit.events.size(); ++fed_) into.recorder().record(audit.events[fed_]);
  }

  static std::string line_of(const std::string& text, const std::string& start) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with(start + " ")) return line;
    }
    return "(no line " + start + ")";
  }

 private:
  std::size_t fed_ = 0;
};

TEST_F(MetricsScrape, SeriesOfALiveEngineAndKernel) {
  auto& live = start();
  grant("203.0.113.7");
  grant("203.0.113.8");
  feed(live);
  kernel.reading = std::vector<core::PortCounters>{reading(ssh, 7, 2)};
  live.observe_request("GET", "/v1/status", 200, 3ms);
  const auto text = live.scrape();
  EXPECT_EQ(line_of(text, R"(jitd_build_info{version="1.2.3",backend="nftables"})"),
            R"(jitd_build_info{version="1.2.3",backend="nftables"} 1)");
  EXPECT_EQ(line_of(text, "jitd_grants_issued_total"), "jitd_grants_issued_total 2");
  EXPECT_EQ(line_of(text, R"(jitd_live_grants{port="22",protocol="tcp"})"),
            R"(jitd_live_grants{port="22",protocol="tcp"} 2)");
  EXPECT_EQ(line_of(text, R"(jitd_dropped_packets_total{port="22",protocol="tcp"})"),
            R"(jitd_dropped_packets_total{port="22",protocol="tcp"} 7)");
  EXPECT_EQ(
      line_of(text, R"(jitd_last_access_timestamp_seconds{port="22",protocol="tcp"})"),
      R"(jitd_last_access_timestamp_seconds{port="22",protocol="tcp"} )" +
          std::to_string(
              std::chrono::duration_cast<std::chrono::seconds>(monday.time_since_epoch()).count()));
  EXPECT_EQ(
      line_of(
          text,
          R"(jitd_api_request_duration_seconds_bucket{method="GET",route="/v1/status",status="2xx",le="0.005"})"),
      R"(jitd_api_request_duration_seconds_bucket{method="GET",route="/v1/status",status="2xx",le="0.005"} 1)");
  const auto status = live.port_status(ssh);
  EXPECT_EQ(status.approved_last_7_days, 2u);
  EXPECT_EQ(status.last_user, "root");
  EXPECT_EQ(status.last_access, monday);
}

TEST_F(MetricsScrape, CountersDoNotGoBackAcrossARestartAndARecreatedTable) {
  {
    auto& before = start();
    grant("203.0.113.7");
    feed(before);
    kernel.reading = std::vector<core::PortCounters>{reading(ssh, 40)};
    before.read_kernel();
    ASSERT_TRUE(before.changed());
    ASSERT_TRUE(before.save_if_changed());
    EXPECT_FALSE(before.changed());
  }
  // A new jitd on the saved state; the table was re-created meanwhile.
  auto& after = start();
  kernel.reading = std::vector<core::PortCounters>{reading(ssh, 3)};
  const auto text = after.scrape();
  EXPECT_EQ(line_of(text, "jitd_grants_issued_total"), "jitd_grants_issued_total 1");
  EXPECT_EQ(line_of(text, R"(jitd_dropped_packets_total{port="22",protocol="tcp"})"),
            R"(jitd_dropped_packets_total{port="22",protocol="tcp"} 43)");
  // An unreadable kernel keeps the totals where they were, and is counted.
  kernel.reading = core::fail(core::ErrorCode::kernel, "table gone");
  const auto unreadable = after.scrape();
  EXPECT_EQ(line_of(unreadable, R"(jitd_dropped_packets_total{port="22",protocol="tcp"})"),
            R"(jitd_dropped_packets_total{port="22",protocol="tcp"} 43)");
  EXPECT_EQ(line_of(unreadable, "jitd_kernel_read_failures_total"),
            "jitd_kernel_read_failures_total 1");
}

TEST_F(MetricsScrape, AnInvalidStateFileIsReportedAndReplaced) {
  {
    std::ofstream file(state);
    file << "{not json";
  }
  metrics::Metrics loaded(engine, kernel, clock, state, {"1", "nftables"});
  const auto result = loaded.load();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find(state.string()), std::string::npos);
  kernel.reading = std::vector<core::PortCounters>{reading(ssh, 1)};
  loaded.read_kernel();
  ASSERT_TRUE(loaded.save_if_changed());
  EXPECT_TRUE(metrics::Metrics(engine, kernel, clock, state, {"1", "nftables"}).load());
}

TEST(MetricsTextfile, WrittenWholeAndReadableByAll) {
  test::TempDir dir;
  const auto path = dir.file("jitd.prom");
  ASSERT_TRUE(metrics::write_textfile(path, "a 1\n"));
  ASSERT_TRUE(metrics::write_textfile(path, "a 2\n"));
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_EQ(text.str(), "a 2\n");
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms(0644));
  EXPECT_FALSE(std::filesystem::exists(dir.file("jitd.prom.tmp")));
}

}  // namespace
