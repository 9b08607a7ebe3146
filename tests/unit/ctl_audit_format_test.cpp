// jitctl audit's output formats: CSV against a golden file (RFC 4180, spreadsheet formulas
// neutralised), JSON as one array, the table escaped.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ctl/audit_format.hpp"

namespace jitd::ctl {
namespace {

using nlohmann::json;

std::string golden(const std::string& name) {
  std::ifstream file(std::string(JITD_GOLDEN_DIR) + "/audit/" + name, std::ios::binary);
  EXPECT_TRUE(file) << name;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<json> golden_records() {
  return json::parse(golden("records.json")).get<std::vector<json>>();
}

TEST(AuditCsv, MatchesTheGoldenFile) {
  EXPECT_EQ(audit_csv(golden_records()), golden("records.csv"));
}

TEST(AuditCsv, HeaderAloneWithoutRecords) {
  EXPECT_EQ(audit_csv({}), std::string(audit_csv_header) + "\r\n");
}

TEST(AuditCsv, FieldsAreQuotedAndFormulasNeutralised) {
  EXPECT_EQ(csv_field("plain text"), "plain text");
  EXPECT_EQ(csv_field(""), "");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_field("cr\r"), "\"cr\r\"");
  for (const auto* formula : {"=1+1", "+1", "-1", "@SUM(A1)"}) {
    EXPECT_EQ(csv_field(formula), std::string("'") + formula) << formula;
  }
  EXPECT_EQ(csv_field("\t=1"), "'\t=1");
  EXPECT_EQ(csv_field("=A1,B1"), "\"'=A1,B1\"");
  EXPECT_EQ(csv_field("a=b"), "a=b") << "only a leading sign makes a formula";
}

TEST(AuditJson, OneArrayOfTheRecordsAsTheyCame) {
  const auto records = golden_records();
  EXPECT_EQ(json::parse(audit_json(records)), json(records));
  EXPECT_EQ(json::parse(audit_json({})), json::array());
}

TEST(AuditTable, OneEscapedRowPerRecord) {
  const auto table = audit_table(golden_records());
  std::vector<std::string> lines;
  std::stringstream rows(table);
  for (std::string line; std::getline(rows, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 6u) << table;
  EXPECT_EQ(lines[0].rfind("TIME", 0), 0u);
  EXPECT_NE(lines[1].find("22/tcp 3389/tcp"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("SourceNotAllowed: source 0.0.0.0/0"), std::string::npos) << lines[2];
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
  const auto sneaky = audit_table({json{{"user", "eve\n2026-01-01 forged row\x1b[2J"}}});
  EXPECT_NE(sneaky.find("eve\\n2026-01-01 forged row\\x1b[2J"), std::string::npos) << sneaky;
}

}  // namespace
}  // namespace jitd::ctl
