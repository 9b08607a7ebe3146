#include "jitd/api/router.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "grant_json.hpp"
#include "jitd/api/azure.hpp"
#include "jitd/core/text.hpp"
#include "json_fields.hpp"
#include "queries.hpp"
#include "request_terms.hpp"

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
// Ended grants per page when the caller sets no limit: the history may hold millions.
constexpr std::size_t default_history_page = 100;

// The daemon's grant ids are 16 lowercase hex digits (agent/daemon/host.cpp, random_grant_id).
bool is_grant_id(std::string_view id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Why `id` is not a grant id, quoted escaped and bounded; none when it is one.
std::optional<core::Error> grant_id_error(std::string_view id) {
  if (is_grant_id(id)) return std::nullopt;
  return core::Error{ErrorCode::invalid_request, "grant id '" + core::excerpt(id) +
                                                     "': not a grant id (16 lowercase hex digits)"};
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

GrantView view_of(const core::AccessEngine& engine, const core::Clock& clock) {
  return {clock.boot_now(), clock.now(), engine.policy()};
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

// One entry of "ports": the port, and the terms it gives of its own (Azure's per-port shape),
// which replace the body's.
struct PortEntry {
  core::PortSpec port;
  terms::RequestTerms terms;
};

core::Result<PortEntry> parse_port(const json& entry, const std::string& where) {
  if (!entry.is_object()) {
    return core::fail(ErrorCode::invalid_request,
                      where + ": must be an object like {\"number\": 22, \"protocol\": \"tcp\"}");
  }
  static const std::array known = {"number", "protocol", "allowedSourceAddressPrefix", "duration",
                                   "endTimeUtc"};
  for (const auto& [key, value] : entry.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return core::fail(ErrorCode::invalid_request,
                        where + "." + core::excerpt(key) +
                            ": unknown field; expected number, protocol, "
                            "allowedSourceAddressPrefix, duration or endTimeUtc");
    }
  }
  const auto at = where + ".";
  const auto number = field(entry, "number", json::value_t::number_unsigned, at);
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
  const auto protocol = field(entry, "protocol", json::value_t::string, at);
  if (!protocol) return tl::unexpected(protocol.error());
  if (*protocol != nullptr) {
    const auto parsed = core::parse_protocol((*protocol)->get<std::string>());
    if (!parsed) return invalid_value(where + ".protocol", parsed.error());
    port.protocol = *parsed;
  }
  auto terms = terms::parse_terms(entry, at);
  if (!terms) return tl::unexpected(terms.error());
  return PortEntry{port, std::move(*terms)};
}

}  // namespace

core::Result<std::vector<core::GrantRequest>> parse_grant_requests(std::string_view body) {
  const auto parsed = parse_without_duplicate_keys(body);
  if (!parsed) return tl::unexpected(parsed.error());
  const json& document = *parsed;
  if (!document.is_object()) {
    return core::fail(ErrorCode::invalid_request, "body: must be a JSON object");
  }
  static const std::array known = {"ports",        "allowedSourceAddressPrefix",
                                   "duration",     "endTimeUtc",
                                   "startTimeUtc", "justification"};
  for (const auto& [key, value] : document.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return core::fail(ErrorCode::invalid_request,
                        core::excerpt(key) +
                            ": unknown field; expected ports, allowedSourceAddressPrefix, "
                            "duration or endTimeUtc, startTimeUtc, justification");
    }
  }
  // Neither duration nor endTimeUtc: the longest the ports' rules allow, as Azure's portal offers.
  auto defaults = terms::parse_terms(document, "");
  if (!defaults) return tl::unexpected(defaults.error());
  std::optional<core::TimePoint> start_time;
  const auto start = field(document, "startTimeUtc", json::value_t::string, "");
  if (!start) return tl::unexpected(start.error());
  if (*start != nullptr) {
    auto when = core::parse_utc((*start)->get<std::string>());
    if (!when) return invalid_value("startTimeUtc", when.error());
    start_time = *when;
  }
  auto justification = fields::justification(document, "");
  if (!justification) return tl::unexpected(justification.error());

  const auto ports = field(document, "ports", json::value_t::array, "");
  if (!ports) return tl::unexpected(ports.error());
  if (*ports == nullptr || (*ports)->empty()) {
    return core::fail(ErrorCode::invalid_request, "ports: at least one port is required");
  }
  std::vector<core::GrantRequest> requests;
  for (std::size_t i = 0; i < (*ports)->size(); ++i) {
    const auto where = "ports[" + std::to_string(i) + "]";
    auto entry = parse_port((**ports)[i], where);
    if (!entry) return tl::unexpected(entry.error());
    const auto& own = entry->terms;
    const auto& source = own.source ? own.source : defaults->source;
    if (!source) {
      return core::fail(ErrorCode::invalid_request,
                        "allowedSourceAddressPrefix: required (in the body, or in each port: " +
                            where + " has none)");
    }
    const bool own_timing = own.duration || own.end_time;
    core::GrantRequest request;
    request.ports.push_back(entry->port);
    request.source = *source;
    request.duration = own_timing ? own.duration : defaults->duration;
    request.end_time = own_timing ? own.end_time : defaults->end_time;
    request.start_time = start_time;
    request.justification = *justification;
    terms::add_grouped(requests, std::move(request));
  }
  return requests;
}

