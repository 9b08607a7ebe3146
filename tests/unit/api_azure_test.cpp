// Azure's initiate body and reply (api/azure.hpp) and the import of Azure policies
// (config/azure_import.hpp), against golden files in tests/unit/golden/azure.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "jitd/api/azure.hpp"
#include "jitd/config/azure_import.hpp"
#include "jitd/config/config.hpp"

namespace {

using namespace jitd;
using nlohmann::json;

std::string golden(const std::string& name) {
  std::ifstream file(std::string(JITD_GOLDEN_DIR) + "/azure/" + name);
  EXPECT_TRUE(file) << name;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

core::TimePoint utc(const char* text) { return *core::parse_utc(text); }

core::SourceSpec source(const char* text) { return *core::SourceSpec::parse(text); }

const std::string vm_prefix =
    "/subscriptions/8b1d2c3e-4f5a-4b6c-9d7e-0f1a2b3c4d5e/resourceGroups/rg-ops/providers/"
    "Microsoft.Compute/virtualMachines/";

// --- parse_azure_initiate ------------------------------------------------------------------

TEST(AzureInitiate, EndTimeExample) {
  const auto parsed = api::parse_azure_initiate(golden("initiate_end_time.request.json"));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->vm_id, vm_prefix + "web01");
  EXPECT_EQ(parsed->vm_name, "web01");
  ASSERT_EQ(parsed->requests.size(), 1u);
  const auto& request = parsed->requests[0];
  EXPECT_EQ(request.ports, (std::vector<core::PortSpec>{{3389, core::ProtocolSpec::any}}));
  EXPECT_EQ(request.source, source("203.0.113.7"));
  EXPECT_FALSE(request.duration);
  EXPECT_EQ(request.end_time, utc("2026-11-24T04:00:00.123Z"));
  EXPECT_FALSE(request.start_time);
  EXPECT_EQ(request.justification, "INC-4711: restart the service");
}

// Ports sharing source and duration share a request, in the order groups first appear; a port
// with neither duration nor endTimeUtc asks for the rule's maximum.
TEST(AzureInitiate, DurationExampleGroupsPorts) {
  const auto parsed = api::parse_azure_initiate(golden("initiate_duration.request.json"));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->vm_name, "db02");
  ASSERT_EQ(parsed->requests.size(), 3u);
  const auto any = core::ProtocolSpec::any;
  EXPECT_EQ(parsed->requests[0].ports, (std::vector<core::PortSpec>{{22, any}, {53, any}}));
  EXPECT_EQ(parsed->requests[0].source, source("198.51.100.0/24"));
  EXPECT_EQ(parsed->requests[0].duration, std::chrono::hours(1));
  EXPECT_EQ(parsed->requests[1].ports, (std::vector<core::PortSpec>{{5432, any}}));
  EXPECT_TRUE(parsed->requests[1].source.is_any());
  EXPECT_EQ(parsed->requests[1].duration, std::chrono::minutes(30));
  EXPECT_EQ(parsed->requests[2].ports, (std::vector<core::PortSpec>{{9100, any}}));
  EXPECT_EQ(parsed->requests[2].source, source("2001:db8::/64"));
  EXPECT_FALSE(parsed->requests[2].duration);
  EXPECT_FALSE(parsed->requests[2].end_time);
  for (const auto& request : parsed->requests) {
    EXPECT_EQ(request.justification, "nightly migration");
  }
}

