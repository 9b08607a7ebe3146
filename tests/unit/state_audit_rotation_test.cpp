// Rotation of the audit log by size and age, retention, external rotation (logrotate), and
// reads that page across the rotated files: no record lost, split or read twice.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jitd/state/audit_log.hpp"
#include "state_test_files.hpp"

namespace jitd::state {
namespace {

using namespace std::chrono_literals;

const core::TimePoint t0{std::chrono::sys_days{std::chrono::year{2026} / 11 / 30}};

core::AuditEvent event(int number, core::TimePoint when = t0) {
  core::AuditEvent audit;
  audit.time = when;
  audit.event = "request";
  audit.outcome = "granted";
  audit.user = "alice";
  audit.grant_id = "g" + std::to_string(number);
  audit.justification = std::string(40, 'x');
  return audit;
}

std::vector<std::string> ids(const std::vector<std::string>& records) {
  std::vector<std::string> found;
  for (const auto& record : records) {
    found.push_back(nlohmann::json::parse(record).value("grantId", std::string("?")));
  }
  return found;
}

std::vector<std::string> numbered(int from, int to) {
  std::vector<std::string> names;
  for (int i = from; i < to; ++i) names.push_back("g" + std::to_string(i));
  return names;
}

class AuditRotationTest : public ::testing::Test {
 protected:
  std::unique_ptr<AuditLog> open(AuditLimits limits) {
    auto opened = AuditLog::open(dir.file("audit.jsonl"), limits);
    EXPECT_TRUE(opened.has_value()) << opened.error().message;
    return opened ? std::move(*opened) : nullptr;
  }

  // Every record, page after page from `cursor`.
  static std::vector<std::string> read_all(const AuditLog& log, std::size_t limit,
                                           std::string cursor = {}) {
    std::vector<std::string> records;
    core::AuditQuery query;
    query.limit = limit;
    query.cursor = std::move(cursor);
    for (int pages = 0; pages < 1000; ++pages) {
      auto page = log.read(query);
      EXPECT_TRUE(page.has_value()) << page.error().message;
      if (!page) break;
      records.insert(records.end(), page->records.begin(), page->records.end());
      if (page->next.empty()) break;
      EXPECT_NE(page->next, query.cursor) << "a page must move on";
      query.cursor = page->next;
    }
    return ids(records);
  }

  // Lines of every file, each a whole record.
  std::size_t lines_on_disk() {
    std::size_t lines = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.file(""))) {
      const auto text = test::read_text(entry.path());
      EXPECT_TRUE(text.empty() || text.back() == '\n') << entry.path();
      for (std::size_t at = 0, end; (end = text.find('\n', at)) != std::string::npos;
           at = end + 1) {
        EXPECT_FALSE(
            nlohmann::json::parse(text.substr(at, end - at), nullptr, false).is_discarded());
        ++lines;
      }
    }
    return lines;
  }

  test::TempDir dir;
};

TEST_F(AuditRotationTest, BySizeBetweenRecordsAndReadAcrossTheFiles) {
  AuditLimits limits;
  limits.max_bytes = 500;
  auto log = open(limits);
  for (int i = 0; i < 40; ++i) log->record(event(i));
  EXPECT_GE(log->rotated().size(), 5u);
  for (const auto& file : log->rotated()) {
    EXPECT_TRUE(std::filesystem::exists(dir.file("audit.jsonl." + std::to_string(file.number))));
  }
  EXPECT_EQ(lines_on_disk(), 40u);
  EXPECT_EQ(read_all(*log, 3), numbered(0, 40));
  EXPECT_EQ(read_all(*log, 1000), numbered(0, 40));

  // A new jitd finds the rotated files and numbers on after them.
  log.reset();
  log = open(limits);
  for (int i = 40; i < 50; ++i) log->record(event(i));
  EXPECT_EQ(read_all(*log, 7), numbered(0, 50));
  EXPECT_EQ(lines_on_disk(), 50u);
}

TEST_F(AuditRotationTest, ShortPagesWhenTheScanBoundIsReached) {
  AuditLimits limits;
  limits.max_bytes = 1000;
  limits.max_scan_bytes = 300;
  auto log = open(limits);
  for (int i = 0; i < 30; ++i) log->record(event(i));
  core::AuditQuery query;
  query.user = "nobody";
  const auto page = log->read(query);
  ASSERT_TRUE(page.has_value()) << page.error().message;
  EXPECT_TRUE(page->records.empty());
  EXPECT_FALSE(page->next.empty()) << "a short page says where to go on";
  EXPECT_EQ(read_all(*log, 1000), numbered(0, 30));
}

