#pragma once
// How `jitctl audit` prints audit records (the objects of GET /v1/audit, as audit.jsonl holds
// them): a table for people, CSV for spreadsheets, JSON for programs. Apart from main.cpp so
// unit tests (tests/unit/ctl_audit_format_test.cpp, its golden files) can check the output.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace jitd::ctl {

// The CSV columns, in order; also the record's keys, but for "ports".
inline constexpr std::string_view audit_csv_header =
    "time,event,outcome,user,uid,grantId,source,ports,endTimeUtc,reason,code,justification";

// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes
// doubled. A spreadsheet runs a cell that starts with = + - or @ as a formula (and a leading
// tab or carriage return hides such a start): those get a leading ' so they stay text.
[[nodiscard]] std::string csv_field(std::string_view text);

// The header and a row per record, each line ending in CRLF (RFC 4180). Ports as
// "22/tcp 3389/tcp"; a field a record lacks is empty.
[[nodiscard]] std::string audit_csv(const std::vector<nlohmann::json>& records);

// One JSON array of the records as they came.
[[nodiscard]] std::string audit_json(const std::vector<nlohmann::json>& records);

// Aligned columns for a terminal, every value escaped (core::escaped), so a justification can
// neither forge a row nor send the terminal an escape sequence.
[[nodiscard]] std::string audit_table(const std::vector<nlohmann::json>& records);

}  // namespace jitd::ctl
