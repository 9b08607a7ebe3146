#include "jitd/config/config.hpp"

#include <arpa/inet.h>
#include <dirent.h>
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
#include <cstdio>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "jitd/core/hex.hpp"
#include "jitd/core/text.hpp"
#include "jitd/sys/accounts.hpp"
#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/handle.hpp"
#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::config {

std::string Diagnostic::to_string() const { return where.to_string() + ": " + message; }

namespace {

namespace fs = std::filesystem;
using core::ErrorCode;
using core::SourceLocation;

// Errors travel to API callers and the audit log: a value is quoted as a short excerpt with
// control characters escaped, so no error can carry a file's content or forge log lines.
constexpr std::size_t max_quoted_length = 64;

std::string excerpt(std::string_view text) {
  std::string shown;
  for (const unsigned char c : text.substr(0, max_quoted_length)) {
    if (c == '\n') {
      shown += "\\n";
    } else if (c == '\t') {
      shown += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      shown += "\\x";
      shown += core::to_hex(&c, 1);
    } else {
      shown += static_cast<char>(c);
    }
  }
  if (text.size() > max_quoted_length) {
    shown += "... (" + std::to_string(text.size()) + " characters)";
  }
  return shown;
}

std::string in_quotes(std::string_view text) { return "'" + excerpt(text) + "'"; }

// Parsers outside this file (prefixes, durations) quote a value whole: errors show its
// excerpt instead.
std::string with_excerpt(std::string message, std::string_view value) {
  const auto shown = excerpt(value);
  if (value.empty() || shown == value) return message;
  for (auto at = message.find(value); at != std::string::npos;
       at = message.find(value, at + shown.size())) {
    message.replace(at, value.size(), shown);
  }
  return message;
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

// Parsing is linear in the text (aliases are refused, nesting is bounded), so this bound
// caps the time and memory one file can cost; real policy files are a few kilobytes.
constexpr std::size_t max_file_bytes = 1 << 20;

// A file that decides what jitd protects: only root may be able to change it, and it is read
// only when it is a regular file no larger than max_file_bytes.
core::Result<std::string> read_trusted(const sys::UniqueFd& fd) {
  const auto info = sys::stat_open(fd.get(), "cannot read");
  if (!info) return tl::unexpected(info.error());
  if (auto trusted = sys::check_trusted(*info, "refused"); !trusted) {
    return tl::unexpected(trusted.error());
  }
  return sys::read_regular(fd.get(), *info, max_file_bytes, "refused");
}

// The main config may be a symbolic link (to a file root controls: the target is checked);
// policy files may not, see read_policy_file.
core::Result<std::string> read_config_file(const fs::path& path) {
  // O_NONBLOCK: a FIFO named like a config file must not hang the daemon (it is refused).
  const sys::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return io_error("cannot open", errno);
  return read_trusted(fd);
}

// Policy files are never read through a link: a link to /etc/shadow would be parsed and its
// lines quoted back in errors.
core::Result<std::string> read_policy_file(int directory_fd, const std::string& name) {
  auto fd = sys::open_nofollow(directory_fd, name, O_RDONLY, "cannot open");
  if (!fd) return tl::unexpected(fd.error());
  return read_trusted(*fd);
}

// --- Bounds on YAML --------------------------------------------------------------------

// yaml-cpp parses nested collections by recursion, and thousands of levels overflow the
// stack. Before parsing, each line's nesting is bounded from above by its indentation plus
// its block indicators ("- ", "? ", ": ") plus the flow brackets open at its end; quoted text
// and comments do not count. Policy files stay far below the limit.
constexpr int max_nesting = 100;

// The first line (1-based) on which the bound exceeds max_nesting; 0 when none does.
int first_too_deep_line(std::string_view text) {
  int line = 1;
  int flow = 0;
  std::size_t at = 0;
  while (at < text.size()) {
    const auto end = std::min(text.find('\n', at), text.size());
    const auto row = text.substr(at, end - at);
    const auto indent = row.find_first_not_of(' ');
    int depth = indent == std::string_view::npos ? 0 : static_cast<int>(indent);
    char quote = 0;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const char c = row[i];
      const bool spaced = i + 1 == row.size() || row[i + 1] == ' ';
      if (quote != 0) {
        if (c == '\\' && quote == '"') {
          ++i;
        } else if (c == quote) {
          quote = 0;
        }
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '#' && (i == 0 || row[i - 1] == ' ')) {
        break;
      } else if (c == '[' || c == '{') {
        if (depth + ++flow > max_nesting) return line;
      } else if ((c == ']' || c == '}') && flow > 0) {
        --flow;
      } else if ((c == '-' || c == '?' || c == ':') && spaced) {
        ++depth;
      }
    }
    if (depth + flow > max_nesting) return line;
    at = end + 1;
    ++line;
  }
  return 0;
}

// The first alias (*name) in the text. An alias repeats a node without repeating its text,
// so a few kilobytes of aliases of aliases expand to gigabytes; policy files do not need them.
class AliasFinder final : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> first;

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t /*anchor*/) override {
    if (!first) first = mark;
  }
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::optional<YAML::Mark> first_alias(const std::string& text) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  AliasFinder finder;
  // Two documents at most: yaml-cpp 0.7 never stops handing out documents on "[1],2", and a
  // second document is refused anyway.
  for (int documents = 0; documents < 2 && !finder.first && parser.HandleNextDocument(finder);
       ++documents) {
  }
  return finder.first;
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
    // YAML is Unicode; yaml-cpp would take other bytes, and the last valid policy copy (JSON)
    // could not hold them, so such a file is refused here, saying where.
    if (const auto offset = core::first_invalid_utf8(text)) {
      const auto before = std::string_view(text).substr(0, *offset);
      const auto line_start = before.rfind('\n');
      const int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
      const int column =
          1 + static_cast<int>(line_start == std::string_view::npos ? *offset
                                                                    : *offset - line_start - 1);
      errors_.push_back(
          {{file_, line, column},
           "not valid UTF-8 (byte " + std::to_string(*offset) + "): save the file as UTF-8"});
      return std::nullopt;
    }
    if (const int line = first_too_deep_line(text); line != 0) {
      errors_.push_back({{file_, line, 1},
                         "nested deeper than jitd reads (more than " + std::to_string(max_nesting) +
                             " levels, counting indentation and open brackets)"});
      return std::nullopt;
    }
    try {
      if (const auto alias = first_alias(text)) {
        error(*alias,
              "YAML aliases (*name) are not allowed: they can expand a small file "
              "without bound; write the value out");
        return std::nullopt;
      }
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
                           "; expected one of: " + core::join(keys));
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
    doc.error(value, with_excerpt(std::move(parsed.error().message), value.Scalar()));
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

