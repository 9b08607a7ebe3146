// The API's routes and body parsing, against the real engine with a fake backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "fake_backend.hpp"
#include "jitd/api/router.hpp"

namespace {

using namespace jitd;
using nlohmann::json;

using test::grant_id;

// Nothing a caller sent reaches a reply or an audit line as a control character.
bool has_control_character(const std::string& text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

core::Policy test_policy() {
  core::Policy policy;
  core::PortRule ssh;
  ssh.port = {22, core::ProtocolSpec::tcp};
  ssh.any_source = true;
  ssh.max_duration = std::chrono::hours(3);
  core::PortRule rdp;
  rdp.port = {3389, core::ProtocolSpec::tcp};
  rdp.allowed_sources = {*core::Prefix::parse("10.0.0.0/8")};
  rdp.max_duration = std::chrono::minutes(10);
  policy.rules = {ssh, rdp};
  return policy;
}

class RouterTest : public ::testing::Test, protected test::FakeEngine {
 protected:
  RouterTest() : FakeEngine(test_policy()) {}
  // What POST /v1/policy/reload answers; every call is counted.
  api::ReloadOutcome reload_outcome{true, {}, {}};
  std::function<api::ReloadOutcome()> reload_with;  // when set, answers instead
  std::vector<std::string> reloaded_by;
  api::Router router{engine, clock, [this](const core::Caller& caller) {
                       reloaded_by.push_back(caller.name);
                       return reload_with ? reload_with() : reload_outcome;
                     }};
  core::Caller root{0, 0, "root", true, {}};
  core::Caller nobody{65534, 65534, "nobody", false, {}};

  std::pair<unsigned, json> call(const core::Caller& caller, std::string_view method,
                                 std::string_view path, std::string_view body = "") {
    const auto response = router.handle(caller, method, path, body);
    return {response.status, json::parse(response.body)};
  }
};

constexpr const char* good_body =
    R"({"ports":[{"number":22,"protocol":"tcp"}],"allowedSourceAddressPrefix":"203.0.113.7",
        "duration":"PT30M","justification":"INC-1"})";

TEST_F(RouterTest, CreateListRevoke) {
  auto [status, grant] = call(root, "POST", "/v1/grants", good_body);
  ASSERT_EQ(status, 201u) << grant;
  EXPECT_EQ(grant["id"], grant_id(1));
  EXPECT_EQ(grant["requestor"]["name"], "root");
  EXPECT_EQ(grant["allowedSourceAddressPrefix"], "203.0.113.7");
  EXPECT_EQ(grant["ports"][0]["status"], "Initiated");
  EXPECT_EQ(grant["remainingSeconds"], 1800);
  EXPECT_EQ(grant["endTimeUtc"], core::format_utc(clock.now() + std::chrono::minutes(30)));

  clock.advance(std::chrono::minutes(10));
  auto [list_status, list] = call(nobody, "GET", "/v1/grants");
  EXPECT_EQ(list_status, 200u);
  ASSERT_EQ(list["grants"].size(), 1u);
  EXPECT_EQ(list["grants"][0]["remainingSeconds"], 1200);

  auto [revoke_status, revoked] = call(root, "DELETE", "/v1/grants/" + grant_id(1));
  EXPECT_EQ(revoke_status, 200u);
  EXPECT_EQ(revoked["status"], "Revoked");
  EXPECT_EQ(revoked["ports"][0]["statusReason"], "UserRequested");
  EXPECT_EQ(call(root, "GET", "/v1/grants").second["grants"].size(), 0u);
  EXPECT_EQ(call(root, "DELETE", "/v1/grants/" + grant_id(1)).first, 404u);
}

// Without duration or endTimeUtc a request gets the longest its port's rule allows, as in
// Azure's portal.
TEST_F(RouterTest, RequestWithoutDurationGetsTheRulesMaximum) {
  auto [status, grant] = call(root, "POST", "/v1/grants",
                              R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"203.0.113.7"})");
  ASSERT_EQ(status, 201u) << grant;
  const auto& rule = engine.policy().rules.front();
  EXPECT_EQ(grant["endTimeUtc"], core::format_utc(clock.now() + rule.max_duration));
}

