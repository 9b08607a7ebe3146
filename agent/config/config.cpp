#include "jitd/config/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::config {

std::string Diagnostic::to_string() const { return where.to_string() + ": " + message; }

namespace {

namespace fs = std::filesystem;
using core::ErrorCode;
using core::SourceLocation;

std::string in_quotes(std::string_view text) { return "'" + std::string(text) + "'"; }

template <class Words>
std::string join(const Words& words) {
  std::string text;
  for (const auto word : words) text += (text.empty() ? "" : ", ") + std::string(word);
  return text;
}

template <class T>
void append(std::vector<T>& to, std::vector<T>&& from) {
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

// A problem with a whole file or directory, which has no line to point at.
Diagnostic file_error(const fs::path& path, std::string message) {
  return {SourceLocation{path.string(), 0, 0}, std::move(message)};
}

// --- Files -------------------------------------------------------------------------------

core::Result<std::string> io_error(const std::string& what, int error) {
  return sys::fail_system(ErrorCode::io, what, error);
}

core::Result<std::string> read_open_file(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return io_error("cannot read", errno);
  if (!S_ISREG(info.st_mode)) return core::fail(ErrorCode::io, "not a regular file");
  return sys::read_all(fd, "cannot read");
}

// O_NONBLOCK: a FIFO named like a config file must not hang the daemon (fstat refuses it).
core::Result<std::string> read_file(const fs::path& path) {
  const sys::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return io_error("cannot open", errno);
  return read_open_file(fd.get());
}

// --- YAML documents ----------------------------------------------------------------------

// Where each document starts (its first node, else its start) and nothing else.
class DocumentMarks final : public YAML::EventHandler {
 public:
  [[nodiscard]] YAML::Mark second() const {
    return marks_.size() > 1 ? marks_[1] : YAML::Mark::null_mark();
  }

  void OnDocumentStart(const YAML::Mark& mark) override {
    marks_.push_back(mark);
    first_node_ = true;
  }
  void OnDocumentEnd() override { first_node_ = false; }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (first_node_) marks_.back() = mark;
    first_node_ = false;
  }

  std::vector<YAML::Mark> marks_;
  bool first_node_ = false;
};

// One file's YAML and the errors found in it.
class Document {
 public:
  explicit Document(std::string file) : file_(std::move(file)) {}

  // yaml-cpp counts from 0; people count from 1.
  [[nodiscard]] SourceLocation where(const YAML::Mark& mark) const {
    if (mark.is_null()) return {file_, 0, 0};
    return {file_, mark.line + 1, mark.column + 1};
  }
  [[nodiscard]] SourceLocation where(const YAML::Node& node) const { return where(node.Mark()); }

  void error(const YAML::Mark& mark, std::string message) {
    errors_.push_back({where(mark), std::move(message)});
  }
  void error(const YAML::Node& node, std::string message) {
    error(node.Mark(), std::move(message));
  }

  // The file's only document; a null node when it has none (empty, or only comments).
  // Not YAML::LoadAll: yaml-cpp 0.7's never returns when a flow collection is followed by more
  // text ("[1],2": an endless run of empty documents, found by fuzzing), so the documents are
  // counted first, stopping at the second.
  [[nodiscard]] std::optional<YAML::Node> load(const std::string& text) {
    try {
      std::istringstream stream(text);
      YAML::Parser parser(stream);
      DocumentMarks marks;
      int documents = 0;
      while (documents < 2 && parser.HandleNextDocument(marks)) ++documents;
      if (documents > 1) {
        error(marks.second(), "only one YAML document per file is allowed");
        return std::nullopt;
      }
      return documents == 0 ? YAML::Node() : YAML::Load(text);
    } catch (const YAML::Exception& e) {
      error(e.mark, "invalid YAML: " + e.msg);
      return std::nullopt;
    }
  }

  // In document order, whatever order the checks ran in.
  [[nodiscard]] std::vector<Diagnostic> take_errors() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
      return std::pair(a.where.line, a.where.column) < std::pair(b.where.line, b.where.column);
    });
    return std::move(errors_);
  }

 private:
  std::string file_;
  std::vector<Diagnostic> errors_;
};

std::string_view shape(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: return "a single value";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "nothing";
  }
}

struct Entry {
  std::string name;
  YAML::Node key;
  YAML::Node value;

  // An empty value carries the next token's mark, so errors about it point at the key.
  [[nodiscard]] const YAML::Node& at() const { return value.IsNull() ? key : value; }
};

