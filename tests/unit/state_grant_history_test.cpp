// The grant history: records read back, filters, stable paging, bounded scans, segments (sealed,
// read across, pruned whole by age and size), damage skipped, reopening.
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

// Records are in end order: a query with `since` stops at the first record that ended more
// than a day (the slack for clock steps) before it, instead of paging through the rest.
TEST(GrantHistory, AQuerySinceStopsAtRecordsThatEndedLongBefore) {
  TempDir dir;
  HistoryLimits limits;
  limits.max_scan_bytes = 4096;
  auto history = open_ok(dir.file("history.jsonl"), limits);
  ASSERT_TRUE(history);
  for (int i = 0; i < 200; ++i) {
    record_ok(*history, ended_grant("old" + std::to_string(i), "bob", {22}, t0));
  }
  record_ok(*history, ended_grant("stepped", "bob", {22}, t0 + 71h));  // a clock step back
  record_ok(*history, ended_grant("new", "bob", {22}, t0 + 72h + 30min));
  core::HistoryQuery query;
  query.since = t0 + 72h;
  const auto page = query_ok(*history, query);
  EXPECT_EQ(ids(page.grants), (std::vector<std::string>{"new"}));
  EXPECT_TRUE(page.next.empty()) << page.next;
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

// The size of one record of ended_grant("g<3 digits>", "alice", {22}, ...).
std::uint64_t line_size() {
  return grant_fields_json(ended_grant("g100", "alice", {22}, t0)).size() + 1;
}

// A history of g100 ... g<100 + count - 1>, one a minute from t0, in history.jsonl.1, .2, ...
// and the active segment, which is sealed once it holds `per_segment` records.
struct SegmentedHistory {
  explicit SegmentedHistory(int count, int per_segment = 2, HistoryLimits custom = {})
      : limits(custom) {
    limits.segment_bytes = per_segment * line_size();
    history = open_ok(path, limits);
    for (int i = 100; i < 100 + count; ++i) record(i);
  }
  // Closes and opens the history again, as a restart of jitd.
  void reopen() {
    history.reset();
    history = open_ok(path, limits);
    ASSERT_TRUE(history);
  }
  void record(int i) {
    record_ok(*history, ended_grant("g" + std::to_string(i), "alice", {22}, t0 + i * 1min));
  }
  [[nodiscard]] fs::path segment(int number) const {
    return dir.file("history.jsonl." + std::to_string(number));
  }
  [[nodiscard]] std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path.parent_path())) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  TempDir dir;
  fs::path path = dir.file("history.jsonl");
  HistoryLimits limits;
  std::unique_ptr<FileGrantHistory> history;
};

std::vector<std::string> g_ids(int newest, int oldest) {
  std::vector<std::string> out;
  for (int i = newest; i >= oldest; --i) out.push_back("g" + std::to_string(i));
  return out;
}

ino_t inode_of(const fs::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_ino;
}

TEST(GrantHistory, SealsTheActiveSegmentOnceFullAndReadsAcrossSegments) {
  SegmentedHistory h(5);
  ASSERT_TRUE(h.history);
  EXPECT_EQ(h.files(),
            (std::vector<std::string>{"history.jsonl", "history.jsonl.1", "history.jsonl.2"}));
  EXPECT_EQ(fs::file_size(h.segment(1)), 2 * line_size());
  EXPECT_EQ(fs::file_size(h.path), line_size());
  EXPECT_EQ(all_ids(*h.history), g_ids(104, 100));
  for (int i = 100; i < 105; ++i) {
    const auto found = h.history->find("g" + std::to_string(i));
    ASSERT_TRUE(found.has_value() && found->has_value()) << i;
    EXPECT_EQ((*found)->ended, t0 + i * 1min);
  }
  // One record a page: the cursors lead from segment to segment, the last page has none.
  core::HistoryQuery query;
  query.limit = 1;
  EXPECT_EQ(all_ids(*h.history, query), g_ids(104, 100));
  query.limit = 5;
  const auto page = query_ok(*h.history, query);
  EXPECT_EQ(ids(page.grants), g_ids(104, 100));
  EXPECT_TRUE(page.next.empty());

  // Reopened: the segments are found, and numbering goes on after the newest.
  h.reopen();
  EXPECT_EQ(all_ids(*h.history), g_ids(104, 100));
  h.record(105);
  EXPECT_TRUE(fs::exists(h.segment(3)));
  EXPECT_EQ(all_ids(*h.history), g_ids(105, 100));
}