// Decimal digits and nothing else (no sign, blanks or suffix); nullopt also when the number
// does not fit 64 bits, which no bound jitd checks comes near.
std::optional<std::uint64_t> whole_number(std::string_view text) {
  std::uint64_t number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return number;
}

core::Result<std::uint16_t> parse_port_number(std::string_view text) {
  const auto number = whole_number(text);
  if (!number || *number < 1 || *number > 65535) {
    return core::fail(ErrorCode::invalid_argument, in_quotes(text) +
                                                       " is not a port number; "
                                                       "expected an integer from 1 to 65535");
  }
  return static_cast<std::uint16_t>(*number);
}

// A parser of prefix lengths of `family`: 0 up to its address size.
auto prefix_length_parser(core::Family family) {
  return [family](std::string_view text) -> core::Result<unsigned> {
    const unsigned bits = core::address_bits(family);
    const auto length = whole_number(text);
    if (!length || *length > bits) {
      return core::fail(ErrorCode::invalid_argument,
                        in_quotes(text) + " is not an " + std::string(core::to_string(family)) +
                            " prefix length; expected an integer from 0 to " +
                            std::to_string(bits));
    }
    return static_cast<unsigned>(*length);
  };
}

// A parser of durations from `least` to `most`; `why` says what the bounds protect, since
// a bare "too long" would leave the reader guessing which limit applies.
auto duration_parser(core::Milliseconds least, core::Milliseconds most, std::string why) {
  return [least, most,
          why = std::move(why)](std::string_view text) -> core::Result<core::Milliseconds> {
    auto duration = core::parse_duration(text);
    if (!duration || (*duration >= least && *duration <= most)) return duration;
    const bool longer = *duration > most;
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + (longer ? " is longer than " : " is shorter than ") +
                          core::format_duration(longer ? most : least) + ", " + why);
  };
}

const auto parse_max_duration = duration_parser(core::Milliseconds{0}, core::max_policy_duration,
                                                "the longest access jitd grants");
// A request waits at most as long as the longest grant could last: an approval that comes a
// day later answers a need that has passed.
const auto parse_approval_timeout =
    duration_parser(core::Milliseconds{0}, core::max_policy_duration,
                    "the longest a request may wait for an approver");
const auto parse_webhook_timeout =
    duration_parser(min_webhook_timeout, max_webhook_timeout,
                    "the bounds of one webhook attempt (a hanging receiver holds a delivery "
                    "that long)");
const auto parse_history_retention =
    duration_parser(min_history_retention, core::Milliseconds::max(),
                    "the shortest history jitd keeps (ended grants must stay long enough "
                    "for someone to look at them)");

// A parser of byte counts of at least `least`; `why` says what the bound protects.
auto bytes_parser(std::uint64_t least, std::string why) {
  return [least, why = std::move(why)](std::string_view text) -> core::Result<std::uint64_t> {
    const auto bytes = whole_number(text);
    if (!bytes) {
      return core::fail(ErrorCode::invalid_argument,
                        in_quotes(text) +
                            " is not a number of bytes; expected an integer such as 67108864 "
                            "(64 MiB), without a unit");
    }
    if (*bytes < least) {
      return core::fail(ErrorCode::invalid_argument,
                        in_quotes(text) + " is less than " + std::to_string(least) + " " + why);
    }
    return *bytes;
  };
}

const auto parse_history_bytes =
    bytes_parser(min_history_max_bytes, "(1 MiB), the smallest history jitd keeps");