Response Router::handle(const core::Caller& caller, std::string_view method, std::string_view path,
                        std::string_view body, const QueryArguments& query) const {
  // Grant requests are answered by the engine's commit: here, at once.
  if (method == "POST" && (path == "/v1/grants" || path == "/v1/initiate")) {
    std::optional<Response> answer;
    handle_async(caller, method, path, body, query,
                 [&answer](Response response) { answer = std::move(response); });
    if (!answer) engine_.commit();
    return std::move(*answer);
  }
  constexpr std::string_view grants_prefix = "/v1/grants/";
  if (path == "/v1/grants") {
    if (method == "GET") return list_grants(caller, query);
  } else if (path.starts_with(grants_prefix) && path.size() > grants_prefix.size()) {
    const auto rest = path.substr(grants_prefix.size());
    const auto slash = rest.find('/');
    const auto id = rest.substr(0, slash);
    if (slash == std::string_view::npos) {
      if (method == "GET") return show_grant(caller, id);
      if (method == "DELETE") return revoke_grant(caller, id);
    } else {
      const auto action = rest.substr(slash + 1);
      if (action != "extend" && action != "approve" && action != "deny") {
        return error_response(
            {ErrorCode::not_found, "no route " + core::excerpt(path, max_quoted_path)});
      }
      if (method == "POST") return act_on_grant(caller, id, action, body);
    }
  } else if (path == "/v1/initiate") {
    // POST is answered above.
  } else if (path == "/v1/policy") {
    if (method == "GET") return show_policy(caller);
  } else if (path == "/v1/audit") {
    if (method == "GET") return read_audit(caller, query);
  } else if (path == "/v1/status") {
    if (method == "GET") return show_status(caller);
  } else if (path == "/v1/doctor") {
    if (method == "GET") return show_doctor(caller);
  } else if (path == "/v1/recommendations") {
    if (method == "GET") return show_recommendations(caller);
  } else if (path == "/metrics" && metrics_) {
    if (method == "GET") return show_metrics(caller);
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

void Router::handle_async(const core::Caller& caller, std::string_view method,
                          std::string_view path, std::string_view body, const QueryArguments& query,
                          std::function<void(Response)> respond) const {
  if (method == "POST" && path == "/v1/grants") return create_grants(caller, body, respond);
  if (method == "POST" && path == "/v1/initiate") return initiate(caller, body, respond);
  respond(handle(caller, method, path, body, query));
}

std::optional<Response> Router::refuse_without(const core::Caller& caller, core::Right right,
                                               const char* event, std::string_view action) const {
  const auto& roles = engine_.policy().roles;
  if (roles.grants(caller, right)) return std::nullopt;
  return refuse(caller, event, {ErrorCode::forbidden, roles.refusal(caller, right, action)});
}

Response Router::list_grants(const core::Caller& caller, const QueryArguments& arguments) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "list grants")) {
    return *refused;
  }
  auto query = queries::parse_grant_query(arguments, clock_.now());
  if (!query) return error_response(query.error());
  const auto matches = [&](const core::Grant& grant) {
    return (query->user.empty() || grant.requestor.name == query->user) &&
           (!query->port ||
            std::any_of(grant.ports.begin(), grant.ports.end(),
                        [&](const core::PortSpec& port) { return port.number == *query->port; }));
  };
  // The cursor names the part the last page ended in and the last grant it showed:
  // "live:<start ms>:<id>", "pending:<requested ms>:<id>" (the engine's orders, so a page
  // resumes after that grant however many ended or started since; nothing after the colon:
  // from the part's beginning) or "ended:<the history's cursor>".
  std::string part = query->live ? "live" : query->pending ? "pending" : "ended";
  std::optional<std::pair<core::TimePoint, std::string>> after;
  std::string history_cursor;
  if (!query->cursor.empty()) {
    const auto colon = query->cursor.find(':');
    part = query->cursor.substr(0, colon);
    const auto rest = colon == std::string::npos ? std::string() : query->cursor.substr(colon + 1);
    bool valid = (part == "live" && query->live) || (part == "pending" && query->pending) ||
                 (part == "ended" && query->ended);
    if (valid && part != "ended" && !rest.empty()) {  // empty: from the part's beginning
      const auto separator = rest.find(':');
      std::int64_t milliseconds = 0;
      // No separator: no number to read (rest.data() + npos would point before the text).
      const char* const number_end = rest.data() + std::min(separator, rest.size());
      const auto parsed = std::from_chars(rest.data(), number_end, milliseconds);
      valid = separator != std::string::npos && parsed.ec == std::errc{} &&
              parsed.ptr == number_end && is_grant_id(rest.substr(separator + 1));
      if (valid) {
        after = {core::TimePoint{core::Milliseconds{milliseconds}}, rest.substr(separator + 1)};
      }
    }
    if (!valid) {
      return error_response({ErrorCode::invalid_request,
                             "cursor: " + core::excerpt(query->cursor) +
                                 " is not one this listing gave (pass `next` as it came)"});
    }
    if (part == "ended") history_cursor = rest;
  }
  const auto shown = view_of(engine_, clock_);
  json grants = json::array();
  std::string next;
  const auto room = [&] { return !query->limit || grants.size() < *query->limit; };
  // One in-memory part (live or pending), after the cursor's grant, while the page has room.
  const auto take = [&](const char* name, const std::vector<core::Grant>& all,
                        core::TimePoint core::Grant::*key) {
    const core::Grant* last = nullptr;
    for (const auto& grant : all) {
      if (!matches(grant)) continue;
      if (after && std::tie(grant.*key, grant.id) <= std::tie(after->first, after->second)) {
        continue;
      }
      if (!room()) {
        // Nothing of this part shown yet: the next page starts where this one would have.
        next = std::string(name) + ":";
        if (last != nullptr) {
          next += std::to_string((last->*key).time_since_epoch().count()) + ":" + last->id;
        } else if (after) {
          next += std::to_string(after->first.time_since_epoch().count()) + ":" + after->second;
        }
        return;
      }
      grants.push_back(grant_json(grant, shown));
      last = &grant;
    }
    after.reset();
  };
  if (part == "live") {
    take("live", engine_.active_grants(), &core::Grant::start);
    part = query->pending ? "pending" : "ended";
  }
  if (next.empty() && part == "pending" && query->pending) {
    take("pending", engine_.pending_grants(), &core::Grant::requested);
    part = "ended";
  }
  if (next.empty() && part == "ended" && query->ended && room() && engine_.history() != nullptr) {
    core::HistoryQuery history_query;
    history_query.since = query->since;
    history_query.user = query->user;
    history_query.port = query->port;
    history_query.limit = query->limit ? *query->limit - grants.size() : default_history_page;
    history_query.cursor = history_cursor;
    auto page = engine_.history()->query(history_query);
    if (!page) return error_response(page.error());
    for (const auto& grant : page->grants) grants.push_back(grant_json(grant, shown));
    if (!page->next.empty()) next = "ended:" + page->next;
  } else if (next.empty() && part == "ended" && query->ended && engine_.history() != nullptr) {
    next = "ended:" + history_cursor;  // the page is full before the history began
  }
  json body{{"grants", std::move(grants)}};
  if (!next.empty()) body["next"] = next;
  return json_response(200, body);
}

