// jitctl: the admin's client. Talks to jitd over its Unix socket only.
#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <tl/expected.hpp>

#include "jitd/config/azure_import.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/text.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace {

using nlohmann::json;

constexpr const char* default_socket = "/run/jitd/jitd.sock";

// Why a command failed, and the exit status that tells scripts which kind of failure it was.
struct Failure {
  int exit_status;  // 1: the request was refused (by jitd or on the command line); 2: no usable
                    // reply
  std::string message;
};

template <class T>
using Outcome = tl::expected<T, Failure>;

tl::unexpected<Failure> refused(std::string message) {
  return tl::unexpected(Failure{1, std::move(message)});
}

tl::unexpected<Failure> unexpected_reply(long status, const std::string& problem) {
  return tl::unexpected(
      Failure{2, "unexpected reply from jitd (HTTP " + std::to_string(status) + "): " + problem});
}

// A value inside a reply and where it sits ("grants[0].requestor"; "" for the whole reply).
struct Node {
  const json& value;
  std::string path;
};

// Checked access to a reply's fields. jitd always sends every field jitctl reads, so a missing
// field or one of another type means the reply is not one this jitctl understands. The reader
// keeps the first such problem and then hands out empty values, so a printer reads on and the
// caller checks once, in result(). Text is handed out escaped (core::escaped), for a person
// reads it: a requester's justification must not forge a table row or send the admin's
// terminal an escape sequence.
class ReplyReader {
 public:
  explicit ReplyReader(long status) : status_(status) {}

  std::string text(const Node& object, const std::string& key) {
    const json* found = field(object, key, &json::is_string, "a string");
    return found ? jitd::core::escaped(found->get<std::string>()) : std::string();
  }

  long long integer(const Node& object, const std::string& key) {
    const json* found = field(object, key, &json::is_number_integer, "an integer");
    return found ? found->get<long long>() : 0;
  }

  Node object(const Node& object, const std::string& key) {
    static const json empty = json::object();
    const json* found = field(object, key, &json::is_object, "an object");
    return {found ? *found : empty, member_path(object.path, key)};
  }

  // The elements of an array field; their type is checked when they are read.
  std::vector<Node> elements(const Node& object, const std::string& key) {
    std::vector<Node> nodes;
    const json* found = field(object, key, &json::is_array, "an array");
    if (found == nullptr) return nodes;
    const std::string path = member_path(object.path, key);
    for (std::size_t i = 0; i < found->size(); ++i) {
      nodes.push_back({(*found)[i], path + "[" + std::to_string(i) + "]"});
    }
    return nodes;
  }

  std::vector<std::string> texts(const Node& object, const std::string& key) {
    std::vector<std::string> values;
    for (const Node& element : elements(object, key)) {
      if (!element.value.is_string()) {
        note(element.path + " is not a string");
        return {};
      }
      values.push_back(jitd::core::escaped(element.value.get<std::string>()));
    }
    return values;
  }

  template <class T>
  Outcome<T> result(T value) const {
    if (problem_) return unexpected_reply(status_, *problem_);
    return value;
  }

 private:
  static std::string member_path(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : parent + "." + key;
  }

  void note(std::string problem) {
    if (!problem_) problem_ = std::move(problem);
  }

  const json* field(const Node& object, const std::string& key,
                    bool (json::*has_kind)() const noexcept, const char* kind) {
    if (problem_) return nullptr;
    if (!object.value.is_object()) {
      note((object.path.empty() ? "reply" : object.path) + " is not an object");
      return nullptr;
    }
    const auto found = object.value.find(key);
    const std::string path = member_path(object.path, key);
    if (found == object.value.end()) {
      note(path + " missing");
      return nullptr;
    }
    if (!((*found).*has_kind)()) {
      note(path + " is not " + kind);
      return nullptr;
    }
    return &*found;
  }

  long status_;
  std::optional<std::string> problem_;
};

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

