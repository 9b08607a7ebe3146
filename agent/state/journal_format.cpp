#include "jitd/state/journal_format.hpp"

#include <zlib.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

namespace jitd::state {

namespace {

using Json = nlohmann::json;
// Keys in writing order, so a person reading the file sees "type" first.
using OrderedJson = nlohmann::ordered_json;

constexpr std::string_view header_prefix = "jitd-journal ";

std::uint32_t crc_of(std::string_view text) {
  const auto* bytes = reinterpret_cast<const Bytef*>(text.data());
  return static_cast<std::uint32_t>(::crc32_z(::crc32_z(0, nullptr, 0), bytes, text.size()));
}

std::string dump(const OrderedJson& value) {
  // Invalid UTF-8 (say, in a justification) must not make a grant unrecordable.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A record as read back: a grant as it now stands, or (grant empty) the end of `id`.
struct Record {
  std::string id;
  std::optional<core::JournalEntry> grant;
};

// Why a line is not an intact record, for the dropped report.
using Parsed = tl::expected<Record, std::string>;

tl::unexpected<std::string> bad_field(std::string_view name) {
  return tl::unexpected("bad field '" + std::string(name) + "'");
}

const Json* member(const Json& object, std::string_view key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::optional<std::string> string_member(const Json& object, std::string_view key) {
  const auto* value = member(object, key);
  if (value == nullptr || !value->is_string()) return std::nullopt;
  return value->get<std::string>();
}

std::optional<std::uint64_t> unsigned_member(const Json& object, std::string_view key,
                                             std::uint64_t max) {
  const auto* value = member(object, key);
  // "-1" parses as number_integer and "1.0" as a float: both are refused here.
  if (value == nullptr || !value->is_number_unsigned()) return std::nullopt;
  const auto number = value->get<std::uint64_t>();
  if (number > max) return std::nullopt;
  return number;
}

std::optional<core::GrantStatus> parse_status(std::string_view text) {
  return core::parse_grant_status(text);
}

// `where`: the field's path, for the error ("grant.requestor").
tl::expected<core::Requestor, std::string> parse_requestor(const Json* object,
                                                           const std::string& where) {
  if (object == nullptr || !object->is_object()) return bad_field(where);
  const auto uid = unsigned_member(*object, "uid", std::numeric_limits<std::uint32_t>::max());
  if (!uid) return bad_field(where + ".uid");
  auto name = string_member(*object, "name");
  if (!name) return bad_field(where + ".name");
  return core::Requestor{static_cast<std::uint32_t>(*uid), std::move(*name)};
}

std::optional<core::TimePoint> time_member(const Json& object, std::string_view key) {
  const auto text = string_member(object, key);
  if (!text) return std::nullopt;
  const auto parsed = core::parse_utc(*text);
  if (!parsed) return std::nullopt;
  return *parsed;
}

std::optional<core::PortSpec> parse_port(const Json& port) {
  if (!port.is_object()) return std::nullopt;
  const auto number = unsigned_member(port, "number", 65535);
  const auto protocol_text = string_member(port, "protocol");
  if (!number || *number == 0 || !protocol_text) return std::nullopt;
  const auto protocol = core::parse_protocol(*protocol_text);
  if (!protocol) return std::nullopt;
  return core::PortSpec{static_cast<std::uint16_t>(*number), *protocol};
}

tl::expected<core::Grant, std::string> parse_grant(const Json& object) {
  if (!object.is_object()) return bad_field("grant");
  core::Grant grant;

  auto id = string_member(object, "id");
  if (!id || id->empty()) return bad_field("grant.id");
  grant.id = std::move(*id);

  auto requestor = parse_requestor(member(object, "requestor"), "grant.requestor");
  if (!requestor) return tl::unexpected(requestor.error());
  grant.requestor = std::move(*requestor);

  const auto source_text = string_member(object, "source");
  if (!source_text) return bad_field("grant.source");
  const auto source = core::SourceSpec::parse(*source_text);
  if (!source) return bad_field("grant.source");
  grant.source = *source;

  const auto* ports = member(object, "ports");
  if (ports == nullptr || !ports->is_array() || ports->empty()) return bad_field("grant.ports");
  for (const auto& entry : *ports) {
    const auto port = parse_port(entry);
    if (!port) return bad_field("grant.ports");
    grant.ports.push_back(*port);
  }

  const auto start = time_member(object, "startTimeUtc");
  if (!start) return bad_field("grant.startTimeUtc");
  grant.start = *start;
  const auto end = time_member(object, "endTimeUtc");
  if (!end) return bad_field("grant.endTimeUtc");
  grant.end = *end;

  // CLOCK_BOOTTIME never goes below zero.
  const auto deadline =
      unsigned_member(object, "deadlineMs", std::numeric_limits<std::int64_t>::max());
  if (!deadline) return bad_field("grant.deadlineMs");
  grant.deadline = core::Deadline{std::chrono::milliseconds(static_cast<std::int64_t>(*deadline))};

  auto justification = string_member(object, "justification");
  if (!justification) return bad_field("grant.justification");
  grant.justification = std::move(*justification);

  const auto status_text = string_member(object, "status");
  const auto status = status_text ? parse_status(*status_text) : std::nullopt;
  if (!status) return bad_field("grant.status");
  grant.status = *status;

  auto reason = string_member(object, "statusReason");
  if (!reason) return bad_field("grant.statusReason");
  grant.status_reason = std::move(*reason);

  // Fields later versions of jitd added: absent in older journals, and then their defaults.
  grant.requested = grant.start;
  if (member(object, "requestedTimeUtc") != nullptr) {
    const auto requested = time_member(object, "requestedTimeUtc");
    if (!requested) return bad_field("grant.requestedTimeUtc");
    grant.requested = *requested;
  }
  if (member(object, "waitUntilMs") != nullptr) {
    const auto until =
        unsigned_member(object, "waitUntilMs", std::numeric_limits<std::int64_t>::max());
    if (!until) return bad_field("grant.waitUntilMs");
    grant.wait_until = core::Deadline{std::chrono::milliseconds(static_cast<std::int64_t>(*until))};
  }
  if (const auto* approval = member(object, "needsApproval"); approval != nullptr) {
    if (!approval->is_boolean()) return bad_field("grant.needsApproval");
    grant.needs_approval = approval->get<bool>();
  }
  for (const auto& [key, into] :
       {std::pair{"decidedBy", &grant.decided_by}, std::pair{"endedBy", &grant.ended_by}}) {
    if (const auto* who_json = member(object, key); who_json != nullptr) {
      auto who = parse_requestor(who_json, std::string("grant.") + key);
      if (!who) return tl::unexpected(who.error());
      *into = std::move(*who);
    }
  }
  if (member(object, "endedTimeUtc") != nullptr) {
    grant.ended = time_member(object, "endedTimeUtc");
    if (!grant.ended) return bad_field("grant.endedTimeUtc");
  }
  if (grant.status == core::GrantStatus::pending && !grant.wait_until) {
    return bad_field("grant.waitUntilMs");
  }
  return grant;
}

// We write no whitespace, so every record line starts "<8 lowercase hex> {".
bool looks_like_record(std::string_view line) {
  if (line.size() < 11 || line[8] != ' ' || line[9] != '{') return false;
  for (std::size_t i = 0; i < 8; ++i) {
    const char c = line[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// `line` without its newline.
Parsed parse_record(std::string_view line) {
  if (!looks_like_record(line)) return tl::unexpected(std::string("not a record"));
  std::uint32_t crc = 0;
  std::from_chars(line.data(), line.data() + 8, crc, 16);
  const auto text = line.substr(9);
  if (crc_of(text) != crc) return tl::unexpected(std::string("CRC mismatch"));

  // No exceptions: a damaged record is reported, never thrown.
  const auto record = Json::parse(text.begin(), text.end(), nullptr, false);
  if (record.is_discarded() || !record.is_object()) return tl::unexpected(std::string("bad JSON"));
  const auto type = string_member(record, "type");
  if (!type) return bad_field("type");

  if (*type == "grant") {
    const auto* grant_json = member(record, "grant");
    if (grant_json == nullptr) return bad_field("grant");
    auto grant = parse_grant(*grant_json);
    if (!grant) return tl::unexpected(std::move(grant.error()));
    auto boot_id = string_member(record, "bootId");
    if (!boot_id) return bad_field("bootId");
    auto id = grant->id;
    return Record{std::move(id), core::JournalEntry{std::move(*grant), std::move(*boot_id)}};
  }
  if (*type == "end") {
    auto id = string_member(record, "id");
    if (!id || id->empty()) return bad_field("id");
    // Any status word ends the grant: refusing one would bring an ended grant back to life.
    const auto status = string_member(record, "status");
    if (!status || !parse_status(*status)) return bad_field("status");
    if (!string_member(record, "reason")) return bad_field("reason");
    return Record{std::move(*id), std::nullopt};
  }
  return bad_field("type");
}

// What a replay leaves: the live grants in first-appearance order, and their record lines.
class LiveSet {
 public:
  void apply(Record record, std::string line, std::uint64_t offset) {
    if (record.grant) {
      offsets_[record.id] = offset;
      const auto [it, inserted] = position_.try_emplace(record.id, entries_.size());
      if (inserted) {
        entries_.push_back(std::move(record.grant));
      } else {
        entries_[it->second] = std::move(record.grant);
      }
      lines_[record.id] = std::move(line);
    } else if (const auto it = position_.find(record.id); it != position_.end()) {
      entries_[it->second].reset();
      position_.erase(it);
      lines_.erase(record.id);
      offsets_.erase(record.id);
    }
  }

  [[nodiscard]] std::vector<core::JournalEntry> take_entries() {
    std::vector<core::JournalEntry> live;
    for (auto& entry : entries_) {
      if (entry) live.push_back(std::move(*entry));
    }
    return live;
  }
  [[nodiscard]] std::map<std::string, std::string> take_lines() { return std::move(lines_); }
  [[nodiscard]] std::map<std::string, std::uint64_t> take_offsets() { return std::move(offsets_); }

 private:
  std::vector<std::optional<core::JournalEntry>> entries_;  // ended ones reset
  std::unordered_map<std::string, std::size_t> position_;   // live id → index in entries_
  std::map<std::string, std::string> lines_;
  std::map<std::string, std::uint64_t> offsets_;
};

// The header's version, or nullopt when the line is not a well-formed header.
std::optional<std::uint64_t> header_version(std::string_view line) {
  if (!line.starts_with(header_prefix)) return std::nullopt;
  const auto digits = line.substr(header_prefix.size());
  std::uint64_t version = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), version);
  if (digits.empty() || end != digits.data() + digits.size()) return std::nullopt;
  // All digits but too many for the type is still a (much) newer version.
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
  if (ec != std::errc{} || version == 0) return std::nullopt;
  return version;
}

}  // namespace

core::Result<TextReplay> replay_journal(std::string_view text, std::string_view name) {
  TextReplay replay;
  LiveSet live;
  // Byte ranges are inclusive and count the line's newline.
  const auto drop = [&](std::size_t first, std::size_t end, std::size_t line_number,
                        const std::string& why) {
    replay.dropped.push_back(std::string(name) + ": bytes " + std::to_string(first) + "-" +
                             std::to_string(end - 1) + " (line " + std::to_string(line_number) +
                             "): " + why);
  };

  std::size_t begin = 0;
  for (std::size_t line_number = 1; begin < text.size(); ++line_number) {
    const auto newline = text.find('\n', begin);
    if (newline == std::string_view::npos) {
      // Only a crash mid-append leaves this; the rest of the file is intact.
      drop(begin, text.size(), line_number,
           line_number == 1 ? "torn header at end of file (no newline), dropped"
                            : "torn record at end of file (no newline), record dropped");
      break;
    }
    const auto line = text.substr(begin, newline - begin);
    const auto end = newline + 1;

    if (line_number == 1) {
      if (const auto version = header_version(line)) {
        if (*version > static_cast<std::uint64_t>(journal_format_version)) {
          // Reading a newer format with this code could misread it: refuse.
          return core::fail(core::ErrorCode::io,
                            "format version " + std::string(line.substr(header_prefix.size())) +
                                " is newer than version " + std::to_string(journal_format_version) +
                                " that this jitd reads; refusing to use it");
        }
        replay.current_header = *version == static_cast<std::uint64_t>(journal_format_version);
        begin = end;
        continue;
      }
    }

    auto parsed = parse_record(line);
    std::size_t skipped = 0;
    if (!parsed) {
      auto why = line_number == 1 ? std::string("garbled header, dropped")
                                  : parsed.error() + ", record dropped";
      // A lost newline glues a damaged line to the intact record after it; find that one.
      // (A forged record inside a JSON string cannot match: its quotes would be escaped.)
      skipped = line.size() + 1;
      for (std::size_t offset = 1; offset < line.size(); ++offset) {
        const auto rest = line.substr(offset);
        if (!looks_like_record(rest)) continue;
        if (auto tail = parse_record(rest)) {
          parsed = std::move(tail);
          skipped = offset;
          break;
        }
      }
      drop(begin, begin + skipped, line_number, why);
    } else if (line_number == 1) {
      // The header is missing but the records look intact: keep them, and say so.
      replay.dropped.push_back(std::string(name) + ": no '" + std::string(header_prefix) +
                               std::to_string(journal_format_version) +
                               "' header at the start of the file");
    }
    if (parsed) {
      ++replay.records;
      live.apply(std::move(*parsed), std::string(line.substr(skipped)) + "\n", begin + skipped);
    }
    begin = end;
  }
  replay.live = live.take_entries();
  replay.live_lines = live.take_lines();
  replay.live_offsets = live.take_offsets();
  return replay;
}

std::string compacted_journal(const std::map<std::string, std::string>& live_lines) {
  std::string text = std::string(header_prefix) + std::to_string(journal_format_version) + "\n";
  for (const auto& [id, line] : live_lines) text += line;
  return text;
}

std::string journal_line(const std::string& json) {
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", static_cast<unsigned>(crc_of(json)));
  return std::string(crc, 8) + " " + json + "\n";
}

namespace {

OrderedJson requestor_json(const core::Requestor& who) {
  return {{"uid", who.uid}, {"name", who.name}};
}

}  // namespace

std::string grant_fields_json(const core::Grant& grant) {
  OrderedJson ports = OrderedJson::array();
  for (const auto& port : grant.ports) {
    ports.push_back({{"number", port.number}, {"protocol", core::to_string(port.protocol)}});
  }
  OrderedJson grant_json = {{"id", grant.id},
                            {"requestor", requestor_json(grant.requestor)},
                            {"source", grant.source.to_string()},
                            {"ports", std::move(ports)},
                            {"startTimeUtc", core::format_utc(grant.start)},
                            {"endTimeUtc", core::format_utc(grant.end)},
                            {"deadlineMs", grant.deadline.time_since_epoch().count()},
                            {"justification", grant.justification},
                            {"status", core::to_string(grant.status)},
                            {"statusReason", grant.status_reason},
                            {"requestedTimeUtc", core::format_utc(grant.requested)}};
  if (grant.wait_until) grant_json["waitUntilMs"] = grant.wait_until->time_since_epoch().count();
  if (grant.needs_approval) grant_json["needsApproval"] = true;
  if (grant.decided_by) grant_json["decidedBy"] = requestor_json(*grant.decided_by);
  if (grant.ended_by) grant_json["endedBy"] = requestor_json(*grant.ended_by);
  if (grant.ended) grant_json["endedTimeUtc"] = core::format_utc(*grant.ended);
  return dump(grant_json);
}

core::Result<core::Grant> parse_grant_fields(std::string_view text) {
  const auto object = Json::parse(text, nullptr, false);
  auto grant = parse_grant(object);
  if (!grant) return core::fail(core::ErrorCode::invalid_argument, grant.error());
  return std::move(*grant);
}

std::string grant_to_json(const core::Grant& grant, const std::string& boot_id) {
  return dump({{"type", "grant"},
               {"grant", OrderedJson::parse(grant_fields_json(grant))},
               {"bootId", boot_id}});
}

core::Result<std::string> grant_record(const core::Grant& grant, const std::string& boot_id) {
  auto line = journal_line(grant_to_json(grant, boot_id));
  // A grant that would not read back would silently vanish at the next start: refuse it now.
  if (const auto check = parse_record(std::string_view(line).substr(0, line.size() - 1)); !check) {
    return core::fail(core::ErrorCode::invalid_argument,
                      "grant " + grant.id + " cannot be journaled: " + check.error());
  }
  return line;
}

std::string end_record(const std::string& id, core::GrantStatus status, const std::string& reason) {
  return journal_line(
      dump({{"type", "end"}, {"id", id}, {"status", core::to_string(status)}, {"reason", reason}}));
}

}  // namespace jitd::state