// A mapping whose keys were checked against the ones its kind allows.
class Mapping {
 public:
  // Reports (and skips) unknown and repeated keys; nullopt when `node` is not a mapping.
  [[nodiscard]] static std::optional<Mapping> read(Document& doc, const YAML::Node& node,
                                                   std::string_view what,
                                                   std::initializer_list<std::string_view> keys) {
    if (!node.IsMap()) {
      doc.error(node, std::string(what) + " must be a mapping, got " + std::string(shape(node)));
      return std::nullopt;
    }
    Mapping mapping(node, what);
    for (const auto& item : node) {
      const YAML::Node& key = item.first;
      if (!key.IsScalar()) {
        doc.error(key, "keys in " + mapping.what_ + " must be single values");
        continue;
      }
      const auto& name = key.Scalar();
      if (std::find(keys.begin(), keys.end(), name) == keys.end()) {
        doc.error(key, "unknown key " + in_quotes(name) + " in " + mapping.what_ +
                           "; expected one of: " + join(keys));
      } else if (mapping.find(name) != nullptr) {
        doc.error(key, "key " + in_quotes(name) + " appears twice in " + mapping.what_);
      } else {
        mapping.entries_.push_back({name, key, item.second});
      }
    }
    return mapping;
  }

  [[nodiscard]] const Entry* find(std::string_view key) const {
    const auto found = std::find_if(entries_.begin(), entries_.end(),
                                    [&](const Entry& entry) { return entry.name == key; });
    return found == entries_.end() ? nullptr : &*found;
  }

  [[nodiscard]] const Entry* require(Document& doc, std::string_view key) const {
    const auto* entry = find(key);
    if (entry == nullptr) doc.error(node_, what_ + " is missing " + in_quotes(key));
    return entry;
  }

  [[nodiscard]] const YAML::Node& node() const { return node_; }
  [[nodiscard]] const std::string& what() const { return what_; }

 private:
  Mapping(YAML::Node node, std::string_view what) : node_(std::move(node)), what_(what) {}

  YAML::Node node_;
  std::string what_;  // "port rule", for messages
  std::vector<Entry> entries_;
};

// A single value converted by `parse` (text → core::Result<T>). A wrong YAML type is reported
// at `at`, parse's message at the value; both give nullopt.
template <class Parse>
auto read_scalar(Document& doc, const YAML::Node& value, const YAML::Node& at,
                 std::string_view what, Parse parse)
    -> std::optional<typename std::invoke_result_t<Parse, std::string_view>::value_type> {
  if (!value.IsScalar()) {
    doc.error(at, std::string(what) + " must be a single value, got " + std::string(shape(value)));
    return std::nullopt;
  }
  auto parsed = parse(std::string_view(value.Scalar()));
  if (!parsed) {
    doc.error(value, std::move(parsed.error().message));
    return std::nullopt;
  }
  return std::move(*parsed);
}

template <class Parse>
auto read_scalar(Document& doc, const Entry& entry, Parse parse) {
  return read_scalar(doc, entry.value, entry.at(), in_quotes(entry.name), parse);
}

template <class Parse>
auto read_required(Document& doc, const Mapping& mapping, std::string_view key, Parse parse) {
  const auto* entry = mapping.require(doc, key);
  return entry != nullptr ? read_scalar(doc, *entry, parse) : std::nullopt;
}

// Leaves `target` (the default) alone when the key is absent or its value invalid.
template <class Parse, class T>
void read_optional(Document& doc, const Mapping& mapping, std::string_view key, Parse parse,
                   T& target) {
  const auto* entry = mapping.find(key);
  if (entry == nullptr) return;
  if (auto value = read_scalar(doc, *entry, parse)) target = std::move(*value);
}

// A key without a value counts as an empty list.
std::optional<std::vector<YAML::Node>> read_list(Document& doc, const Entry& entry) {
  if (entry.value.IsNull()) return std::vector<YAML::Node>{};
  if (!entry.value.IsSequence()) {
    doc.error(entry.at(),
              in_quotes(entry.name) + " must be a list, got " + std::string(shape(entry.value)));
    return std::nullopt;
  }
  std::vector<YAML::Node> items;
  for (const auto& item : entry.value) items.push_back(item);
  return items;
}

// --- Value parsers -----------------------------------------------------------------------

core::Result<std::string> parse_string(std::string_view text) { return std::string(text); }

core::Result<std::uint16_t> parse_port_number(std::string_view text) {
  unsigned number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc{} || end != text.data() + text.size() || number < 1 || number > 65535) {
    return core::fail(ErrorCode::invalid_argument, in_quotes(text) + " is not a port number; "
                                                   "expected an integer from 1 to 65535");
  }
  return static_cast<std::uint16_t>(number);
}