// The list pages through live grants with the filters every state shares; a page's `next`
// continues where it ended.
TEST_F(RouterTest, ListFiltersAndPages) {
  for (const auto* source : {"203.0.113.1", "203.0.113.2", "10.1.2.3"}) {
    const auto port = std::string(source) == "10.1.2.3" ? "3389" : "22";
    const auto body = std::string(R"({"ports":[{"number":)") + port +
                      R"(}],"allowedSourceAddressPrefix":")" + source + R"(","duration":"PT5M"})";
    ASSERT_EQ(call(root, "POST", "/v1/grants", body).first, 201u);
  }
  const auto list = [&](const api::QueryArguments& query) {
    const auto response = router.handle(nobody, "GET", "/v1/grants", "", query);
    return std::pair{response.status, json::parse(response.body)};
  };
  auto [status, first] = list({{"state", "active"}, {"limit", "2"}});
  ASSERT_EQ(status, 200u) << first;
  ASSERT_EQ(first["grants"].size(), 2u);
  ASSERT_TRUE(first.contains("next")) << first;
  // A grant the first page showed ends before the next page: the next page still starts after
  // the last grant shown, neither skipping nor repeating one.
  ASSERT_EQ(call(root, "DELETE", "/v1/grants/" + first["grants"][0]["id"].get<std::string>()).first,
            200u);
  auto [next_status, rest] = list({{"limit", "2"}, {"cursor", first["next"].get<std::string>()}});
  ASSERT_EQ(next_status, 200u) << rest;
  ASSERT_EQ(rest["grants"].size(), 1u);
  EXPECT_FALSE(rest.contains("next"));
  EXPECT_EQ(rest["grants"][0]["allowedSourceAddressPrefix"], "10.1.2.3");

  EXPECT_EQ(list({{"port", "3389"}}).second["grants"].size(), 1u);
  EXPECT_EQ(list({{"user", "root"}}).second["grants"].size(), 2u);
  EXPECT_EQ(list({{"user", "alice"}}).second["grants"].size(), 0u);
  // Nothing waits and no history is kept here: only the live grants.
  EXPECT_EQ(list({{"state", "all"}}).second["grants"].size(), 2u);
  EXPECT_EQ(list({{"state", "pending"}}).second["grants"].size(), 0u);

  for (const api::QueryArguments& bad :
       {api::QueryArguments{{"state", "expired"}}, {{"port", "0"}}, {{"limit", "1001"}},
        {{"cursor", "live:x"}}, {{"cursor", "live:12:not-an-id"}}, {{"state", "pending"}, {"cursor", "live:1"}},
        {{"since", "yesterday"}}, {{"colour", "red"}}, {{"user", "a"}, {"user", "b"}}}) {
    auto [bad_status, error] = list(bad);
    EXPECT_EQ(bad_status, 400u) << bad.front().first << "=" << bad.front().second;
    EXPECT_EQ(error["error"]["code"], "InvalidRequest") << error;
  }
}

TEST_F(RouterTest, ShowsOneGrantById) {
  ASSERT_EQ(call(root, "POST", "/v1/grants", good_body).first, 201u);
  auto [status, grant] = call(nobody, "GET", "/v1/grants/" + grant_id(1));
  ASSERT_EQ(status, 200u) << grant;
  EXPECT_EQ(grant["id"], grant_id(1));
  EXPECT_EQ(grant["ports"][0]["allowedSourceAddressPrefix"], "203.0.113.7");
  EXPECT_EQ(grant["ports"][0]["endTimeUtc"], grant["endTimeUtc"]);
  EXPECT_EQ(grant["requestedTimeUtc"], core::format_utc(clock.now()));
  EXPECT_EQ(call(nobody, "GET", "/v1/grants/" + grant_id(2)).first, 404u);
  EXPECT_EQ(call(nobody, "GET", "/v1/grants/XYZ").first, 400u);
  EXPECT_EQ(call(nobody, "PUT", "/v1/grants/" + grant_id(1)).first, 405u);
  EXPECT_EQ(call(root, "POST", "/v1/grants/" + grant_id(1) + "/frobnicate").first, 404u);
}