const auto parse_audit_bytes =
    bytes_parser(min_audit_max_bytes, "(4 KiB), the smallest audit log file jitd rotates");
const auto parse_audit_retention =
    duration_parser(min_audit_retention, core::Milliseconds::max(),
                    "the shortest time jitd keeps rotated audit logs (records must stay long "
                    "enough for someone to look at them)");
const auto parse_audit_age_duration =
    duration_parser(min_audit_max_age, core::Milliseconds::max(),
                    "the least age at which jitd rotates the audit log");

// A duration, or "off": rotation by size alone.
core::Result<core::Milliseconds> parse_audit_max_age(std::string_view text) {
  if (text == "off") return core::Milliseconds{0};
  auto age = parse_audit_age_duration(text);
  if (!age && !core::parse_duration(text)) {
    return core::fail(ErrorCode::invalid_argument,
                      age.error().message + "; or off, to rotate by size alone");
  }
  return age;
}

// One of a few words, each standing for a value; an unknown word's error lists them all.
template <class T>
struct Word {
  std::string_view text;
  T value;
};

template <class T>
auto word_parser(std::string what, std::initializer_list<Word<T>> words) {
  return [what = std::move(what),
          words = std::vector<Word<T>>(words)](std::string_view text) -> core::Result<T> {
    std::vector<std::string_view> names;
    for (const auto& word : words) {
      if (word.text == text) return word.value;
      names.push_back(word.text);
    }
    const auto last = names.back();
    names.pop_back();
    return core::fail(ErrorCode::invalid_argument, in_quotes(text) + " is not " + what +
                                                       "; expected " + core::join(names) + " or " +
                                                       std::string(last));
  };
}

// An http:// or https:// URL with a host: libcurl would take other schemes (file://, smtp://)
// and a webhook must not become a way to read or send anything else.
core::Result<std::string> parse_webhook_url(std::string_view text) {
  const auto lower = [](std::string_view part) {
    std::string lowered(part);
    for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lowered;
  };
  const auto scheme_end = text.find("://");
  const auto scheme =
      scheme_end == std::string_view::npos ? std::string() : lower(text.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + " is not an http:// or https:// URL");
  }
  const auto rest = text.substr(scheme_end + 3);
  const auto printable = [](unsigned char c) { return c > 0x20 && c < 0x7f; };
  if (rest.empty() || rest.front() == '/' || !std::all_of(rest.begin(), rest.end(), printable)) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) +
                          " is not a URL jitd sends to: it needs a host, and no blanks or "
                          "control characters");
  }
  return std::string(text);
}

core::Result<unsigned> parse_webhook_attempts(std::string_view text) {
  const auto number = whole_number(text);
  if (!number || *number < 1 || *number > max_webhook_attempts) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + " is not a number of attempts; expected 1 to " +
                          std::to_string(max_webhook_attempts));
  }
  return static_cast<unsigned>(*number);
}

core::Result<fs::path> parse_absolute_path(std::string_view text) {
  fs::path path(text);
  if (!path.is_absolute()) {
    return core::fail(ErrorCode::invalid_argument, in_quotes(text) + " is not an absolute path");
  }
  return path;
}

// metricsListen: "127.0.0.1:9464" or "[::1]:9464", on loopback only. The metrics carry no
// secret, but user names and ports in use are nobody's business beyond the host; Prometheus on
// another host scrapes through a proxy or reads the textfile through node_exporter.
core::Result<core::TcpAddress> parse_loopback_address(std::string_view text) {
  const auto refuse = [&](const std::string& why) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + " " + why +
                          "; expected a loopback address and port such as 127.0.0.1:9464 or "
                          "[::1]:9464");
  };
  core::TcpAddress parsed;
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find("]:");
    if (close == std::string_view::npos) return refuse("has no ]:port after its IPv6 address");
    parsed.ipv6 = true;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return refuse("has no :port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return refuse("is an IPv6 address without brackets");
    }
  }
  parsed.address = std::string(host);
  std::array<unsigned char, 16> bytes{};
  if (inet_pton(parsed.ipv6 ? AF_INET6 : AF_INET, parsed.address.c_str(), bytes.data()) != 1) {
    return refuse(std::string("does not start with an ") + (parsed.ipv6 ? "IPv6" : "IPv4") +
                  " address (host names are not resolved)");
  }
  constexpr std::array<unsigned char, 16> ipv6_loopback = {0, 0, 0, 0, 0, 0, 0, 0,
                                                           0, 0, 0, 0, 0, 0, 0, 1};
  if (parsed.ipv6 ? bytes != ipv6_loopback : bytes[0] != 127) {
    return refuse(
        "is not on loopback: jitd serves metrics without authentication, so only on "
        "127.0.0.0/8 or [::1]");
  }
  const auto number = parse_port_number(port);
  if (!number) return refuse("has no valid port (1 to 65535)");
  parsed.port = *number;
  return parsed;
}

// node_exporter's textfile collector reads *.prom files only.
core::Result<fs::path> parse_textfile_path(std::string_view text) {
  auto path = parse_absolute_path(text);
  if (path && path->extension() != ".prom") {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) +
                          " does not end in .prom, and node_exporter's textfile collector reads "
                          "only files that do");
  }
  return path;
}