core::Result<core::Milliseconds> parse_max_duration(std::string_view text) {
  auto duration = core::parse_duration(text);
  if (duration && *duration > core::max_policy_duration) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + " is longer than " +
                          core::format_duration(core::max_policy_duration) +
                          ", the longest access jitd grants");
  }
  return duration;
}

core::Result<fs::path> parse_absolute_path(std::string_view text) {
  fs::path path(text);
  if (!path.is_absolute()) {
    return core::fail(ErrorCode::invalid_argument, in_quotes(text) + " is not an absolute path");
  }
  return path;
}

core::Result<std::string> parse_table_name(std::string_view text) {
  const auto allowed = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; };
  if (text.empty() || text.size() > 63 || !std::all_of(text.begin(), text.end(), allowed)) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + " is not a valid nftables table name; use 1 to 63 letters, "
                                     "digits, '_' or '-'");
  }
  return std::string(text);
}

constexpr std::array<std::string_view, 5> log_levels = {"trace", "debug", "info", "warn", "error"};

core::Result<std::string> parse_log_level(std::string_view text) {
  if (std::find(log_levels.begin(), log_levels.end(), text) == log_levels.end()) {
    return core::fail(ErrorCode::invalid_argument, in_quotes(text) +
                                                       " is not a log level; expected one of: " +
                                                       join(log_levels));
  }
  return std::string(text);
}

core::Result<bool> parse_ownership(std::string_view text) {
  if (text == "auto") return true;
  if (text == "off") return false;
  return core::fail(ErrorCode::invalid_argument,
                    in_quotes(text) + " is not a table ownership mode; expected auto or off");
}

// --- Policy files ------------------------------------------------------------------------

struct Sources {
  bool any = false;  // "*"
  std::vector<core::Prefix> prefixes;
};

class PolicyParser {
 public:
  explicit PolicyParser(std::string file) : doc_(std::move(file)) {}

  Loaded<core::Policy> parse(const std::string& text) {
    const auto root = doc_.load(text);
    if (root && !root->IsNull()) {
      if (const auto file = Mapping::read(doc_, *root, "policy file",
                                          {"ports", "permanentAllowList"})) {
        if (const auto* ports = file->find("ports")) {
          for (const auto& node : read_list(doc_, *ports).value_or(std::vector<YAML::Node>{})) {
            read_rule(node);
          }
        }
        if (const auto* allow = file->find("permanentAllowList")) {
          for (const auto& node : read_list(doc_, *allow).value_or(std::vector<YAML::Node>{})) {
            read_allow(node);
          }
        }
      }
    }
    return {std::move(policy_), doc_.take_errors()};
  }

 private:
  void read_rule(const YAML::Node& node) {
    const auto mapping = Mapping::read(
        doc_, node, "port rule",
        {"number", "protocol", "allowedSourceAddressPrefixes", "allowedSourceAddressPrefix",
         "maxRequestAccessDuration"});
    if (!mapping) return;
    core::PortRule rule;
    rule.origin = doc_.where(node);
    const auto port = read_port(*mapping);
    if (auto sources = read_sources(*mapping, "allowedSourceAddressPrefix",
                                    "allowedSourceAddressPrefixes", /*in_allow_list=*/false)) {
      rule.any_source = sources->any;
      rule.allowed_sources = std::move(sources->prefixes);
    }
    if (const auto duration =
            read_required(doc_, *mapping, "maxRequestAccessDuration", parse_max_duration)) {
      rule.max_duration = *duration;
    }
    // A rule with a valid port is kept even when another field failed, so the merged checks
    // don't add "port not protected" noise on top of the real error.
    if (port) {
      rule.port = *port;
      policy_.rules.push_back(std::move(rule));
    }
  }

  void read_allow(const YAML::Node& node) {
    const auto mapping =
        Mapping::read(doc_, node, "permanentAllowList entry",
                      {"sourceAddressPrefixes", "sourceAddressPrefix", "ports", "description"});
    if (!mapping) return;
    core::PermanentAllow allow;
    allow.origin = doc_.where(node);
    if (auto sources = read_sources(*mapping, "sourceAddressPrefix", "sourceAddressPrefixes",
                                    /*in_allow_list=*/true)) {
      allow.sources = std::move(sources->prefixes);
    }
    if (const auto* ports = mapping->find("ports")) {
      if (const auto items = read_list(doc_, *ports)) {
        // An empty list would silently mean "every protected port".
        if (items->empty()) {
          doc_.error(ports->at(), "'ports' must not be empty; leave it out to cover every "
                                  "protected port");
        }
        for (const auto& item : *items) {
          const auto port_mapping =
              Mapping::read(doc_, item, "permanentAllowList port", {"number", "protocol"});
          if (!port_mapping) continue;
          if (const auto port = read_port(*port_mapping)) allow.ports.push_back(*port);
        }
      }
    }
    read_optional(doc_, *mapping, "description", parse_string, allow.description);
    policy_.permanent_allow.push_back(std::move(allow));
  }