Response Router::show_grant(const core::Caller& caller, std::string_view id) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read a grant")) {
    return *refused;
  }
  if (const auto invalid = grant_id_error(id)) return error_response(*invalid);
  auto found = engine_.find_grant(id);
  if (!found) return error_response(found.error());
  if (!*found) {
    return error_response(
        {ErrorCode::not_found, "grant " + std::string(id) +
                                   ": no such grant (live, pending, or ended within the history's "
                                   "retention)"});
  }
  return json_response(200, grant_json(**found, view_of(engine_, clock_)));
}

// A reply to requests that created grants: 201 when all are in force, 202 when one waits (for
// an approver or its start); one grant as itself, several as {"grants": [...]}. Each carries
// the rules of other firewalls that may still drop its ports.
std::vector<std::string> Router::warnings_for(const core::Grant& grant) const {
  if (!firewall_.warnings) return {};
  auto warnings = firewall_.warnings(grant.ports);
  for (const auto& warning : warnings) spdlog::warn("grant {}: {}", grant.id, warning);
  return warnings;
}

Response Router::created(const std::vector<core::Grant>& grants) const {
  const auto shown = view_of(engine_, clock_);
  json list = json::array();
  bool waiting = false;
  for (const auto& grant : grants) {
    auto body = grant_json(grant, shown);
    waiting |= grant.status == core::GrantStatus::pending;
    if (auto warnings = warnings_for(grant); !warnings.empty()) body["warnings"] = warnings;
    list.push_back(std::move(body));
  }
  const unsigned status = waiting ? 202 : 201;
  if (list.size() == 1) return json_response(status, list.front());
  return json_response(status, json{{"grants", std::move(list)}});
}