// One HTTP exchange over the Unix socket.
Outcome<Reply> call(const std::string& socket, const std::string& method, const std::string& path,
                    const std::string& body) {
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
    return tl::unexpected(
        Failure{2, "cannot reach jitd at " + socket + ": " + curl_easy_strerror(code)});
  }
  Reply reply;
  curl_easy_getinfo(handle.get(), CURLINFO_RESPONSE_CODE, &reply.status);
  reply.body = json::parse(received, nullptr, false);
  if (reply.body.is_discarded()) return unexpected_reply(reply.status, "body is not JSON");
  return reply;
}

// jitd's answer to a request: the body of a success, or its error as a Failure.
Outcome<json> request(const std::string& socket, const std::string& method, const std::string& path,
                      const std::string& body = {}) {
  auto reply = call(socket, method, path, body);
  if (!reply) return tl::unexpected(reply.error());
  if (reply->status >= 200 && reply->status < 300) return std::move(reply->body);
  ReplyReader read(reply->status);
  const Node error = read.object({reply->body, ""}, "error");
  const std::string message = read.text(error, "message");
  const std::string code = read.text(error, "code");
  const auto refusal = read.result(message + " (" + code + ")");
  if (!refusal) return tl::unexpected(refusal.error());
  return refused(*refusal);
}

std::string remaining_text(long long seconds) {
  std::ostringstream out;
  if (seconds >= 3600) out << seconds / 3600 << "h ";
  if (seconds >= 60) out << (seconds % 3600) / 60 << "m ";
  out << seconds % 60 << "s";
  return out.str();
}

std::string ports_text(ReplyReader& read, const Node& object, const std::string& key) {
  std::string text;
  for (const Node& port : read.elements(object, key)) {
    if (!text.empty()) text += ",";
    text += std::to_string(read.integer(port, "number")) + "/" + read.text(port, "protocol");
  }
  return text;
}

// Each printer reads a success body through a ReplyReader (200 or 201: only in messages).

Outcome<std::string> grants_table(const json& reply) {
  ReplyReader read(200);
  std::ostringstream out;
  out << std::left << std::setw(18) << "ID" << std::setw(26) << "SOURCE" << std::setw(16) << "PORTS"
      << std::setw(13) << "REMAINING" << std::setw(26) << "END (UTC)" << std::setw(12)
      << "REQUESTOR"
      << "REASON\n";
  for (const Node& grant : read.elements({reply, ""}, "grants")) {
    out << std::setw(18) << read.text(grant, "id") << std::setw(26)
        << read.text(grant, "allowedSourceAddressPrefix") << std::setw(16)
        << ports_text(read, grant, "ports") << std::setw(13)
        << remaining_text(read.integer(grant, "remainingSeconds")) << std::setw(26)
        << read.text(grant, "endTimeUtc") << std::setw(12)
        << read.text(read.object(grant, "requestor"), "name") << read.text(grant, "justification")
        << "\n";
  }
  return read.result(out.str());
}

Outcome<std::string> granted_text(const json& reply) {
  ReplyReader read(201);
  const Node grant{reply, ""};
  std::ostringstream out;
  out << "granted " << read.text(grant, "id") << ": "
      << read.text(grant, "allowedSourceAddressPrefix") << " → " << ports_text(read, grant, "ports")
      << " until " << read.text(grant, "endTimeUtc") << " ("
      << remaining_text(read.integer(grant, "remainingSeconds")) << ")\n";
  return read.result(out.str());
}

Outcome<std::string> revoked_text(const json& reply) {
  ReplyReader read(200);
  const std::string id = read.text({reply, ""}, "id");
  return read.result("revoked " + id + "\n");
}

// Said first and loudly: the files on disk are not what jitd enforces.
std::string policy_warning(ReplyReader& read, const Node& source) {
  std::ostringstream out;
  const auto errors = read.texts(source, "errors");
  if (read.text(source, "kind") == "lastValidCopy") {
    out << "WARNING: the policy files are invalid; jitd enforces its last valid copy, saved "
        << read.text(source, "savedUtc") << ". Fix them and jitd takes them at once:\n";
  } else if (!errors.empty()) {
    out << "WARNING: the policy files were changed and are invalid; the previous policy stays in "
           "force:\n";
  }
  for (const auto& error : errors) out << "  " << error << "\n";
  return out.str();
}

