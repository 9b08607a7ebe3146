#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "jitd/config/config.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::config {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using core::ProtocolSpec;
using Lines = std::vector<std::string>;

Lines texts(const std::vector<Diagnostic>& errors) {
  Lines lines;
  for (const auto& error : errors) lines.push_back(error.to_string());
  return lines;
}

// One file checked the way load_policy_directory checks it: parsed, then the merged checks.
Lines policy_errors(const std::string& text) {
  auto loaded = parse_policy_text(text, "a.yaml");
  check_merged_policy(loaded.value, loaded.errors);
  return texts(loaded.errors);
}

core::Policy valid_policy(const std::string& text) {
  auto loaded = parse_policy_text(text, "a.yaml");
  check_merged_policy(loaded.value, loaded.errors);
  EXPECT_EQ(texts(loaded.errors), Lines{});
  return loaded.value;
}

// A valid rule at lines 2-5; columns: number 13, protocol 15, prefix item 36, duration 31.
std::string rule(const std::string& number = "22", const std::string& protocol = "tcp",
                 const std::string& prefixes = R"(["*"])", const std::string& duration = "PT3H") {
  return "  - number: " + number + "\n" + "    protocol: " + protocol + "\n" +
         "    allowedSourceAddressPrefixes: " + prefixes + "\n" +
         "    maxRequestAccessDuration: " + duration + "\n";
}

std::string rules(const std::string& body) { return "ports:\n" + body; }

class TempDir {
 public:
  TempDir() {
    auto pattern = (fs::temp_directory_path() / "jitd-config-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const fs::path& path() const { return path_; }
  // The file's path as diagnostics print it.
  [[nodiscard]] std::string at(const std::string& name) const { return (path_ / name).string(); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return path_ / name;
  }

 private:
  fs::path path_;
};

// --- Valid policy files -------------------------------------------------------------------

TEST(ConfigPolicy, FullExample) {
  const auto policy = valid_policy(
      "ports:\n"
      "  - number: 22\n"
      "    protocol: tcp\n"
      "    allowedSourceAddressPrefixes: [\"*\"]\n"
      "    maxRequestAccessDuration: PT3H\n"
      "  - number: 3389\n"
      "    protocol: tcp\n"
      "    allowedSourceAddressPrefix: 10.0.0.0/8   # the single form\n"
      "    maxRequestAccessDuration: 1h\n"
      "permanentAllowList:\n"
      "  - sourceAddressPrefixes: [\"192.0.2.10\", \"2001:db8::/64\"]\n"
      "    ports:\n"
      "      - number: 22\n"
      "        protocol: tcp\n"
      "    description: bastion host\n");

  ASSERT_EQ(policy.rules.size(), 2u);
  const auto& ssh = policy.rules[0];
  EXPECT_EQ(ssh.port, (core::PortSpec{22, ProtocolSpec::tcp}));
  EXPECT_TRUE(ssh.any_source);
  EXPECT_TRUE(ssh.allowed_sources.empty());
  EXPECT_EQ(ssh.max_duration, 3h);
  EXPECT_EQ(ssh.origin.to_string(), "a.yaml:2:5");

  const auto& rdp = policy.rules[1];
  EXPECT_EQ(rdp.port, (core::PortSpec{3389, ProtocolSpec::tcp}));
  EXPECT_FALSE(rdp.any_source);
  ASSERT_EQ(rdp.allowed_sources.size(), 1u);
  EXPECT_EQ(rdp.allowed_sources[0].to_string(), "10.0.0.0/8");
  EXPECT_EQ(rdp.max_duration, 1h);
  EXPECT_EQ(rdp.origin.to_string(), "a.yaml:6:5");

  ASSERT_EQ(policy.permanent_allow.size(), 1u);
  const auto& bastion = policy.permanent_allow[0];
  ASSERT_EQ(bastion.sources.size(), 2u);
  EXPECT_EQ(bastion.sources[0].to_string(), "192.0.2.10");
  EXPECT_EQ(bastion.sources[1].to_string(), "2001:db8::/64");
  EXPECT_EQ(bastion.ports, (std::vector<core::PortSpec>{{22, ProtocolSpec::tcp}}));
  EXPECT_EQ(bastion.description, "bastion host");
  EXPECT_EQ(bastion.origin.to_string(), "a.yaml:11:5");
}

TEST(ConfigPolicy, FilesWithoutRulesAreValid) {
  for (const auto* text :
       {"", "# only a comment\n", "---\n", "ports: []\n", "ports:\npermanentAllowList:\n",
        "ports: []\npermanentAllowList: []\n"}) {
    const auto loaded = parse_policy_text(text, "a.yaml");
    EXPECT_EQ(texts(loaded.errors), Lines{}) << text;
    EXPECT_TRUE(loaded.value.rules.empty()) << text;
    EXPECT_TRUE(loaded.value.permanent_allow.empty()) << text;
  }
}

TEST(ConfigPolicy, Ipv6PrefixesAndProtocols) {
  const auto policy = valid_policy(
      rules(rule("53", "tcp", R"(["2001:db8::/32", "fd00::1", "192.0.2.0/24"])") +
            rule("53", "udp", R"(["::/0"])") + rule("500", R"("*")", R"(["10.0.0.0/8"])")));
  ASSERT_EQ(policy.rules.size(), 3u);
  ASSERT_EQ(policy.rules[0].allowed_sources.size(), 3u);
  EXPECT_EQ(policy.rules[0].allowed_sources[0].to_string(), "2001:db8::/32");
  EXPECT_EQ(policy.rules[0].allowed_sources[1].to_string(), "fd00::1");
  EXPECT_EQ(policy.rules[0].allowed_sources[1].family(), core::Family::ipv6);
  EXPECT_EQ(policy.rules[0].allowed_sources[2].to_string(), "192.0.2.0/24");
  EXPECT_EQ(policy.rules[1].port, (core::PortSpec{53, ProtocolSpec::udp}));
  EXPECT_EQ(policy.rules[1].allowed_sources[0].to_string(), "::/0");
  EXPECT_EQ(policy.rules[2].port, (core::PortSpec{500, ProtocolSpec::any}));
}

TEST(ConfigPolicy, IsoAndShorthandDurations) {
  const std::vector<std::pair<std::string, core::Milliseconds>> cases = {
      {"PT3H", 3h},   {"PT1H30M", 90min}, {"PT45.5S", 45500ms}, {"P1D", 24h}, {"3h", 3h},
      {"30m", 30min}, {"45s", 45s},       {"1h30m", 90min},     {"24h", 24h}};
  for (const auto& [text, expected] : cases) {
    const auto policy = valid_policy(rules(rule("22", "tcp", R"(["*"])", text)));
    ASSERT_EQ(policy.rules.size(), 1u) << text;
    EXPECT_EQ(policy.rules[0].max_duration, expected) << text;
  }
}

TEST(ConfigPolicy, AllowListSinglePrefixAndAllPorts) {
  const auto policy = valid_policy(rules(rule()) +
                                   "permanentAllowList:\n"
                                   "  - sourceAddressPrefix: 198.51.100.0/24\n");
  ASSERT_EQ(policy.permanent_allow.size(), 1u);
  ASSERT_EQ(policy.permanent_allow[0].sources.size(), 1u);
  EXPECT_EQ(policy.permanent_allow[0].sources[0].to_string(), "198.51.100.0/24");
  EXPECT_TRUE(policy.permanent_allow[0].ports.empty());
  EXPECT_EQ(policy.permanent_allow[0].description, "");
}

// --- YAML structure errors ----------------------------------------------------------------

TEST(ConfigPolicy, YamlSyntaxErrors) {
  EXPECT_EQ(policy_errors("ports: [\n"),
            Lines{"a.yaml:2:1: invalid YAML: end of sequence flow not found"});
  EXPECT_EQ(policy_errors("ports:\n  - number: 22\n   protocol: tcp\n"),
            Lines{"a.yaml:3:4: invalid YAML: end of sequence not found"});
  EXPECT_EQ(policy_errors("ports: *nowhere\n"),
            Lines{"a.yaml:1:8: invalid YAML: the referenced anchor is not defined"});
}

TEST(ConfigPolicy, OneDocumentPerFile) {
  EXPECT_EQ(policy_errors("ports: []\n---\nports: []\n"),
            Lines{"a.yaml:3:1: only one YAML document per file is allowed"});
  // yaml-cpp's LoadAll never returned on these (found by fuzzing).
  EXPECT_EQ(policy_errors("[1],2\n").size(), 1u);
  EXPECT_EQ(policy_errors("{a: 1} ,b\n").size(), 1u);
}

TEST(ConfigPolicy, WrongShapes) {
  EXPECT_EQ(policy_errors("- 22\n"),
            Lines{"a.yaml:1:1: policy file must be a mapping, got a list"});
  EXPECT_EQ(policy_errors("ports: 22\n"),
            Lines{"a.yaml:1:8: 'ports' must be a list, got a single value"});
  EXPECT_EQ(policy_errors("permanentAllowList: {a: 1}\n"),
            Lines{"a.yaml:1:21: 'permanentAllowList' must be a list, got a mapping"});
  EXPECT_EQ(policy_errors("ports:\n  - 22\n"),
            Lines{"a.yaml:2:5: port rule must be a mapping, got a single value"});
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - [192.0.2.1]\n"),
            Lines{"a.yaml:2:5: permanentAllowList entry must be a mapping, got a list"});
}

TEST(ConfigPolicy, UnknownKeys) {
  EXPECT_EQ(policy_errors("port: []\n"),
            Lines{"a.yaml:1:1: unknown key 'port' in policy file; expected one of: mode, ports, "
                  "permanentAllowList, roles"});
  EXPECT_EQ(policy_errors(rules(rule() + "    foo: 1\n")),
            Lines{"a.yaml:6:5: unknown key 'foo' in port rule; expected one of: number, "
                  "protocol, allowedSourceAddressPrefixes, allowedSourceAddressPrefix, "
                  "maxRequestAccessDuration, minRequestPrefixLengthV4, "
                  "minRequestPrefixLengthV6, requesters, terminateSessionsOnEnd, approval, "
                  "approvers, approvalTimeout, extendFrom, mode"});
  EXPECT_EQ(policy_errors("permanentAllowList:\n"
                          "  - sourceAddressPrefix: 192.0.2.1\n"
                          "    comment: x\n"),
            Lines{"a.yaml:3:5: unknown key 'comment' in permanentAllowList entry; expected one "
                  "of: sourceAddressPrefixes, sourceAddressPrefix, ports, description"});
  EXPECT_EQ(policy_errors(rules(rule()) + "permanentAllowList:\n"
                                          "  - sourceAddressPrefix: 192.0.2.1\n"
                                          "    ports:\n"
                                          "      - number: 22\n"
                                          "        proto: tcp\n"),
            (Lines{"a.yaml:9:9: permanentAllowList port is missing 'protocol'",
                   "a.yaml:10:9: unknown key 'proto' in permanentAllowList port; expected one "
                   "of: number, protocol"}));
}

TEST(ConfigPolicy, RepeatedKey) {
  EXPECT_EQ(policy_errors(rules(rule() + "    number: 23\n")),
            Lines{"a.yaml:6:5: key 'number' appears twice in port rule"});
}

// --- Port rule fields ---------------------------------------------------------------------

TEST(ConfigPolicy, BadPortNumbers) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc", "a.yaml:2:13: 'abc' is not a port number; expected an integer from 1 to 65535"},
      {"0", "a.yaml:2:13: '0' is not a port number; expected an integer from 1 to 65535"},
      {"65536", "a.yaml:2:13: '65536' is not a port number; expected an integer from 1 to 65535"},
      {"-1", "a.yaml:2:13: '-1' is not a port number; expected an integer from 1 to 65535"},
      {"22.0", "a.yaml:2:13: '22.0' is not a port number; expected an integer from 1 to 65535"},
      {"99999999999",
       "a.yaml:2:13: '99999999999' is not a port number; expected an integer "
       "from 1 to 65535"},
      {"[22]", "a.yaml:2:13: 'number' must be a single value, got a list"},
  };
  for (const auto& [number, expected] : cases) {
    EXPECT_EQ(policy_errors(rules(rule(number))), Lines{expected}) << number;
  }
  EXPECT_EQ(valid_policy(rules(rule("65535"))).rules.at(0).port.number, 65535);
}

