// Times state::FileGrantHistory on a full history (docs/benchmarks.md, "Grant history"): fill
// to --mib MiB through record(), then open, record, 1000-result queries, find and prune of
// one segment, each as the daemon's event loop would run it. Prints a Markdown table.
//
//   jitd_history_bench [--dir DIR] [--mib N] [--rounds N]
//
// DIR (default: a new directory under /tmp) must not hold a history; it is removed at the end.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/prefix.hpp"
#include "jitd/state/grant_history.hpp"

namespace {

using namespace std::chrono_literals;
using jitd::core::TimePoint;
namespace fs = std::filesystem;

const TimePoint t0{std::chrono::sys_days{std::chrono::year{2026} / 1 / 1}};

jitd::core::Grant ended_grant(std::size_t i) {
  jitd::core::Grant grant;
  grant.id = "g" + std::to_string(1000000 + i);
  // One user in 50 is rare, for a filtered query that has to scan.
  grant.requestor = {1000, i % 50 == 0 ? "rare" : "user" + std::to_string(i % 7)};
  grant.source = *jitd::core::Prefix::parse("10.1.2.0/24");
  grant.ports.push_back({22, jitd::core::ProtocolSpec::tcp});
  const auto ended = t0 + std::chrono::seconds(i);
  grant.requested = ended - 1h;
  grant.start = ended - 1h;
  grant.end = ended;
  grant.deadline = jitd::core::Deadline{std::chrono::hours(5)};
  grant.justification = "deploy service " + std::to_string(i % 100);
  grant.status = jitd::core::GrantStatus::revoked;
  grant.status_reason = "Expired";
  grant.ended = ended;
  return grant;
}

[[noreturn]] void die(const std::string& what, const jitd::core::Error& error) {
  std::fprintf(stderr, "%s: %s\n", what.c_str(), error.message.c_str());
  std::exit(1);
}

template <class T>
T must(jitd::core::Result<T> result, const std::string& what) {
  if (!result) die(what, result.error());
  return std::move(*result);
}

void must(const jitd::core::Result<void>& result, const std::string& what) {
  if (!result) die(what, result.error());
}

// Milliseconds of `rounds` runs of `run`: min / median / max.
std::string timed(int rounds, const std::function<void()>& run) {
  std::vector<double> ms;
  for (int i = 0; i < rounds; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  char text[96];
  std::snprintf(text, sizeof text, "%.3f / %.3f / %.3f", ms.front(), ms[ms.size() / 2], ms.back());
  return text;
}

std::uint64_t history_bytes(const fs::path& dir) {
  std::uint64_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir)) bytes += entry.file_size();
  return bytes;
}

std::size_t files(const fs::path& dir) {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir_arg;
  std::uint64_t mib = 64;
  int rounds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--dir")
      dir_arg = argv[i + 1];
    else if (flag == "--mib")
      mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--rounds")
      rounds = std::atoi(argv[i + 1]);
  }
  if (dir_arg.empty()) {
    char pattern[] = "/tmp/jitd-history-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) return 1;
    dir_arg = pattern;
  }
  const fs::path dir = dir_arg;
  fs::create_directories(dir);
  const auto path = (dir / "history.jsonl").string();
  jitd::state::HistoryLimits limits;
  limits.max_bytes = mib << 20;

  // Fill to exactly max_bytes or just over, so the next prune drops one segment for size.
  auto history = must(jitd::state::FileGrantHistory::open(path, limits), "open");
  std::size_t records = 0;
  const auto fill_start = std::chrono::steady_clock::now();
  while (history_bytes(dir) <= limits.max_bytes) {
    for (int i = 0; i < 1000; ++i) must(history->record(ended_grant(records++)), "record");
  }
  const auto fill_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_start).count();
  history.reset();
  std::printf(
      "History: %zu records, %.1f MiB in %zu files (max_bytes %llu MiB), filled in %.2f s "
      "(%.1f us a record)\n\n",
      records, static_cast<double>(history_bytes(dir)) / (1 << 20), files(dir),
      static_cast<unsigned long long>(mib), fill_s, fill_s * 1e6 / static_cast<double>(records));
  std::printf("| operation | rounds | ms min / median / max |\n|---|---|---|\n");

  std::printf("| open() | %d | %s |\n", rounds,
              timed(rounds, [&] {
                history = must(jitd::state::FileGrantHistory::open(path, limits), "open");
              }).c_str());
  std::printf(
      "| record() (no seal) | %d | %s |\n", rounds,
      timed(rounds, [&] { must(history->record(ended_grant(records++)), "record"); }).c_str());

  jitd::core::HistoryQuery newest;
  newest.limit = 1000;
  std::printf("| query(), 1000 newest | %d | %s |\n", rounds,
              timed(rounds, [&] { (void)must(history->query(newest), "query"); }).c_str());
  // A page that starts in a sealed segment 20 MiB back and crosses into the next older one.
  jitd::core::HistoryQuery deep = newest;
  for (int skipped = 0; skipped < 50; ++skipped) {
    deep.cursor = must(history->query(deep), "query").next;
  }
  std::printf("| query(), 1000 from a cursor ~50 000 records back | %d | %s |\n", rounds,
              timed(rounds, [&] { (void)must(history->query(deep), "query"); }).c_str());
  jitd::core::HistoryQuery rare = newest;
  rare.user = "rare";  // 1 in 50: max_scan_bytes (1 MiB) ends the page first
  std::printf("| query(), user matching 1 in 50 (bounded by max_scan_bytes) | %d | %s |\n", rounds,
              timed(rounds, [&] { (void)must(history->query(rare), "query"); }).c_str());
  const auto oldest_id = ended_grant(0).id;
  std::printf("| find() of the oldest record (whole history) | %d | %s |\n",
              std::max(1, rounds / 5),
              timed(std::max(1, rounds / 5), [&] {
                if (!must(history->find(oldest_id), "find"))
                  die("find", {jitd::core::ErrorCode::not_found, oldest_id});
              }).c_str());

  const auto now = ended_grant(records).end;
  std::size_t dropped = 0;
  std::printf("| prune(), one segment over max_bytes | 1 | %s |\n",
              timed(1, [&] { dropped = must(history->prune(now), "prune"); }).c_str());
  std::printf("| prune(), nothing due | %d | %s |\n", rounds,
              timed(rounds, [&] { (void)must(history->prune(now), "prune"); }).c_str());
  // A seal: the record that fills the active segment (fdatasync, rename, create, directory fsync).
  const auto sealed = files(dir);
  std::string seal_ms;
  while (files(dir) == sealed) {
    seal_ms = timed(1, [&] { must(history->record(ended_grant(records++)), "record"); });
  }
  std::printf("| record() that seals the active segment | 1 | %s |\n", seal_ms.c_str());
  std::printf("\nprune() dropped %zu records; %.1f MiB in %zu files left.\n", dropped,
              static_cast<double>(history_bytes(dir)) / (1 << 20), files(dir));
  history.reset();
  fs::remove_all(dir);
  return 0;
}
