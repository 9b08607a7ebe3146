// The grant history file: records read back, filters, stable paging, bounded scans, pruning by
// age and size (atomic), damage skipped, reopening.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "jitd/state/grant_history.hpp"
#include "jitd/state/journal_format.hpp"
#include "state_test_files.hpp"
#include "test_grants.hpp"

namespace jitd::state {
namespace {

using namespace std::chrono_literals;
using namespace test;
namespace fs = std::filesystem;

const core::TimePoint t0{std::chrono::sys_days{std::chrono::year{2026} / 11 / 30}};

core::Grant ended_grant(const std::string& id, const std::string& user,
                        std::vector<std::uint16_t> ports, core::TimePoint ended) {
  core::Grant grant;
  grant.id = id;
  grant.requestor = {1000, user};
  grant.source = prefix("10.0.0.0/8");
  for (const auto port : ports) grant.ports.push_back({port, core::ProtocolSpec::tcp});
  grant.requested = ended - 1h;
  grant.start = ended - 1h;
  grant.end = ended;
  grant.deadline = core::Deadline{std::chrono::hours(5)};
  grant.justification = "deploy " + id;
  grant.status = core::GrantStatus::revoked;
  grant.status_reason = std::string(core::reason::expired);
  grant.ended = ended;
  return grant;
}

std::vector<std::string> ids(const std::vector<core::Grant>& grants) {
  std::vector<std::string> out;
  for (const auto& grant : grants) out.push_back(grant.id);
  return out;
}

std::unique_ptr<FileGrantHistory> open_ok(const fs::path& path, HistoryLimits limits = {}) {
  auto history = FileGrantHistory::open(path.string(), limits);
  EXPECT_TRUE(history.has_value()) << (history ? "" : history.error().message);
  return history ? std::move(*history) : nullptr;
}

void record_ok(core::GrantHistory& history, const core::Grant& grant) {
  const auto recorded = history.record(grant);
  EXPECT_TRUE(recorded.has_value()) << (recorded ? "" : recorded.error().message);
}

core::HistoryPage query_ok(const core::GrantHistory& history, const core::HistoryQuery& query) {
  auto page = history.query(query);
  EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().message);
  return page ? std::move(*page) : core::HistoryPage{};
}

// Every record the history holds, newest first, through as many pages as it takes.
std::vector<std::string> all_ids(const core::GrantHistory& history, core::HistoryQuery query = {}) {
  std::vector<std::string> out;
  for (int pages = 0; pages < 10000; ++pages) {
    const auto page = query_ok(history, query);
    for (const auto& id : ids(page.grants)) out.push_back(id);
    if (page.next.empty()) break;
    query.cursor = page.next;
  }
  return out;
}

std::size_t prune_ok(core::GrantHistory& history, core::TimePoint now) {
  const auto pruned = history.prune(now);
  EXPECT_TRUE(pruned.has_value()) << (pruned ? "" : pruned.error().message);
  return pruned ? *pruned : 0;
}

class GrantHistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    history = open_ok(path);
    ASSERT_TRUE(history);
    record_ok(*history, ended_grant("a1", "alice", {22}, t0));
    record_ok(*history, ended_grant("b1", "bob", {22, 443}, t0 + 1h));
    record_ok(*history, ended_grant("a2", "alice", {443}, t0 + 2h));
    record_ok(*history, ended_grant("a3", "alice", {8080}, t0 + 3h));
  }

  TempDir dir;
  fs::path path = dir.file("history.jsonl");
  std::unique_ptr<FileGrantHistory> history;
};

TEST_F(GrantHistoryTest, WritesOneGrantFieldsLinePerRecord) {
  const auto first = ended_grant("a1", "alice", {22}, t0);
  const auto text = read_text(path);
  EXPECT_EQ(text.substr(0, text.find('\n') + 1), grant_fields_json(first) + "\n");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4);
}

TEST_F(GrantHistoryTest, FindsTheNewestRecordOfAnId) {
  auto grant = ended_grant("b1", "bob", {22, 443}, t0 + 1h);
  auto found = history->find("b1");
  ASSERT_TRUE(found.has_value()) << found.error().message;
  ASSERT_TRUE(found->has_value());
  expect_same_grant(**found, grant);
  EXPECT_EQ((*found)->ended, grant.ended);
  EXPECT_EQ((*found)->status_reason, "Expired");

  // The same id again (a grant recorded twice): the later record wins.
  grant.ended = t0 + 5h;
  grant.ended_by = core::Requestor{0, "root"};
  grant.status_reason = std::string(core::reason::user_requested);
  record_ok(*history, grant);
  found = history->find("b1");
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->ended, t0 + 5h);
  ASSERT_TRUE((*found)->ended_by.has_value());
  EXPECT_EQ((*found)->ended_by->name, "root");

  found = history->find("nope");
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
  // An id that is a prefix of a held one is not it.
  found = history->find("a");
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
}

