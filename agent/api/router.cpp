#include "jitd/api/router.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

#include "jitd/core/text.hpp"
#include "json_fields.hpp"

namespace jitd::api {

namespace {

using core::ErrorCode;
using fields::field;
using fields::invalid_value;
using fields::parse_without_duplicate_keys;
using nlohmann::json;

// Caller text quoted in a reply or an audit line is escaped once, where it enters the message,
// and bounded: a 120 KB path or id must not become a 120 KB reply or a synced audit line.
constexpr std::size_t max_quoted_path = 64;
constexpr std::size_t max_quoted_method = 16;

// The daemon's grant ids are 16 lowercase hex digits (agent/daemon/host.cpp, random_grant_id).
bool is_grant_id(std::string_view id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

unsigned http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::forbidden:
    case ErrorCode::source_not_allowed: return 403;
    case ErrorCode::not_found: return 404;
    case ErrorCode::kernel:
    case ErrorCode::io: return 500;
    default: return 400;
  }
}

// Bytes that are not UTF-8 (a percent-encoded 0xff in a path) become U+FFFD, never an error.
Response json_response(unsigned status, const json& body) {
  return {status, body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

Response error_response(const core::Error& error) {
  return json_response(
      http_status(error.code),
      json{{"error", {{"code", core::to_string(error.code)}, {"message", error.message}}}});
}

json port_json(const core::PortSpec& port) {
  return {{"number", port.number}, {"protocol", core::to_string(port.protocol)}};
}

json grant_json(const core::Grant& grant, core::Deadline now) {
  const auto status = core::to_string(grant.status);
  const auto reason = grant.status_reason.empty() ? "UserRequested" : grant.status_reason;
  json ports = json::array();
  for (const auto& port : grant.ports) {
    auto entry = port_json(port);
    entry["status"] = status;
    entry["statusReason"] = reason;
    ports.push_back(std::move(entry));
  }
  const auto remaining =
      grant.status == core::GrantStatus::initiated
          ? std::chrono::ceil<std::chrono::seconds>(core::remaining(grant, now)).count()
          : 0;
  return {{"id", grant.id},
          {"requestor", {{"name", grant.requestor.name}, {"uid", grant.requestor.uid}}},
          {"allowedSourceAddressPrefix", grant.source.to_string()},
          {"ports", std::move(ports)},
          {"startTimeUtc", core::format_utc(grant.start)},
          {"endTimeUtc", core::format_utc(grant.end)},
          {"justification", grant.justification},
          {"status", status},
          {"statusReason", reason},
          {"remainingSeconds", remaining}};
}

json principals_json(const core::Principals& principals) {
  return {{"users", principals.users}, {"groups", principals.groups}};
}

json prefixes_json(bool any, const std::vector<core::Prefix>& prefixes) {
  json list = json::array();
  if (any) return json::array({"*"});
  for (const auto& prefix : prefixes) list.push_back(prefix.to_string());
  return list;
}

core::Result<core::PortSpec> parse_port(const json& entry, const std::string& where) {
  if (!entry.is_object()) {
    return core::fail(ErrorCode::invalid_request,
                      where + ": must be an object like {\"number\": 22, \"protocol\": \"tcp\"}");
  }
  for (const auto& [key, value] : entry.items()) {
    if (key != "number" && key != "protocol") {
      return core::fail(
          ErrorCode::invalid_request,
          where + "." + core::excerpt(key) + ": unknown field; expected number, protocol");
    }
  }
  const auto number = field(entry, "number", json::value_t::number_unsigned, where + ".");
  if (!number) return tl::unexpected(number.error());
  if (*number == nullptr) {
    return core::fail(ErrorCode::invalid_request, where + ".number: required");
  }
  const auto value = (*number)->get<std::int64_t>();
  if (value < 1 || value > 65535) {
    return core::fail(ErrorCode::invalid_request,
                      where + ".number: " + std::to_string(value) + " is not a port (1-65535)");
  }
  core::PortSpec port{static_cast<std::uint16_t>(value), core::ProtocolSpec::tcp};
  const auto protocol = field(entry, "protocol", json::value_t::string, where + ".");
  if (!protocol) return tl::unexpected(protocol.error());
  if (*protocol != nullptr) {
    const auto parsed = core::parse_protocol((*protocol)->get<std::string>());
    if (!parsed) return invalid_value(where + ".protocol", parsed.error());
    port.protocol = *parsed;
  }
  return port;
}

}  // namespace

core::Result<core::GrantRequest> parse_grant_request(std::string_view body) {
  const auto parsed = parse_without_duplicate_keys(body);
  if (!parsed) return tl::unexpected(parsed.error());
  const json& document = *parsed;
  if (!document.is_object()) {
    return core::fail(ErrorCode::invalid_request, "body: must be a JSON object");
  }
  static const std::array known = {"ports", "allowedSourceAddressPrefix", "duration", "endTimeUtc",
                                   "justification"};
  for (const auto& [key, value] : document.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return core::fail(ErrorCode::invalid_request,
                        core::excerpt(key) +
                            ": unknown field; expected ports, allowedSourceAddressPrefix, "
                            "duration or endTimeUtc, justification");
    }
  }
  core::GrantRequest request;
  const auto ports = field(document, "ports", json::value_t::array, "");
  if (!ports) return tl::unexpected(ports.error());
  if (*ports == nullptr || (*ports)->empty()) {
    return core::fail(ErrorCode::invalid_request, "ports: at least one port is required");
  }
  for (std::size_t i = 0; i < (*ports)->size(); ++i) {
    auto port = parse_port((**ports)[i], "ports[" + std::to_string(i) + "]");
    if (!port) return tl::unexpected(port.error());
    request.ports.push_back(*port);
  }

  const auto source = field(document, "allowedSourceAddressPrefix", json::value_t::string, "");
  if (!source) return tl::unexpected(source.error());
  if (*source == nullptr) {
    return core::fail(ErrorCode::invalid_request, "allowedSourceAddressPrefix: required");
  }
  // "*": every address of both families, where the port rules allow "*".
  auto parsed_source = core::SourceSpec::parse((*source)->get<std::string>());
  if (!parsed_source) return invalid_value("allowedSourceAddressPrefix", parsed_source.error());
  request.source = *parsed_source;

  const auto duration = field(document, "duration", json::value_t::string, "");
  if (!duration) return tl::unexpected(duration.error());
  const auto end_time = field(document, "endTimeUtc", json::value_t::string, "");
  if (!end_time) return tl::unexpected(end_time.error());
  // Neither: the longest the ports' rules allow, as Azure's portal offers.
  if (*duration != nullptr && *end_time != nullptr) {
    return core::fail(ErrorCode::invalid_request,
                      "duration: give at most one of duration and endTimeUtc");
  }
  if (*duration != nullptr) {
    auto parsed = core::parse_duration((*duration)->get<std::string>());
    if (!parsed) return invalid_value("duration", parsed.error());
    request.duration = *parsed;
  } else if (*end_time != nullptr) {
    auto parsed = core::parse_utc((*end_time)->get<std::string>());
    if (!parsed) return invalid_value("endTimeUtc", parsed.error());
    request.end_time = *parsed;
  }

  auto justification = fields::justification(document, "");
  if (!justification) return tl::unexpected(justification.error());
  request.justification = std::move(*justification);
  return request;
}

Response Router::handle(const core::Caller& caller, std::string_view method, std::string_view path,
                        std::string_view body, const QueryArguments& query) const {
  constexpr std::string_view grants_prefix = "/v1/grants/";
  if (path == "/v1/grants") {
    if (method == "GET") {
      // Live grants only, for now: a filter this jitd cannot apply must not be answered as if
      // it had been (history, pending requests and filters come with the grant history).
      for (const auto& [name, value] : query) {
        if (name == "state" && value == "active") continue;
        return refuse(caller, "read",
                      {ErrorCode::invalid_request,
                       core::excerpt(name) + "=" + core::excerpt(value) +
                           ": not supported by this jitd, which lists live grants only "
                           "(state=active)"});
      }
      return list_grants(caller);
    }
    if (method == "POST") return create_grant(caller, body);
  } else if (path.starts_with(grants_prefix) && path.size() > grants_prefix.size()) {
    if (method == "DELETE") return revoke_grant(caller, path.substr(grants_prefix.size()));
  } else if (path == "/v1/policy") {
    if (method == "GET") return show_policy(caller);
  } else if (path == "/v1/audit") {
    if (method == "GET") return read_audit(caller, query);
  } else if (path == "/v1/status") {
    if (method == "GET") return show_status(caller);
  } else if (path == "/v1/policy/reload") {
    if (method == "POST") return reload_policy(caller);
  } else {
    return error_response(
        {ErrorCode::not_found, "no route " + core::excerpt(path, max_quoted_path)});
  }
  return json_response(
      405, json{{"error",
                 {{"code", "MethodNotAllowed"},
                  {"message", core::excerpt(method, max_quoted_method) + " is not allowed on " +
                                  core::excerpt(path, max_quoted_path)}}}});
}

std::optional<Response> Router::refuse_without(const core::Caller& caller, core::Right right,
                                               const char* event, std::string_view action) const {
  const auto& roles = engine_.policy().roles;
  if (roles.grants(caller, right)) return std::nullopt;
  return refuse(caller, event, {ErrorCode::forbidden, roles.refusal(caller, right, action)});
}

Response Router::list_grants(const core::Caller& caller) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "list grants")) {
    return *refused;
  }
  const auto now = clock_.boot_now();
  json grants = json::array();
  for (const auto& grant : engine_.active_grants()) grants.push_back(grant_json(grant, now));
  return json_response(200, json{{"grants", std::move(grants)}});
}