void Router::create_grants(const core::Caller& caller, std::string_view body,
                           std::function<void(Response)> respond) const {
  auto requests = parse_grant_requests(body);
  if (!requests) return respond(refuse(caller, "request", requests.error()));
  engine_.submit(caller, *requests,
                 [this, respond = std::move(respond)](core::Result<std::vector<core::Grant>> made) {
                   respond(made ? created(*made) : error_response(made.error()));
                 });
}

void Router::initiate(const core::Caller& caller, std::string_view body,
                      std::function<void(Response)> respond) const {
  auto initiate = parse_azure_initiate(body);
  if (!initiate) return respond(refuse(caller, "request", initiate.error()));
  if (!vm_names_host(initiate->vm_name, host_name_)) {
    return respond(refuse(
        caller, "request",
        {ErrorCode::not_found, "virtualMachines[0].id: names the VM '" +
                                   core::excerpt(initiate->vm_name) + "', and this host is '" +
                                   core::excerpt(host_name_) +
                                   "' (the name must equal the host name or its first label)"}));
  }
  auto requests = resolve_protocols(engine_.policy(), std::move(initiate->requests));
  if (!requests) return respond(refuse(caller, "request", requests.error()));
  engine_.submit(caller, *requests,
                 [this, vm_id = initiate->vm_id,
                  respond = std::move(respond)](core::Result<std::vector<core::Grant>> made) {
                   if (!made) return respond(error_response(made.error()));
                   auto body = azure_initiate_response(*made, vm_id);
                   // jitd's addition, like jitdGrantId: once for the whole initiate.
                   std::vector<std::string> warnings;
                   for (const auto& grant : *made) {
                     for (auto& warning : warnings_for(grant)) {
                       if (std::find(warnings.begin(), warnings.end(), warning) == warnings.end())
                         warnings.push_back(std::move(warning));
                     }
                   }
                   if (!warnings.empty()) body["warnings"] = warnings;
                   respond(json_response(202, body));
                 });
}