const auto parse_textfile_interval = duration_parser(
    std::chrono::seconds(1), std::chrono::hours(1),
    "the range jitd rewrites the metrics textfile in (node_exporter reads it at each scrape)");

core::Result<std::string> parse_table_name(std::string_view text) {
  const auto allowed = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; };
  if (text.empty() || text.size() > 63 || !std::all_of(text.begin(), text.end(), allowed)) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) +
                          " is not a valid nftables table name; use 1 to 63 letters, "
                          "digits, '_' or '-'");
  }
  return std::string(text);
}

constexpr std::array<std::string_view, 5> log_levels = {"trace", "debug", "info", "warn", "error"};

core::Result<std::string> parse_log_level(std::string_view text) {
  if (std::find(log_levels.begin(), log_levels.end(), text) == log_levels.end()) {
    return core::fail(
        ErrorCode::invalid_argument,
        in_quotes(text) + " is not a log level; expected one of: " + core::join(log_levels));
  }
  return std::string(text);
}

core::Result<mode_t> parse_socket_mode(std::string_view text) {
  for (const mode_t mode : {0600, 0660, 0666}) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "0%o", mode);
    if (text == octal) return mode;
  }
  return core::fail(ErrorCode::invalid_argument,
                    in_quotes(text) +
                        " is not a socket mode jitd offers; expected 0600 (root "
                        "only), 0660 (root and socketGroup) or 0666 (anyone: the "
                        "policy's roles decide)");
}

const auto parse_ownership =
    word_parser<bool>("a table ownership mode", {{"auto", true}, {"off", false}});
const auto parse_backend = word_parser<Enforcement>(
    "a backend", {{"nftables", Enforcement::nftables}, {"ebpf", Enforcement::ebpf}});
const auto parse_attach =
    word_parser<Attach>("an attach point", {{"tc", Attach::tc}, {"xdp", Attach::xdp}});
// YAML 1.1's yes/no/on/off are not taken: which of them a reader means is a guess.
const auto parse_boolean = word_parser<bool>("a boolean", {{"true", true}, {"false", false}});
const auto parse_audit_rotation = word_parser<core::AuditRotation>(
    "an audit log rotation",
    {{"jitd", core::AuditRotation::jitd}, {"external", core::AuditRotation::external}});
const auto parse_approval =
    word_parser<bool>("an approval mode", {{"required", true}, {"none", false}});
using ExtendFrom = core::PortRule::ExtendFrom;
const auto parse_extend_from = word_parser<ExtendFrom>(
    "what extensions count from", {{"start", ExtendFrom::start}, {"now", ExtendFrom::now}});
const auto parse_mode = word_parser<core::Mode>(
    "a mode", {{"enforce", core::Mode::enforce}, {"audit", core::Mode::audit}});

// What the kernel takes as a network interface name (IFNAMSIZ, no '/', ':' or blanks).
core::Result<std::string> parse_interface_name(std::string_view text) {
  const auto allowed = [](unsigned char c) { return std::isgraph(c) && c != '/' && c != ':'; };
  if (text.empty() || text.size() > 15 || !std::all_of(text.begin(), text.end(), allowed) ||
      text == "." || text == "..") {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) +
                          " is not a network interface name; use 1 to 15 "
                          "printable characters other than '/' and ':'");
  }
  if (text == "lo") {
    return core::fail(ErrorCode::invalid_argument,
                      "loopback is never filtered; leave \"lo\" out of interfaces");
  }
  return std::string(text);
}

// Role members are resolved once, when the policy loads, so that checking a caller's rights
// needs no name-service lookup (which may block on LDAP) per request.
core::Result<std::uint32_t> parse_user(std::string_view text) {
  auto id = sys::user_id(text);
  if (!id) return tl::unexpected(id.error());
  if (!*id) return core::fail(ErrorCode::invalid_argument, "no user " + in_quotes(text));
  return **id;
}

core::Result<std::uint32_t> parse_group(std::string_view text) {
  auto id = sys::group_id(text);
  if (!id) return tl::unexpected(id.error());
  if (!*id) return core::fail(ErrorCode::invalid_argument, "no group " + in_quotes(text));
  return **id;
}