TEST(ConfigPolicy, MissingRequiredKeys) {
  EXPECT_EQ(policy_errors("ports:\n  - protocol: tcp\n"),
            (Lines{"a.yaml:2:5: port rule is missing 'number'",
                   "a.yaml:2:5: port rule is missing 'allowedSourceAddressPrefixes' (or "
                   "'allowedSourceAddressPrefix')",
                   "a.yaml:2:5: port rule is missing 'maxRequestAccessDuration'"}));
  EXPECT_EQ(policy_errors("ports:\n  - number: 22\n    maxRequestAccessDuration: 1h\n"
                          "    allowedSourceAddressPrefix: 10.0.0.0/8\n"),
            Lines{"a.yaml:2:5: port rule is missing 'protocol'"});
}

TEST(ConfigPolicy, EmptyValuePointsAtTheKey) {
  EXPECT_EQ(policy_errors("ports:\n"
                          "  - number: 22\n"
                          "    protocol:\n"
                          "    allowedSourceAddressPrefixes: [\"*\"]\n"
                          "    maxRequestAccessDuration: 1h\n"),
            Lines{"a.yaml:3:5: 'protocol' must be a single value, got nothing"});
}

TEST(ConfigPolicy, BadProtocol) {
  EXPECT_EQ(policy_errors(rules(rule("22", "icmp"))),
            Lines{"a.yaml:3:15: 'icmp' is not a protocol; expected tcp, udp or *"});
  EXPECT_EQ(policy_errors(rules(rule("22", "[tcp, udp]"))),
            Lines{"a.yaml:3:15: 'protocol' must be a single value, got a list"});
}

TEST(ConfigPolicy, BothPrefixForms) {
  EXPECT_EQ(policy_errors("ports:\n"
                          "  - number: 22\n"
                          "    protocol: tcp\n"
                          "    allowedSourceAddressPrefix: 10.0.0.0/8\n"
                          "    allowedSourceAddressPrefixes: [10.0.0.0/8]\n"
                          "    maxRequestAccessDuration: 1h\n"),
            Lines{"a.yaml:5:5: use either 'allowedSourceAddressPrefix' or "
                  "'allowedSourceAddressPrefixes', not both"});
}

TEST(ConfigPolicy, EmptyPrefixList) {
  EXPECT_EQ(policy_errors(rules(rule("22", "tcp", "[]"))),
            Lines{"a.yaml:4:35: 'allowedSourceAddressPrefixes' must not be empty"});
  EXPECT_EQ(policy_errors(rules(rule("22", "tcp", ""))),
            Lines{"a.yaml:4:5: 'allowedSourceAddressPrefixes' must not be empty"});
}