Response Router::act_on_grant(const core::Caller& caller, std::string_view id,
                              std::string_view action, std::string_view body) const {
  const auto event = std::string(action);
  if (const auto invalid = grant_id_error(id)) return refuse(caller, event, *invalid);
  const auto parsed = parse_without_duplicate_keys(body.empty() ? "{}" : body);
  if (!parsed) return refuse(caller, event, parsed.error());
  if (!parsed->is_object()) {
    return refuse(caller, event, {ErrorCode::invalid_request, "body: must be a JSON object"});
  }
  core::Result<core::Grant> outcome = core::fail(ErrorCode::invalid_request, "");
  if (action == "extend") {
    for (const auto& [key, value] : parsed->items()) {
      if (key != "duration" && key != "endTimeUtc") {
        return refuse(caller, event,
                      {ErrorCode::invalid_request,
                       core::excerpt(key) + ": unknown field; expected duration or endTimeUtc"});
      }
    }
    auto terms = terms::parse_terms(*parsed, "");
    if (!terms) return refuse(caller, event, terms.error());
    if (!terms->duration && !terms->end_time) {
      return refuse(caller, event,
                    {ErrorCode::invalid_request,
                     "duration: give how much longer (duration) or until when (endTimeUtc)"});
    }
    outcome = engine_.extend(caller, id, core::Extension{terms->duration, terms->end_time});
  } else {
    for (const auto& [key, value] : parsed->items()) {
      if (key != "justification") {
        return refuse(caller, event,
                      {ErrorCode::invalid_request,
                       core::excerpt(key) + ": unknown field; expected justification"});
      }
    }
    auto note = fields::justification(*parsed, "");
    if (!note) return refuse(caller, event, note.error());
    outcome =
        action == "approve" ? engine_.approve(caller, id, *note) : engine_.deny(caller, id, *note);
  }
  if (!outcome) return error_response(outcome.error());
  return json_response(200, grant_json(*outcome, view_of(engine_, clock_)));
}

Response Router::revoke_grant(const core::Caller& caller, std::string_view id) const {
  if (const auto invalid = grant_id_error(id)) return refuse(caller, "revoke", *invalid);
  auto grant = engine_.revoke(caller, id);
  if (!grant) return error_response(grant.error());
  return json_response(200, grant_json(*grant, view_of(engine_, clock_)));
}

Response Router::show_doctor(const core::Caller& caller) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read the firewall check")) {
    return *refused;
  }
  if (!firewall_.report) {
    return error_response(
        {ErrorCode::not_found, "this jitd cannot inspect other firewalls' rules"});
  }
  auto report = firewall_.report();
  if (!report) return error_response(report.error());
  return json_response(200, *report);
}