TEST_F(GrantHistoryTest, QueriesNewestFirstWithEachFilter) {
  EXPECT_EQ(ids(query_ok(*history, {}).grants), (std::vector<std::string>{"a3", "a2", "b1", "a1"}));

  core::HistoryQuery by_user;
  by_user.user = "alice";
  EXPECT_EQ(ids(query_ok(*history, by_user).grants), (std::vector<std::string>{"a3", "a2", "a1"}));
  by_user.user = "ali";  // exact names only
  EXPECT_TRUE(query_ok(*history, by_user).grants.empty());

  core::HistoryQuery by_port;
  by_port.port = 443;
  EXPECT_EQ(ids(query_ok(*history, by_port).grants), (std::vector<std::string>{"a2", "b1"}));

  core::HistoryQuery since;
  since.since = t0 + 2h;  // at or after
  EXPECT_EQ(ids(query_ok(*history, since).grants), (std::vector<std::string>{"a3", "a2"}));

  core::HistoryQuery all;
  all.user = "alice";
  all.port = 22;
  all.since = t0;
  const auto page = query_ok(*history, all);
  EXPECT_EQ(ids(page.grants), (std::vector<std::string>{"a1"}));
  EXPECT_TRUE(page.next.empty());
}

TEST_F(GrantHistoryTest, RefusesLimitsOutsideThePageSize) {
  for (const std::size_t limit : {std::size_t{0}, core::max_history_page + 1}) {
    core::HistoryQuery query;
    query.limit = limit;
    const auto page = history->query(query);
    ASSERT_FALSE(page.has_value()) << limit;
    EXPECT_EQ(page.error().code, core::ErrorCode::invalid_request);
    EXPECT_NE(page.error().message.find("limit"), std::string::npos);
  }
}

// A cursor points into the file, before the page it ended: records appended meanwhile go after
// it, so the next page neither repeats nor skips one.
TEST_F(GrantHistoryTest, PagesStayStableWhileRecordsAreAppended) {
  core::HistoryQuery query;
  query.limit = 2;
  const auto first = query_ok(*history, query);
  EXPECT_EQ(ids(first.grants), (std::vector<std::string>{"a3", "a2"}));
  ASSERT_FALSE(first.next.empty());

  record_ok(*history, ended_grant("c1", "carol", {22}, t0 + 4h));
  record_ok(*history, ended_grant("c2", "carol", {22}, t0 + 5h));

  query.cursor = first.next;
  const auto second = query_ok(*history, query);
  EXPECT_EQ(ids(second.grants), (std::vector<std::string>{"b1", "a1"}));
  EXPECT_TRUE(second.next.empty());

  // A new query starts at the newest again.
  query.cursor.clear();
  EXPECT_EQ(ids(query_ok(*history, query).grants), (std::vector<std::string>{"c2", "c1"}));
}

TEST_F(GrantHistoryTest, RefusesCursorsItDidNotGive) {
  for (const auto* cursor : {"12", "x:1", "1:2:3", "1:99999999"}) {
    core::HistoryQuery query;
    query.cursor = cursor;
    const auto page = history->query(query);
    ASSERT_FALSE(page.has_value()) << cursor;
    EXPECT_EQ(page.error().code, core::ErrorCode::invalid_request);
    EXPECT_EQ(page.error().message.rfind("cursor:", 0), 0u) << page.error().message;
  }
}

// A filter that matches little reads at most max_scan_bytes per query: a short page and a
// cursor, until the matches (or the start of the file) are reached.
TEST(GrantHistory, BoundsTheBytesOneQueryScans) {
  TempDir dir;
  HistoryLimits limits;
  limits.max_scan_bytes = 4096;
  auto history = open_ok(dir.file("history.jsonl"), limits);
  ASSERT_TRUE(history);
  record_ok(*history, ended_grant("old", "alice", {22}, t0));
  for (int i = 0; i < 200; ++i) {
    record_ok(*history, ended_grant("n" + std::to_string(i), "bob", {22}, t0 + 1h));
  }
  core::HistoryQuery query;
  query.user = "alice";
  const auto first = query_ok(*history, query);
  EXPECT_TRUE(first.grants.empty());
  EXPECT_FALSE(first.next.empty());
  EXPECT_EQ(all_ids(*history, query), (std::vector<std::string>{"old"}));

  // Unfiltered, the pages are as short, and together hold every record.
  EXPECT_EQ(all_ids(*history).size(), 201u);
}