TEST(ConfigPolicy, StarMustStandAlone) {
  EXPECT_EQ(policy_errors(rules(rule("22", "tcp", R"(["10.0.0.0/8", "*"])"))),
            Lines{"a.yaml:4:50: '*' must stand alone: it already allows every address"});
  const auto policy = valid_policy(
      "ports:\n"
      "  - number: 22\n"
      "    protocol: tcp\n"
      "    allowedSourceAddressPrefix: \"*\"\n"
      "    maxRequestAccessDuration: 1h\n");
  EXPECT_TRUE(policy.rules.at(0).any_source);
}

TEST(ConfigPolicy, BadPrefixes) {
  EXPECT_EQ(policy_errors(rules(rule("22", "tcp", R"(["10.0.0.1/24", "example.com"])"))),
            (Lines{"a.yaml:4:36: '10.0.0.1/24' has host bits set; did you mean 10.0.0.0/24?",
                   "a.yaml:4:51: 'example.com' is not an IPv4 or IPv6 address"}));
  EXPECT_EQ(policy_errors(rules(rule("22", "tcp", "[[10.0.0.0/8]]"))),
            Lines{"a.yaml:4:36: an item of 'allowedSourceAddressPrefixes' must be a single "
                  "value, got a list"});
  EXPECT_EQ(policy_errors("ports:\n"
                          "  - number: 22\n"
                          "    protocol: tcp\n"
                          "    allowedSourceAddressPrefix: 10.0.0.0/33\n"
                          "    maxRequestAccessDuration: 1h\n"),
            Lines{"a.yaml:4:33: '10.0.0.0/33': prefix length must be 0..32"});
}

TEST(ConfigPolicy, BadDurations) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"soon",
       "a.yaml:5:31: 'soon' is not a valid duration: expected a number (examples: PT3H, "
       "PT30M, 3h, 30m, 45s)"},
      {"PT0S",
       "a.yaml:5:31: 'PT0S' is not a valid duration: must be longer than zero "
       "(examples: PT3H, PT30M, 3h, 30m, 45s)"},
      {"-1h",
       "a.yaml:5:31: '-1h' is not a valid duration: negative (examples: PT3H, PT30M, 3h, "
       "30m, 45s)"},
      {"25h", "a.yaml:5:31: '25h' is longer than PT24H, the longest access jitd grants"},
      {"P2D", "a.yaml:5:31: 'P2D' is longer than PT24H, the longest access jitd grants"},
  };
  for (const auto& [duration, expected] : cases) {
    EXPECT_EQ(policy_errors(rules(rule("22", "tcp", R"(["*"])", duration))), Lines{expected})
        << duration;
  }
}

TEST(ConfigPolicy, DuplicatePortsInOneFile) {
  EXPECT_EQ(policy_errors(rules(rule("22") + rule("22"))),
            Lines{"a.yaml:6:5: rule for 22/tcp overlaps the rule for 22/tcp at a.yaml:2:5"});
  EXPECT_EQ(policy_errors(rules(rule("22") + rule("22", R"("*")"))),
            Lines{"a.yaml:6:5: rule for 22/* overlaps the rule for 22/tcp at a.yaml:2:5"});
  EXPECT_EQ(policy_errors(rules(rule("22", "udp") + rule("22", R"("*")"))),
            Lines{"a.yaml:6:5: rule for 22/* overlaps the rule for 22/udp at a.yaml:2:5"});
  EXPECT_EQ(valid_policy(rules(rule("53", "tcp") + rule("53", "udp"))).rules.size(), 2u);
}

// --- Permanent allow-list -----------------------------------------------------------------

TEST(ConfigPolicy, AllowListRefusesEveryone) {
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - sourceAddressPrefixes: [\"*\"]\n"),
            Lines{"a.yaml:2:29: '*' is not allowed in permanentAllowList: it would switch "
                  "protection off for every address"});
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - sourceAddressPrefix: 0.0.0.0/0\n"),
            Lines{"a.yaml:2:26: '0.0.0.0/0' is not allowed in permanentAllowList: it would "
                  "switch protection off for every IPv4 address"});
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - sourceAddressPrefix: ::/0\n"),
            Lines{"a.yaml:2:26: '::/0' is not allowed in permanentAllowList: it would switch "
                  "protection off for every IPv6 address"});
}

TEST(ConfigPolicy, AllowListSourcesRequired) {
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - description: nobody\n"),
            Lines{"a.yaml:2:5: permanentAllowList entry is missing 'sourceAddressPrefixes' (or "
                  "'sourceAddressPrefix')"});
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - sourceAddressPrefixes: []\n"),
            Lines{"a.yaml:2:28: 'sourceAddressPrefixes' must not be empty"});
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - sourceAddressPrefix: 192.0.2.300\n"),
            Lines{"a.yaml:2:26: '192.0.2.300' is not an IPv4 or IPv6 address"});
}

TEST(ConfigPolicy, AllowListPortsMustBeProtected) {
  const auto allow = [](const std::string& number, const std::string& protocol) {
    return "permanentAllowList:\n"
           "  - sourceAddressPrefix: 192.0.2.1\n"
           "    ports:\n"
           "      - number: " +
           number + "\n" + "        protocol: " + protocol + "\n";
  };
  EXPECT_EQ(policy_errors(rules(rule("22")) + allow("8080", "tcp")),
            Lines{"a.yaml:7:5: permanentAllowList names 8080/tcp, which no port rule protects"});
  EXPECT_EQ(policy_errors(rules(rule("22")) + allow("22", "udp")),
            Lines{"a.yaml:7:5: permanentAllowList names 22/udp, which no port rule protects"});
  EXPECT_EQ(policy_errors(rules(rule("22")) + allow("22", R"("*")")),
            Lines{"a.yaml:7:5: permanentAllowList names 22/udp, which no port rule protects"});
  EXPECT_EQ(policy_errors(rules(rule("22")) + allow("23", R"("*")")),
            Lines{"a.yaml:7:5: permanentAllowList names 23/*, which no port rule protects"});
  EXPECT_EQ(valid_policy(rules(rule("22", R"("*")")) + allow("22", "udp")).permanent_allow.size(),
            1u);
  EXPECT_EQ(policy_errors(rules(rule("22")) + allow("0", "tcp")),
            Lines{"a.yaml:9:17: '0' is not a port number; expected an integer from 1 to 65535"});
}

TEST(ConfigPolicy, AllowListPortsNotEmpty) {
  EXPECT_EQ(policy_errors("permanentAllowList:\n"
                          "  - sourceAddressPrefix: 192.0.2.1\n"
                          "    ports: []\n"),
            Lines{"a.yaml:3:12: 'ports' must not be empty; leave it out to cover every "
                  "protected port"});
}

// --- Error collection ---------------------------------------------------------------------

TEST(ConfigPolicy, ReportsEveryErrorInDocumentOrder) {
  EXPECT_EQ(policy_errors("ports:\n"
                          "  - number: 22\n"
                          "    protocol: tcp\n"
                          "    allowedSourceAddressPrefixes: [\"*\"]\n"
                          "    maxRequestAccessDuration: forever\n"
                          "  - number: 70000\n"
                          "    protocol: sctp\n"
                          "    allowedSourceAddressPrefix: 10.0.0.1/8\n"
                          "    maxRequestAccessDuration: 1h\n"
                          "permanentAllowList:\n"
                          "  - sourceAddressPrefixes: [\"*\"]\n"
                          "    ports:\n"
                          "      - number: 22\n"
                          "        protocol: tcp\n"),
            (Lines{"a.yaml:5:31: 'forever' is not a valid duration: expected a number (examples: "
                   "PT3H, PT30M, 3h, 30m, 45s)",
                   "a.yaml:6:13: '70000' is not a port number; expected an integer from 1 to "
                   "65535",
                   "a.yaml:7:15: 'sctp' is not a protocol; expected tcp, udp or *",
                   "a.yaml:8:33: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?",
                   "a.yaml:11:29: '*' is not allowed in permanentAllowList: it would switch "
                   "protection off for every address"}));
}