TEST(AzureInitiate, BareVmNameAndNoJustification) {
  const auto parsed = api::parse_azure_initiate(
      R"({"virtualMachines":[{"id":"web01","ports":[{"number":22,"allowedSourceAddressPrefix":"10.0.0.1","endTimeUtc":"2026-11-24T04:00:00Z"}]}]})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->vm_id, "web01");
  EXPECT_EQ(parsed->vm_name, "web01");
  EXPECT_EQ(parsed->requests.at(0).justification, "");
}

TEST(AzureInitiate, VmNamesHost) {
  EXPECT_TRUE(api::vm_names_host("web01", "web01"));
  EXPECT_TRUE(api::vm_names_host("WEB01", "web01"));
  EXPECT_TRUE(api::vm_names_host("web01", "web01.internal.cloudapp.net"));
  EXPECT_TRUE(api::vm_names_host("web01.example.org", "web01.example.org"));
  EXPECT_FALSE(api::vm_names_host("web02", "web01"));
  EXPECT_FALSE(api::vm_names_host("web0", "web01"));
  EXPECT_FALSE(api::vm_names_host("", "web01"));
}

std::string port_body(const std::string& port) {
  return R"({"virtualMachines":[{"id":"web01","ports":[)" + port + "]}]}";
}

TEST(AzureInitiate, ErrorsNameTheFieldAndWhy) {
  const std::string ok_port = R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.1"})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "body: not valid JSON"},
      {"[1]", "body: must be a JSON object"},
      {R"({"virtualMachines":[],"virtualMachines":[]})",
       "virtualMachines: duplicate key; each key may appear once in an object"},
      {R"({"virtualMachines":[{"id":"a","id":"b","ports":[]}]})",
       "id: duplicate key; each key may appear once in an object"},
      {R"({"virtualMachines":[],"requestor":"me"})",
       "requestor: unknown field; expected virtualMachines, justification"},
      {R"({"justification":"x"})", "virtualMachines: required"},
      {R"({"virtualMachines":{}})", "virtualMachines: must be an array, not object"},
      {R"({"virtualMachines":[]})",
       "virtualMachines: 0 virtual machines given; jitd runs on one host and takes exactly one "
       "(send each VM's request to its own host)"},
      {R"({"virtualMachines":[{"id":"a","ports":[]},{"id":"b","ports":[]}]})",
       "virtualMachines: 2 virtual machines given; jitd runs on one host and takes exactly one "
       "(send each VM's request to its own host)"},
      {R"({"virtualMachines":["web01"]})",
       "virtualMachines[0]: must be an object like {\"id\": \"...\", \"ports\": [...]}"},
      {R"({"virtualMachines":[{"id":"web01","ports":[],"publicIpAddress":"1.2.3.4"}]})",
       "virtualMachines[0].publicIpAddress: unknown field; expected id, ports"},
      {R"({"virtualMachines":[{"ports":[]}]})", "virtualMachines[0].id: required"},
      {R"({"virtualMachines":[{"id":7,"ports":[]}]})",
       "virtualMachines[0].id: must be a string, not number"},
      {R"({"virtualMachines":[{"id":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachineScaleSets/x","ports":[]}]})",
       "virtualMachines[0].id: '/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
       "virtualMachineScaleSets/x' is not a virtual machine's id; expected "
       "/subscriptions/<id>/resourceGroups/"
       "<group>/providers/Microsoft.Compute/virtualMachines/<name>, or the VM's name"},
      {R"({"virtualMachines":[{"id":"","ports":[]}]})",
       "virtualMachines[0].id: '' is not a virtual machine's id; expected /subscriptions/<id>/"
       "resourceGroups/<group>/providers/Microsoft.Compute/virtualMachines/<name>, or the VM's "
       "name"},
      {R"({"virtualMachines":[{"id":"web01"}]})", "virtualMachines[0].ports: required"},
      {R"({"virtualMachines":[{"id":"web01","ports":[]}]})",
       "virtualMachines[0].ports: at least one port is required"},
      {port_body("22"),
       "virtualMachines[0].ports[0]: must be an object like {\"number\": 22, "
       "\"allowedSourceAddressPrefix\": \"203.0.113.7\", \"endTimeUtc\": \"...\"}"},
      {port_body(R"({"number":22,"protocol":"tcp","allowedSourceAddressPrefix":"10.0.0.1"})"),
       "virtualMachines[0].ports[0].protocol: unknown field; expected number, "
       "allowedSourceAddressPrefix, endTimeUtc or duration"},
      {port_body(R"({"allowedSourceAddressPrefix":"10.0.0.1"})"),
       "virtualMachines[0].ports[0].number: required"},
      {port_body(R"({"number":"22","allowedSourceAddressPrefix":"10.0.0.1"})"),
       "virtualMachines[0].ports[0].number: must be an integer, not string"},
      {port_body(R"({"number":0,"allowedSourceAddressPrefix":"10.0.0.1"})"),
       "virtualMachines[0].ports[0].number: 0 is not a port (1-65535)"},
      {port_body(ok_port + "," + R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.2"})"),
       "virtualMachines[0].ports[1].number: port 22 is already listed at ports[0]"},
      {port_body(R"({"number":22})"),
       "virtualMachines[0].ports[0].allowedSourceAddressPrefix: required; jitd cannot take the "
       "caller's address as Azure does (the request comes over a local socket)"},
      {port_body(R"({"number":22,"allowedSourceAddressPrefix":["10.0.0.1"]})"),
       "virtualMachines[0].ports[0].allowedSourceAddressPrefix: must be a string, not array"},
      {port_body(R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.1/8"})"),
       "virtualMachines[0].ports[0].allowedSourceAddressPrefix: '10.0.0.1/8' has host bits set; "
       "did you mean 10.0.0.0/8?"},
      {port_body(R"({"number":22,"allowedSourceAddressPrefix":"Internet"})"),
       "virtualMachines[0].ports[0].allowedSourceAddressPrefix: 'Internet' is not an IPv4 or IPv6 "
       "address"},
      {port_body(
           R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.1","duration":"PT1H","endTimeUtc":"2026-11-24T04:00:00Z"})"),
       "virtualMachines[0].ports[0].duration: give at most one of duration and endTimeUtc"},
      {port_body(R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.1","duration":"soon"})"),
       "virtualMachines[0].ports[0].duration: 'soon' is not a valid duration: expected a number "
       "(examples: PT3H, PT30M, 3h, 30m, 45s)"},
      {port_body(R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.1","duration":3600})"),
       "virtualMachines[0].ports[0].duration: must be a string, not number"},
      {port_body(
           R"({"number":22,"allowedSourceAddressPrefix":"10.0.0.1","endTimeUtc":"tomorrow"})"),
       "virtualMachines[0].ports[0].endTimeUtc: 'tomorrow' is not a UTC time like "
       "2026-11-24T03:30:00Z (ISO 8601 with Z or +00:00)"},
      {R"({"virtualMachines":[{"id":"web01","ports":[)" + ok_port + R"(]}],"justification":7})",
       "justification: must be a string, not number"},
      {R"({"virtualMachines":[{"id":"web01","ports":[)" + ok_port + R"(]}],"justification":")" +
           std::string(1025, 'x') + "\"}",
       "justification: longer than 1024 bytes"},
  };
  for (const auto& [body, message] : cases) {
    const auto parsed = api::parse_azure_initiate(body);
    ASSERT_FALSE(parsed) << body;
    EXPECT_EQ(parsed.error().code, core::ErrorCode::invalid_request) << body;
    EXPECT_EQ(parsed.error().message, message) << body;
  }
}