// Ports with a source or end of their own (Azure's per-port shape) become grants of their own;
// the reply lists them all.
TEST_F(RouterTest, PortsWithTheirOwnTermsAreSplitIntoGrants) {
  auto [status, reply] = call(root, "POST", "/v1/grants", R"({"ports":[
      {"number":22,"allowedSourceAddressPrefix":"198.51.100.9","duration":"PT5M"},
      {"number":3389,"allowedSourceAddressPrefix":"10.9.9.9"}],
      "duration":"PT2M","justification":"both"})");
  ASSERT_EQ(status, 201u) << reply;
  ASSERT_EQ(reply["grants"].size(), 2u) << reply;
  EXPECT_EQ(reply["grants"][0]["allowedSourceAddressPrefix"], "198.51.100.9");
  EXPECT_EQ(reply["grants"][0]["endTimeUtc"], core::format_utc(clock.now() + std::chrono::minutes(5)));
  EXPECT_EQ(reply["grants"][1]["allowedSourceAddressPrefix"], "10.9.9.9");
  EXPECT_EQ(reply["grants"][1]["endTimeUtc"], core::format_utc(clock.now() + std::chrono::minutes(2)));
  EXPECT_EQ(reply["grants"][1]["justification"], "both");

  // One port without a source of its own and none in the body: refused, nothing granted.
  auto [missing, error] = call(root, "POST", "/v1/grants", R"({"ports":[
      {"number":22,"allowedSourceAddressPrefix":"198.51.100.9"},{"number":3389}]})");
  EXPECT_EQ(missing, 400u);
  EXPECT_NE(error["error"]["message"].get<std::string>().find("ports[1] has none"),
            std::string::npos)
      << error;
  EXPECT_EQ(call(root, "GET", "/v1/grants").second["grants"].size(), 2u);
}

TEST_F(RouterTest, ReadersMayNotWrite) {
  auto [status, body] = call(nobody, "POST", "/v1/grants", good_body);
  EXPECT_EQ(status, 403u);
  EXPECT_EQ(body["error"]["code"], "Forbidden");
  EXPECT_TRUE(backend.applies.empty());
  call(root, "POST", "/v1/grants", good_body);
  EXPECT_EQ(call(nobody, "DELETE", "/v1/grants/" + grant_id(1)).first, 403u);
  EXPECT_EQ(call(nobody, "GET", "/v1/grants").second["grants"].size(), 1u);
}

TEST_F(RouterTest, PolicyUsesYamlFieldNames) {
  auto [status, policy] = call(nobody, "GET", "/v1/policy");
  EXPECT_EQ(status, 200u);
  ASSERT_EQ(policy["ports"].size(), 2u);
  EXPECT_EQ(policy["ports"][0]["number"], 22);
  EXPECT_EQ(policy["ports"][0]["protocol"], "tcp");
  EXPECT_EQ(policy["ports"][0]["allowedSourceAddressPrefixes"], json::array({"*"}));
  EXPECT_EQ(policy["ports"][0]["maxRequestAccessDuration"], "PT3H");
  EXPECT_EQ(policy["ports"][1]["allowedSourceAddressPrefixes"], json::array({"10.0.0.0/8"}));
  EXPECT_EQ(policy["ports"][1]["maxRequestAccessDuration"], "PT10M");
  EXPECT_EQ(policy["ports"][0]["mode"], "enforce");
}

// The kernel's counters per port and the sources audit mode let through, as the backend
// reports them.
class RouterStatusTest : public RouterTest {
 protected:
  RouterStatusTest() {
    auto policy = test_policy();
    policy.rules[1].mode = core::Mode::audit;  // 3389/tcp
    EXPECT_TRUE(engine.replace_policy(policy).has_value());
  }
  api::EnforcementStatus kernel{"nftables", "table inet jitd", "not owned", {}};
  api::Router status_router{engine, clock, nullptr, nullptr, nullptr, [this] { return kernel; }};

  json status() {
    const auto response = status_router.handle(nobody, "GET", "/v1/status", "");
    EXPECT_EQ(response.status, 200u) << response.body;
    return json::parse(response.body);
  }
};

const core::PortKey ssh_key{core::Protocol::tcp, 22};
const core::PortKey rdp_key{core::Protocol::tcp, 3389};