TEST(GrantHistory, RefusesAGrantThatHasNotEnded) {
  TempDir dir;
  auto history = open_ok(dir.file("history.jsonl"));
  ASSERT_TRUE(history);
  auto grant = ended_grant("live", "alice", {22}, t0);
  grant.ended.reset();
  const auto recorded = history->record(grant);
  ASSERT_FALSE(recorded.has_value());
  EXPECT_EQ(recorded.error().code, core::ErrorCode::invalid_argument);
  EXPECT_EQ(read_text(dir.file("history.jsonl")), "");
}

TEST_F(GrantHistoryTest, ReopeningKeepsEveryRecord) {
  history.reset();
  history = open_ok(path);
  ASSERT_TRUE(history);
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a3", "a2", "b1", "a1"}));
  record_ok(*history, ended_grant("a4", "alice", {22}, t0 + 4h));
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a4", "a3", "a2", "b1", "a1"}));
}

// A crash mid-write leaves a torn last line: it is skipped, and the next record (after a
// restart, or in the same process after a failed write) starts on a line of its own.
TEST_F(GrantHistoryTest, SkipsATornLastLineAndAppendsOnANewLine) {
  const auto torn = grant_fields_json(ended_grant("torn", "alice", {22}, t0 + 4h));
  history.reset();
  {
    auto text = read_text(path);
    write_text(path, text + torn.substr(0, torn.size() / 2));
  }
  history = open_ok(path);
  ASSERT_TRUE(history);
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a3", "a2", "b1", "a1"}));
  auto found = history->find("torn");
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());

  record_ok(*history, ended_grant("a4", "alice", {22}, t0 + 5h));
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a4", "a3", "a2", "b1", "a1"}));
  found = history->find("a4");
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->ended, t0 + 5h);
}

TEST_F(GrantHistoryTest, SkipsMalformedAndOverlongLines) {
  history.reset();
  {
    auto text = read_text(path);
    // Garbage, an empty line, JSON that is no grant, and a line longer than any record.
    text += "not json\n\n{\"id\":\"x\"}\n" + std::string(3 << 20, 'x') + "\n";
    write_text(path, text);
  }
  history = open_ok(path);
  ASSERT_TRUE(history);
  record_ok(*history, ended_grant("a4", "alice", {22}, t0 + 4h));
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a4", "a3", "a2", "b1", "a1"}));
  const auto found = history->find("a1");
  ASSERT_TRUE(found.has_value() && found->has_value());
}

TEST(GrantHistory, CreatesAMissingFileAsAnEmptyHistory) {
  TempDir dir;
  const auto path = dir.file("history.jsonl");
  auto history = open_ok(path);
  ASSERT_TRUE(history);
  EXPECT_TRUE(fs::exists(path));
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  const auto page = query_ok(*history, {});
  EXPECT_TRUE(page.grants.empty());
  EXPECT_TRUE(page.next.empty());
  const auto found = history->find("a1");
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
  EXPECT_EQ(prune_ok(*history, t0), 0u);
}

TEST(GrantHistory, OpeningWhatIsNoHistoryFileNamesTheFileAndWhy) {
  TempDir dir;
  // No such directory, a directory, a symbolic link.
  fs::create_directory(dir.file("a-directory"));
  fs::create_symlink(dir.file("target"), dir.file("a-link"));
  const std::vector<std::pair<fs::path, std::string>> cases = {
      {dir.file("missing/history.jsonl"), "No such file or directory"},
      {dir.file("a-directory"), "directory"},
      {dir.file("a-link"), "symbolic link"},
  };
  for (const auto& [path, why] : cases) {
    const auto history = FileGrantHistory::open(path.string(), {});
    ASSERT_FALSE(history.has_value()) << path;
    EXPECT_EQ(history.error().code, core::ErrorCode::io);
    EXPECT_NE(history.error().message.find(path.string()), std::string::npos)
        << history.error().message;
    EXPECT_NE(history.error().message.find(why), std::string::npos) << history.error().message;
  }
  EXPECT_FALSE(fs::exists(dir.file("target")));
}

TEST_F(GrantHistoryTest, PrunesWhatEndedBeforeTheRetention) {
  // Nothing due: no rewrite (the file keeps its inode).
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  EXPECT_EQ(prune_ok(*history, t0 + 90 * 24h), 0u);
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);

  // a1 ended at t0 and b1 at t0 + 1h: both before now - 90 days.
  EXPECT_EQ(prune_ok(*history, t0 + 90 * 24h + 1h + 1ms), 2u);
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a3", "a2"}));
  EXPECT_FALSE(fs::exists(dir.file("history.jsonl.tmp")));
  EXPECT_EQ(read_text(path), grant_fields_json(ended_grant("a2", "alice", {443}, t0 + 2h)) + "\n" +
                                 grant_fields_json(ended_grant("a3", "alice", {8080}, t0 + 3h)) +
                                 "\n");

  // Appends go to the new file, and survive a reopen.
  record_ok(*history, ended_grant("a4", "alice", {22}, t0 + 4h));
  history.reset();
  history = open_ok(path);
  ASSERT_TRUE(history);
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a4", "a3", "a2"}));
}