// --- resolve_protocols ---------------------------------------------------------------------

core::Policy policy_of(std::vector<core::PortSpec> ports) {
  core::Policy policy;
  for (const auto& port : ports) {
    core::PortRule rule;
    rule.port = port;
    rule.any_source = true;
    rule.max_duration = std::chrono::hours(3);
    policy.rules.push_back(rule);
  }
  return policy;
}

TEST(AzureInitiate, ProtocolsAreThePolicys) {
  using core::ProtocolSpec;
  const auto policy = policy_of({{22, ProtocolSpec::tcp},
                                 {53, ProtocolSpec::udp},
                                 {5432, ProtocolSpec::tcp},
                                 {53, ProtocolSpec::tcp},
                                 {9100, ProtocolSpec::any}});
  const auto parsed = api::parse_azure_initiate(golden("initiate_duration.request.json"));
  ASSERT_TRUE(parsed);
  const auto resolved = api::resolve_protocols(policy, parsed->requests);
  ASSERT_TRUE(resolved) << resolved.error().message;
  ASSERT_EQ(resolved->size(), 3u);
  EXPECT_EQ((*resolved)[0].ports,
            (std::vector<core::PortSpec>{
                {22, ProtocolSpec::tcp}, {53, ProtocolSpec::udp}, {53, ProtocolSpec::tcp}}));
  EXPECT_EQ((*resolved)[1].ports, (std::vector<core::PortSpec>{{5432, ProtocolSpec::tcp}}));
  EXPECT_EQ((*resolved)[2].ports, (std::vector<core::PortSpec>{{9100, ProtocolSpec::any}}));
  EXPECT_EQ((*resolved)[0].source, parsed->requests[0].source);
  EXPECT_EQ((*resolved)[0].duration, parsed->requests[0].duration);

  // A concrete protocol is left alone.
  core::GrantRequest concrete;
  concrete.ports = {{22, ProtocolSpec::udp}};
  const auto kept = api::resolve_protocols(policy, {concrete});
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->at(0).ports, concrete.ports);

  const auto missing =
      api::resolve_protocols(policy_of({{22, ProtocolSpec::tcp}}), parsed->requests);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::port_not_in_policy);
  EXPECT_EQ(missing.error().message,
            "virtualMachines[0].ports: port 53 is not a port the policy protects (neither tcp "
            "nor udp)");
}