core::WouldBlock would_block(const char* source, std::uint64_t packets) {
  const auto address = *core::Prefix::parse(source);
  return {address.range(), rdp_key, packets};
}

TEST_F(RouterStatusTest, CountersAndModePerPort) {
  kernel.counters = std::vector<core::PortCounters>{{ssh_key, 7, 3, 2, 0}, {rdp_key, 0, 0, 1, 9}};
  kernel.would_block =
      std::vector<core::WouldBlock>{would_block("192.0.2.1", 4), would_block("2001:db8::1", 5)};
  const auto reply = status();
  ASSERT_EQ(reply["ports"].size(), 2u) << reply;
  EXPECT_EQ(reply["ports"][0], (json{{"number", 22},
                                     {"protocol", "tcp"},
                                     {"mode", "enforce"},
                                     {"liveGrants", 0},
                                     {"droppedPackets", 7},
                                     {"droppedConnections", 3},
                                     {"admittedConnections", 2},
                                     {"wouldDropPackets", 0}}));
  EXPECT_EQ(reply["ports"][1]["mode"], "audit");
  EXPECT_EQ(reply["ports"][1]["wouldDropPackets"], 9);
  EXPECT_EQ(reply["ports"][1]["admittedConnections"], 1);
  // Most packets first.
  EXPECT_EQ(reply["wouldBlock"],
            (json{{{"source", "2001:db8::1"}, {"port", 3389}, {"protocol", "tcp"}, {"packets", 5}},
                  {{"source", "192.0.2.1"}, {"port", 3389}, {"protocol", "tcp"}, {"packets", 4}}}));
  EXPECT_EQ(reply["wouldBlockOmitted"], 0);
  EXPECT_EQ(reply["errors"], json::array());
}

TEST_F(RouterStatusTest, WouldBlockIsBoundedAndSaysHowManyItLeftOut) {
  std::vector<core::WouldBlock> sources;
  for (unsigned i = 0; i < api::status_would_block_limit + 20; ++i) {
    const auto address = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    sources.push_back(would_block(address.c_str(), i + 1));
  }
  kernel.would_block = sources;
  const auto reply = status();
  ASSERT_EQ(reply["wouldBlock"].size(), api::status_would_block_limit);
  EXPECT_EQ(reply["wouldBlockOmitted"], 20);
  // The ones kept are those with most packets.
  EXPECT_EQ(reply["wouldBlock"][0]["packets"], api::status_would_block_limit + 20);
  EXPECT_EQ(reply["wouldBlock"].back()["packets"], 21);
}

TEST_F(RouterStatusTest, UnreadableKernelShowsUnknownCountersAndSaysWhy) {
  kernel.counters = core::fail(core::ErrorCode::kernel, "list set inet jitd admitted: EPERM");
  kernel.would_block =
      core::fail(core::ErrorCode::kernel, "list set inet jitd would_block4: EPERM");
  const auto reply = status();
  for (const char* key :
       {"droppedPackets", "droppedConnections", "admittedConnections", "wouldDropPackets"}) {
    EXPECT_TRUE(reply["ports"][0][key].is_null()) << key << reply;
  }
  EXPECT_EQ(reply["ports"][0]["mode"], "enforce");
  EXPECT_EQ(reply["wouldBlock"], json::array());
  EXPECT_EQ(reply["errors"],
            (json{"kernel counters: list set inet jitd admitted: EPERM",
                  "would-be-blocked sources: list set inet jitd would_block4: EPERM"}));
}


TEST_F(RouterTest, RoutesAndMethods) {
  EXPECT_EQ(call(root, "GET", "/v2/grants").first, 404u);
  EXPECT_EQ(call(root, "PUT", "/v1/grants").first, 405u);
  EXPECT_EQ(call(root, "POST", "/v1/policy").first, 405u);
  EXPECT_EQ(call(root, "GET", "/v1/grants/").first, 404u);
}