// --- Policy directories -------------------------------------------------------------------

TEST(ConfigDirectory, MergesYamlFilesInByteOrder) {
  TempDir dir;
  dir.write("9-c.yaml", rules(rule("9")));
  dir.write("20-b.yaml", rules(rule("20")));
  dir.write("10-a.yml", rules(rule("10")));
  // Not policy files: each would be an error if read.
  dir.write(".hidden.yaml", "ports: [\n");
  dir.write("notes.txt", "ports: [\n");
  dir.write("10-a.yml.bak", "ports: [\n");
  fs::create_directory(dir.path() / "sub.yaml");
  dir.write("sub.yaml/x.yaml", "ports: [\n");

  const auto loaded = load_policy_directory(dir.path());
  EXPECT_EQ(texts(loaded.errors), Lines{});
  ASSERT_EQ(loaded.value.rules.size(), 3u);
  EXPECT_EQ(loaded.value.rules[0].port.number, 10);
  EXPECT_EQ(loaded.value.rules[0].origin.to_string(), dir.at("10-a.yml") + ":2:5");
  EXPECT_EQ(loaded.value.rules[1].port.number, 20);
  EXPECT_EQ(loaded.value.rules[2].port.number, 9);
  EXPECT_EQ(loaded.value.rules[2].origin.file, dir.at("9-c.yaml"));
}

TEST(ConfigDirectory, AllowListMayNameAPortFromAnotherFile) {
  TempDir dir;
  dir.write("10-rules.yaml", rules(rule("22")));
  dir.write("20-allow.yaml",
            "permanentAllowList:\n"
            "  - sourceAddressPrefix: 192.0.2.1\n"
            "    ports: [{number: 22, protocol: tcp}]\n");
  const auto loaded = load_policy_directory(dir.path());
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_EQ(loaded.value.permanent_allow.size(), 1u);
}

TEST(ConfigDirectory, DuplicateAcrossFilesNamesBoth) {
  TempDir dir;
  dir.write("10-a.yaml", rules(rule("22")));
  dir.write("20-b.yaml", rules(rule("80") + rule("22", R"("*")")));
  EXPECT_EQ(texts(load_policy_directory(dir.path()).errors),
            Lines{dir.at("20-b.yaml") + ":6:5: rule for 22/* overlaps the rule for 22/tcp at " +
                  dir.at("10-a.yaml") + ":2:5"});
}

TEST(ConfigDirectory, FileErrorsThenMergedErrors) {
  TempDir dir;
  dir.write("a.yaml", rules(rule("22", "tcp", R"(["*"])", "48h")));
  dir.write("b.yaml", "ports: [\n");
  dir.write("c.yaml",
            "permanentAllowList:\n"
            "  - sourceAddressPrefix: 192.0.2.1\n"
            "    ports: [{number: 8080, protocol: tcp}]\n");
  EXPECT_EQ(texts(load_policy_directory(dir.path()).errors),
            (Lines{dir.at("a.yaml") + ":5:31: '48h' is longer than PT24H, the longest access jitd "
                                      "grants",
                   dir.at("b.yaml") + ":2:1: invalid YAML: end of sequence flow not found",
                   dir.at("c.yaml") + ":2:5: permanentAllowList names 8080/tcp, which no port "
                                      "rule protects"}));
}

TEST(ConfigDirectory, RuleWithABadFieldStillProtectsItsPort) {
  // Only the real error: the allow-list entry must not also report 22/tcp as unprotected.
  EXPECT_EQ(policy_errors(rules(rule("22", "tcp", R"(["*"])", "never")) +
                          "permanentAllowList:\n"
                          "  - sourceAddressPrefix: 192.0.2.1\n"
                          "    ports: [{number: 22, protocol: tcp}]\n"),
            Lines{"a.yaml:5:31: 'never' is not a valid duration: expected a number (examples: "
                  "PT3H, PT30M, 3h, 30m, 45s)"});
}

TEST(ConfigDirectory, MissingDirectory) {
  TempDir dir;
  EXPECT_EQ(texts(load_policy_directory(dir.path() / "policies.d").errors),
            Lines{dir.at("policies.d") + ": policy directory does not exist"});
}

TEST(ConfigDirectory, NotADirectory) {
  TempDir dir;
  const auto file = dir.write("policies.d", "");
  EXPECT_EQ(texts(load_policy_directory(file).errors),
            Lines{file.string() + ": policy directory is not a directory"});
}

TEST(ConfigDirectory, EmptyDirectoryIsAnEmptyPolicy) {
  TempDir dir;
  const auto loaded = load_policy_directory(dir.path());
  EXPECT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded.value.rules.empty());
}

TEST(ConfigDirectory, UnreadableFile) {
  // A dangling symlink cannot be opened even by root (permission bits would not stop root).
  TempDir dir;
  dir.write("a.yaml", rules(rule("22")));
  fs::create_symlink(dir.path() / "missing", dir.path() / "b.yaml");
  const auto loaded = load_policy_directory(dir.path());
  EXPECT_EQ(texts(loaded.errors),
            Lines{dir.at("b.yaml") +
                  ": cannot open: is a symbolic link; jitd does not follow links here"});
  EXPECT_EQ(loaded.value.rules.size(), 1u);
}

// --- Main config --------------------------------------------------------------------------

void expect_defaults(const MainConfig& config) {
  const MainConfig defaults;
  EXPECT_EQ(config.socket_path, defaults.socket_path);
  EXPECT_EQ(config.socket_group, defaults.socket_group);
  EXPECT_EQ(config.policy_directory, defaults.policy_directory);
  EXPECT_EQ(config.state_directory, defaults.state_directory);
  EXPECT_EQ(config.nft_table, defaults.nft_table);
  EXPECT_EQ(config.claim_table_ownership, defaults.claim_table_ownership);
  EXPECT_EQ(config.log_level, defaults.log_level);
  EXPECT_EQ(config.backend, jitd::config::Enforcement::nftables);
  EXPECT_EQ(config.attach, jitd::config::Attach::tc);
  EXPECT_EQ(config.interfaces, std::vector<std::string>{});
  EXPECT_EQ(config.bpf_filesystem, defaults.bpf_filesystem);
  EXPECT_EQ(config.history_retention, std::chrono::days(90));
  EXPECT_EQ(config.history_max_bytes, 64u << 20);
  EXPECT_TRUE(config.audit_journal);
  EXPECT_EQ(config.audit_rotation, jitd::core::AuditRotation::jitd);
  EXPECT_EQ(config.audit_max_bytes, 64u << 20);
  EXPECT_EQ(config.audit_max_age, std::chrono::days(1));
  EXPECT_EQ(config.audit_retention, std::chrono::days(90));
}

Lines main_config_errors(const TempDir& dir, const std::string& text) {
  return texts(load_main_config(dir.write("jitd.yaml", text)).errors);
}

TEST(ConfigMain, MissingOrEmptyFileMeansDefaults) {
  TempDir dir;
  const auto missing = load_main_config(dir.path() / "jitd.yaml");
  EXPECT_TRUE(missing.ok());
  expect_defaults(missing.value);

  for (const auto* text : {"", "# all defaults\n"}) {
    const auto empty = load_main_config(dir.write("jitd.yaml", text));
    EXPECT_EQ(texts(empty.errors), Lines{});
    expect_defaults(empty.value);
  }
}

