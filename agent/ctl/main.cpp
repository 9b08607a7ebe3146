// jitctl: the admin's client. Talks to jitd over its Unix socket only.
#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "jitd/core/policy.hpp"

namespace {

using nlohmann::json;

constexpr const char* default_socket = "/run/jitd/jitd.sock";

struct Reply {
  long status = 0;
  json body;
};

struct CurlDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

size_t collect(char* data, size_t size, size_t count, void* target) {
  static_cast<std::string*>(target)->append(data, size * count);
  return size * count;
}

// One HTTP exchange over the Unix socket; exits with a message when jitd cannot be reached.
Reply call(const std::string& socket, const std::string& method, const std::string& path,
           const std::string& body = {}) {
  std::unique_ptr<CURL, CurlDeleter> handle(curl_easy_init());
  std::unique_ptr<curl_slist, CurlDeleter> headers(
      curl_slist_append(nullptr, "Content-Type: application/json"));
  std::string received;
  const std::string url = "http://localhost" + path;
  curl_easy_setopt(handle.get(), CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(handle.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(handle.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(handle.get(), CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(handle.get(), CURLOPT_WRITEDATA, &received);
  curl_easy_setopt(handle.get(), CURLOPT_TIMEOUT, 30L);
  if (!body.empty()) {
    curl_easy_setopt(handle.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(handle.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  if (const auto code = curl_easy_perform(handle.get()); code != CURLE_OK) {
    std::cerr << "jitctl: cannot reach jitd at " << socket << ": " << curl_easy_strerror(code)
              << "\n";
    std::exit(2);
  }
  Reply reply;
  curl_easy_getinfo(handle.get(), CURLINFO_RESPONSE_CODE, &reply.status);
  reply.body = json::parse(received, nullptr, false);
  if (reply.body.is_discarded()) {
    std::cerr << "jitctl: jitd answered " << reply.status << " with a body that is not JSON\n";
    std::exit(2);
  }
  return reply;
}

// Prints the server's error and exits non-zero; returns the body otherwise.
json checked(Reply reply) {
  if (reply.status >= 200 && reply.status < 300) return std::move(reply.body);
  const auto& error = reply.body.value("error", json::object());
  std::cerr << "jitctl: " << error.value("message", "request failed") << " ("
            << error.value("code", "HTTP " + std::to_string(reply.status)) << ")\n";
  std::exit(1);
}

std::string remaining_text(long long seconds) {
  std::ostringstream out;
  if (seconds >= 3600) out << seconds / 3600 << "h ";
  if (seconds >= 60) out << (seconds % 3600) / 60 << "m ";
  out << seconds % 60 << "s";
  return out.str();
}

std::string ports_text(const json& ports) {
  std::string text;
  for (const auto& port : ports) {
    if (!text.empty()) text += ",";
    text += std::to_string(port.value("number", 0)) + "/" + port.value("protocol", "?");
  }
  return text;
}

void print_grants(const std::vector<json>& grants) {
  std::cout << std::left << std::setw(18) << "ID" << std::setw(26) << "SOURCE" << std::setw(16)
            << "PORTS" << std::setw(13) << "REMAINING" << std::setw(26) << "END (UTC)"
            << std::setw(12) << "REQUESTOR" << "REASON\n";
  for (const auto& grant : grants) {
    std::cout << std::setw(18) << grant.value("id", "") << std::setw(26)
              << grant.value("allowedSourceAddressPrefix", "") << std::setw(16)
              << ports_text(grant.value("ports", json::array())) << std::setw(13)
              << remaining_text(grant.value("remainingSeconds", 0LL)) << std::setw(26)
              << grant.value("endTimeUtc", "") << std::setw(12)
              << grant["requestor"].value("name", "") << grant.value("justification", "") << "\n";
  }
}

// "22", "22/tcp", "3389/udp", "53/*" → {"number": …, "protocol": …}
json port_argument(const std::string& text) {
  const auto slash = text.find('/');
  const auto number_text = text.substr(0, slash);
  const auto protocol = slash == std::string::npos ? std::string("tcp") : text.substr(slash + 1);
  char* end = nullptr;
  const long number = std::strtol(number_text.c_str(), &end, 10);
  if (number_text.empty() || *end != '\0' || number < 1 || number > 65535 ||
      !jitd::core::parse_protocol(protocol)) {
    throw CLI::ValidationError("--port", "'" + text + "' is not PORT or PORT/tcp|udp|*");
  }
  return {{"number", number}, {"protocol", protocol}};
}

// Inside an SSH session the client's address is the natural source ("My IP").
std::string ssh_client_address() {
  const char* connection = std::getenv("SSH_CONNECTION");
  if (connection == nullptr) return {};
  std::istringstream fields(connection);
  std::string address;
  fields >> address;
  return address;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jitctl: ask jitd for just-in-time access to a management port"};
  app.require_subcommand(1);
  std::string socket = default_socket;
  bool as_json = false;
  app.add_option("-s,--socket", socket, "jitd's Unix socket")->capture_default_str();
  app.add_flag("--json", as_json, "print jitd's JSON instead of a table");

  auto* grant = app.add_subcommand("grant", "open ports for a source, for a limited time");
  std::vector<std::string> ports;
  std::string source = ssh_client_address();
  std::string duration;
  std::string end_time;
  std::string reason;
  grant->add_option("-p,--port", ports, "PORT[/tcp|udp|*], repeatable")->required();
  auto* source_option = grant->add_option("--source", source, "address or CIDR to admit");
  if (source.empty()) {
    source_option->required();
  } else {
    source_option->description("address or CIDR to admit (default: this SSH session's client, " +
                               source + ")");
  }
  auto* duration_option = grant->add_option("-d,--duration", duration, "30m, 2h, PT30M, ...");
  auto* end_option = grant->add_option("--end-time", end_time, "UTC end, e.g. 2026-11-24T18:00:00Z");
  duration_option->excludes(end_option);
  grant->add_option("-r,--reason", reason, "justification, recorded in the audit log");
  grant->add_flag("--json", as_json, "print JSON");

  auto* list = app.add_subcommand("list", "show active grants");
  list->add_flag("--json", as_json, "print JSON");
  auto* revoke = app.add_subcommand("revoke", "end a grant now");
  std::string revoke_id;
  revoke->add_option("id", revoke_id, "grant id")->required();
  revoke->add_flag("--json", as_json, "print JSON");
  auto* policy = app.add_subcommand("policy", "show the effective policy");
  policy->add_flag("--json", as_json, "print JSON");

  CLI11_PARSE(app, argc, argv);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  if (grant->parsed()) {
    if (duration.empty() == end_time.empty()) {
      std::cerr << "jitctl: give --duration or --end-time\n";
      return 1;
    }
    json body = {{"ports", json::array()}, {"allowedSourceAddressPrefix", source},
                 {"justification", reason}};
    try {
      for (const auto& port : ports) body["ports"].push_back(port_argument(port));
    } catch (const CLI::ValidationError& error) {
      std::cerr << "jitctl: " << error.what() << "\n";
      return 1;
    }
    if (!duration.empty()) body["duration"] = duration;
    if (!end_time.empty()) body["endTimeUtc"] = end_time;
    const auto created = checked(call(socket, "POST", "/v1/grants", body.dump()));
    if (as_json) {
      std::cout << created.dump(2) << "\n";
    } else {
      std::cout << "granted " << created.value("id", "") << ": "
                << created.value("allowedSourceAddressPrefix", "") << " → "
                << ports_text(created["ports"]) << " until " << created.value("endTimeUtc", "")
                << " (" << remaining_text(created.value("remainingSeconds", 0LL)) << ")\n";
    }
  } else if (list->parsed()) {
    const auto listed = checked(call(socket, "GET", "/v1/grants"));
    if (as_json) {
      std::cout << listed.dump(2) << "\n";
    } else {
      print_grants(listed.value("grants", std::vector<json>{}));
    }
  } else if (revoke->parsed()) {
    const auto revoked = checked(call(socket, "DELETE", "/v1/grants/" + revoke_id));
    if (as_json) {
      std::cout << revoked.dump(2) << "\n";
    } else {
      std::cout << "revoked " << revoked.value("id", "") << "\n";
    }
  } else if (policy->parsed()) {
    const auto shown = checked(call(socket, "GET", "/v1/policy"));
    if (as_json) {
      std::cout << shown.dump(2) << "\n";
    } else {
      std::cout << std::left << std::setw(8) << "PORT" << std::setw(10) << "PROTOCOL"
                << std::setw(12) << "MAX" << "ALLOWED SOURCES\n";
      for (const auto& rule : shown.value("ports", json::array())) {
        std::string sources;
        for (const auto& prefix : rule["allowedSourceAddressPrefixes"]) {
          sources += (sources.empty() ? "" : ", ") + prefix.get<std::string>();
        }
        std::cout << std::setw(8) << rule.value("number", 0) << std::setw(10)
                  << rule.value("protocol", "") << std::setw(12)
                  << rule.value("maxRequestAccessDuration", "") << sources << "\n";
      }
      for (const auto& entry : shown.value("permanentAllowList", json::array())) {
        std::string sources;
        for (const auto& prefix : entry["sourceAddressPrefixes"]) {
          sources += (sources.empty() ? "" : ", ") + prefix.get<std::string>();
        }
        const auto& entry_ports = entry.value("ports", json::array());
        std::cout << "always allowed: " << sources << " → "
                  << (entry_ports.empty() ? "all protected ports" : ports_text(entry_ports))
                  << (entry.value("description", "").empty() ? "" : "  (" + entry.value("description", "") + ")")
                  << "\n";
      }
    }
  }
  curl_global_cleanup();
  return 0;
}