// A cursor names a segment by inode: a seal renames the segment it points into, and the next
// page neither repeats nor skips a record.
TEST(GrantHistory, PagesStayStableAcrossASeal) {
  SegmentedHistory h(2, 3);
  ASSERT_TRUE(h.history);
  core::HistoryQuery query;
  query.limit = 1;
  const auto first = query_ok(*h.history, query);
  EXPECT_EQ(ids(first.grants), g_ids(101, 101));
  h.record(102);  // seals the segment the cursor points into
  h.record(103);
  ASSERT_TRUE(fs::exists(h.segment(1)));
  query.cursor = first.next;
  query.limit = 10;
  const auto second = query_ok(*h.history, query);
  EXPECT_EQ(ids(second.grants), g_ids(100, 100));
  EXPECT_TRUE(second.next.empty());
}

TEST(GrantHistory, BoundsTheBytesOneQueryScansAcrossSegments) {
  HistoryLimits limits;
  limits.max_scan_bytes = 3 * line_size();
  SegmentedHistory h(20, 2, limits);
  ASSERT_TRUE(h.history);
  core::HistoryQuery query;
  query.user = "nobody";
  const auto first = query_ok(*h.history, query);
  EXPECT_TRUE(first.grants.empty());
  EXPECT_FALSE(first.next.empty());
  EXPECT_TRUE(all_ids(*h.history, query).empty());
  EXPECT_EQ(all_ids(*h.history), g_ids(119, 100));
}

// Only whole sealed segments go, whose newest record is due: no rewrite, every file left keeps
// its inode, and a segment holding one record within the retention stays whole.
TEST(GrantHistory, PrunesWholeSegmentsPastTheRetention) {
  SegmentedHistory h(7);  // .1: g100 g101, .2: g102 g103, .3: g104 g105, active: g106
  ASSERT_TRUE(h.history);
  const auto kept = inode_of(h.segment(2));
  const auto active = inode_of(h.path);
  const auto retention = HistoryLimits{}.retention;
  // Nothing due.
  EXPECT_EQ(prune_ok(*h.history, t0 + retention + 100min), 0u);
  EXPECT_EQ(all_ids(*h.history), g_ids(106, 100));
  // g100 .. g102 are due, but g103 is not: .1 goes, .2 stays.
  EXPECT_EQ(prune_ok(*h.history, t0 + retention + 102min + 1ms), 2u);
  EXPECT_FALSE(fs::exists(h.segment(1)));
  EXPECT_EQ(inode_of(h.segment(2)), kept);
  EXPECT_EQ(inode_of(h.path), active);
  EXPECT_EQ(all_ids(*h.history), g_ids(106, 102));
  EXPECT_TRUE(h.history->find("g101").has_value() && !h.history->find("g101")->has_value());

  // Appends go on, and reopening sees what prune left.
  h.record(107);
  h.reopen();
  EXPECT_EQ(all_ids(*h.history), g_ids(107, 102));
}

// When no grant ended within the retention, the active segment is due too: it is sealed and
// goes, and the next record starts a new one.
TEST(GrantHistory, PrunesAnActiveSegmentPastTheRetention) {
  SegmentedHistory h(3);
  ASSERT_TRUE(h.history);
  EXPECT_EQ(prune_ok(*h.history, t0 + HistoryLimits{}.retention + 103min), 3u);
  EXPECT_TRUE(all_ids(*h.history).empty());
  EXPECT_EQ(h.files(), (std::vector<std::string>{"history.jsonl"}));
  EXPECT_EQ(fs::file_size(h.path), 0u);
  h.record(200);
  EXPECT_EQ(all_ids(*h.history), g_ids(200, 200));
  EXPECT_EQ(prune_ok(*h.history, t0), 0u);
}