TEST(ConfigMain, Overrides) {
  TempDir dir;
  const auto loaded = load_main_config(dir.write("jitd.yaml",
                                                 "socketPath: /run/x/x.sock\n"
                                                 "socketGroup: \"\"\n"
                                                 "policyDirectory: /srv/policies\n"
                                                 "stateDirectory: /srv/state\n"
                                                 "nftTable: jitd_test-1\n"
                                                 "logLevel: debug\n"));
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_EQ(loaded.value.socket_path, "/run/x/x.sock");
  EXPECT_EQ(loaded.value.socket_group, "");
  EXPECT_EQ(loaded.value.policy_directory, "/srv/policies");
  EXPECT_EQ(loaded.value.state_directory, "/srv/state");
  EXPECT_EQ(loaded.value.nft_table, "jitd_test-1");
  EXPECT_EQ(loaded.value.log_level, "debug");
}

TEST(ConfigMain, UnknownKey) {
  TempDir dir;
  EXPECT_EQ(
      main_config_errors(dir, "logLevel: info\nsocket: /run/x.sock\n"),
      Lines{dir.at("jitd.yaml") + ":2:1: unknown key 'socket' in main config; expected one "
                                  "of: socketPath, socketGroup, socketMode, policyDirectory, "
                                  "stateDirectory, nftTable, nftTableOwnership, logLevel, backend, "
                                  "attach, interfaces, bpfFilesystem, historyRetention, "
                                  "historyMaxBytes, auditJournal, auditRotation, auditMaxBytes, "
                                  "auditMaxAge, auditRetention, webhooks, metricsListen, "
                                  "metricsTextfile, metricsTextfileInterval"});
}

TEST(ConfigMain, PathsMustBeAbsolute) {
  TempDir dir;
  EXPECT_EQ(main_config_errors(dir,
                               "socketPath: run/jitd.sock\n"
                               "policyDirectory: \"\"\n"
                               "stateDirectory: ./state\n"),
            (Lines{dir.at("jitd.yaml") + ":1:13: 'run/jitd.sock' is not an absolute path",
                   dir.at("jitd.yaml") + ":2:18: '' is not an absolute path",
                   dir.at("jitd.yaml") + ":3:17: './state' is not an absolute path"}));
}

TEST(ConfigMain, NftTableName) {
  TempDir dir;
  const std::string longest(63, 't');
  EXPECT_EQ(main_config_errors(dir, "nftTable: " + longest + "\n"), Lines{});
  const auto error = [&](const std::string& name) {
    return dir.at("jitd.yaml") + ":1:11: '" + name + "' is not a valid nftables table name; " +
           "use 1 to 63 letters, digits, '_' or '-'";
  };
  for (const auto& name : {longest + "t", std::string("my table"), std::string("jitd.v2")}) {
    EXPECT_EQ(main_config_errors(dir, "nftTable: \"" + name + "\"\n"), Lines{error(name)});
  }
  EXPECT_EQ(main_config_errors(dir, "nftTable: \"\"\n"), Lines{error("")});
}

TEST(ConfigMain, EbpfBackend) {
  TempDir dir;
  const auto loaded = load_main_config(dir.write("jitd.yaml",
                                                 "backend: ebpf\n"
                                                 "attach: xdp\n"
                                                 "interfaces: [eth0, ens3]\n"
                                                 "bpfFilesystem: /run/bpf\n"));
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_EQ(loaded.value.backend, jitd::config::Enforcement::ebpf);
  EXPECT_EQ(loaded.value.attach, jitd::config::Attach::xdp);
  EXPECT_EQ(loaded.value.interfaces, (std::vector<std::string>{"eth0", "ens3"}));
  EXPECT_EQ(loaded.value.bpf_filesystem, "/run/bpf");
}

TEST(ConfigMain, EbpfBackendErrors) {
  TempDir dir;
  const auto at = [&](const char* where) { return dir.at("jitd.yaml") + ":" + where + ": "; };
  EXPECT_EQ(main_config_errors(dir, "backend: iptables\n"),
            Lines{at("1:10") + "'iptables' is not a backend; expected nftables or ebpf"});
  EXPECT_EQ(main_config_errors(dir, "backend: ebpf\nattach: tcx\n"),
            Lines{at("2:9") + "'tcx' is not an attach point; expected tc or xdp"});
  EXPECT_EQ(main_config_errors(dir,
                               "backend: ebpf\ninterfaces: [eth0, lo, eth0, \"a/b\", "
                               "abcdefghijklmnop]\n"),
            (Lines{at("2:20") + "loopback is never filtered; leave \"lo\" out of interfaces",
                   at("2:24") + "interface 'eth0' is listed twice",
                   at("2:30") + "'a/b' is not a network interface name; use 1 to 15 printable "
                                "characters other than '/' and ':'",
                   at("2:37") + "'abcdefghijklmnop' is not a network interface name; use 1 to 15 "
                                "printable characters other than '/' and ':'"}));
  EXPECT_EQ(main_config_errors(dir, "backend: ebpf\ninterfaces: eth0\n"),
            Lines{at("2:13") + "'interfaces' must be a list, got a single value"});
  // Settings of the eBPF backend under nftables are a mistake, not something to ignore.
  EXPECT_EQ(main_config_errors(dir, "attach: xdp\ninterfaces: [eth0]\nbpfFilesystem: /x\n"),
            (Lines{at("1:9") + "'attach' applies to backend: ebpf only; this config uses nftables",
                   at("2:13") + "'interfaces' applies to backend: ebpf only; this config uses "
                                "nftables"}));
}

TEST(ConfigMain, LogLevel) {
  TempDir dir;
  for (const auto* level : {"trace", "debug", "info", "warn", "error"}) {
    EXPECT_EQ(main_config_errors(dir, std::string("logLevel: ") + level + "\n"), Lines{});
  }
  EXPECT_EQ(main_config_errors(dir, "logLevel: verbose\n"),
            Lines{dir.at("jitd.yaml") + ":1:11: 'verbose' is not a log level; expected one of: "
                                        "trace, debug, info, warn, error"});
  EXPECT_EQ(main_config_errors(dir, "logLevel: [info]\n"),
            Lines{dir.at("jitd.yaml") + ":1:11: 'logLevel' must be a single value, got a list"});
}

TEST(ConfigMain, WrongShapeAndSyntax) {
  TempDir dir;
  EXPECT_EQ(main_config_errors(dir, "just text\n"),
            Lines{dir.at("jitd.yaml") + ":1:1: main config must be a mapping, got a single value"});
  EXPECT_EQ(main_config_errors(dir, "logLevel: [\n"),
            Lines{dir.at("jitd.yaml") + ":2:1: invalid YAML: end of sequence flow not found"});
}

TEST(ConfigMain, UnreadableFile) {
  TempDir dir;
  EXPECT_EQ(texts(load_main_config(dir.path()).errors),
            Lines{dir.path().string() + ": refused: is a directory, not a regular file"});
}

TEST(ConfigMain, InvalidValuesKeepTheirDefaults) {
  TempDir dir;
  const auto loaded = load_main_config(dir.write("jitd.yaml", "logLevel: loud\nnftTable: t1\n"));
  EXPECT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.value.log_level, "info");
  EXPECT_EQ(loaded.value.nft_table, "t1");
}

TEST(ConfigMain, TableOwnershipModes) {
  TempDir dir;
  EXPECT_TRUE(load_main_config(dir.write("a.yaml", "nftTableOwnership: auto\n"))
                  .value.claim_table_ownership);
  EXPECT_FALSE(load_main_config(dir.write("b.yaml", "nftTableOwnership: off\n"))
                   .value.claim_table_ownership);
  const auto bad = load_main_config(dir.write("c.yaml", "nftTableOwnership: maybe\n"));
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].to_string().find(":1:20: 'maybe' is not a table ownership mode"),
            std::string::npos)
      << bad.errors[0].to_string();
}