Response Router::create_grant(const core::Caller& caller, std::string_view body) const {
  auto request = parse_grant_request(body);
  if (!request) return refuse(caller, "request", request.error());
  return grant_response(engine_.request(caller, *request));
}

Response Router::grant_response(const core::Result<core::Grant>& grant) const {
  if (!grant) return error_response(grant.error());
  return json_response(201, grant_json(*grant, clock_.boot_now()));
}

void Router::handle_async(const core::Caller& caller, std::string_view method,
                          std::string_view path, std::string_view body, const QueryArguments& query,
                          std::function<void(Response)> respond) const {
  if (path != "/v1/grants" || method != "POST")
    return respond(handle(caller, method, path, body, query));
  auto request = parse_grant_request(body);
  if (!request) return respond(refuse(caller, "request", request.error()));
  engine_.submit(caller, *request,
                 [this, respond = std::move(respond)](core::Result<core::Grant> grant) {
                   respond(grant_response(grant));
                 });
}

Response Router::revoke_grant(const core::Caller& caller, std::string_view id) const {
  if (!is_grant_id(id)) {
    return refuse(caller, "revoke",
                  {ErrorCode::invalid_request, "grant id '" + core::excerpt(id) +
                                                   "': not a grant id (16 lowercase hex digits)"});
  }
  auto grant = engine_.revoke(caller, id);
  if (!grant) return error_response(grant.error());
  return json_response(200, grant_json(*grant, clock_.boot_now()));
}