TEST(GrantHistory, PrunesTheOldestSegmentsBeyondTheSizeBound) {
  HistoryLimits limits;
  limits.max_bytes = 5 * line_size();
  SegmentedHistory h(5, 2, limits);
  ASSERT_TRUE(h.history);
  // At the bound: nothing due.
  EXPECT_EQ(prune_ok(*h.history, t0), 0u);
  h.record(105);
  h.record(106);  // 7 records: .1 (g100 g101) goes, leaving 5
  EXPECT_EQ(prune_ok(*h.history, t0), 2u);
  EXPECT_EQ(all_ids(*h.history), g_ids(106, 102));
  EXPECT_EQ(h.files(),
            (std::vector<std::string>{"history.jsonl", "history.jsonl.2", "history.jsonl.3"}));
  EXPECT_EQ(prune_ok(*h.history, t0), 0u);
}

TEST(GrantHistory, PrunesByAgeAndSizeTogether) {
  HistoryLimits limits;
  limits.retention = 24h;
  limits.max_bytes = 4 * line_size();
  SegmentedHistory h(4, 2, limits);  // .1: g100 g101, .2: g102 g103, all at t0 + a few minutes
  ASSERT_TRUE(h.history);
  for (int i = 100; i < 105; ++i) {
    record_ok(*h.history, ended_grant("n" + std::to_string(i), "alice", {22}, t0 + 48h));
  }
  // Both old segments are past the retention; of the 5 new records (.3: n100 n101, .4: n102
  // n103, active: n104), .3 goes for size.
  EXPECT_EQ(prune_ok(*h.history, t0 + 48h), 6u);
  EXPECT_EQ(all_ids(*h.history), (std::vector<std::string>{"n104", "n103", "n102"}));
}

// A segment without one readable record is damage: prune takes it.
TEST(GrantHistory, PrunesASegmentWithoutARecord) {
  SegmentedHistory h(4);
  ASSERT_TRUE(h.history);
  write_text(h.segment(1), "garbage\nmore garbage\n");  // a sealed segment is not held open
  h.reopen();
  EXPECT_EQ(all_ids(*h.history), g_ids(103, 102));
  EXPECT_EQ(prune_ok(*h.history, t0), 2u);
  EXPECT_FALSE(fs::exists(h.segment(1)));
}

// A cursor into a segment pruned since is refused: what it led to is gone.
TEST(GrantHistory, ACursorIntoAPrunedSegmentIsRefused) {
  SegmentedHistory h(5);
  ASSERT_TRUE(h.history);
  core::HistoryQuery query;
  query.limit = 4;
  const auto first = query_ok(*h.history, query);
  EXPECT_EQ(ids(first.grants), g_ids(104, 101));
  ASSERT_FALSE(first.next.empty());  // in .1, before g101
  EXPECT_EQ(prune_ok(*h.history, t0 + HistoryLimits{}.retention + 102min), 2u);
  query.cursor = first.next;
  const auto page = h.history->query(query);
  ASSERT_FALSE(page.has_value());
  EXPECT_EQ(page.error().code, core::ErrorCode::invalid_request);
  EXPECT_NE(page.error().message.find("pruned"), std::string::npos) << page.error().message;
}

