#include "audit_format.hpp"

#include <iomanip>
#include <sstream>
#include <utility>

#include "jitd/core/text.hpp"

namespace jitd::ctl {

namespace {

using nlohmann::json;

// A record's value as text: strings as they are, numbers in decimal, anything else (which
// jitd does not write) as JSON; absent: empty.
std::string value_text(const json& record, const char* key) {
  if (!record.is_object()) return {};
  const auto found = record.find(key);
  if (found == record.end() || found->is_null()) return {};
  if (found->is_string()) return found->get<std::string>();
  return found->dump(-1, ' ', false, json::error_handler_t::replace);
}

// "22/tcp 3389/tcp".
std::string ports_text(const json& record) {
  if (!record.is_object() || !record.contains("ports") || !record["ports"].is_array()) {
    return value_text(record, "ports");
  }
  std::string text;
  for (const auto& port : record["ports"]) {
    if (!text.empty()) text += ' ';
    text += value_text(port, "number") + "/" + value_text(port, "protocol");
  }
  return text;
}

struct Column {
  const char* key;    // "ports" is read by ports_text
  const char* title;  // in the table; 0 width: not in the table
  int width;
};

// The CSV's columns (audit_csv_header), and which of them the table shows, how wide.
constexpr Column columns[] = {
    {"time", "TIME", 26},     {"event", "EVENT", 10}, {"outcome", "OUTCOME", 16},
    {"user", "USER", 12},     {"uid", "UID", 0},      {"grantId", "GRANT", 18},
    {"source", "SOURCE", 20}, {"ports", "PORTS", 18}, {"endTimeUtc", "END (UTC)", 0},
    {"reason", "REASON", 0},  {"code", "CODE", 0},    {"justification", "", 0}};

std::string column_text(const json& record, const Column& column) {
  return std::string_view(column.key) == "ports" ? ports_text(record)
                                                 : value_text(record, column.key);
}

}  // namespace

std::string csv_field(std::string_view text) {
  std::string field;
  if (!text.empty() && std::string_view("=+-@\t\r").find(text.front()) != std::string_view::npos) {
    field += '\'';
  }
  field += text;
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (const char c : field) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string audit_csv(const std::vector<json>& records) {
  std::string out(audit_csv_header);
  out += "\r\n";
  for (const auto& record : records) {
    bool first = true;
    for (const auto& column : columns) {
      if (!std::exchange(first, false)) out += ',';
      out += csv_field(column_text(record, column));
    }
    out += "\r\n";
  }
  return out;
}

std::string audit_json(const std::vector<json>& records) {
  return json(records).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string audit_table(const std::vector<json>& records) {
  std::ostringstream out;
  out << std::left;
  for (const auto& column : columns) {
    if (column.width > 0) out << std::setw(column.width) << column.title;
  }
  out << "REASON\n";
  for (const auto& record : records) {
    for (const auto& column : columns) {
      if (column.width > 0) {
        out << std::setw(column.width) << core::escaped(column_text(record, column));
      }
    }
    // The reason says why; a refusal's code is its kind, worth the few characters.
    auto reason = value_text(record, "reason");
    if (const auto code = value_text(record, "code"); !code.empty()) {
      reason = reason.empty() ? code : code + ": " + reason;
    }
    out << core::escaped(reason) << "\n";
  }
  return out.str();
}

}  // namespace jitd::ctl
