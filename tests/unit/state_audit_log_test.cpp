#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "jitd/state/audit_log.hpp"
#include "state_test_files.hpp"

namespace jitd::state {
namespace {

using test::read_text;

core::AuditEvent granted(std::string grant_id) {
  core::AuditEvent event;
  event.time = core::TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 24}};
  event.event = "request";
  event.outcome = "granted";
  event.grant_id = std::move(grant_id);
  event.uid = 1000;
  event.user = "alice";
  event.source = "203.0.113.7";
  event.ports = {{22, core::ProtocolSpec::tcp}};
  event.justification = "ticket OPS-1";
  event.end_time = "2026-11-24T03:00:00.000Z";
  return event;
}

std::unique_ptr<AuditLog> open_ok(const std::filesystem::path& path) {
  auto log = AuditLog::open(path);
  EXPECT_TRUE(log.has_value()) << (log ? "" : log.error().message);
  return log ? std::move(*log) : nullptr;
}

// Every line of `text` is one whole JSON object.
void expect_whole_lines(const std::string& text) {
  ASSERT_TRUE(text.empty() || text.back() == '\n') << text;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto json = nlohmann::json::parse(line, nullptr, false);
    EXPECT_TRUE(!json.is_discarded() && json.is_object()) << line;
  }
}

TEST(AuditLog, AppendsOneLinePerEvent) {
  test::TempDir dir;
  const auto path = dir.file("audit.jsonl");
  auto log = open_ok(path);
  ASSERT_TRUE(log);
  log->record(granted("g-1"));
  log->record(granted("g-2"));
  EXPECT_EQ(read_text(path), to_json_line(granted("g-1")) + to_json_line(granted("g-2")));
  expect_whole_lines(read_text(path));
}

// A full disk (here a file size limit) cuts a line short: the fragment is taken back, so the
// next line does not start glued onto it.
TEST(AuditLog, ShortWriteIsTakenBackSoTheNextLineStartsClean) {
  test::TempDir dir;
  const auto path = dir.file("audit.jsonl");
  auto log = open_ok(path);
  ASSERT_TRUE(log);
  log->record(granted("g-1"));
  const auto before = read_text(path);
  {
    test::FileSizeLimit limit;
    limit.set(before.size() + 40);
    log->record(granted("g-2"));  // 40 bytes reach the file
    limit.set(before.size());
    log->record(granted("g-3"));  // nothing does: EFBIG
  }
  log->record(granted("g-4"));
  const auto text = read_text(path);
  expect_whole_lines(text);
  EXPECT_EQ(text, before + to_json_line(granted("g-4")));
}

}  // namespace
}  // namespace jitd::state