// --- azure_initiate_response ---------------------------------------------------------------

core::Grant grant(std::string id, const char* requestor, const char* from,
                  std::vector<core::PortSpec> ports, const char* end) {
  core::Grant grant;
  grant.id = std::move(id);
  grant.requestor = {1000, requestor};
  grant.source = source(from);
  grant.ports = std::move(ports);
  grant.requested = grant.start = utc("2026-11-24T03:00:00Z");
  grant.end = utc(end);
  return grant;
}

TEST(AzureInitiate, ResponseOfOneGrant) {
  auto one = grant("3f2a9c0d11e4b7a8", "alice", "203.0.113.7", {{3389, core::ProtocolSpec::tcp}},
                   "2026-11-24T04:00:00.123Z");
  one.justification = "INC-4711: restart the service";
  one.status_reason = std::string(core::reason::user_requested);
  EXPECT_EQ(api::azure_initiate_response({one}, vm_prefix + "web01"),
            json::parse(golden("initiate_end_time.response.json")));
}

TEST(AzureInitiate, ResponseListsEveryPortOfEveryGrant) {
  using core::ProtocolSpec;
  std::vector<core::Grant> grants = {
      grant("00000000000000a1", "bob", "198.51.100.0/24",
            {{22, ProtocolSpec::tcp}, {53, ProtocolSpec::tcp}, {53, ProtocolSpec::udp}},
            "2026-11-24T04:00:00Z"),
      grant("00000000000000a2", "bob", "*", {{5432, ProtocolSpec::tcp}}, "2026-11-24T03:30:00Z"),
      grant("00000000000000a3", "bob", "2001:db8::/64", {{9100, ProtocolSpec::any}},
            "2026-11-24T06:00:00Z"),
  };
  grants[2].status = core::GrantStatus::pending;
  grants[2].status_reason = std::string(core::reason::awaiting_approval);
  for (auto& each : grants) each.justification = "nightly migration";
  const auto id =
      "/subscriptions/8b1d2c3e-4f5a-4b6c-9d7e-0f1a2b3c4d5e/resourcegroups/rg-ops/"
      "providers/microsoft.compute/virtualmachines/db02";
  EXPECT_EQ(api::azure_initiate_response(grants, id),
            json::parse(golden("initiate_duration.response.json")));
}

TEST(AzureInitiate, ResponseWithoutGrantsNamesTheVmOnly) {
  EXPECT_EQ(api::azure_initiate_response({}, "web01"),
            json::parse(R"({"virtualMachines":[{"id":"web01","ports":[]}]})"));
}

// --- import_azure_policy -------------------------------------------------------------------

struct ImportCase {
  const char* input;
  const char* vm;
  const char* expected;  // golden YAML
  std::size_t rules;
  std::vector<std::string> warnings;
};