void merge(std::optional<core::Principals>& into, std::optional<core::Principals>&& from) {
  if (!from) return;
  if (!into) {
    into = std::move(from);
    return;
  }
  append(into->users, std::move(from->users));
  append(into->groups, std::move(from->groups));
  append(into->uids, std::move(from->uids));
  append(into->gids, std::move(from->gids));
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
                                          {"mode", "ports", "permanentAllowList", "roles"})) {
        if (const auto* mode = file->find("mode")) {
          if (const auto value = read_scalar(doc_, *mode, parse_mode)) {
            policy_.default_mode = *value;
            policy_.default_mode_origin = doc_.where(mode->key);
          }
        }
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
        if (const auto* roles = file->find("roles")) read_roles(*roles);
      }
    }
    return {std::move(policy_), doc_.take_errors()};
  }

 private:
  void read_rule(const YAML::Node& node) {
    const auto mapping = Mapping::read(
        doc_, node, "port rule",
        {"number", "protocol", "allowedSourceAddressPrefixes", "allowedSourceAddressPrefix",
         "maxRequestAccessDuration", "minRequestPrefixLengthV4", "minRequestPrefixLengthV6",
         "requesters", "terminateSessionsOnEnd", "approval", "approvers", "approvalTimeout",
         "extendFrom", "mode"});
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
    read_optional(doc_, *mapping, "minRequestPrefixLengthV4",
                  prefix_length_parser(core::Family::ipv4), rule.min_request_length_v4);
    read_optional(doc_, *mapping, "minRequestPrefixLengthV6",
                  prefix_length_parser(core::Family::ipv6), rule.min_request_length_v6);
    if (const auto* requesters = mapping->find("requesters")) {
      rule.requesters = read_principals(*requesters);
    }
    read_optional(doc_, *mapping, "terminateSessionsOnEnd", parse_boolean,
                  rule.terminate_sessions_on_end);
    read_approval(*mapping, rule);
    read_optional(doc_, *mapping, "extendFrom", parse_extend_from, rule.extend_from);
    read_optional(doc_, *mapping, "mode", parse_mode, rule.mode);
    // A rule with a valid port is kept even when another field failed, so the merged checks
    // don't add "port not protected" noise on top of the real error.
    if (port) {
      rule.port = *port;
      policy_.rules.push_back(std::move(rule));
    }
  }

  // approval, approvers and approvalTimeout go together: approval without approvers would
  // leave every request pending until it expires, and approvers without approval would be
  // a rule that looks guarded but is not.
  void read_approval(const Mapping& mapping, core::PortRule& rule) {
    const auto* approval = mapping.find("approval");
    // Absent: approval: none.
    const auto required = approval != nullptr ? read_scalar(doc_, *approval, parse_approval)
                                              : std::optional<bool>(false);
    // An invalid approval value is its own error; what would follow from guessing it is noise.
    if (!required) return;
    rule.approval_required = *required;
    const auto* approvers = mapping.find("approvers");
    if (*required) {
      if (approvers == nullptr) {
        doc_.error(approval->at(),
                   "approval: required needs 'approvers' ({users: [...], groups: [...]}): "
                   "without them nobody could approve a request for this port");
      } else if (auto principals =
                     read_principals(*approvers, "nobody could approve a request for this port")) {
        rule.approvers = std::move(*principals);
      }
      read_optional(doc_, mapping, "approvalTimeout", parse_approval_timeout,
                    rule.approval_timeout);
      return;
    }
    const auto setting =
        approval != nullptr ? "this rule says approval: none" : "this rule does not set approval";
    for (const char* key : {"approvers", "approvalTimeout"}) {
      if (const auto* entry = mapping.find(key)) {
        doc_.error(entry->key, in_quotes(key) + " applies with approval: required only, and " +
                                   setting + "; likely a typo: add approval: required, or remove " +
                                   in_quotes(key));
      }
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
          doc_.error(ports->at(),
                     "'ports' must not be empty; leave it out to cover every "
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

  void read_roles(const Entry& entry) {
    const auto mapping =
        Mapping::read(doc_, entry.value, "roles", {"readers", "requesters", "administrators"});
    if (!mapping) return;
    auto& roles = policy_.roles;
    for (auto [name, role] :
         {std::pair{"readers", &roles.readers}, std::pair{"requesters", &roles.requesters},
          std::pair{"administrators", &roles.administrators}}) {
      if (const auto* members = mapping->find(name)) *role = read_principals(*members);
    }
  }

  // {users: [...], groups: [...]}: at least one name; every name must exist. `if_empty` says
  // what naming nobody would mean, where that is worse than a role shutting out all but root.
  std::optional<core::Principals> read_principals(const Entry& entry,
                                                  std::string_view if_empty = {}) {
    const auto what = in_quotes(entry.name);
    const auto nobody = [&] {
      doc_.error(entry.at(), what + " names no user and no group" +
                                 (if_empty.empty() ? "" : ": " + std::string(if_empty)));
      return std::nullopt;
    };
    // A key without a value names nobody, as an empty mapping does (and is reported at the
    // key: an empty value carries the next token's position).
    if (entry.value.IsNull()) return nobody();
    const auto mapping = Mapping::read(doc_, entry.value, what, {"users", "groups"});
    if (!mapping) return std::nullopt;
    core::Principals principals;
    bool valid = true;
    const auto read_names = [&](const char* key, auto parse, std::vector<std::string>& names,
                                std::vector<std::uint32_t>& ids) {
      const auto* list = mapping->find(key);
      if (list == nullptr) return;
      for (const auto& item : read_list(doc_, *list).value_or(std::vector<YAML::Node>{})) {
        if (const auto id = read_scalar(doc_, item, item, "a name in " + in_quotes(key), parse)) {
          names.push_back(item.Scalar());
          ids.push_back(*id);
        } else {
          valid = false;
        }
      }
    };
    read_names("users", parse_user, principals.users, principals.uids);
    read_names("groups", parse_group, principals.groups, principals.gids);
    if (!valid) return std::nullopt;
    // An empty role would quietly shut everyone but root out.
    if (principals.users.empty() && principals.groups.empty()) return nobody();
    return principals;
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
                          in_quotes(text) +
                              " is not allowed in permanentAllowList: it would "
                              "switch protection off for every " +
                              std::string(core::to_string(prefix->family())) + " address");
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

// The policy directory, open, and its policy files: *.yaml and *.yml, not hidden, in byte-wise
// name order. The directory itself may be a link (fleet tools swap directories), but only root
// may be able to change it: whoever can add a file can open every port.
struct PolicyDirectory {
  sys::UniqueFd fd;
  std::vector<std::string> names;
};

// The names jitd reads in the policy directory: *.yaml and *.yml, not hidden.
bool is_policy_file_name(const std::string& name) {
  const auto extension = fs::path(name).extension();
  return !name.starts_with('.') && (extension == ".yaml" || extension == ".yml");
}

std::optional<PolicyDirectory> open_policy_directory(const fs::path& directory,
                                                     std::vector<Diagnostic>& errors) {
  sys::UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    const int error = errno;
    errors.push_back(file_error(
        directory,
        error == ENOENT ? "policy directory does not exist"
        : error == ENOTDIR
            ? "policy directory is not a directory"
            : sys::system_error(ErrorCode::io, "cannot open policy directory", error).message));
    return std::nullopt;
  }
  const auto info = sys::stat_open(fd.get(), "cannot open policy directory");
  auto trusted = info ? sys::check_trusted(*info, "refused policy directory")
                      : core::Result<void>(tl::unexpected(info.error()));
  if (!trusted) {
    errors.push_back(file_error(directory, trusted.error().message));
    return std::nullopt;
  }
  // fdopendir takes its own descriptor: the one kept here stays for openat.
  sys::Handle<DIR, ::closedir> listing(::fdopendir(::dup(fd.get())));
  if (!listing) {
    errors.push_back(file_error(
        directory,
        sys::system_error(ErrorCode::io, "cannot list policy directory", errno).message));
    return std::nullopt;
  }
  PolicyDirectory opened{std::move(fd), {}};
  while (const dirent* entry = ::readdir(listing.get())) {
    const std::string name = entry->d_name;
    if (!is_policy_file_name(name)) continue;
    // A directory named like a policy file is not one; anything else (a link, a FIFO) is
    // refused by name when it is read.
    struct stat type {};
    if (::fstatat(opened.fd.get(), name.c_str(), &type, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(type.st_mode)) {
      continue;
    }
    opened.names.push_back(name);
  }
  std::sort(opened.names.begin(), opened.names.end());
  return opened;
}

core::ProtocolSpec spec_of(core::Protocol protocol) {
  return protocol == core::Protocol::tcp ? core::ProtocolSpec::tcp : core::ProtocolSpec::udp;
}

core::Result<std::string> parse_webhook_event(std::string_view text) {
  if (std::find(std::begin(webhook_events), std::end(webhook_events), text) ==
      std::end(webhook_events)) {
    return core::fail(ErrorCode::invalid_argument,
                      in_quotes(text) + " is not a webhook event; expected one of: " +
                          core::join(webhook_events));
  }
  return std::string(text);
}

std::optional<WebhookSettings> read_webhook(Document& doc, const YAML::Node& node) {
  const auto mapping = Mapping::read(doc, node, "webhook",
                                     {"url", "secretFile", "events", "maxAttempts", "timeout"});
  if (!mapping) return std::nullopt;
  WebhookSettings webhook;
  auto url = read_required(doc, *mapping, "url", parse_webhook_url);
  auto secret = read_required(doc, *mapping, "secretFile", parse_absolute_path);
  read_optional(doc, *mapping, "maxAttempts", parse_webhook_attempts, webhook.max_attempts);
  read_optional(doc, *mapping, "timeout", parse_webhook_timeout, webhook.timeout);
  if (const auto* events = mapping->find("events")) {
    const auto items = read_list(doc, *events);
    if (items && items->empty()) {
      doc.error(events->at(), "\"events\" lists none; leave it out to send every event");
    }
    for (const auto& item : items.value_or(std::vector<YAML::Node>{})) {
      auto event = read_scalar(doc, item, item, "an event in \"events\"", parse_webhook_event);
      if (!event) continue;
      if (std::find(webhook.events.begin(), webhook.events.end(), *event) != webhook.events.end()) {
        doc.error(item, "event " + in_quotes(*event) + " is listed twice");
        continue;
      }
      webhook.events.push_back(std::move(*event));
    }
  } else {
    webhook.events.assign(std::begin(webhook_events), std::end(webhook_events));
  }
  if (!url || !secret) return std::nullopt;
  webhook.url = std::move(*url);
  webhook.secret_file = std::move(*secret);
  return webhook;
}

}  // namespace

Loaded<MainConfig> load_main_config(const fs::path& path) {
  Loaded<MainConfig> loaded;
  std::error_code ec;
  if (!fs::exists(path, ec) && !ec) return loaded;  // no file: every default

  const auto text = read_config_file(path);
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
                                       {"socketPath",
                                        "socketGroup",
                                        "socketMode",
                                        "policyDirectory",
                                        "stateDirectory",
                                        "nftTable",
                                        "nftTableOwnership",
                                        "logLevel",
                                        "backend",
                                        "attach",
                                        "interfaces",
                                        "bpfFilesystem",
                                        "historyRetention",
                                        "historyMaxBytes",
                                        "auditJournal",
                                        "auditRotation",
                                        "auditMaxBytes",
                                        "auditMaxAge",
                                        "auditRetention",
                                        "webhooks",
                                        "metricsListen",
                                        "metricsTextfile",
                                        "metricsTextfileInterval"});
    if (mapping) {
      auto& config = loaded.value;
      read_optional(doc, *mapping, "socketPath", parse_absolute_path, config.socket_path);
      read_optional(doc, *mapping, "socketGroup", parse_string, config.socket_group);
      read_optional(doc, *mapping, "socketMode", parse_socket_mode, config.socket_mode);
      read_optional(doc, *mapping, "policyDirectory", parse_absolute_path, config.policy_directory);
      read_optional(doc, *mapping, "stateDirectory", parse_absolute_path, config.state_directory);
      read_optional(doc, *mapping, "nftTable", parse_table_name, config.nft_table);
      read_optional(doc, *mapping, "nftTableOwnership", parse_ownership,
                    config.claim_table_ownership);
      read_optional(doc, *mapping, "logLevel", parse_log_level, config.log_level);
      read_optional(doc, *mapping, "backend", parse_backend, config.backend);
      read_optional(doc, *mapping, "attach", parse_attach, config.attach);
      read_optional(doc, *mapping, "bpfFilesystem", parse_absolute_path, config.bpf_filesystem);
      read_optional(doc, *mapping, "historyRetention", parse_history_retention,
                    config.history_retention);
      read_optional(doc, *mapping, "historyMaxBytes", parse_history_bytes,
                    config.history_max_bytes);
      read_optional(doc, *mapping, "auditJournal", parse_boolean, config.audit_journal);
      read_optional(doc, *mapping, "auditRotation", parse_audit_rotation, config.audit_rotation);
      read_optional(doc, *mapping, "auditMaxBytes", parse_audit_bytes, config.audit_max_bytes);
      read_optional(doc, *mapping, "auditMaxAge", parse_audit_max_age, config.audit_max_age);
      read_optional(doc, *mapping, "auditRetention", parse_audit_retention, config.audit_retention);
      read_optional(doc, *mapping, "metricsListen", parse_loopback_address, config.metrics_listen);
      read_optional(doc, *mapping, "metricsTextfile", parse_textfile_path, config.metrics_textfile);
      read_optional(doc, *mapping, "metricsTextfileInterval", parse_textfile_interval,
                    config.metrics_textfile_interval);
      if (const auto* entry = mapping->find("metricsTextfileInterval");
          entry != nullptr && config.metrics_textfile.empty()) {
        doc.error(entry->at(),
                  "'metricsTextfileInterval' applies to metricsTextfile, which is not set");
      }
      if (const auto* list = mapping->find("interfaces")) {
        for (const auto& item : read_list(doc, *list).value_or(std::vector<YAML::Node>{})) {
          auto name =
              read_scalar(doc, item, item, "an interface in \"interfaces\"", parse_interface_name);
          if (!name) continue;
          if (std::find(config.interfaces.begin(), config.interfaces.end(), *name) !=
              config.interfaces.end()) {
            doc.error(item, "interface " + in_quotes(*name) + " is listed twice");
            continue;
          }
          config.interfaces.push_back(std::move(*name));
        }
      }
      if (const auto* list = mapping->find("webhooks")) {
        for (const auto& item : read_list(doc, *list).value_or(std::vector<YAML::Node>{})) {
          if (auto webhook = read_webhook(doc, item))
            config.webhooks.push_back(std::move(*webhook));
        }
      }
      if (config.backend != Enforcement::ebpf) {
        // bpfFilesystem is not among them: with nftables it says where to look for the eBPF
        // backend's pins after a switch back.
        for (const char* key : {"attach", "interfaces"}) {
          if (const auto* entry = mapping->find(key)) {
            doc.error(entry->at(), in_quotes(key) +
                                       " applies to backend: ebpf only; this "
                                       "config uses nftables");
          }
        }
      }
    }
  }
  loaded.errors = doc.take_errors();
  return loaded;
}