TEST_F(RouterTest, RevokeOfIdThatIsNotAGrantIdIsRefusedQuotingABoundedExcerpt) {
  // 120 KB of id once made a 200 KB audit line, synced, and an echo of all of it.
  const std::string huge(120 * 1024, 'a');
  auto [status, reply] = call(root, "DELETE", "/v1/grants/" + huge);
  EXPECT_EQ(status, 400u) << reply;
  EXPECT_EQ(reply["error"]["code"], "InvalidRequest");
  const auto message = reply["error"]["message"].get<std::string>();
  EXPECT_NE(message.find(std::string(32, 'a') + "…"), std::string::npos) << message;
  EXPECT_LT(message.size(), 200u) << message;
  ASSERT_EQ(audit.events.size(), 1u);
  EXPECT_EQ(audit.events[0].event, "revoke");
  EXPECT_EQ(audit.events[0].outcome, "refused");
  EXPECT_TRUE(audit.events[0].grant_id.empty()) << audit.events[0].grant_id.size();
  EXPECT_LT(audit.events[0].reason.size(), 300u);

  for (const std::string id :
       {"0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "\x1b[2J0123456789ab"}) {
    auto [bad_status, bad_reply] = call(root, "DELETE", "/v1/grants/" + id);
    EXPECT_EQ(bad_status, 400u) << id;
    EXPECT_FALSE(has_control_character(bad_reply.dump())) << bad_reply;
  }
  EXPECT_EQ(call(root, "DELETE", "/v1/grants/\x1b[31m").second["error"]["message"],
            "grant id '\\x1b[31m': not a grant id (16 lowercase hex digits)");
  for (const auto& event : audit.events) EXPECT_FALSE(has_control_character(event.reason));
  EXPECT_EQ(call(root, "DELETE", "/v1/grants/" + grant_id(7)).first, 404u);
}

TEST_F(RouterTest, NoRouteAndMethodMessagesQuoteTheCallerBoundedAndEscaped) {
  const std::string path = "/" + std::string(100 * 1024, 'x') + "\n\x1b[2J";
  for (const auto& [method, target, expected] :
       {std::tuple<std::string, std::string, unsigned>{"GET", path, 404u},
        {"GET", "/v1/grants/" + path, 404u},
        {"\x1b[2J" + std::string(1000, 'M'), "/v1/grants", 405u},
        {"GET", "/v2/\n[x] forged\x1b[2J", 404u}}) {
    auto [status, reply] = call(root, method, target);
    EXPECT_EQ(status, expected) << reply;
    const auto message = reply["error"]["message"].get<std::string>();
    EXPECT_LT(message.size(), 300u) << message;
    EXPECT_FALSE(has_control_character(message)) << message;
  }
  EXPECT_EQ(call(root, "GET", "/v2/\n[x]\x1b").second["error"]["message"],
            "no route /v2/\\n[x]\\x1b");
}

TEST_F(RouterTest, CallerTextInBodyErrorsIsQuotedEscapedAndBounded) {
  auto [status, reply] =
      call(root, "POST", "/v1/grants", R"({"\u001b[2J)" + std::string(5000, 'k') + R"(":1})");
  EXPECT_EQ(status, 400u) << reply;
  const auto message = reply["error"]["message"].get<std::string>();
  EXPECT_EQ(message.rfind("\\x1b[2Jkkk", 0), 0u) << message;
  EXPECT_LT(message.size(), 300u) << message;
  // A core parser's message quotes the value: bounded and escaped on its way into the reply.
  auto [source_status, source_reply] =
      call(root, "POST", "/v1/grants",
           R"({"ports":[{"number":22}],"duration":"1m","allowedSourceAddressPrefix":"1.2.3.4\n)" +
               std::string(10000, 'x') + R"("})");
  EXPECT_EQ(source_status, 400u) << source_reply;
  const auto source_message = source_reply["error"]["message"].get<std::string>();
  EXPECT_EQ(source_message.rfind("allowedSourceAddressPrefix: '1.2.3.4\\nxxx", 0), 0u)
      << source_message;
  EXPECT_LT(source_message.size(), 400u);
  ASSERT_EQ(audit.events.size(), 2u);
  for (const auto& event : audit.events) {
    EXPECT_LT(event.reason.size(), 400u);
    EXPECT_FALSE(has_control_character(event.reason)) << event.reason;
  }
}

TEST_F(RouterTest, PolicyReloadByManagerCallsReloaderAndReportsCounts) {
  reload_outcome = {true, {}, core::PolicyChange{2, 1, 3}};
  auto [status, reply] = call(root, "POST", "/v1/policy/reload");
  EXPECT_EQ(status, 200u) << reply;
  EXPECT_EQ(reply["applied"], true);
  EXPECT_EQ(reply["revoked"], 2);
  EXPECT_EQ(reply["narrowed"], 1);
  EXPECT_EQ(reply["clamped"], 3);
  EXPECT_EQ(reloaded_by, std::vector<std::string>{"root"});
}

TEST_F(RouterTest, PolicyReloadByNonManagerIsForbiddenWithoutReloading) {
  auto [status, reply] = call(nobody, "POST", "/v1/policy/reload");
  EXPECT_EQ(status, 403u);
  EXPECT_EQ(reply["error"]["code"], "Forbidden");
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("nobody"), std::string::npos);
  EXPECT_TRUE(reloaded_by.empty());
}