Response Router::show_recommendations(const core::Caller& caller) const {
  if (auto refused =
          refuse_without(caller, core::Right::read, "read", "read the recommendations")) {
    return *refused;
  }
  if (!listeners_) {
    return error_response({ErrorCode::not_found, "this jitd cannot list listening sockets"});
  }
  const auto listeners = listeners_();
  if (!listeners) return error_response(listeners.error());
  const auto found = core::recommend(engine_.policy(), *listeners);
  json unprotected = json::array();
  for (const auto& service : found.unprotected) {
    unprotected.push_back({{"port", service.port.port},
                           {"protocol", core::to_string(service.port.protocol)},
                           {"service", service.service},
                           {"addresses", service.addresses}});
  }
  json unused = json::array();
  for (const auto& rule : found.unused_protected) {
    unused.push_back({{"port", rule.port.number},
                      {"protocol", core::to_string(rule.port.protocol)},
                      {"service", rule.service},
                      {"addresses", rule.addresses},
                      {"origin", rule.origin.to_string()}});
  }
  return json_response(200, json{{"unprotected", std::move(unprotected)},
                                 {"unusedProtected", std::move(unused)},
                                 {"snippet", found.snippet}});
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

Response Router::read_audit(const core::Caller& caller, const QueryArguments& arguments) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read the audit log")) {
    return *refused;
  }
  if (audit_ == nullptr) return error_response({ErrorCode::not_found, "no audit log to read"});
  auto query = queries::parse_audit_query(arguments, clock_.now());
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
  const auto& policy = engine_.policy();
  if (!enforcement.counters)
    errors.push_back("kernel counters: " + enforcement.counters.error().message);
  const auto activity = activity_ ? activity_() : std::map<core::PortKey, PortActivity>{};
  json ports = json::array();
  for (const auto& port : policy.protected_ports()) {
    const auto* rule = policy.find_rule(port.port, port.protocol);
    json entry{{"number", port.port},
               {"protocol", core::to_string(port.protocol)},
               {"mode", core::to_string(policy.mode_of(*rule))},
               {"liveGrants", live_on(port)}};
    // null: the kernel could not be read (the error says why), not "none".
    core::PortCounters counted{port};
    if (activity_) {
      const auto found = activity.find(port);
      const auto seen = found != activity.end() ? found->second : PortActivity{};
      entry["approvedLast7Days"] = seen.approved_last_7_days;
      entry["lastAccessUtc"] =
          seen.last_access ? json(core::format_utc(*seen.last_access)) : json();
      entry["lastUser"] = seen.last_user.empty() ? json() : json(seen.last_user);
    }
    if (enforcement.counters) {
      const auto found = std::find_if(enforcement.counters->begin(), enforcement.counters->end(),
                                      [&](const core::PortCounters& c) { return c.port == port; });
      if (found != enforcement.counters->end()) counted = *found;
    }
    for (const auto& [name, value] :
         {std::pair{"droppedPackets", counted.dropped_packets},
          std::pair{"droppedConnections", counted.dropped_connections},
          std::pair{"admittedConnections", counted.admitted_connections},
          std::pair{"wouldDropPackets", counted.would_drop_packets}}) {
      entry[name] = enforcement.counters ? json(value) : json(nullptr);
    }
    ports.push_back(std::move(entry));
  }
  // The sources audit mode let through, most packets first, so an admin can allow-list them
  // before enforcing; bounded, with the count left out said.
  json would_block = json::array();
  std::size_t omitted = 0;
  if (enforcement.would_block) {
    auto sources = *enforcement.would_block;
    std::stable_sort(
        sources.begin(), sources.end(),
        [](const core::WouldBlock& a, const core::WouldBlock& b) { return a.packets > b.packets; });
    omitted = sources.size() - std::min(sources.size(), status_would_block_limit);
    sources.resize(sources.size() - omitted);
    for (const auto& source : sources) {
      would_block.push_back(
          {{"source", core::address_to_string(source.source.family, source.source.first)},
           {"port", source.port.port},
           {"protocol", core::to_string(source.port.protocol)},
           {"packets", source.packets}});
    }
  } else {
    errors.push_back("would-be-blocked sources: " + enforcement.would_block.error().message);
  }
  json features = json::object();
  for (const auto& [name, value] : enforcement.features) features[name] = value;
  const bool last_valid = policy_status_ != nullptr && policy_status_->last_valid_copy;
  json status{{"backend", enforcement.backend},
              {"enforcement",
               {{"where", enforcement.where},
                {"protection", enforcement.protection},
                {"kernelFeatures", std::move(features)}}},
              {"policySource", last_valid ? "lastValidCopy" : "files"},
              {"wouldBlock", std::move(would_block)},
              {"wouldBlockOmitted", omitted},
              {"liveGrants", grants.size()},
              {"ports", std::move(ports)},
              {"errors", std::move(errors)}};
  for (const auto& [name, section] : status_sections_) status[name] = section();
  return json_response(200, status);
}

Response Router::show_metrics(const core::Caller& caller) const {
  if (auto refused = refuse_without(caller, core::Right::read, "read", "read the metrics")) {
    return *refused;
  }
  return metrics_();
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
    entry["terminateSessionsOnEnd"] = rule.terminate_sessions_on_end;
    entry["approval"] = rule.approval_required ? "required" : "none";
    if (rule.approval_required) {
      entry["approvers"] = principals_json(rule.approvers);
      entry["approvalTimeout"] = core::format_duration(rule.approval_timeout);
    }
    entry["extendFrom"] = rule.extend_from == core::PortRule::ExtendFrom::now ? "now" : "start";
    entry["mode"] = core::to_string(policy.mode_of(rule));
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