Outcome<std::string> policy_table(const json& reply) {
  ReplyReader read(200);
  const Node policy{reply, ""};
  std::ostringstream out;
  if (reply.contains("source")) out << policy_warning(read, read.object(policy, "source"));
  out << std::left << std::setw(8) << "PORT" << std::setw(10) << "PROTOCOL" << std::setw(12)
      << "MAX"
      << "ALLOWED SOURCES\n";
  for (const Node& rule : read.elements(policy, "ports")) {
    out << std::setw(8) << read.integer(rule, "number") << std::setw(10)
        << read.text(rule, "protocol") << std::setw(12)
        << read.text(rule, "maxRequestAccessDuration")
        << jitd::core::join(read.texts(rule, "allowedSourceAddressPrefixes")) << "\n";
  }
  for (const Node& entry : read.elements(policy, "permanentAllowList")) {
    const std::string sources = jitd::core::join(read.texts(entry, "sourceAddressPrefixes"));
    const std::string ports = ports_text(read, entry, "ports");
    const std::string description = read.text(entry, "description");
    out << "always allowed: " << sources << " → " << (ports.empty() ? "all protected ports" : ports)
        << (description.empty() ? "" : "  (" + description + ")") << "\n";
  }
  return read.result(out.str());
}

Outcome<std::string> status_text(const json& reply) {
  ReplyReader read(200);
  const Node status{reply, ""};
  std::ostringstream out;
  if (read.text(status, "policySource") == "lastValidCopy") {
    out << "WARNING: the policy files are invalid; jitd enforces its last valid copy "
           "(jitctl policy says why)\n";
  }
  const Node enforcement = read.object(status, "enforcement");
  out << "backend:     " << read.text(status, "backend") << ", " << read.text(enforcement, "where")
      << "\nprotection:  " << read.text(enforcement, "protection") << "\n";
  const Node features = read.object(enforcement, "kernelFeatures");
  if (features.value.is_object()) {
    for (const auto& [name, value] : features.value.items()) {
      out << "  " << jitd::core::escaped(name) << ": "
          << jitd::core::escaped(value.is_string() ? value.get<std::string>() : value.dump())
          << "\n";
    }
  }
  out << "live grants: " << read.integer(status, "liveGrants") << "\n\n"
      << std::left << std::setw(8) << "PORT" << std::setw(10) << "PROTOCOL" << std::setw(13)
      << "LIVE GRANTS"
      << "DROPPED PACKETS\n";
  for (const Node& port : read.elements(status, "ports")) {
    const bool counted =
        port.value.contains("droppedPackets") && !port.value.at("droppedPackets").is_null();
    out << std::setw(8) << read.integer(port, "number") << std::setw(10)
        << read.text(port, "protocol") << std::setw(13) << read.integer(port, "liveGrants")
        << (counted ? std::to_string(read.integer(port, "droppedPackets")) : "unknown") << "\n";
  }
  for (const auto& error : read.texts(status, "errors")) out << "error: " << error << "\n";
  return read.result(out.str());
}