TEST_F(RouterTest, ForbiddenPolicyReloadIsAudited) {
  ASSERT_EQ(call(nobody, "POST", "/v1/policy/reload").first, 403u);
  ASSERT_EQ(audit.events.size(), 1u);
  const auto& event = audit.events.front();
  EXPECT_EQ(event.event, "reload");
  EXPECT_EQ(event.outcome, "refused");
  EXPECT_EQ(event.uid, 65534u);
  EXPECT_EQ(event.user, "nobody");
  EXPECT_NE(event.reason.find("may not reload the policy"), std::string::npos) << event.reason;
}

TEST_F(RouterTest, PolicyReloadErrorsAreReportedAsPolicyInvalid) {
  reload_outcome.applied = false;
  reload_outcome.errors = {"/etc/jitd/policy.d/ssh.yaml:3:5: unknown key 'prot'",
                           "/etc/jitd/policy.d/web.yaml:7:1: duplicate port 443/tcp"};
  auto [status, reply] = call(root, "POST", "/v1/policy/reload");
  EXPECT_EQ(status, 400u);
  EXPECT_EQ(reply["error"]["code"], "PolicyInvalid");
  EXPECT_EQ(reply["error"]["message"].get<std::string>().rfind(reload_outcome.errors[0], 0), 0u)
      << reply;
  EXPECT_EQ(reply["error"]["details"], json(reload_outcome.errors));
  EXPECT_EQ(reloaded_by, std::vector<std::string>{"root"});
}

TEST_F(RouterTest, PolicyReloadOnlyAcceptsPost) {
  EXPECT_EQ(call(root, "GET", "/v1/policy/reload").first, 405u);
  EXPECT_EQ(call(root, "DELETE", "/v1/policy/reload").first, 405u);
  EXPECT_EQ(call(root, "POST", "/v1/policy/reload/now").first, 404u);
  EXPECT_TRUE(reloaded_by.empty());
}

TEST_F(RouterTest, PolicyReloadThatNarrowsShowsInGrantsAndPolicy) {
  constexpr const char* both_ports =
      R"({"ports":[{"number":22},{"number":3389}],"allowedSourceAddressPrefix":"10.1.2.3",
          "duration":"PT5M"})";
  ASSERT_EQ(call(root, "POST", "/v1/grants", both_ports).first, 201u);
  // A reloader like the daemon's: it replaces the engine's policy.
  core::Policy only_ssh = test_policy();
  only_ssh.rules.pop_back();
  reload_with = [&] {
    auto change = engine.replace_policy(only_ssh);
    EXPECT_TRUE(change.has_value());
    return api::ReloadOutcome{true, {}, change ? *change : core::PolicyChange{}};
  };
  auto [status, reply] = call(root, "POST", "/v1/policy/reload");
  EXPECT_EQ(status, 200u) << reply;
  EXPECT_EQ(reply["narrowed"], 1);
  EXPECT_EQ(reply["revoked"], 0);
  const auto grants = call(nobody, "GET", "/v1/grants").second["grants"];
  ASSERT_EQ(grants.size(), 1u);
  ASSERT_EQ(grants[0]["ports"].size(), 1u);
  EXPECT_EQ(grants[0]["ports"][0]["number"], 22);
  EXPECT_EQ(grants[0]["ports"][0]["statusReason"], "PolicyChanged");
  EXPECT_EQ(call(nobody, "GET", "/v1/policy").second["ports"].size(), 1u);
  ASSERT_FALSE(backend.installs.empty());
  EXPECT_EQ(backend.installs.back().grants.size(), 1u);
}