TEST_F(AuditRotationTest, CursorIntoTheCurrentFileStillWorksAfterItWasRotated) {
  AuditLimits limits;
  limits.max_bytes = 10000;
  auto log = open(limits);
  for (int i = 0; i < 4; ++i) log->record(event(i));
  core::AuditQuery query;
  query.limit = 2;
  const auto first = log->read(query);
  ASSERT_TRUE(first.has_value());
  ASSERT_FALSE(first->next.empty());
  limits.max_bytes = 4096;
  log.reset();
  log = open(limits);
  for (int i = 4; i < 60; ++i) log->record(event(i));
  ASSERT_FALSE(log->rotated().empty());
  EXPECT_EQ(read_all(*log, 5, first->next), numbered(2, 60));
}

TEST_F(AuditRotationTest, ByAgeOfTheFirstRecord) {
  AuditLimits limits;
  limits.max_age = 1h;
  auto log = open(limits);
  log->record(event(0, t0));
  log->record(event(1, t0 + 59min));
  EXPECT_TRUE(log->rotated().empty());
  log->record(event(2, t0 + 61min));
  ASSERT_EQ(log->rotated().size(), 1u);
  EXPECT_EQ(ids({test::read_text(dir.file("audit.jsonl"))}), std::vector<std::string>{"g2"});
  EXPECT_EQ(read_all(*log, 10), numbered(0, 3));

  // Off: by size alone.
  limits.max_age = 0ms;
  log.reset();
  log = open(limits);
  log->record(event(3, t0 + 100h));
  EXPECT_EQ(log->rotated().size(), 1u);
}

TEST_F(AuditRotationTest, RetentionPrunesOldRotatedFilesAndTheirCursorsStartAtTheOldestLeft) {
  AuditLimits limits;
  limits.max_bytes = 500;
  limits.retention = std::chrono::days(1);
  auto log = open(limits);
  for (int i = 0; i < 20; ++i) log->record(event(i));
  const auto rotated = log->rotated().size();
  ASSERT_GE(rotated, 2u);
  const auto oldest_cursor = std::to_string(log->rotated().front().inode) + ":0";
  const auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  auto kept = log->prune(now);
  ASSERT_TRUE(kept.has_value()) << kept.error().message;
  EXPECT_EQ(*kept, 0u) << "written just now";
  auto pruned = log->prune(now + std::chrono::days(2));
  ASSERT_TRUE(pruned.has_value()) << pruned.error().message;
  EXPECT_EQ(*pruned, rotated);
  EXPECT_TRUE(log->rotated().empty());
  EXPECT_FALSE(std::filesystem::exists(dir.file("audit.jsonl.1")));
  const auto left = read_all(*log, 100);
  ASSERT_FALSE(left.empty());
  EXPECT_EQ(read_all(*log, 100, oldest_cursor), left);
}

TEST_F(AuditRotationTest, ExternalRotationIsFollowedNotDone) {
  AuditLimits limits;
  limits.rotation = core::AuditRotation::external;
  limits.max_bytes = 4096;
  auto log = open(limits);
  for (int i = 0; i < 100; ++i) log->record(event(i));
  EXPECT_TRUE(log->rotated().empty()) << "jitd does not rotate";
  // logrotate (no copytruncate): rename, then the next record goes to a new file.
  std::filesystem::rename(dir.file("audit.jsonl"), dir.file("audit.jsonl.1"));
  log->record(event(100));
  EXPECT_EQ(ids({test::read_text(dir.file("audit.jsonl"))}), std::vector<std::string>{"g100"});
  EXPECT_EQ(lines_on_disk(), 101u);
  // Removed, not renamed: a new file too.
  std::filesystem::remove(dir.file("audit.jsonl"));
  log->record(event(101));
  EXPECT_EQ(ids({test::read_text(dir.file("audit.jsonl"))}), std::vector<std::string>{"g101"});
  EXPECT_EQ(read_all(*log, 10), std::vector<std::string>{"g101"})
      << "the files logrotate keeps are its own";
}

TEST_F(AuditRotationTest, CursorPastTheEndOfAKnownFileIsRefused) {
  auto log = open({});
  log->record(event(0));
  struct stat info {};
  ASSERT_EQ(::stat(dir.file("audit.jsonl").c_str(), &info), 0);
  core::AuditQuery query;
  query.cursor = std::to_string(info.st_ino) + ":" + std::to_string(info.st_size + 1);
  const auto page = log->read(query);
  ASSERT_FALSE(page.has_value());
  EXPECT_EQ(page.error().code, core::ErrorCode::invalid_request);
  EXPECT_NE(page.error().message.find("cursor:"), std::string::npos) << page.error().message;
}

}  // namespace
}  // namespace jitd::state