// --- v4-mapped prefixes and the union of the allow-list -------------------------------------

TEST(ConfigPolicy, V4MappedPrefixesAreIpv4InRulesAndAllowList) {
  const auto policy = valid_policy(rules(rule("22", "tcp", R"(["::ffff:10.0.0.0/120"])")) +
                                   "permanentAllowList:\n"
                                   "  - sourceAddressPrefix: ::ffff:192.0.2.10\n");
  EXPECT_EQ(policy.rules.at(0).allowed_sources.at(0).to_string(), "10.0.0.0/24");
  EXPECT_EQ(policy.rules.at(0).allowed_sources.at(0).family(), core::Family::ipv4);
  EXPECT_EQ(policy.permanent_allow.at(0).sources.at(0).to_string(), "192.0.2.10");
  EXPECT_EQ(policy.permanent_allow.at(0).sources.at(0).family(), core::Family::ipv4);
}

TEST(ConfigPolicy, AllowListRefusesEveryIpv4AddressWrittenAsMapped) {
  EXPECT_EQ(policy_errors("permanentAllowList:\n  - sourceAddressPrefix: ::ffff:0:0/96\n"),
            Lines{"a.yaml:2:26: '::ffff:0:0/96' is not allowed in permanentAllowList: it would "
                  "switch protection off for every IPv4 address"});
}

// The kernel set merges 0.0.0.0/1 and 128.0.0.0/1 back into everything: the allow-list's
// refusal of "everyone" looks at the union of its prefixes.
TEST(ConfigPolicy, AllowListRefusesEveryoneSplitInOneEntry) {
  EXPECT_EQ(policy_errors("permanentAllowList:\n"
                          "  - sourceAddressPrefixes: [\"0.0.0.0/1\", \"128.0.0.0/1\"]\n"),
            Lines{"a.yaml:2:5: permanentAllowList entries up to this one together cover every "
                  "IPv4 address, which would switch protection off for everyone; split prefixes "
                  "count as one"});
}

TEST(ConfigPolicy, AllowListRefusesEveryoneSplitAcrossEntries) {
  EXPECT_EQ(
      policy_errors("permanentAllowList:\n"
                    "  - sourceAddressPrefixes: [\"::/1\", \"0.0.0.0/2\"]\n"
                    "  - sourceAddressPrefix: 64.0.0.0/2\n"
                    "  - sourceAddressPrefixes: [\"8000::/2\", \"c000::/2\", \"128.0.0.0/1\"]\n"
                    "  - sourceAddressPrefix: 192.0.2.1\n"),
      (Lines{"a.yaml:4:5: permanentAllowList entries up to this one together cover every "
             "IPv4 address, which would switch protection off for everyone; split "
             "prefixes count as one",
             "a.yaml:4:5: permanentAllowList entries up to this one together cover every "
             "IPv6 address, which would switch protection off for everyone; split "
             "prefixes count as one"}));
}

TEST(ConfigPolicy, AllowListWithAGapIsValid) {
  valid_policy(
      "permanentAllowList:\n"
      "  - sourceAddressPrefixes: [\"0.0.0.0/1\", \"128.0.0.0/2\", \"192.0.0.0/3\"]\n"
      "  - sourceAddressPrefixes: [\"::/1\", \"8000::/2\", \"c000::/3\", \"e000::/4\"]\n"
      "  - sourceAddressPrefixes: [\"255.255.255.255\", \"224.0.0.0/4\"]\n");
}

TEST(ConfigDirectory, AllowListRefusesEveryoneSplitAcrossFiles) {
  TempDir dir;
  dir.write("10-a.yaml", "permanentAllowList:\n  - sourceAddressPrefix: 0.0.0.0/1\n");
  dir.write("20-b.yaml", "permanentAllowList:\n  - sourceAddressPrefix: 128.0.0.0/1\n");
  const auto loaded = load_policy_directory(dir.path());
  EXPECT_EQ(texts(loaded.errors),
            Lines{dir.at("20-b.yaml") +
                  ":2:5: permanentAllowList entries up to this one together cover every IPv4 "
                  "address, which would switch protection off for everyone; split prefixes "
                  "count as one"});
}

// --- Request width limits -------------------------------------------------------------------

TEST(ConfigPolicy, RequestWidthLimitsDefaultToNone) {
  const auto policy = valid_policy(rules(rule()));
  EXPECT_EQ(policy.rules.at(0).min_request_length_v4, 0u);
  EXPECT_EQ(policy.rules.at(0).min_request_length_v6, 0u);
}

TEST(ConfigPolicy, RequestWidthLimitsPerFamily) {
  const auto policy = valid_policy(rules(rule() +
                                         "    minRequestPrefixLengthV4: 24\n"
                                         "    minRequestPrefixLengthV6: 56\n" +
                                         rule("23") + "    minRequestPrefixLengthV6: 128\n"));
  EXPECT_EQ(policy.rules.at(0).min_request_length_v4, 24u);
  EXPECT_EQ(policy.rules.at(0).min_request_length_v6, 56u);
  EXPECT_EQ(policy.rules.at(1).min_request_length_v4, 0u);
  EXPECT_EQ(policy.rules.at(1).min_request_length_v6, 128u);
}

TEST(ConfigPolicy, BadRequestWidthLimits) {
  EXPECT_EQ(policy_errors(rules(rule() + "    minRequestPrefixLengthV4: 33\n"
                                         "    minRequestPrefixLengthV6: /56\n")),
            (Lines{"a.yaml:6:31: '33' is not an IPv4 prefix length; expected an integer from 0 "
                   "to 32",
                   "a.yaml:7:31: '/56' is not an IPv6 prefix length; expected an integer from 0 "
                   "to 128"}));
  EXPECT_EQ(policy_errors(rules(rule() + "    minRequestPrefixLengthV6: 129\n")),
            Lines{"a.yaml:6:31: '129' is not an IPv6 prefix length; expected an integer from 0 "
                  "to 128"});
  EXPECT_EQ(policy_errors(rules(rule() + "    minRequestPrefixLengthV4: [24]\n")),
            Lines{"a.yaml:6:31: 'minRequestPrefixLengthV4' must be a single value, got a list"});
}

// --- Session ends, approval and extensions per port rule -----------------------------------

// rule() plus `extra` lines after it; an extra key starts at column 5 and its value at
// 5 + its name's length + 2 (e.g. approval: 15, approvers: 16, approvalTimeout: 22).
std::string rule_with(const std::string& extra) { return rules(rule() + extra); }

TEST(ConfigLifecycle, Defaults) {
  const auto policy = valid_policy(rule_with(""));
  const auto& rule = policy.rules.at(0);
  EXPECT_FALSE(rule.terminate_sessions_on_end);
  EXPECT_FALSE(rule.approval_required);
  EXPECT_TRUE(rule.approvers.users.empty() && rule.approvers.groups.empty());
  EXPECT_EQ(rule.approval_timeout, 1h);
  EXPECT_EQ(rule.extend_from, core::PortRule::ExtendFrom::start);
}

