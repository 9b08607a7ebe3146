#pragma once
// The grant journal's format, on text alone: framing, header, grant ↔ JSON, and replay.
// No system calls; FileJournal (file_journal.hpp) does the file.
//
// Format (version 1), one record per line:
//   jitd-journal 1\n                       header, written when the file is created
//   <crc32 as 8 hex digits> <json>\n       a record; the CRC covers the JSON text
// A record is {"type":"grant","grant":{...},"bootId":"..."} (the grant as it now stands; a
// later grant record with the same id replaces an earlier one) or
// {"type":"end","id":"...","status":"Revoked" (older journals: "Expired"),"reason":"..."}.
// A line whose CRC or JSON does not check out (a torn tail after a crash, a flipped bit) is
// dropped and reported; every intact record is kept.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"
#include "jitd/core/journal.hpp"

namespace jitd::state {

inline constexpr int journal_format_version = 1;

// What a replay of a journal's text leaves.
struct TextReplay {
  std::vector<core::JournalEntry> live;           // grants without an end record, in file order
  std::size_t records = 0;                        // intact records read
  std::vector<std::string> dropped;               // one line per dropped part: where, how long, why
  std::map<std::string, std::string> live_lines;  // id → its latest grant record line
  std::map<std::string, std::uint64_t> live_offsets;  // id → where that line starts in the text
  bool current_header = false;                        // the first line is this version's header
};

// Replays `text`, a whole journal; each dropped report starts with `name`. Damage never fails
// the replay; a newer format version does, since this code could misread it.
[[nodiscard]] core::Result<TextReplay> replay_journal(std::string_view text, std::string_view name);

// A journal of the header and `live_lines` (as TextReplay::live_lines), ordered by id.
[[nodiscard]] std::string compacted_journal(const std::map<std::string, std::string>& live_lines);

// The record line of `grant`, or an invalid_argument error when it would not read back.
[[nodiscard]] core::Result<std::string> grant_record(const core::Grant& grant,
                                                     const std::string& boot_id);
// The record line that ends grant `id`.
[[nodiscard]] std::string end_record(const std::string& id, core::GrantStatus status,
                                     const std::string& reason);

// Text of one record line, CRC included (exposed for tests that craft damaged journals).
[[nodiscard]] std::string journal_line(const std::string& json);
[[nodiscard]] std::string grant_to_json(const core::Grant& grant, const std::string& boot_id);
// One grant's JSON object alone, and back: the journal's grant format, which the grant history
// shares so the two never drift apart.
[[nodiscard]] std::string grant_fields_json(const core::Grant& grant);
[[nodiscard]] core::Result<core::Grant> parse_grant_fields(std::string_view text);

}  // namespace jitd::state