// What a command prints: jitd's JSON as it came, or the printer's text.
Outcome<std::string> shown(Outcome<json> reply, bool as_json,
                           Outcome<std::string> (*printer)(const json&)) {
  return reply.and_then([&](const json& body) -> Outcome<std::string> {
    if (as_json) return body.dump(2) + "\n";
    return printer(body);
  });
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

// A list response of a large subscription runs to megabytes; more is not a policy file.
constexpr std::size_t max_azure_file_bytes = 16 << 20;

// jitctl import-azure: Azure's policy JSON (FILE, or "-" for stdin) as a jitd policy file. No
// socket: it only converts, so it runs anywhere. Warnings go to stderr, the file to `out` (a
// crash leaves the old file or the new one) or stdout.
Outcome<std::string> import_azure(const std::string& file, const std::string& vm_name,
                                  const std::string& out) {
  jitd::sys::UniqueFd fd(file == "-" ? ::dup(STDIN_FILENO)
                                     : ::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return refused(file + ": cannot open: " + std::strerror(errno));
  auto text = jitd::sys::read_all(fd.get(), file, max_azure_file_bytes);
  if (!text) return refused(text.error().message);
  auto imported = jitd::config::import_azure_policy(*text, vm_name);
  if (!imported) return refused(file + ": " + imported.error().message);
  for (const auto& warning : imported->warnings) {
    std::cerr << "jitctl: warning: " << jitd::core::escaped(warning) << "\n";
  }
  if (out.empty()) return imported->yaml;
  auto written = jitd::sys::replace_synced(out, imported->yaml);
  if (!written) return refused(out + ": " + written.error().message);
  if (auto synced = jitd::sys::sync_directory_of(out); !synced) {
    return refused(out + ": " + synced.error().message);
  }
  return std::string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jitctl: ask jitd for just-in-time access to a management port"};
  app.set_version_flag("--version", "jitctl " JITD_VERSION);
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
  auto* end_option =
      grant->add_option("--end-time", end_time, "UTC end, e.g. 2026-11-24T18:00:00Z");
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
  auto* status = app.add_subcommand(
      "status", "show the backend, live grants and dropped packets per protected port");
  status->add_flag("--json", as_json, "print JSON");

  auto* import = app.add_subcommand(
      "import-azure",
      "convert an Azure jitNetworkAccessPolicies JSON (GET, PUT, list or PowerShell shape) into "
      "a jitd policy file; needs no jitd");
  std::string import_file;
  std::string import_vm;
  std::string import_out;
  import->add_option("file", import_file, "the Azure JSON; - for stdin")->required();
  import->add_option("--vm", import_vm, "the virtual machine to import when the file has several");
  import->add_option("-o,--output", import_out,
                     "write the policy file here (replaced atomically) instead of stdout");

  CLI11_PARSE(app, argc, argv);

  // A conversion of local files: no socket, no curl.
  if (import->parsed()) {
    const auto output = import_azure(import_file, import_vm, import_out);
    if (!output) {
      std::cerr << "jitctl: " << jitd::core::escaped(output.error().message) << "\n";
      return output.error().exit_status;
    }
    std::cout << *output;
    return 0;
  }

  const auto run_grant = [&]() -> Outcome<std::string> {
    if (duration.empty() == end_time.empty()) return refused("give --duration or --end-time");
    json body = {{"ports", json::array()},
                 {"allowedSourceAddressPrefix", source},
                 {"justification", reason}};
    try {
      for (const auto& port : ports) body["ports"].push_back(port_argument(port));
    } catch (const CLI::ValidationError& error) {
      return refused(error.what());
    }
    if (!duration.empty()) body["duration"] = duration;
    if (!end_time.empty()) body["endTimeUtc"] = end_time;
    // A justification typed on a Latin-1 terminal is not UTF-8: send U+FFFD, never abort.
    const auto text = body.dump(-1, ' ', false, json::error_handler_t::replace);
    return shown(request(socket, "POST", "/v1/grants", text), as_json, granted_text);
  };

  curl_global_init(CURL_GLOBAL_DEFAULT);
  Outcome<std::string> output;
  if (grant->parsed()) {
    output = run_grant();
  } else if (list->parsed()) {
    output = shown(request(socket, "GET", "/v1/grants"), as_json, grants_table);
  } else if (revoke->parsed()) {
    output = shown(request(socket, "DELETE", "/v1/grants/" + revoke_id), as_json, revoked_text);
  } else if (policy->parsed()) {
    output = shown(request(socket, "GET", "/v1/policy"), as_json, policy_table);
  } else if (status->parsed()) {
    output = shown(request(socket, "GET", "/v1/status"), as_json, status_text);
  }
  curl_global_cleanup();
  if (!output) {
    std::cerr << "jitctl: " << output.error().message << "\n";
    return output.error().exit_status;
  }
  std::cout << *output;
  return 0;
}