TEST(ConfigLifecycle, EveryKeySet) {
  // Users and groups that every Debian system has (base-passwd).
  const auto policy =
      valid_policy(rule_with("    terminateSessionsOnEnd: true\n"
                             "    approval: required\n"
                             "    approvers: {users: [nobody], groups: [daemon]}\n"
                             "    approvalTimeout: PT30M\n"
                             "    extendFrom: now\n"));
  const auto& rule = policy.rules.at(0);
  EXPECT_TRUE(rule.terminate_sessions_on_end);
  EXPECT_TRUE(rule.approval_required);
  EXPECT_EQ(rule.approvers.users, std::vector<std::string>{"nobody"});
  EXPECT_EQ(rule.approvers.uids, std::vector<std::uint32_t>{65534});
  EXPECT_EQ(rule.approvers.groups, std::vector<std::string>{"daemon"});
  EXPECT_EQ(rule.approvers.gids, std::vector<std::uint32_t>{1});
  EXPECT_EQ(rule.approval_timeout, 30min);
  EXPECT_EQ(rule.extend_from, core::PortRule::ExtendFrom::now);
}

TEST(ConfigLifecycle, DefaultsSpelledOut) {
  const auto policy =
      valid_policy(rule_with("    terminateSessionsOnEnd: false\n"
                             "    approval: none\n"
                             "    extendFrom: start\n"));
  const auto& rule = policy.rules.at(0);
  EXPECT_FALSE(rule.terminate_sessions_on_end);
  EXPECT_FALSE(rule.approval_required);
  EXPECT_EQ(rule.extend_from, core::PortRule::ExtendFrom::start);
}

TEST(ConfigLifecycle, ApprovalTimeoutBounds) {
  const auto approved = [](const std::string& timeout) {
    return rule_with(
        "    approval: required\n    approvers: {users: [root]}\n"
        "    approvalTimeout: " +
        timeout + "\n");
  };
  EXPECT_EQ(valid_policy(approved("PT24H")).rules.at(0).approval_timeout, 24h);
  EXPECT_EQ(valid_policy(approved("45s")).rules.at(0).approval_timeout, 45s);
  EXPECT_EQ(policy_errors(approved("PT25H")),
            Lines{"a.yaml:8:22: 'PT25H' is longer than PT24H, the longest a request may wait for "
                  "an approver"});
  EXPECT_EQ(policy_errors(approved("PT0S")),
            Lines{"a.yaml:8:22: 'PT0S' is not a valid duration: must be longer than zero "
                  "(examples: PT3H, PT30M, 3h, 30m, 45s)"});
}

TEST(ConfigLifecycle, BadWords) {
  EXPECT_EQ(policy_errors(rule_with("    terminateSessionsOnEnd: yes\n")),
            Lines{"a.yaml:6:29: 'yes' is not a boolean; expected true or false"});
  EXPECT_EQ(policy_errors(rule_with("    terminateSessionsOnEnd: [true]\n")),
            Lines{"a.yaml:6:29: 'terminateSessionsOnEnd' must be a single value, got a list"});
  EXPECT_EQ(policy_errors(rule_with("    approval: optional\n")),
            Lines{"a.yaml:6:15: 'optional' is not an approval mode; expected required or none"});
  EXPECT_EQ(policy_errors(rule_with("    extendFrom: end\n")),
            Lines{"a.yaml:6:17: 'end' is not what extensions count from; expected start or now"});
}

TEST(ConfigLifecycle, RequiredApprovalNeedsApprovers) {
  EXPECT_EQ(policy_errors(rule_with("    approval: required\n")),
            Lines{"a.yaml:6:15: approval: required needs 'approvers' ({users: [...], groups: "
                  "[...]}): without them nobody could approve a request for this port"});
  const std::string nobody =
      "'approvers' names no user and no group: nobody could approve a request for this port";
  EXPECT_EQ(policy_errors(rule_with("    approval: required\n    approvers: {}\n")),
            Lines{"a.yaml:7:16: " + nobody});
  EXPECT_EQ(policy_errors(rule_with("    approval: required\n    approvers: {users: []}\n")),
            Lines{"a.yaml:7:16: " + nobody});
  // No value: reported at the key, not at whatever token comes next.
  EXPECT_EQ(policy_errors(rule_with("    approval: required\n    approvers:\n")),
            Lines{"a.yaml:7:5: " + nobody});
  EXPECT_EQ(policy_errors(rule_with("    approval: required\n"
                                    "    approvers: {users: [no-such-user-jitd]}\n")),
            Lines{"a.yaml:7:25: no user 'no-such-user-jitd'"});
  EXPECT_EQ(policy_errors(rule_with("    approval: required\n    approvers: [root]\n")),
            Lines{"a.yaml:7:16: 'approvers' must be a mapping, got a list"});
}

TEST(ConfigLifecycle, ApproversWithoutRequiredApprovalAreATypo) {
  EXPECT_EQ(policy_errors(rule_with("    approvers: {users: [root]}\n")),
            Lines{"a.yaml:6:5: 'approvers' applies with approval: required only, and this rule "
                  "does not set approval; likely a typo: add approval: required, or remove "
                  "'approvers'"});
  EXPECT_EQ(policy_errors(rule_with("    approval: none\n"
                                    "    approvers: {users: [root]}\n"
                                    "    approvalTimeout: PT1H\n")),
            (Lines{"a.yaml:7:5: 'approvers' applies with approval: required only, and this rule "
                   "says approval: none; likely a typo: add approval: required, or remove "
                   "'approvers'",
                   "a.yaml:8:5: 'approvalTimeout' applies with approval: required only, and this "
                   "rule says approval: none; likely a typo: add approval: required, or remove "
                   "'approvalTimeout'"}));
  // A misspelt approval value is the one error: nothing is guessed from it.
  EXPECT_EQ(policy_errors(rule_with("    approval: requird\n"
                                    "    approvers: {users: [root]}\n")),
            Lines{"a.yaml:6:15: 'requird' is not an approval mode; expected required or none"});
}

TEST(ConfigLifecycle, OverlappingRulesCannotDifferSilently) {
  // The keys belong to the one rule of a (port, protocol): a second rule for it, with other
  // settings, is refused as an overlap rather than merged.
  TempDir dir;
  dir.write("10-a.yaml", rule_with("    terminateSessionsOnEnd: true\n    extendFrom: now\n"));
  dir.write("20-b.yaml", rules(rule("22", R"("*")")) +
                             "    approval: required\n"
                             "    approvers: {users: [root]}\n");
  EXPECT_EQ(texts(load_policy_directory(dir.path()).errors),
            Lines{dir.at("20-b.yaml") + ":2:5: rule for 22/* overlaps the rule for 22/tcp at " +
                  dir.at("10-a.yaml") + ":2:5"});
}

// --- mode: enforce | audit ------------------------------------------------------------------

TEST(ConfigMode, EnforceUnlessARuleOrTheFileSaysAudit) {
  const auto plain = valid_policy(rule_with(""));
  EXPECT_EQ(plain.rules.at(0).mode, std::nullopt);
  EXPECT_EQ(plain.mode_of(plain.rules.at(0)), core::Mode::enforce);
  EXPECT_TRUE(plain.audited_ports().empty());

  const auto audited = valid_policy(rules(rule("22") + "    mode: audit\n" + rule("3389")));
  EXPECT_EQ(audited.mode_of(audited.rules.at(0)), core::Mode::audit);
  EXPECT_EQ(audited.mode_of(audited.rules.at(1)), core::Mode::enforce);
  EXPECT_EQ(audited.audited_ports(), (std::vector<core::PortKey>{{core::Protocol::tcp, 22}}));

  // The top-level mode is the default; a rule's own mode overrides it.
  const auto rollout = valid_policy(
      "mode: audit\n" + rules(rule("22") + "    mode: enforce\n" + rule("53", R"("*")")));
  EXPECT_EQ(rollout.default_mode, core::Mode::audit);
  EXPECT_EQ(rollout.default_mode_origin.to_string(), "a.yaml:1:1");
  EXPECT_EQ(rollout.audited_ports(),
            (std::vector<core::PortKey>{{core::Protocol::tcp, 53}, {core::Protocol::udp, 53}}));
}