TEST(AzureImport, GoldenFilesBecomeValidPolicies) {
  const std::vector<ImportCase> cases = {
      {"policy_get.json",
       "",
       "policy_get.yaml",
       3,
       {"properties.requests: 1 not imported: Azure's past and live grants are history, not "
        "policy",
        "properties.virtualMachines[0].publicIpAddress: the Azure Firewall in front of this VM "
        "is not imported: jitd guards the host's own ports; the firewall's rules stay in "
        "Azure"}},
      {"policy_put.json", "", "policy_put.yaml", 1, {}},
      {"policy_list.json", "db02", "policy_list_db02.yaml", 2, {}},
      {"policy_list.json", "WEB01", "policy_list_web01.yaml", 1, {}},
      {"powershell.json", "", "powershell.yaml", 2, {}},
      {"powershell_get.json",
       "",
       "powershell_get.yaml",
       2,
       {"requests: 1 not imported: Azure's past and live grants are history, not policy"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    const auto imported = config::import_azure_policy(golden(c.input), c.vm);
    ASSERT_TRUE(imported) << imported.error().message;
    EXPECT_EQ(imported->yaml, golden(c.expected));
    EXPECT_EQ(imported->warnings, c.warnings);
    // What jitd --validate runs on a policy file.
    const auto loaded = config::parse_policy_text(imported->yaml, c.expected);
    EXPECT_TRUE(loaded.errors.empty()) << loaded.errors.front().to_string();
    EXPECT_EQ(loaded.value.rules.size(), c.rules);
  }
}

TEST(AzureImport, WhatAHostCannotHonourIsAnError) {
  const auto vm =
      R"({"id":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/web01","ports":[)";
  const auto port = [&](const std::string& fields) { return std::string(vm) + fields + "]}"; };
  const std::string rule = R"("number":22,"protocol":"TCP","maxRequestAccessDuration":"PT3H")";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "file: not valid JSON"},
      {"42",
       "file: not an Azure just-in-time policy; expected a policy ({\"properties\": "
       "{\"virtualMachines\": [...]}}), a list of them ({\"value\": [...]}) or PowerShell's "
       "virtual machines ([{\"id\": ..., \"ports\": [...]}])"},
      {R"({"name":"default"})",
       "file: not an Azure just-in-time policy; expected a policy ({\"properties\": "
       "{\"virtualMachines\": [...]}}), a list of them ({\"value\": [...]}) or PowerShell's "
       "virtual machines ([{\"id\": ..., \"ports\": [...]}])"},
      {R"({"Ports":[],"ports":[]})",
       "ports: key given twice in one object (Azure's keys ignore case)"},
      {R"({"properties":{}})", "properties.virtualMachines: required"},
      {R"({"properties":{"virtualMachines":{}}})",
       "properties.virtualMachines: must be an array, not object"},
      {R"({"value":[]})", "virtualMachines: the file names no virtual machine"},
      {R"({"value":{}})", "value: must be an array, not object"},
      {R"([{"ports":[]}])", "[0].id: required (the VM's ARM id)"},
      {R"([{"id":"/SUBSCRIPTIONID/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v","ports":[]}])",
       "[0].id: '/SUBSCRIPTIONID/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v' "
       "is not a virtual machine's id; expected /subscriptions/<id>/resourceGroups/<group>/"
       "providers/Microsoft.Compute/virtualMachines/<name>, or the VM's name"},
      {R"([{"id":"a","ports":[]},{"id":"b","ports":[]}])",
       "virtualMachines: the file holds 2 virtual machines (a, b); a host enforces the rules of "
       "one: pick it by name (--vm NAME)"},
      {R"([{"id":"a"}])", "[0].ports: required"},
      {port("{" + rule + R"(,"allowedSourceAddressPrefix":"*","fromPort":1})"),
       "ports[0].fromPort: unknown field of a port rule; expected number, protocol, "
       "allowedSourceAddressPrefix(es), maxRequestAccessDuration"},
      {port(
           R"({"protocol":"TCP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT3H"})"),
       "ports[0].number: required"},
      {port(
           R"({"number":70000,"protocol":"TCP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT3H"})"),
       "ports[0].number: 70000 is not a port (1-65535)"},
      {port(
           R"({"number":22,"protocol":"ICMP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT3H"})"),
       "ports[0].protocol: 'ICMP' is not a protocol jitd protects; expected TCP, UDP or *"},
      {port(R"({"number":22,"allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT3H"})"),
       "ports[0].protocol: required (TCP, UDP or *)"},
      {port("{" + rule + "}"),
       "ports[0].allowedSourceAddressPrefix: required: the sources that may request access ('*' "
       "for any address)"},
      {port("{" + rule + R"(,"allowedSourceAddressPrefixes":[]})"),
       "ports[0].allowedSourceAddressPrefix: required: the sources that may request access ('*' "
       "for any address)"},
      {port("{" + rule + R"(,"allowedSourceAddressPrefix":"10.0.0.1/8"})"),
       "ports[0].allowedSourceAddressPrefix: '10.0.0.1/8' has host bits set; did you mean "
       "10.0.0.0/8?"},
      {port("{" + rule + R"(,"allowedSourceAddressPrefixes":["10.0.0.0/8","VirtualNetwork"]})"),
       "ports[0].allowedSourceAddressPrefixes[1]: 'VirtualNetwork' is not an IPv4 or IPv6 address; "
       "Azure service tags have no meaning on a host: name the addresses"},
      {port("{" + rule + R"(,"allowedSourceAddressPrefix":7})"),
       "ports[0].allowedSourceAddressPrefix: must be a string or an array of strings, not number"},
      {port("{" + rule +
            R"(,"allowedSourceAddressPrefix":"*","allowedSourceAddressPrefixes":["10.0.0.0/8"]})"),
       "ports[0].allowedSourceAddressPrefixes: give one of allowedSourceAddressPrefix and "
       "allowedSourceAddressPrefixes"},
      {port(
           R"({"number":22,"protocol":"TCP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"P2D"})"),
       "ports[0].maxRequestAccessDuration: 'P2D' is longer than PT24H, the longest access jitd "
       "grants"},
      {port(
           R"({"number":22,"protocol":"TCP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"3 hours"})"),
       "ports[0].maxRequestAccessDuration: '3 hours' is not a valid duration: unexpected or "
       "misplaced unit (examples: PT3H, PT30M, 3h, 30m, 45s)"},
      {port(R"({"number":22,"protocol":"TCP","allowedSourceAddressPrefix":"*"})"),
       "ports[0].maxRequestAccessDuration: required (an ISO 8601 duration like PT3H)"},
      {port(
           "{" + rule +
           R"(,"allowedSourceAddressPrefix":"*"},{"number":22,"protocol":"*","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT1H"})"),
       "ports[1]: 22/* overlaps 22/tcp at ports[0]; jitd protects each port and protocol with "
       "one rule"},
  };
  for (const auto& [input, message] : cases) {
    const auto imported = config::import_azure_policy(input);
    ASSERT_FALSE(imported) << input;
    EXPECT_EQ(imported.error().code, core::ErrorCode::invalid_argument) << input;
    EXPECT_EQ(imported.error().message, message) << input;
  }
}