// A history.jsonl from before segments, however large, reads as it is; the next record seals
// it whole, and prune takes it as one segment.
TEST(GrantHistory, ReadsAndSealsAHistoryFromBeforeSegments) {
  TempDir dir;
  const auto path = dir.file("history.jsonl");
  std::string text;
  for (int i = 100; i < 110; ++i) {
    text += grant_fields_json(ended_grant("g" + std::to_string(i), "alice", {22}, t0 + i * 1min));
    text += "\n";
  }
  write_text(path, text);
  HistoryLimits limits;
  limits.segment_bytes = 2 * line_size();
  auto history = open_ok(path, limits);
  ASSERT_TRUE(history);
  EXPECT_EQ(all_ids(*history), g_ids(109, 100));
  record_ok(*history, ended_grant("g110", "alice", {22}, t0 + 110min));
  EXPECT_EQ(fs::file_size(dir.file("history.jsonl.1")), 11 * line_size());
  EXPECT_EQ(fs::file_size(path), 0u);
  EXPECT_EQ(all_ids(*history), g_ids(110, 100));
  EXPECT_EQ(prune_ok(*history, t0 + HistoryLimits{}.retention + 111min), 11u);
  EXPECT_FALSE(fs::exists(dir.file("history.jsonl.1")));
}

// A torn line sealed into a segment stays skipped there; the record after it starts a line.
TEST(GrantHistory, SealsATornTailWithoutGluingTheNextRecordOn) {
  HistoryLimits limits;
  limits.segment_bytes = 2 * line_size();
  TempDir dir;
  const auto path = dir.file("history.jsonl");
  const auto torn = grant_fields_json(ended_grant("torn", "alice", {22}, t0));
  write_text(path, grant_fields_json(ended_grant("g100", "alice", {22}, t0)) + "\n" +
                       torn.substr(0, torn.size() / 2));
  auto history = open_ok(path, limits);
  ASSERT_TRUE(history);
  record_ok(*history, ended_grant("g101", "alice", {22}, t0 + 1min));  // seals
  record_ok(*history, ended_grant("g102", "alice", {22}, t0 + 2min));
  EXPECT_TRUE(fs::exists(dir.file("history.jsonl.1")));
  EXPECT_EQ(all_ids(*history), g_ids(102, 100));
  EXPECT_EQ(read_text(path),
            grant_fields_json(ended_grant("g102", "alice", {22}, t0 + 2min)) + "\n");
}

// Without segment_bytes, a segment is max_bytes / 16, at least 256 KiB.
TEST(GrantHistory, SealsAtTheDefaultSegmentSize) {
  TempDir dir;
  const auto path = dir.file("history.jsonl");
  HistoryLimits limits;
  limits.max_bytes = std::uint64_t{1} << 20;
  auto history = open_ok(path, limits);
  ASSERT_TRUE(history);
  int i = 100;
  while (!fs::exists(dir.file("history.jsonl.1")) && i < 10000) {
    record_ok(*history, ended_grant("g" + std::to_string(i++), "alice", {22}, t0));
  }
  const auto size = fs::file_size(dir.file("history.jsonl.1"));
  EXPECT_GE(size, 256u * 1024);
  EXPECT_LT(size, 256u * 1024 + line_size());
}

TEST(GrantHistory, RefusesASegmentThatIsNoRegularFile) {
  TempDir dir;
  fs::create_symlink(dir.file("elsewhere"), dir.file("history.jsonl.1"));
  const auto history = FileGrantHistory::open(dir.file("history.jsonl").string(), {});
  ASSERT_FALSE(history.has_value());
  EXPECT_EQ(history.error().code, core::ErrorCode::io);
  EXPECT_NE(history.error().message.find("history.jsonl.1 is a symbolic link"), std::string::npos)
      << history.error().message;
}

// A crash between the rename of a seal and the creation of the next active segment: open()
// creates it, and the records are all there.
TEST(GrantHistory, OpensAHistoryWhoseSealWasCutShort) {
  SegmentedHistory h(5);
  ASSERT_TRUE(h.history);
  h.history.reset();
  fs::rename(h.path, h.segment(3));
  h.reopen();
  EXPECT_TRUE(fs::exists(h.path));
  EXPECT_EQ(all_ids(*h.history), g_ids(104, 100));
  h.record(105);
  h.record(106);
  EXPECT_TRUE(fs::exists(h.segment(4)));
  EXPECT_EQ(all_ids(*h.history), g_ids(106, 100));
}

}  // namespace
}  // namespace jitd::state