  std::optional<core::PortSpec> read_port(const Mapping& mapping) {
    const auto number = read_required(doc_, mapping, "number", parse_port_number);
    const auto protocol = read_required(doc_, mapping, "protocol", core::parse_protocol);
    if (!number || !protocol) return std::nullopt;
    return core::PortSpec{*number, *protocol};
  }

  // "*" (every address) is for port rules only: in the allow-list it would switch protection
  // off, and so would a /0 prefix.
  std::optional<Sources> read_sources(const Mapping& mapping, std::string_view single_key,
                                      std::string_view list_key, bool in_allow_list) {
    const auto* single = mapping.find(single_key);
    const auto* list = mapping.find(list_key);
    if (single != nullptr && list != nullptr) {
      doc_.error(list->key, "use either " + in_quotes(single_key) + " or " + in_quotes(list_key) +
                                ", not both");
      return std::nullopt;
    }
    if (single == nullptr && list == nullptr) {
      doc_.error(mapping.node(), mapping.what() + " is missing " + in_quotes(list_key) + " (or " +
                                     in_quotes(single_key) + ")");
      return std::nullopt;
    }
    const Entry& entry = single != nullptr ? *single : *list;
    std::vector<YAML::Node> items;
    if (single != nullptr) {
      items.push_back(single->value);
    } else if (auto listed = read_list(doc_, *list)) {
      items = std::move(*listed);
    } else {
      return std::nullopt;
    }
    if (items.empty()) {
      doc_.error(entry.at(), in_quotes(entry.name) + " must not be empty");
      return std::nullopt;
    }

    // nullopt stands for "*".
    const auto parse = [&](std::string_view text) -> core::Result<std::optional<core::Prefix>> {
      if (text == "*") {
        if (in_allow_list) {
          return core::fail(ErrorCode::invalid_argument,
                            "'*' is not allowed in permanentAllowList: it would switch "
                            "protection off for every address");
        }
        if (items.size() > 1) {
          return core::fail(ErrorCode::invalid_argument,
                            "'*' must stand alone: it already allows every address");
        }
        return std::optional<core::Prefix>{};
      }
      auto prefix = core::Prefix::parse(text);
      if (!prefix) return tl::unexpected(std::move(prefix.error()));
      if (in_allow_list && prefix->length() == 0) {
        return core::fail(ErrorCode::invalid_argument,
                          in_quotes(text) + " is not allowed in permanentAllowList: it would "
                                         "switch protection off for every " +
                              (prefix->family() == core::Family::ipv4 ? "IPv4" : "IPv6") +
                              " address");
      }
      return std::optional<core::Prefix>(*prefix);
    };

    const auto what =
        single != nullptr ? in_quotes(entry.name) : "an item of " + in_quotes(entry.name);
    Sources sources;
    bool valid = true;
    for (const auto& item : items) {
      const auto source =
          read_scalar(doc_, item, single != nullptr ? entry.at() : item, what, parse);
      if (!source) {
        valid = false;
      } else if (*source) {
        sources.prefixes.push_back(**source);
      } else {
        sources.any = true;
      }
    }
    if (!valid) return std::nullopt;
    return sources;
  }

  Document doc_;
  core::Policy policy_;
};

// Policy files in byte-wise name order: *.yaml and *.yml, not hidden, not directories.
std::vector<fs::path> policy_files(const fs::path& directory, std::vector<Diagnostic>& errors) {
  std::error_code ec;
  const auto status = fs::status(directory, ec);
  if (status.type() == fs::file_type::not_found) {
    errors.push_back(file_error(directory, "policy directory does not exist"));
    return {};
  }
  if (ec) {
    errors.push_back(file_error(directory, "cannot open policy directory: " + ec.message()));
    return {};
  }
  if (!fs::is_directory(status)) {
    errors.push_back(file_error(directory, "policy directory is not a directory"));
    return {};
  }

  std::vector<fs::path> files;
  for (fs::directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& path = it->path();
    const auto extension = path.extension();
    std::error_code type_ec;  // e.g. a dangling symlink: reading it reports the problem
    if (path.filename().string().starts_with('.') ||
        (extension != ".yaml" && extension != ".yml") || it->is_directory(type_ec)) {
      continue;
    }
    files.push_back(path);
  }
  if (ec) errors.push_back(file_error(directory, "cannot list policy directory: " + ec.message()));
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
  return files;
}