Response Router::reload_policy(const core::Caller& caller) const {
  if (auto refused =
          refuse_without(caller, core::Right::administer, "reload", "reload the policy")) {
    return *refused;
  }
  const auto outcome = reload_(caller);
  if (!outcome.applied) {
    const auto first =
        outcome.errors.empty() ? std::string("reload failed") : outcome.errors.front();
    return json_response(400,
                         json{{"error",
                               {{"code", core::to_string(ErrorCode::policy_invalid)},
                                {"message", outcome.previous_in_force
                                                ? first + " (the previous policy stays in force)"
                                                : first},
                                {"details", outcome.errors}}}});
  }
  return json_response(200, json{{"applied", true},
                                 {"revoked", outcome.change.revoked},
                                 {"narrowed", outcome.change.narrowed},
                                 {"clamped", outcome.change.clamped}});
}

namespace {

// A point in time: RFC 3339 UTC, or a duration back from now ("7d" is not ISO; "P7D", "168h").
core::Result<core::TimePoint> parse_time_argument(std::string_view name, std::string_view text,
                                                  core::TimePoint now) {
  if (auto absolute = core::parse_utc(text)) return *absolute;
  if (auto back = core::parse_duration(text)) return now - *back;
  return core::fail(ErrorCode::invalid_request,
                    std::string(name) + ": " + core::excerpt(text) +
                        " is neither a UTC time (2026-11-30T08:00:00Z) nor a duration back "
                        "from now (PT24H, 30m)");
}

core::Result<core::AuditQuery> parse_audit_query(const QueryArguments& arguments,
                                                 core::TimePoint now) {
  core::AuditQuery query;
  std::vector<std::string_view> seen;
  for (const auto& [name, value] : arguments) {
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      return core::fail(ErrorCode::invalid_request, core::excerpt(name) + ": given more than once");
    }
    seen.push_back(name);
    if (name == "since" || name == "until") {
      auto when = parse_time_argument(name, value, now);
      if (!when) return tl::unexpected(when.error());
      (name == "since" ? query.since : query.until) = *when;
    } else if (name == "user") {
      query.user = value;
    } else if (name == "cursor") {
      query.cursor = value;
    } else if (name == "limit") {
      std::size_t limit = 0;
      const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), limit);
      if (error != std::errc{} || end != value.data() + value.size() || limit == 0 ||
          limit > core::max_audit_page) {
        return core::fail(ErrorCode::invalid_request, "limit: must be a number from 1 to " +
                                                          std::to_string(core::max_audit_page));
      }
      query.limit = limit;
    } else {
      return core::fail(
          ErrorCode::invalid_request,
          core::excerpt(name) + ": unknown argument; expected since, until, user, limit, cursor");
    }
  }
  return query;
}

}  // namespace