std::string_view to_string(Enforcement backend) {
  return backend == Enforcement::ebpf ? "ebpf" : "nftables";
}

std::string_view to_string(Attach attach) { return attach == Attach::xdp ? "xdp" : "tc"; }

Loaded<core::Policy> parse_policy_text(const std::string& text, const std::string& file_name) {
  return PolicyParser(file_name).parse(text);
}

namespace {

// One policy file's text, parsed and added to `loaded`.
void add_policy_file(const fs::path& file, const core::Result<std::string>& text,
                     Loaded<core::Policy>& loaded) {
  if (!text) {
    loaded.errors.push_back(file_error(file, text.error().message));
    return;
  }
  auto part = parse_policy_text(*text, file.string());
  append(loaded.value.rules, std::move(part.value.rules));
  append(loaded.value.permanent_allow, std::move(part.value.permanent_allow));
  // A role named in several files holds everyone they name.
  auto& roles = loaded.value.roles;
  merge(roles.readers, std::move(part.value.roles.readers));
  merge(roles.requesters, std::move(part.value.roles.requesters));
  merge(roles.administrators, std::move(part.value.roles.administrators));
  append(loaded.errors, std::move(part.errors));
  // The default mode is policy-wide: files may repeat it, never contradict it.
  auto& policy = loaded.value;
  if (part.value.default_mode_origin.line == 0) return;
  if (policy.default_mode_origin.line == 0) {
    policy.default_mode = part.value.default_mode;
    policy.default_mode_origin = std::move(part.value.default_mode_origin);
  } else if (policy.default_mode != part.value.default_mode) {
    loaded.errors.push_back(
        {part.value.default_mode_origin,
         "mode: " + std::string(core::to_string(part.value.default_mode)) +
             " contradicts mode: " + std::string(core::to_string(policy.default_mode)) + " at " +
             policy.default_mode_origin.to_string() +
             "; the top-level mode is the default of every file's rules, so set it once "
             "(or give each rule its own mode)"});
  }
}

}  // namespace