core::ProtocolSpec spec_of(core::Protocol protocol) {
  return protocol == core::Protocol::tcp ? core::ProtocolSpec::tcp : core::ProtocolSpec::udp;
}

}  // namespace

Loaded<MainConfig> load_main_config(const fs::path& path) {
  Loaded<MainConfig> loaded;
  std::error_code ec;
  if (!fs::exists(path, ec) && !ec) return loaded;  // no file: every default

  const auto text = read_file(path);
  if (!text) {
    loaded.errors.push_back(file_error(path, text.error().message));
    return loaded;
  }
  return parse_main_config_text(*text, path.string());
}

Loaded<MainConfig> parse_main_config_text(const std::string& text, const std::string& file_name) {
  Loaded<MainConfig> loaded;
  Document doc(file_name);
  const auto root = doc.load(text);
  if (root && !root->IsNull()) {
    const auto mapping = Mapping::read(doc, *root, "main config",
                                       {"socketPath", "socketGroup", "policyDirectory",
                                        "stateDirectory", "nftTable", "nftTableOwnership",
                                        "logLevel"});
    if (mapping) {
      auto& config = loaded.value;
      read_optional(doc, *mapping, "socketPath", parse_absolute_path, config.socket_path);
      read_optional(doc, *mapping, "socketGroup", parse_string, config.socket_group);
      read_optional(doc, *mapping, "policyDirectory", parse_absolute_path,
                    config.policy_directory);
      read_optional(doc, *mapping, "stateDirectory", parse_absolute_path, config.state_directory);
      read_optional(doc, *mapping, "nftTable", parse_table_name, config.nft_table);
      read_optional(doc, *mapping, "nftTableOwnership", parse_ownership,
                    config.claim_table_ownership);
      read_optional(doc, *mapping, "logLevel", parse_log_level, config.log_level);
    }
  }
  loaded.errors = doc.take_errors();
  return loaded;
}

Loaded<core::Policy> parse_policy_text(const std::string& text, const std::string& file_name) {
  return PolicyParser(file_name).parse(text);
}

Loaded<core::Policy> load_policy_directory(const fs::path& directory) {
  Loaded<core::Policy> loaded;
  for (const auto& file : policy_files(directory, loaded.errors)) {
    const auto text = read_file(file);
    if (!text) {
      loaded.errors.push_back(file_error(file, text.error().message));
      continue;
    }
    auto part = parse_policy_text(*text, file.string());
    append(loaded.value.rules, std::move(part.value.rules));
    append(loaded.value.permanent_allow, std::move(part.value.permanent_allow));
    append(loaded.errors, std::move(part.errors));
  }
  check_merged_policy(loaded.value, loaded.errors);
  return loaded;
}

void check_merged_policy(const core::Policy& policy, std::vector<Diagnostic>& errors) {
  // tcp 22 and "*" 22 overlap; tcp 53 and udp 53 do not.
  const auto overlap = [](const core::PortSpec& a, const core::PortSpec& b) {
    return a.number == b.number &&
           (core::covers(a.protocol, b.protocol) || core::covers(b.protocol, a.protocol));
  };
  for (auto later = policy.rules.begin(); later != policy.rules.end(); ++later) {
    const auto earlier = std::find_if(policy.rules.begin(), later, [&](const core::PortRule& rule) {
      return overlap(rule.port, later->port);
    });
    if (earlier == later) continue;
    errors.push_back({later->origin, "rule for " + core::to_string(later->port) +
                                         " overlaps the rule for " +
                                         core::to_string(earlier->port) + " at " +
                                         earlier->origin.to_string()});
  }

  for (const auto& allow : policy.permanent_allow) {
    for (const auto& port : allow.ports) {
      const auto wanted = core::expand(port.protocol);
      std::vector<core::Protocol> missing;
      for (const auto protocol : wanted) {
        if (policy.find_rule(port.number, protocol) == nullptr) missing.push_back(protocol);
      }
      if (missing.empty()) continue;
      // "22/*" when nothing matches, else the half that is missing ("22/udp").
      const auto named = missing.size() == wanted.size()
                             ? port
                             : core::PortSpec{port.number, spec_of(missing.front())};
      errors.push_back({allow.origin, "permanentAllowList names " + core::to_string(named) +
                                          ", which no port rule protects"});
    }
  }
}

}  // namespace jitd::config
