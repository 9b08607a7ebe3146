// jitctl: the admin's client. Talks to jitd over its Unix socket only.
#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <tl/expected.hpp>

#include "audit_format.hpp"
#include "jitd/config/azure_import.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/duration.hpp"
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

  // A text of several lines (a YAML snippet to paste): each line escaped on its own, so the
  // line breaks stay and nothing else of the sender's reaches the terminal unescaped.
  std::vector<std::string> lines(const Node& object, const std::string& key) {
    const json* found = field(object, key, &json::is_string, "a string");
    std::vector<std::string> result;
    if (found == nullptr) return result;
    std::string_view rest = found->get_ref<const std::string&>();
    for (;;) {
      const auto end = rest.find('\n');
      result.push_back(jitd::core::escaped(rest.substr(0, end)));
      if (end == std::string_view::npos) return result;
      rest.remove_prefix(end + 1);
    }
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

  bool boolean(const Node& object, const std::string& key) {
    const json* found = field(object, key, &json::is_boolean, "a boolean");
    return found ? found->get<bool>() : false;
  }

  // An integer or a string, as text: nft names some priorities ("filter + 10") and numbers others.
  std::string label(const Node& object, const std::string& key) {
    const json* found = field(object, key, &json::is_primitive, "an integer or a string");
    if (found == nullptr) return {};
    if (found->is_number_integer()) return std::to_string(found->get<long long>());
    if (found->is_string()) return jitd::core::escaped(found->get<std::string>());
    note(member_path(object.path, key) + " is not an integer or a string");
    return {};
  }

  // A value jitd hands out only to get it back (a page cursor): sent as it came, never printed,
  // so it is not escaped.
  std::string token(const Node& object, const std::string& key) {
    const json* found = field(object, key, &json::is_string, "a string");
    return found ? found->get<std::string>() : std::string();
  }

  // Whether an optional field is there. null counts as absent: "nobody ended it" either way.
  static bool has(const Node& object, const std::string& key) {
    return object.value.is_object() && object.value.contains(key) &&
           !object.value.at(key).is_null();
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

// jitd's answer to a request: a success (its status and body), or its error as a Failure.
Outcome<Reply> exchange(const std::string& socket, const std::string& method,
                        const std::string& path, const std::string& body = {}) {
  auto reply = call(socket, method, path, body);
  if (!reply) return tl::unexpected(reply.error());
  if (reply->status >= 200 && reply->status < 300) return reply;
  ReplyReader read(reply->status);
  const Node error = read.object({reply->body, ""}, "error");
  const std::string message = read.text(error, "message");
  const std::string code = read.text(error, "code");
  const auto refusal = read.result(message + " (" + code + ")");
  if (!refusal) return tl::unexpected(refusal.error());
  return refused(*refusal);
}

// The body of a success, for printers that need not say which 2xx it was.
Outcome<json> request(const std::string& socket, const std::string& method, const std::string& path,
                      const std::string& body = {}) {
  return exchange(socket, method, path, body).map([](Reply reply) {
    return std::move(reply.body);
  });
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

// `with_status`: the list holds more than active grants, so each row says where its grant stands.
Outcome<std::string> grants_table(const json& reply, bool with_status) {
  ReplyReader read(200);
  std::ostringstream out;
  out << std::left << std::setw(18) << "ID";
  if (with_status) out << std::setw(11) << "STATUS" << std::setw(23) << "STATUS REASON";
  out << std::setw(26) << "SOURCE" << std::setw(16) << "PORTS" << std::setw(13) << "REMAINING"
      << std::setw(26) << "END (UTC)" << std::setw(12) << "REQUESTOR"
      << "REASON\n";
  for (const Node& grant : read.elements({reply, ""}, "grants")) {
    out << std::setw(18) << read.text(grant, "id");
    if (with_status) {
      out << std::setw(11) << read.text(grant, "status") << std::setw(23)
          << read.text(grant, "statusReason");
    }
    out << std::setw(26) << read.text(grant, "allowedSourceAddressPrefix") << std::setw(16)
        << ports_text(read, grant, "ports") << std::setw(13)
        << remaining_text(read.integer(grant, "remainingSeconds")) << std::setw(26)
        << read.text(grant, "endTimeUtc") << std::setw(12)
        << read.text(read.object(grant, "requestor"), "name") << read.text(grant, "justification")
        << "\n";
  }
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

// Azure's "Configured" view: per port, grants approved in the last 7 days, the last access and
// the last user. Left out when jitd does not report it (no metrics).
std::string port_activity_text(ReplyReader& read, const std::vector<Node>& ports) {
  if (ports.empty() || !ports.front().value.contains("approvedLast7Days")) return {};
  std::ostringstream out;
  out << "\n"
      << std::left << std::setw(8) << "PORT" << std::setw(10) << "PROTOCOL" << std::setw(15)
      << "APPROVED (7D)" << std::setw(26) << "LAST ACCESS (UTC)"
      << "LAST USER\n";
  for (const Node& port : ports) {
    out << std::setw(8) << read.integer(port, "number") << std::setw(10)
        << read.text(port, "protocol") << std::setw(15) << read.integer(port, "approvedLast7Days")
        << std::setw(26)
        << (ReplyReader::has(port, "lastAccessUtc") ? read.text(port, "lastAccessUtc") : "-")
        << (ReplyReader::has(port, "lastUser") ? read.text(port, "lastUser") : "-") << "\n";
  }
  return out.str();
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
      << std::left << std::setw(8) << "PORT" << std::setw(10) << "PROTOCOL" << std::setw(9)
      << "MODE" << std::setw(13) << "LIVE GRANTS" << std::setw(17) << "DROPPED PACKETS"
      << std::setw(17) << "DROPPED CONNS" << std::setw(15) << "ADMITTED CONNS"
      << "WOULD DROP\n";
  // null: the kernel's counters could not be read (an error line says why).
  const auto counter = [&read](const Node& port, const char* key) {
    if (port.value.contains(key) && port.value.at(key).is_null()) return std::string("unknown");
    return std::to_string(read.integer(port, key));
  };
  bool audited = false;
  for (const Node& port : read.elements(status, "ports")) {
    const auto mode = read.text(port, "mode");
    audited = audited || mode == "audit";
    out << std::setw(8) << read.integer(port, "number") << std::setw(10)
        << read.text(port, "protocol") << std::setw(9) << mode << std::setw(13)
        << read.integer(port, "liveGrants") << std::setw(17) << counter(port, "droppedPackets")
        << std::setw(17) << counter(port, "droppedConnections") << std::setw(15)
        << counter(port, "admittedConnections") << counter(port, "wouldDropPackets") << "\n";
  }
  const auto sources = read.elements(status, "wouldBlock");
  const auto omitted = read.integer(status, "wouldBlockOmitted");
  if (audited || !sources.empty()) {
    out << "\nwould have been blocked (mode: audit lets them through; allow-list those that "
           "must pass before enforcing):\n";
    if (sources.empty()) out << "  none seen\n";
  }
  if (!sources.empty()) {
    out << std::setw(42) << "  SOURCE" << std::setw(8) << "PORT" << std::setw(10) << "PROTOCOL"
        << "PACKETS\n";
    for (const Node& source : sources) {
      out << "  " << std::setw(40) << read.text(source, "source") << std::setw(8)
          << read.integer(source, "port") << std::setw(10) << read.text(source, "protocol")
          << read.integer(source, "packets") << "\n";
    }
  }
  if (omitted > 0) out << "  ... and " << omitted << " more with fewer packets\n";
  // Only where jitd.yaml configures webhooks.
  if (ReplyReader::has(status, "webhooks")) {
    for (const Node& webhook : read.elements(status, "webhooks")) {
      out << "webhook " << read.text(webhook, "url") << ": " << read.integer(webhook, "delivered")
          << " delivered, " << read.integer(webhook, "givenUp") << " given up, "
          << read.integer(webhook, "dropped") << " dropped, " << read.integer(webhook, "queued")
          << " queued";
      if (ReplyReader::has(webhook, "lastError")) {
        out << "; last error " << read.text(webhook, "lastErrorTime") << ": "
            << read.text(webhook, "lastError");
      }
      out << "\n";
    }
  }
  out << port_activity_text(read, read.elements(status, "ports"));
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

// What a command prints when it succeeds. Most print one text; some also warn on stderr, and
// doctor's exit status says whether it found conflicts.
struct Printed {
  // Implicit: every printer's text is a Printed, so all commands share one way out of main.
  Printed(std::string text = {}) : out(std::move(text)) {}  // NOLINT(google-explicit-constructor)
  // stdout
  std::string out;
  // stderr, written first: warnings and notes
  std::string err;
  int exit_status = 0;
};

// What a command prints: jitd's JSON as it came, or the printer's reading of the reply.
template <class Printer>
Outcome<Printed> presented(Outcome<Reply> reply, bool as_json, Printer printer) {
  return reply.and_then([&](const Reply& got) -> Outcome<Printed> {
    if (as_json) return Printed(got.body.dump(2) + "\n");
    return printer(got);
  });
}

// A request body as jitd reads it. Text typed on a Latin-1 terminal is not UTF-8: it is sent
// with U+FFFD, never an abort.
std::string body_text(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

// A path segment or query value: unreserved characters as they are, every other byte as %XX,
// so an id or a user name can neither leave its path segment nor add a parameter.
std::string url_encoded(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string encoded;
  for (const unsigned char c : text) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      encoded += static_cast<char>(c);
    } else {
      encoded += '%';
      encoded += hex[c >> 4];
      encoded += hex[c & 15];
    }
  }
  return encoded;
}

std::string grant_path(const std::string& id) { return "/v1/grants/" + url_encoded(id); }

// ISO 8601 as jitd's documents write it: whole days as days ("7d" is P7D, not PT168H).
std::string iso_duration(jitd::core::Milliseconds length) {
  const auto days = length / std::chrono::hours(24);
  const auto rest = length % std::chrono::hours(24);
  if (days == 0) return jitd::core::format_duration(length);
  std::string text = "P" + std::to_string(days) + "D";
  // "PT12H" → "T12H"
  if (rest.count() != 0) text += jitd::core::format_duration(rest).substr(1);
  return text;
}

// A duration option's value in ISO 8601. Checked here, so a typo is refused before jitd is
// asked anything.
Outcome<std::string> duration_argument(const std::string& option, const std::string& text) {
  const auto length = jitd::core::parse_duration(text);
  if (!length) return refused(option + ": " + jitd::core::escaped(length.error().message));
  return iso_duration(*length);
}

// A time option's value: an RFC 3339 UTC time, sent as typed, or "+10m" / "in 10m" from now,
// sent as the UTC time it names.
Outcome<std::string> time_argument(const std::string& option, const std::string& text) {
  std::string_view relative = text;
  if (relative.starts_with('+')) {
    relative.remove_prefix(1);
  } else if (relative.starts_with("in ")) {
    relative.remove_prefix(3);
    while (relative.starts_with(' ')) relative.remove_prefix(1);
  } else if (jitd::core::parse_utc(text)) {
    return text;
  } else {
    return refused(option + ": '" + jitd::core::escaped(text) +
                   "' is not a UTC time (2026-11-24T18:00:00Z) or a time from now (+10m, 'in 2h')");
  }
  const auto length = jitd::core::parse_duration(relative);
  if (!length) return refused(option + ": " + jitd::core::escaped(length.error().message));
  const auto now =
      std::chrono::time_point_cast<jitd::core::Milliseconds>(std::chrono::system_clock::now());
  return jitd::core::format_utc(now + *length);
}

// --since (--until): a UTC time as typed, or how far back from now, in ISO 8601 (7d → P7D).
Outcome<std::string> since_argument(const std::string& text,
                                    const std::string& option = "--since") {
  if (jitd::core::parse_utc(text)) return text;
  if (jitd::core::parse_duration(text)) return duration_argument(option, text);
  return refused(option + ": '" + jitd::core::escaped(text) +
                 "' is neither a UTC time (2026-11-24T00:00:00Z) nor a time back from now (7d, "
                 "12h, 30m, P7D)");
}

std::string person_text(ReplyReader& read, const Node& person) {
  const std::string name = read.text(person, "name");
  return name + " (uid " + std::to_string(read.integer(person, "uid")) + ")";
}

// "Revoked (Expired)": a grant's or a port's status and why.
std::string state_text(ReplyReader& read, const Node& object) {
  const std::string status = read.text(object, "status");
  return status + " (" + read.text(object, "statusReason") + ")";
}

// One line on where a grant stands, after `verb` (extended, approved, denied; empty: the
// grant's state names itself). A pending grant says what it waits for, so the requester knows
// whom to ask or when the port opens.
std::string grant_line(ReplyReader& read, const Node& grant, std::string verb) {
  const std::string status = read.text(grant, "status");
  const std::string reason = read.text(grant, "statusReason");
  if (verb.empty()) {
    verb = status == "Initiated" ? "granted"
           : status == "Pending" ? "pending"
           : status == "Revoked" ? "ended"
                                 : status;
  }
  std::ostringstream out;
  out << verb << " " << read.text(grant, "id") << ": "
      << read.text(grant, "allowedSourceAddressPrefix") << " → "
      << ports_text(read, grant, "ports");
  const std::string end = read.text(grant, "endTimeUtc");
  if (status == "Pending" && reason == "AwaitingApproval") {
    const Node approval = read.object(grant, "approval");
    out << "; waits for approval by " << read.text(approval, "approvers");
    if (ReplyReader::has(approval, "expiresTimeUtc")) {
      out << " (the request lapses " << read.text(approval, "expiresTimeUtc") << ")";
    }
  } else if (status == "Pending") {
    out << "; waits for its start, " << read.text(grant, "startTimeUtc") << ", then open until "
        << end;
  } else if (status == "Revoked") {
    const bool ended = ReplyReader::has(grant, "endedTimeUtc");
    out << "; ended " << (ended ? read.text(grant, "endedTimeUtc") : end) << " (" << reason << ")";
  } else {
    out << " until " << end << " (" << remaining_text(read.integer(grant, "remainingSeconds"))
        << ")";
    if (status != "Initiated") out << " [" << status << ", " << reason << "]";
  }
  return out.str() + "\n";
}

// A grant's warnings, for stderr: what jitd did that its caller may not expect.
std::string warnings_text(ReplyReader& read, const Node& grant) {
  if (!ReplyReader::has(grant, "warnings")) return {};
  std::string text;
  for (const auto& warning : read.texts(grant, "warnings")) text += "warning: " + warning + "\n";
  return text;
}

// A reply that is one grant, or several when jitd split a request ({"grants": [...]}): a line
// for each, and their warnings on stderr.
Outcome<Printed> grants_changed(const Reply& reply, const std::string& verb) {
  ReplyReader read(reply.status);
  const Node root{reply.body, ""};
  std::vector<Node> grants;
  if (reply.body.is_object() && reply.body.contains("grants")) {
    grants = read.elements(root, "grants");
  } else {
    grants.push_back(root);
  }
  Printed printed;
  for (const Node& grant : grants) {
    printed.out += grant_line(read, grant, verb);
    printed.err += warnings_text(read, grant);
  }
  return read.result(printed);
}

// Every field of one grant, one "key: value" a line; its ports each on a line of their own.
Outcome<Printed> grant_sheet(const Reply& reply) {
  ReplyReader read(reply.status);
  const Node grant{reply.body, ""};
  std::ostringstream out;
  const auto row = [&out](const std::string& key, const std::string& value) {
    out << std::left << std::setw(16) << key + ":" << value << "\n";
  };
  row("id", read.text(grant, "id"));
  row("status", state_text(read, grant));
  row("requestor", person_text(read, read.object(grant, "requestor")));
  row("source", read.text(grant, "allowedSourceAddressPrefix"));
  out << "ports:\n";
  for (const Node& port : read.elements(grant, "ports")) {
    const std::string name =
        std::to_string(read.integer(port, "number")) + "/" + read.text(port, "protocol");
    out << "  " << std::setw(10) << name << std::setw(36) << state_text(read, port) << "from "
        << read.text(port, "allowedSourceAddressPrefix") << " until "
        << read.text(port, "endTimeUtc") << "\n";
  }
  row("requested", read.text(grant, "requestedTimeUtc"));
  row("start", read.text(grant, "startTimeUtc"));
  row("end", read.text(grant, "endTimeUtc"));
  row("remaining", remaining_text(read.integer(grant, "remainingSeconds")));
  row("justification", read.text(grant, "justification"));
  if (ReplyReader::has(grant, "approval")) {
    const Node approval = read.object(grant, "approval");
    row("approval", read.boolean(approval, "required") ? "required" : "not required");
    row("  approvers", read.text(approval, "approvers"));
    if (ReplyReader::has(approval, "decidedBy")) {
      row("  decided by", person_text(read, read.object(approval, "decidedBy")));
    }
    if (ReplyReader::has(approval, "expiresTimeUtc")) {
      row("  lapses", read.text(approval, "expiresTimeUtc"));
    }
  }
  if (ReplyReader::has(grant, "endedBy")) {
    row("ended by", person_text(read, read.object(grant, "endedBy")));
  }
  if (ReplyReader::has(grant, "endedTimeUtc")) row("ended", read.text(grant, "endedTimeUtc"));
  if (ReplyReader::has(grant, "warnings")) {
    for (const auto& warning : read.texts(grant, "warnings")) row("warning", warning);
  }
  return read.result(Printed(out.str()));
}

// jitctl list's filters, as typed.
struct ListFilters {
  bool all = false;
  bool ended = false;
  bool pending = false;
  std::string since;
  std::string user;
  int port = 0;   // 0: any
  int limit = 0;  // 0: every grant, page after page
};

void add_list_options(CLI::App& list, ListFilters& filters) {
  list.add_flag("--all", filters.all, "active, pending and ended grants");
  list.add_flag("--ended", filters.ended, "ended grants only (expired, revoked, denied, ...)");
  list.add_flag("--pending", filters.pending, "grants waiting for approval or for their start");
  list.add_option("--since", filters.since,
                  "only grants since a UTC time, or a time back from now: 7d, 12h, 30m, P7D");
  list.add_option("--user", filters.user, "only this requestor's grants");
  list.add_option("--port", filters.port, "only grants for this port number")
      ->check(CLI::Range(1, 65535));
  list.add_option("--limit", filters.limit, "at most this many grants")->check(CLI::PositiveNumber);
}

// The elements under `key` of a listing jitd answers a page at a time, `next` naming the page
// after (a page may be short, even empty, when little matches): `wanted` of them (0: all), in
// pages of at most `page_size` (0: jitd's default). `query` already has its '?'.
Outcome<std::vector<json>> every_page(const std::string& socket, const std::string& query,
                                      const std::string& key, std::size_t wanted,
                                      std::size_t page_size) {
  std::vector<json> elements;
  std::set<std::string> cursors;
  std::string cursor;
  while (true) {
    std::string path = query;
    const auto add = [&](const std::string& parameter) {
      path += (path.ends_with('?') ? "" : "&") + parameter;
    };
    std::size_t limit = wanted == 0 ? page_size : wanted - elements.size();
    if (page_size != 0) limit = std::min(limit, page_size);
    if (limit != 0) add("limit=" + std::to_string(limit));
    if (!cursor.empty()) add("cursor=" + url_encoded(cursor));
    const auto page = exchange(socket, "GET", path);
    if (!page) return tl::unexpected(page.error());
    ReplyReader read(page->status);
    const Node root{page->body, ""};
    for (const Node& element : read.elements(root, key)) {
      if (wanted == 0 || elements.size() < wanted) elements.push_back(element.value);
    }
    const bool more = ReplyReader::has(root, "next");
    cursor = more ? read.token(root, "next") : std::string();
    if (const auto checked = read.result(0); !checked) return tl::unexpected(checked.error());
    if (!more || (wanted != 0 && elements.size() >= wanted)) return elements;
    // A cursor seen before would go round forever.
    if (!cursors.insert(cursor).second) {
      return unexpected_reply(
          page->status, "next repeats an earlier cursor, '" + jitd::core::excerpt(cursor) + "'");
    }
  }
}

// Every grant the filters match: jitd answers a page at a time, and `next` names the page
// after. The pages are put together as one reply, so --json prints one document.
Outcome<Printed> list_grants(const std::string& socket, const ListFilters& filters, bool as_json) {
  if (filters.all + filters.ended + filters.pending > 1) {
    return refused("list: give at most one of --all, --ended, --pending");
  }
  const std::string state = filters.all       ? "all"
                            : filters.ended   ? "ended"
                            : filters.pending ? "pending"
                                              : "active";
  std::string query = "/v1/grants?state=" + state;
  if (!filters.since.empty()) {
    const auto since = since_argument(filters.since);
    if (!since) return tl::unexpected(since.error());
    query += "&since=" + url_encoded(*since);
  }
  if (!filters.user.empty()) query += "&user=" + url_encoded(filters.user);
  if (filters.port != 0) query += "&port=" + std::to_string(filters.port);
  auto grants = every_page(socket, query, "grants", static_cast<std::size_t>(filters.limit), 0);
  if (!grants) return tl::unexpected(grants.error());
  const json reply = {{"grants", json(std::move(*grants))}};
  if (as_json) return Printed(reply.dump(2) + "\n");
  return grants_table(reply, state != "active");
}

// jitctl audit's filters and format, as typed.
struct AuditFilters {
  std::string since;
  std::string until;
  std::string user;
  int port = 0;  // 0: any
  std::vector<std::string> events;
  std::string format = "table";
  int limit = 0;  // 0: every record, page after page
};

void add_audit_options(CLI::App& audit, AuditFilters& filters) {
  audit.add_option("--since", filters.since,
                   "only records since a UTC time, or a time back from now: 7d, 24h, 30m, P7D");
  audit.add_option("--until", filters.until, "only records before a UTC time, or a time back");
  audit.add_option("--user", filters.user, "only records of this user");
  audit.add_option("--port", filters.port, "only records naming this port number")
      ->check(CLI::Range(1, 65535));
  audit.add_option("--event", filters.events,
                   "only these events (request, revoke, expire, tamper, ...); repeat or separate "
                   "with commas");
  audit.add_option("--format", filters.format, "table (default), json or csv")
      ->check(CLI::IsMember({"table", "json", "csv"}));
  audit.add_option("--limit", filters.limit, "at most this many records")
      ->check(CLI::PositiveNumber);
}

// The records the filters match, oldest first: jitd filters and answers a page at a time (a
// page may be short, even empty, when little matches), and `next` names the page after.
Outcome<Printed> audit_records(const std::string& socket, const AuditFilters& filters) {
  std::string query = "/v1/audit?";
  for (const auto& [option, value] :
       {std::pair{"--since", &filters.since}, std::pair{"--until", &filters.until}}) {
    if (value->empty()) continue;
    const auto when = since_argument(*value, option);
    if (!when) return tl::unexpected(when.error());
    query += std::string(option).substr(2) + "=" + url_encoded(*when) + "&";
  }
  if (!filters.user.empty()) query += "user=" + url_encoded(filters.user) + "&";
  if (filters.port != 0) query += "port=" + std::to_string(filters.port) + "&";
  // jitd checks the names and says which it knows.
  for (const auto& event : filters.events) query += "event=" + url_encoded(event) + "&";
  // jitd's largest page (core::max_audit_page).
  constexpr std::size_t page_size = 1000;
  if (query.ends_with('&')) query.pop_back();
  const auto records =
      every_page(socket, query, "records", static_cast<std::size_t>(filters.limit), page_size);
  if (!records) return tl::unexpected(records.error());
  if (filters.format == "json") return Printed(jitd::ctl::audit_json(*records));
  if (filters.format == "csv") return Printed(jitd::ctl::audit_csv(*records));
  return Printed(jitd::ctl::audit_table(*records));
}

// jitd doctor's "where": which rule of which table, as nft names them. A rule in a regular
// chain has no hook or priority of its own.
std::string conflict_place(ReplyReader& read, const Node& conflict) {
  std::string place = "family " + read.text(conflict, "family") + ", table " +
                      read.text(conflict, "table") + ", chain " + read.text(conflict, "chain");
  if (ReplyReader::has(conflict, "hook")) place += ", hook " + read.text(conflict, "hook");
  if (ReplyReader::has(conflict, "priority")) {
    place += ", priority " + read.label(conflict, "priority");
  }
  return place + ", handle " + read.label(conflict, "handle");
}

std::string conflict_text(ReplyReader& read, const Node& conflict, std::size_t number) {
  const std::string kind = read.text(conflict, "kind");
  const std::string ports = ports_text(read, conflict, "ports");
  std::ostringstream out;
  out << "conflict " << number << " ("
      << (read.boolean(conflict, "certain") ? "certain" : "possible") << "): ";
  if (kind == "drops") {
    out << "a rule drops " << ports << ": a grant may not open it";
  } else if (kind == "accepts") {
    out << "a rule accepts " << ports << ": jitd's drop now blocks its clients unless granted";
  } else {
    out << kind << " " << ports;
  }
  out << "\n  where:  " << conflict_place(read, conflict)
      << "\n  rule:   " << read.text(conflict, "rule") << "\n  advice: ";
  // A YAML snippet keeps its lines, indented under the first.
  const auto advice = read.lines(conflict, "advice");
  for (std::size_t i = 0; i < advice.size(); ++i)
    out << (i == 0 ? "" : "\n          ") << advice[i];
  out << "\n";
  return out.str();
}

// doctor and recommend exit with status 3 when they found something, so a script or a
// monitoring check tells "found something" from "could not ask" (1, 2) without reading the
// text; --json keeps the status. `render` writes the text and says whether it found anything.
using Findings = std::function<bool(ReplyReader&, const Node&, std::ostringstream&)>;
Outcome<Printed> findings_report(const Reply& reply, bool as_json, const Findings& render) {
  ReplyReader read(reply.status);
  std::ostringstream text;
  const bool found = render(read, Node{reply.body, ""}, text);
  Printed printed(as_json ? reply.body.dump(2) + "\n" : text.str());
  printed.exit_status = found ? 3 : 0;
  return read.result(printed);
}

bool doctor_text(ReplyReader& read, const Node& report, std::ostringstream& out) {
  const auto conflicts = read.elements(report, "conflicts");
  for (std::size_t i = 0; i < conflicts.size(); ++i) {
    out << conflict_text(read, conflicts[i], i + 1);
  }
  if (conflicts.empty()) out << "no conflicting rules found\n";
  const auto legacy = read.texts(report, "legacyIptablesTables");
  out << "legacy iptables tables: " << (legacy.empty() ? "none" : jitd::core::join(legacy)) << "\n";
  for (const auto& note : read.texts(report, "notes")) out << "note: " << note << "\n";
  return !conflicts.empty();
}

// The snippet is printed as it came, unindented, so it can be pasted into a policy file.
bool recommend_text(ReplyReader& read, const Node& report, std::ostringstream& out) {
  const auto unprotected = read.elements(report, "unprotected");
  const auto unused = read.elements(report, "unusedProtected");
  const auto snippet = read.lines(report, "snippet");
  const auto port_of = [&read](const Node& entry) {
    std::string port =
        std::to_string(read.integer(entry, "port")) + "/" + read.text(entry, "protocol");
    const std::string service = read.text(entry, "service");
    return service.empty() ? port : port + " (" + service + ")";
  };
  if (!unprotected.empty()) {
    out << "management services reachable beyond loopback that no rule protects:\n";
    for (const Node& entry : unprotected) {
      out << "  " << port_of(entry) << " listening on "
          << jitd::core::join(read.texts(entry, "addresses")) << "\n";
    }
  }
  if (!unused.empty()) {
    out << "protected ports nothing listens on beyond loopback (stale rules?):\n";
    for (const Node& entry : unused) {
      const auto addresses = read.texts(entry, "addresses");
      out << "  " << port_of(entry) << ": "
          << (addresses.empty() ? std::string("nothing listens")
                                : "loopback only (" + jitd::core::join(addresses) + ")")
          << "; rule at " << read.text(entry, "origin") << "\n";
    }
  }
  if (unprotected.empty() && unused.empty()) out << "nothing to recommend\n";
  if (!unprotected.empty()) {
    out << "policy snippet:\n";
    for (const auto& line : snippet) {
      if (!line.empty()) out << line << "\n";
    }
  }
  return !unprotected.empty() || !unused.empty();
}

// No --port: people ask for SSH, so 22/tcp when the policy protects it; otherwise the refusal
// names what the policy does protect.
Outcome<json> default_ports(const std::string& socket) {
  const auto policy = exchange(socket, "GET", "/v1/policy");
  if (!policy) return tl::unexpected(policy.error());
  ReplyReader read(policy->status);
  std::vector<std::string> protected_ports;
  bool ssh = false;
  for (const Node& rule : read.elements({policy->body, ""}, "ports")) {
    const long long number = read.integer(rule, "number");
    const std::string protocol = read.text(rule, "protocol");
    protected_ports.push_back(std::to_string(number) + "/" + protocol);
    ssh = ssh || (number == 22 && (protocol == "tcp" || protocol == "*"));
  }
  if (const auto checked = read.result(0); !checked) return tl::unexpected(checked.error());
  if (ssh) {
    std::cerr << "no --port given: asking for 22/tcp, which the policy protects\n";
    return json::array({{{"number", 22}, {"protocol", "tcp"}}});
  }
  if (protected_ports.empty()) return refused("no --port given, and the policy protects no port");
  return refused("no --port given, and the policy does not protect 22/tcp; give --port, one of: " +
                 jitd::core::join(protected_ports));
}

// A subcommand and what it does once parsed.
struct Command {
  CLI::App* app;
  std::function<Outcome<Printed>()> run;
};

// show, extend, approve, deny: one grant by its id; doctor: what else on the host filters the
// protected ports; recommend: what the policy misses or no longer needs. Their arguments live
// as long as the commands (shared by the closures).
std::vector<Command> add_review_commands(CLI::App& app, const std::string& socket, bool& as_json) {
  struct Arguments {
    std::string id;
    std::string by;
    std::string until;
    std::string justification;
  };
  const auto given = std::make_shared<Arguments>();
  const auto add_id = [&](CLI::App* command) {
    command->add_option("id", given->id, "grant id")->required();
    command->add_flag("--json", as_json, "print JSON");
  };
  std::vector<Command> commands;

  auto* show = app.add_subcommand("show", "show every field of one grant, in any state");
  add_id(show);
  commands.push_back({show, [&socket, &as_json, given] {
                        return presented(exchange(socket, "GET", grant_path(given->id)), as_json,
                                         grant_sheet);
                      }});

  auto* extend = app.add_subcommand("extend", "move a grant's end: --by DURATION or --until TIME");
  add_id(extend);
  auto* by = extend->add_option("--by", given->by, "longer by: 30m, 2h, PT30M, ...");
  auto* until = extend->add_option("--until", given->until,
                                   "until a UTC time (2026-11-24T18:00:00Z) or +DURATION from now");
  commands.push_back(
      {extend, [&socket, &as_json, given, by, until]() -> Outcome<Printed> {
         if ((by->count() > 0) == (until->count() > 0)) {
           return refused("extend: give exactly one of --by DURATION, --until TIME");
         }
         const auto value = by->count() > 0 ? duration_argument("--by", given->by)
                                            : time_argument("--until", given->until);
         if (!value) return tl::unexpected(value.error());
         const json body = {{by->count() > 0 ? "duration" : "endTimeUtc", *value}};
         return presented(
             exchange(socket, "POST", grant_path(given->id) + "/extend", body_text(body)), as_json,
             [](const Reply& reply) { return grants_changed(reply, "extended"); });
       }});

  for (const auto& [verb, done, help] :
       {std::tuple{"approve", "approved", "let a grant that waits for approval go ahead"},
        std::tuple{"deny", "denied", "refuse a grant that waits for approval"}}) {
    auto* decide = app.add_subcommand(verb, help);
    add_id(decide);
    auto* justification = decide->add_option("-j,--justification", given->justification,
                                             "why, recorded in the audit log");
    commands.push_back(
        {decide, [&socket, &as_json, given, justification, verb = std::string(verb),
                  done = std::string(done)] {
           json body = json::object();
           if (justification->count() > 0) body["justification"] = given->justification;
           return presented(
               exchange(socket, "POST", grant_path(given->id) + "/" + verb, body_text(body)),
               as_json, [&done](const Reply& reply) { return grants_changed(reply, done); });
         }});
  }

  auto* doctor = app.add_subcommand(
      "doctor", "find other rules that drop or admit protected ports (exit 3 when found)");
  doctor->add_flag("--json", as_json, "print JSON");
  commands.push_back(
      {doctor, [&socket, &as_json] {
         return exchange(socket, "GET", "/v1/doctor").and_then([&](const Reply& reply) {
           return findings_report(reply, as_json, doctor_text);
         });
       }});

  auto* recommend = app.add_subcommand(
      "recommend",
      "find management services no rule protects, and protected ports nothing listens on, with "
      "a policy snippet (exit 3 when found)");
  recommend->add_flag("--json", as_json, "print JSON");
  commands.push_back(
      {recommend, [&socket, &as_json] {
         return exchange(socket, "GET", "/v1/recommendations").and_then([&](const Reply& reply) {
           return findings_report(reply, as_json, recommend_text);
         });
       }});
  return commands;
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
  std::string start_time;
  std::string reason;
  grant->add_option("-p,--port", ports,
                    "PORT[/tcp|udp|*], repeatable (default: 22/tcp, when the policy protects it)");
  auto* source_option = grant->add_option("--source", source, "address or CIDR to admit");
  if (source.empty()) {
    source_option->required();
  } else {
    source_option->description("address or CIDR to admit (default: this SSH session's client, " +
                               source + ")");
  }
  auto* duration_option = grant->add_option(
      "-d,--duration", duration, "30m, 2h, PT30M, ... (default: the longest the policy allows)");
  auto* end_option = grant->add_option("--end-time", end_time,
                                       "UTC end (2026-11-24T18:00:00Z) or +DURATION from now");
  duration_option->excludes(end_option);
  auto* start_option = grant->add_option(
      "--start", start_time, "open later: a UTC time, or +10m / 'in 10m' from now (default: now)");
  grant->add_option("-r,--reason", reason, "justification, recorded in the audit log");
  grant->add_flag("--json", as_json, "print JSON");

  auto* list = app.add_subcommand("list", "show active grants (or pending, ended, all)");
  list->add_flag("--json", as_json, "print JSON");
  ListFilters list_filters;
  add_list_options(*list, list_filters);
  auto* audit = app.add_subcommand(
      "audit", "show the audit log: who asked for what, and what jitd did (table, json, csv)");
  AuditFilters audit_filters;
  add_audit_options(*audit, audit_filters);
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

  const auto review_commands = add_review_commands(app, socket, as_json);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // A bad command line is a refusal like any other (1): CLI11's own statuses (100 and up)
    // mean nothing to a script. --help and --version are not errors (0).
    return app.exit(error) == 0 ? 0 : 1;
  }

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

  // Every argument is checked before jitd is asked anything, the policy included.
  const auto run_grant = [&]() -> Outcome<Printed> {
    json body = {{"ports", json::array()},
                 {"allowedSourceAddressPrefix", source},
                 {"justification", reason}};
    try {
      for (const auto& port : ports) body["ports"].push_back(port_argument(port));
    } catch (const CLI::ValidationError& error) {
      return refused(error.what());
    }
    for (const auto& [option, key, value] :
         {std::tuple{duration_option, "duration", duration_argument("--duration", duration)},
          std::tuple{end_option, "endTimeUtc", time_argument("--end-time", end_time)},
          std::tuple{start_option, "startTimeUtc", time_argument("--start", start_time)}}) {
      if (option->count() == 0) continue;
      if (!value) return tl::unexpected(value.error());
      body[key] = *value;
    }
    if (ports.empty()) {
      auto chosen = default_ports(socket);
      if (!chosen) return tl::unexpected(chosen.error());
      body["ports"] = std::move(*chosen);
    }
    return presented(exchange(socket, "POST", "/v1/grants", body_text(body)), as_json,
                     [](const Reply& reply) { return grants_changed(reply, ""); });
  };

  curl_global_init(CURL_GLOBAL_DEFAULT);
  Outcome<Printed> output;
  for (const auto& command : review_commands) {
    if (command.app->parsed()) output = command.run();
  }
  if (grant->parsed()) {
    output = run_grant();
  } else if (list->parsed()) {
    output = list_grants(socket, list_filters, as_json);
  } else if (audit->parsed()) {
    output = audit_records(socket, audit_filters);
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
  std::cerr << output->err;
  std::cout << output->out;
  return output->exit_status;
}