Loaded<std::vector<PolicySource>> read_policy_directory(const fs::path& directory) {
  Loaded<std::vector<PolicySource>> read;
  if (const auto opened = open_policy_directory(directory, read.errors)) {
    for (const auto& name : opened->names) {
      if (auto text = read_policy_file(opened->fd.get(), name)) {
        read.value.push_back({name, std::move(*text)});
      } else {
        read.errors.push_back(file_error(directory / name, text.error().message));
      }
    }
  }
  return read;
}

Loaded<core::Policy> parse_policy_sources(const fs::path& directory,
                                          const std::vector<PolicySource>& sources) {
  Loaded<core::Policy> loaded;
  for (const auto& source : sources) add_policy_file(directory / source.name, source.text, loaded);
  check_merged_policy(loaded.value, loaded.errors);
  return loaded;
}

namespace {

// The parse of what was read, the errors of reading first (they come first in the directory).
Loaded<core::Policy> parse_read_policy(const fs::path& directory,
                                       const Loaded<std::vector<PolicySource>>& read) {
  auto loaded = parse_policy_sources(directory, read.value);
  loaded.errors.insert(loaded.errors.begin(), read.errors.begin(), read.errors.end());
  return loaded;
}

}  // namespace

Loaded<core::Policy> load_policy_directory(const fs::path& directory,
                                           std::vector<PolicySource>* sources) {
  auto read = read_policy_directory(directory);
  auto loaded = parse_read_policy(directory, read);
  if (sources != nullptr) *sources = std::move(read.value);
  return loaded;
}