TEST(ConfigMode, BadValues) {
  EXPECT_EQ(policy_errors(rule_with("    mode: log\n")),
            Lines{"a.yaml:6:11: 'log' is not a mode; expected enforce or audit"});
  EXPECT_EQ(policy_errors("mode: [audit]\n"),
            Lines{"a.yaml:1:7: 'mode' must be a single value, got a list"});
  EXPECT_EQ(policy_errors("mode: Audit\n"),
            Lines{"a.yaml:1:7: 'Audit' is not a mode; expected enforce or audit"});
}

TEST(ConfigMode, FilesMayRepeatTheDefaultButNotContradictIt) {
  TempDir dir;
  dir.write("00-rollout.yaml", "mode: audit\n");
  dir.write("10-a.yaml", "mode: audit\n" + rule_with(""));
  auto loaded = load_policy_directory(dir.path());
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_EQ(loaded.value.audited_ports(), (std::vector<core::PortKey>{{core::Protocol::tcp, 22}}));
  EXPECT_EQ(loaded.value.default_mode_origin.to_string(), dir.at("00-rollout.yaml") + ":1:1");

  dir.write("20-b.yaml", "mode: enforce\n");
  EXPECT_EQ(texts(load_policy_directory(dir.path()).errors),
            Lines{dir.at("20-b.yaml") + ":1:1: mode: enforce contradicts mode: audit at " +
                  dir.at("00-rollout.yaml") +
                  ":1:1; the top-level mode is the default of every file's rules, so set it "
                  "once (or give each rule its own mode)"});
}

TEST(ConfigMain, HistoryBounds) {
  TempDir dir;
  const auto loaded =
      load_main_config(dir.write("jitd.yaml", "historyRetention: P7D\nhistoryMaxBytes: 1048576\n"));
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_EQ(loaded.value.history_retention, std::chrono::days(7));
  EXPECT_EQ(loaded.value.history_max_bytes, 1u << 20);
  // Days as ISO 8601 writes them, and the least retention there is.
  EXPECT_EQ(
      load_main_config(dir.write("jitd.yaml", "historyRetention: P90D\n")).value.history_retention,
      std::chrono::days(90));
  EXPECT_EQ(
      load_main_config(dir.write("jitd.yaml", "historyRetention: P1D\n")).value.history_retention,
      std::chrono::days(1));

  const auto at = [&](const char* where) { return dir.at("jitd.yaml") + ":" + where + ": "; };
  EXPECT_EQ(main_config_errors(dir, "historyRetention: PT23H\n"),
            Lines{at("1:19") + "'PT23H' is shorter than PT24H, the shortest history jitd keeps "
                               "(ended grants must stay long enough for someone to look at them)"});
  EXPECT_EQ(main_config_errors(dir, "historyRetention: forever\n"),
            Lines{at("1:19") + "'forever' is not a valid duration: expected a number (examples: "
                               "PT3H, PT30M, 3h, 30m, 45s)"});
  EXPECT_EQ(main_config_errors(dir, "historyMaxBytes: 1048575\n"),
            Lines{at("1:18") + "'1048575' is less than 1048576 (1 MiB), the smallest history "
                               "jitd keeps"});
  for (const auto* size : {"64MiB", "-1", "1.5e8", "99999999999999999999"}) {
    EXPECT_EQ(main_config_errors(dir, std::string("historyMaxBytes: ") + size + "\n"),
              Lines{at("1:18") + "'" + size +
                    "' is not a number of bytes; expected an integer such as 67108864 (64 MiB), "
                    "without a unit"});
  }
  // An invalid value keeps the default.
  const auto invalid = load_main_config(dir.write("jitd.yaml", "historyMaxBytes: 1\n"));
  EXPECT_EQ(invalid.value.history_max_bytes, 64u << 20);
}

TEST(ConfigMain, AuditLogSettings) {
  TempDir dir;
  const auto loaded = load_main_config(
      dir.write("jitd.yaml",
                "auditJournal: false\nauditRotation: external\nauditMaxBytes: 4096\n"
                "auditMaxAge: \"off\"\nauditRetention: P7D\n"));
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_FALSE(loaded.value.audit_journal);
  EXPECT_EQ(loaded.value.audit_rotation, jitd::core::AuditRotation::external);
  EXPECT_EQ(loaded.value.audit_max_bytes, 4096u);
  EXPECT_EQ(loaded.value.audit_max_age, std::chrono::milliseconds(0));
  EXPECT_EQ(loaded.value.audit_retention, std::chrono::days(7));
  EXPECT_EQ(load_main_config(dir.write("jitd.yaml", "auditMaxAge: PT6H\n")).value.audit_max_age,
            std::chrono::hours(6));

  const auto at = [&](const char* where) { return dir.at("jitd.yaml") + ":" + where + ": "; };
  EXPECT_EQ(main_config_errors(dir, "auditJournal: yes\n"),
            Lines{at("1:15") + "'yes' is not a boolean; expected true or false"});
  EXPECT_EQ(
      main_config_errors(dir, "auditRotation: logrotate\n"),
      Lines{at("1:16") + "'logrotate' is not an audit log rotation; expected jitd or external"});
  EXPECT_EQ(main_config_errors(dir, "auditMaxBytes: 4095\n"),
            Lines{at("1:16") + "'4095' is less than 4096 (4 KiB), the smallest audit log file "
                               "jitd rotates"});
  EXPECT_EQ(main_config_errors(dir, "auditMaxAge: PT30S\n"),
            Lines{at("1:14") + "'PT30S' is shorter than PT1M, the least age at which jitd rotates "
                               "the audit log"});
  EXPECT_EQ(main_config_errors(dir, "auditMaxAge: never\n"),
            Lines{at("1:14") + "'never' is not a valid duration: expected a number (examples: "
                               "PT3H, PT30M, 3h, 30m, 45s); or off, to rotate by size alone"});
  EXPECT_EQ(main_config_errors(dir, "auditRetention: PT1H\n"),
            Lines{at("1:17") + "'PT1H' is shorter than PT24H, the shortest time jitd keeps rotated "
                               "audit logs (records must stay long enough for someone to look at "
                               "them)"});
}

// --- Packaged files -----------------------------------------------------------------------

const fs::path packaging = fs::path(__FILE__).parent_path() / "../../packaging";

TEST(ConfigPackaging, MainConfigSpellsOutTheDefaults) {
  const auto loaded = load_main_config(packaging / "jitd.yaml");
  EXPECT_EQ(texts(loaded.errors), Lines{});
  expect_defaults(loaded.value);
}

TEST(ConfigPackaging, PolicyProtectsManagementPorts) {
  const auto loaded = load_policy_directory(packaging / "policies.d");
  EXPECT_EQ(texts(loaded.errors), Lines{});
  const std::vector<core::PortKey> expected = {{core::Protocol::tcp, 22},
                                               {core::Protocol::tcp, 3389},
                                               {core::Protocol::tcp, 5985},
                                               {core::Protocol::tcp, 5986}};
  EXPECT_EQ(loaded.value.protected_ports(), expected);
  for (const auto& rule : loaded.value.rules) {
    EXPECT_TRUE(rule.any_source);
    EXPECT_EQ(rule.max_duration, 3h);
    // "*" to request from, but one request opens at most a /24 or a /56.
    EXPECT_EQ(rule.min_request_length_v4, 24u);
    EXPECT_EQ(rule.min_request_length_v6, 56u);
  }
  EXPECT_TRUE(loaded.value.permanent_allow.empty());
}

}  // namespace
}  // namespace jitd::config