TEST_F(GrantHistoryTest, ACursorIntoAPrunedFileIsRefused) {
  core::HistoryQuery query;
  query.limit = 1;
  const auto first = query_ok(*history, query);
  ASSERT_FALSE(first.next.empty());
  EXPECT_EQ(prune_ok(*history, t0 + 90 * 24h + 1ms), 1u);
  query.cursor = first.next;
  const auto page = history->query(query);
  ASSERT_FALSE(page.has_value());
  EXPECT_EQ(page.error().code, core::ErrorCode::invalid_request);
  EXPECT_NE(page.error().message.find("replaced"), std::string::npos) << page.error().message;
}

TEST(GrantHistory, PrunesTheOldestBeyondTheSizeBound) {
  TempDir dir;
  const auto path = dir.file("history.jsonl");
  const auto line_size = grant_fields_json(ended_grant("g100", "alice", {22}, t0)).size() + 1;
  HistoryLimits limits;
  limits.max_bytes = 40 * line_size;
  auto history = open_ok(path, limits);
  ASSERT_TRUE(history);
  for (int i = 100; i < 140; ++i) {
    record_ok(*history, ended_grant("g" + std::to_string(i), "alice", {22}, t0 + i * 1min));
  }
  // At the bound: nothing due.
  EXPECT_EQ(fs::file_size(path), limits.max_bytes);
  EXPECT_EQ(prune_ok(*history, t0 + 1h), 0u);

  record_ok(*history, ended_grant("g140", "alice", {22}, t0 + 140min));
  // 41 records; 3/4 of the bound holds 30: the 11 oldest go.
  EXPECT_EQ(prune_ok(*history, t0 + 1h), 11u);
  EXPECT_LE(fs::file_size(path), limits.max_bytes / 4 * 3);
  const auto left = all_ids(*history);
  ASSERT_EQ(left.size(), 30u);
  EXPECT_EQ(left.front(), "g140");
  EXPECT_EQ(left.back(), "g111");
  EXPECT_FALSE(fs::exists(dir.file("history.jsonl.tmp")));
  EXPECT_EQ(prune_ok(*history, t0 + 1h), 0u);
}

// Retention first, then the size bound on what is left; unreadable lines go with the rewrite.
TEST(GrantHistory, PrunesByAgeAndSizeTogether) {
  TempDir dir;
  const auto path = dir.file("history.jsonl");
  const auto line_size = grant_fields_json(ended_grant("g100", "alice", {22}, t0)).size() + 1;
  HistoryLimits limits;
  limits.retention = 24h;
  limits.max_bytes = 8 * line_size;
  auto history = open_ok(path, limits);
  ASSERT_TRUE(history);
  for (int i = 100; i < 105; ++i) {
    record_ok(*history, ended_grant("g" + std::to_string(i), "alice", {22}, t0));
  }
  history.reset();
  write_text(path, read_text(path) + "garbage\n");
  history = open_ok(path, limits);
  ASSERT_TRUE(history);
  for (int i = 105; i < 115; ++i) {
    record_ok(*history, ended_grant("g" + std::to_string(i), "alice", {22}, t0 + 48h));
  }
  // 5 expired; of the 10 left, the 6 newest fit in 3/4 of the bound.
  EXPECT_EQ(prune_ok(*history, t0 + 48h), 9u);
  const auto left = all_ids(*history);
  EXPECT_EQ(left, (std::vector<std::string>{"g114", "g113", "g112", "g111", "g110", "g109"}));
  EXPECT_EQ(read_text(path).find("garbage"), std::string::npos);
}

// A record torn before its newline alone is whole: pruning keeps it and ends the file cleanly.
TEST_F(GrantHistoryTest, PruningEndsTheFileOnAWholeLine) {
  history.reset();
  {
    auto text = read_text(path);
    text.pop_back();
    write_text(path, text);
  }
  history = open_ok(path);
  ASSERT_TRUE(history);
  EXPECT_EQ(prune_ok(*history, t0 + 90 * 24h + 1ms), 1u);
  const auto text = read_text(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  record_ok(*history, ended_grant("a4", "alice", {22}, t0 + 4h));
  EXPECT_EQ(all_ids(*history), (std::vector<std::string>{"a4", "a3", "a2", "b1"}));
}

}  // namespace
}  // namespace jitd::state