Loaded<core::Policy> load_policy_directory_replacing(const fs::path& directory,
                                                     const std::string& name,
                                                     const fs::path& candidate) {
  if (name.find('/') != std::string::npos || !is_policy_file_name(name)) {
    Loaded<core::Policy> refused;
    refused.errors.push_back(file_error(
        directory / name, "jitd reads only *.yaml and *.yml files not starting with '.' in " +
                              directory.string() + ": a file named " + in_quotes(name) +
                              " would be ignored"));
    return refused;
  }
  auto read = read_policy_directory(directory);
  // The copy being replaced is still on disk while a fleet tool validates its successor.
  const auto replaced = directory / name;
  std::erase_if(read.value, [&](const PolicySource& source) { return source.name == name; });
  std::erase_if(read.errors,
                [&](const Diagnostic& error) { return error.where.file == replaced.string(); });
  if (auto text = read_policy_file(AT_FDCWD, candidate.string())) {
    const auto at = std::find_if(read.value.begin(), read.value.end(),
                                 [&](const PolicySource& source) { return source.name > name; });
    read.value.insert(at, PolicySource{name, std::move(*text)});
  } else {
    read.errors.push_back(file_error(candidate, text.error().message));
  }
  return parse_read_policy(directory, read);
}

Loaded<core::Policy> load_policy_file(const fs::path& file) {
  Loaded<core::Policy> loaded;
  add_policy_file(file, read_policy_file(AT_FDCWD, file.string()), loaded);
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
    errors.push_back(
        {later->origin, "rule for " + core::to_string(later->port) + " overlaps the rule for " +
                            core::to_string(earlier->port) + " at " + earlier->origin.to_string()});
  }

  // The kernel set merges adjacent prefixes, so 0.0.0.0/1 + 128.0.0.0/1 lets everyone in as
  // surely as 0.0.0.0/0: the refusal of "everyone" looks at the union, across entries and files.
  for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
    std::vector<core::Prefix> so_far;
    for (const auto& allow : policy.permanent_allow) {
      so_far.insert(so_far.end(), allow.sources.begin(), allow.sources.end());
      if (core::covers_every_address(family, so_far)) {
        errors.push_back({allow.origin,
                          "permanentAllowList entries up to this one together cover "
                          "every " +
                              std::string(core::to_string(family)) +
                              " address, which would switch protection off for "
                              "everyone; split prefixes count as one"});
        break;
      }
    }
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