TEST(AzureImport, VmChoiceErrors) {
  const auto list = golden("policy_list.json");
  const auto unknown = config::import_azure_policy(list, "web03");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message,
            "virtualMachines: no virtual machine named 'web03'; the file holds: web01, DB02");
  const auto several = config::import_azure_policy(list);
  ASSERT_FALSE(several);
  EXPECT_EQ(several.error().message,
            "virtualMachines: the file holds 2 virtual machines (web01, DB02); a host enforces "
            "the rules of one: pick it by name (--vm NAME)");
  const auto twice = config::import_azure_policy(
      R"([{"id":"/subscriptions/s/resourceGroups/a/providers/Microsoft.Compute/virtualMachines/vm","ports":[]},
          {"id":"/subscriptions/s/resourceGroups/b/providers/Microsoft.Compute/virtualMachines/VM","ports":[]}])",
      "vm");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().message,
            "virtualMachines: 2 virtual machines are named 'vm': "
            "/subscriptions/s/resourceGroups/a/providers/Microsoft.Compute/virtualMachines/vm, "
            "/subscriptions/s/resourceGroups/b/providers/Microsoft.Compute/virtualMachines/VM");
}

// Warned, not refused: what stays in Azure; and text from the file reaches the YAML only as
// escaped comments.
TEST(AzureImport, WarningsAndHostileText) {
  const auto imported = config::import_azure_policy(
      R"({"id":"web01\n- number: 1","ports":[{"number":22,"protocol":"tcp","allowedSourceAddressPrefix":["*","10.0.0.0/8"],"maxRequestAccessDuration":"PT1H","mappedPort":2222}],"publicIpAddress":null,"note\n":"x"})");
  ASSERT_FALSE(imported);  // the id is not a VM's
  const auto warned = config::import_azure_policy(
      R"({"id":"web01","ports":[{"number":22,"protocol":"tcp","allowedSourceAddressPrefix":["*","10.0.0.0/8"],"maxRequestAccessDuration":"PT1H","toPort":2222}],"publicIpAddress":null,"note\n":"x"})");
  ASSERT_TRUE(warned) << warned.error().message;
  EXPECT_EQ(warned->warnings,
            (std::vector<std::string>{
                "note\\n: unknown field, not imported",
                "ports[0].toPort: port forwarding happens in Azure Firewall, not on the host; the "
                "rule protects the host's own port",
                "ports[0].allowedSourceAddressPrefix: '*' already allows every address; the "
                "other prefixes are left out"}));
  const auto loaded = config::parse_policy_text(warned->yaml, "imported.yaml");
  EXPECT_TRUE(loaded.errors.empty());
  ASSERT_EQ(loaded.value.rules.size(), 1u);
  EXPECT_TRUE(loaded.value.rules[0].any_source);
}

}  // namespace