struct BadBody {
  const char* name;
  const char* body;
  const char* code;
  const char* message_prefix;
};

class RouterBadBodyTest : public RouterTest, public ::testing::WithParamInterface<BadBody> {};

TEST_P(RouterBadBodyTest, RefusedNamingTheFieldAndAudited) {
  const auto& param = GetParam();
  auto [status, reply] = call(root, "POST", "/v1/grants", param.body);
  EXPECT_GE(status, 400u);
  EXPECT_LT(status, 500u);
  EXPECT_EQ(reply["error"]["code"], param.code) << reply;
  EXPECT_EQ(reply["error"]["message"].get<std::string>().rfind(param.message_prefix, 0), 0u)
      << reply;
  EXPECT_TRUE(backend.applies.empty());
  ASSERT_EQ(audit.events.size(), 1u);
  EXPECT_EQ(audit.events[0].outcome, "refused");
  EXPECT_NE(audit.events[0].reason.find(param.code), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, RouterBadBodyTest,
    ::testing::Values(
        BadBody{"malformed", R"({"ports":)", "InvalidRequest", "body:"},
        BadBody{"array", "[]", "InvalidRequest", "body:"},
        BadBody{"unknown_field", R"({"port":22})", "InvalidRequest", "port:"},
        BadBody{"ports_missing", R"({"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports:"},
        BadBody{"ports_string",
                R"({"ports":"22","allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports:"},
        BadBody{"port_not_object",
                R"({"ports":[22],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports[0]:"},
        BadBody{"number_string",
                R"({"ports":[{"number":"22"}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports[0].number:"},
        BadBody{"number_fraction",
                R"({"ports":[{"number":22.5}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports[0].number:"},
        BadBody{"number_zero",
                R"({"ports":[{"number":0}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports[0].number:"},
        BadBody{"protocol_bad",
                R"({"ports":[{"number":22,"protocol":"icmp"}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports[0].protocol:"},
        BadBody{"port_extra_key",
                R"({"ports":[{"number":22,"proto":"tcp"}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "ports[0].proto:"},
        BadBody{"source_missing", R"({"ports":[{"number":22}],"duration":"1m"})", "InvalidRequest",
                "allowedSourceAddressPrefix:"},
        BadBody{"source_number",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":1234,"duration":"1m"})",
                "InvalidRequest", "allowedSourceAddressPrefix:"},
        BadBody{"source_bad",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4/40","duration":"1m"})",
                "InvalidRequest", "allowedSourceAddressPrefix:"},
        BadBody{"both_durations",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m","endTimeUtc":"2030-01-01T00:00:00Z"})",
                "InvalidRequest", "duration: give at most one"},
        BadBody{"duration_bad",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"soon"})",
                "InvalidRequest", "duration:"},
        BadBody{"end_time_bad",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","endTimeUtc":"tomorrow"})",
                "InvalidRequest", "endTimeUtc:"},
        BadBody{"duplicate_key",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m",)"
                R"("allowedSourceAddressPrefix":"0.0.0.0/0"})",
                "InvalidRequest", "allowedSourceAddressPrefix: duplicate key"},
        BadBody{"duplicate_nested_key",
                R"({"ports":[{"number":22,"number":3389}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "InvalidRequest", "number: duplicate key"},
        BadBody{"duplicate_key_with_equal_values",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m","duration":"1m"})",
                "InvalidRequest", "duration: duplicate key"},
        BadBody{"justification_number",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m","justification":5})",
                "InvalidRequest", "justification:"},
        BadBody{"port_not_protected",
                R"({"ports":[{"number":22},{"number":2222}],"allowedSourceAddressPrefix":"1.2.3.4","duration":"1m"})",
                "PortNotInPolicy", "ports[1]:"},
        BadBody{"source_outside",
                R"({"ports":[{"number":3389}],"allowedSourceAddressPrefix":"192.0.2.0/24","duration":"1m"})",
                "SourceNotAllowed", "allowedSourceAddressPrefix:"},
        BadBody{"source_wider",
                R"({"ports":[{"number":3389}],"allowedSourceAddressPrefix":"10.0.0.0/7","duration":"1m"})",
                "SourceNotAllowed", "allowedSourceAddressPrefix:"},
        BadBody{"too_long",
                R"({"ports":[{"number":3389}],"allowedSourceAddressPrefix":"10.1.2.3","duration":"PT11M"})",
                "DurationTooLong", "duration:"},
        BadBody{"end_in_past",
                R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4","endTimeUtc":"2001-01-01T00:00:00Z"})",
                "EndTimeInPast", "endTimeUtc:"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ParseGrantRequest, AcceptsEndTimeAndDefaultsProtocolToTcp) {
  auto requests = api::parse_grant_requests(
      R"({"ports":[{"number":22},{"number":53,"protocol":"*"}],
          "allowedSourceAddressPrefix":"2001:db8::/64","endTimeUtc":"2030-01-02T03:04:05Z"})");
  ASSERT_TRUE(requests) << requests.error().message;
  ASSERT_EQ(requests->size(), 1u);
  const auto* request = &requests->front();
  ASSERT_EQ(request->ports.size(), 2u);
  EXPECT_EQ(request->ports[0].protocol, core::ProtocolSpec::tcp);
  EXPECT_EQ(request->ports[1].protocol, core::ProtocolSpec::any);
  EXPECT_EQ(request->source.to_string(), "2001:db8::/64");
  EXPECT_FALSE(request->duration);
  ASSERT_TRUE(request->end_time);
  EXPECT_EQ(core::format_utc(*request->end_time), "2030-01-02T03:04:05Z");
  EXPECT_TRUE(request->justification.empty());
}

TEST(ParseGrantRequest, RefusesOverlongJustification) {
  const std::string body = R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"1.2.3.4",)"
                           R"("duration":"1m","justification":")" +
                           std::string(1025, 'x') + "\"}";
  auto request = api::parse_grant_requests(body);
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().message.rfind("justification:", 0), 0u);
}

TEST_F(RouterTest, StatusShowsPortActivityAndMetricsNeedTheReadRight) {
  // Without the readers: no activity fields, and no /metrics route.
  auto [plain_status, plain] = call(root, "GET", "/v1/status");
  ASSERT_EQ(plain_status, 200u) << plain;
  EXPECT_FALSE(plain["ports"][0].contains("approvedLast7Days")) << plain;
  EXPECT_EQ(call(root, "GET", "/metrics").first, 404u);

  const core::PortKey ssh{core::Protocol::tcp, 22};
  router.set_activity_reader([&] {
    return std::map<core::PortKey, api::PortActivity>{
        {ssh, {3, clock.now() - std::chrono::minutes(5), "alice"}}};
  });
  router.set_metrics_reader([] { return api::Response{200, "a_total 1\n", "text/plain"}; });
  auto [status, reply] = call(root, "GET", "/v1/status");
  ASSERT_EQ(status, 200u) << reply;
  std::map<int, json> ports;
  for (const auto& port : reply["ports"]) ports[port["number"].get<int>()] = port;
  EXPECT_EQ(ports[22]["approvedLast7Days"], 3);
  EXPECT_EQ(ports[22]["lastUser"], "alice");
  EXPECT_EQ(ports[22]["lastAccessUtc"], core::format_utc(clock.now() - std::chrono::minutes(5)));
  EXPECT_EQ(ports[3389]["approvedLast7Days"], 0);
  EXPECT_TRUE(ports[3389]["lastUser"].is_null());
  EXPECT_TRUE(ports[3389]["lastAccessUtc"].is_null());

  const auto metrics = router.handle(root, "GET", "/metrics", "");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_EQ(metrics.body, "a_total 1\n");
  EXPECT_EQ(metrics.content_type, "text/plain");
  EXPECT_EQ(call(root, "POST", "/metrics").first, 405u);
  // A policy whose readers leave someone out refuses them the metrics too.
  auto policy = test_policy();
  policy.roles.readers = core::Principals{};
  ASSERT_TRUE(engine.replace_policy(policy));
  EXPECT_EQ(router.handle(nobody, "GET", "/metrics", "").status, 403u);
}

}  // namespace