Response Router::read_audit(const core::Caller& caller, const QueryArguments& arguments) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read the audit log")) {
    return *refused;
  }
  if (audit_ == nullptr) return error_response({ErrorCode::not_found, "no audit log to read"});
  auto query = parse_audit_query(arguments, clock_.now());
  if (!query) return error_response(query.error());
  auto page = audit_->read(*query);
  if (!page) return error_response(page.error());
  json records = json::array();
  for (const auto& record : page->records) {
    records.push_back(json::parse(record, nullptr, false));
  }
  json body{{"records", std::move(records)}};
  if (!page->next.empty()) body["next"] = page->next;
  return json_response(200, body);
}

Response Router::refuse(const core::Caller& caller, std::string event,
                        const core::Error& error) const {
  engine_.audit_refused_call(caller, std::move(event), error);
  return error_response(error);
}

Response Router::show_status(const core::Caller& caller) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read the status")) {
    return *refused;
  }
  const auto grants = engine_.active_grants();
  const auto live_on = [&](const core::PortKey& port) {
    return std::count_if(grants.begin(), grants.end(), [&](const core::Grant& grant) {
      return std::any_of(grant.ports.begin(), grant.ports.end(), [&](const core::PortSpec& spec) {
        const auto protocols = core::expand(spec.protocol);
        return spec.number == port.port &&
               std::find(protocols.begin(), protocols.end(), port.protocol) != protocols.end();
      });
    });
  };
  const auto enforcement = status_ ? status_() : EnforcementStatus{};
  json errors = json::array();
  if (!enforcement.dropped)
    errors.push_back("dropped packets: " + enforcement.dropped.error().message);
  json ports = json::array();
  for (const auto& port : engine_.policy().protected_ports()) {
    json entry{{"number", port.port},
               {"protocol", core::to_string(port.protocol)},
               {"liveGrants", live_on(port)},
               {"droppedPackets", nullptr}};
    if (enforcement.dropped) {
      std::uint64_t packets = 0;
      for (const auto& drops : *enforcement.dropped) {
        if (drops.port == port) packets += drops.packets;
      }
      entry["droppedPackets"] = packets;
    }
    ports.push_back(std::move(entry));
  }
  json features = json::object();
  for (const auto& [name, value] : enforcement.features) features[name] = value;
  const bool last_valid = policy_status_ != nullptr && policy_status_->last_valid_copy;
  return json_response(200, json{{"backend", enforcement.backend},
                                 {"enforcement",
                                  {{"where", enforcement.where},
                                   {"protection", enforcement.protection},
                                   {"kernelFeatures", std::move(features)}}},
                                 {"policySource", last_valid ? "lastValidCopy" : "files"},
                                 {"liveGrants", grants.size()},
                                 {"ports", std::move(ports)},
                                 {"errors", std::move(errors)}});
}

Response Router::show_policy(const core::Caller& caller) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read the policy")) {
    return *refused;
  }
  const auto& policy = engine_.policy();
  json ports = json::array();
  for (const auto& rule : policy.rules) {
    auto entry = port_json(rule.port);
    entry["allowedSourceAddressPrefixes"] = prefixes_json(rule.any_source, rule.allowed_sources);
    entry["maxRequestAccessDuration"] = core::format_duration(rule.max_duration);
    if (rule.min_request_length_v4 > 0)
      entry["minRequestPrefixLengthV4"] = rule.min_request_length_v4;
    if (rule.min_request_length_v6 > 0)
      entry["minRequestPrefixLengthV6"] = rule.min_request_length_v6;
    if (rule.requesters) entry["requesters"] = principals_json(*rule.requesters);
    ports.push_back(std::move(entry));
  }
  json roles = json::object();
  for (const auto& [name, members] : {std::pair{"readers", &policy.roles.readers},
                                      std::pair{"requesters", &policy.roles.requesters},
                                      std::pair{"administrators", &policy.roles.administrators}}) {
    if (*members) roles[name] = principals_json(**members);
  }
  json allow = json::array();
  for (const auto& entry : policy.permanent_allow) {
    json entry_ports = json::array();
    for (const auto& port : entry.ports) entry_ports.push_back(port_json(port));
    allow.push_back({{"sourceAddressPrefixes", prefixes_json(false, entry.sources)},
                     {"ports", std::move(entry_ports)},
                     {"description", entry.description}});
  }
  json source{{"kind", "files"}, {"errors", json::array()}};
  if (policy_status_ != nullptr) {
    if (policy_status_->last_valid_copy) {
      source["kind"] = "lastValidCopy";
      source["savedUtc"] = policy_status_->saved_utc;
    }
    source["errors"] = policy_status_->file_errors;
  }
  return json_response(200, json{{"ports", std::move(ports)},
                                 {"permanentAllowList", std::move(allow)},
                                 {"roles", std::move(roles)},
                                 {"source", std::move(source)}});
}

}  // namespace jitd::api
