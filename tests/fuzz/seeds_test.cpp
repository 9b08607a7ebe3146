// Every seed of every fuzz corpus (tests/fuzz/corpus/<harness>/) run through the harness's
// code as an ordinary unit test: it must return (no crash, no exception, no sanitizer report
// in the sanitized build) and, for the seeds listed in `expected`, answer with the given
// fragment.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "targets.hpp"

namespace {

namespace fs = std::filesystem;

// "<harness>/<seed file>" → a fragment of what the harness must return. Seeds not listed
// only have to return.
const std::map<std::string, std::string> expected = {
    // Policy files.
    {"policy/valid.yaml", "ok"},
    {"policy/valid_allowlist.yaml", "ok"},
    {"policy/empty.yaml", "ok"},
    {"policy/nul_byte.yaml", "fuzz.yaml:3:"},
    {"policy/prefix_leading_zero.yaml", "'01.2.3.4' is not an IPv4 or IPv6 address"},
    {"policy/prefix_length_33.yaml", "prefix length must be 0..32"},
    {"policy/port_huge.yaml", "is not a port number"},
    {"policy/duration_huge.yaml", "is not a valid duration"},
    {"policy/invalid_utf8.yaml", "not valid UTF-8"},
    {"policy/overlong_utf8.yaml", "not valid UTF-8"},
    {"policy/not_a_mapping.yaml", "policy file must be a mapping"},
    {"policy/unknown_key.yaml", "unknown key 'prots'"},
    {"policy/duplicate_key.yaml", "key 'protocol' appears twice"},
    {"policy/duplicate_port.yaml", "overlaps the rule for 22/tcp"},
    {"policy/allowlist_star.yaml", "is not allowed in permanentAllowList"},
    {"policy/aliases.yaml", "YAML aliases (*name) are not allowed"},
    {"policy/billion_laughs_small.yaml", "YAML aliases (*name) are not allowed"},
    {"policy/nesting_100.yaml", "nested deeper than jitd reads"},
    {"policy/nesting_5000.yaml", "fuzz.yaml:1:"},
    {"policy/nesting_5000_block.yaml", "fuzz.yaml:"},
    {"policy/flow_then_comma.yaml", "only one YAML document"},  // hung yaml-cpp's LoadAll
    // Main config.
    {"main_config/valid.yaml", "ok"},
    {"main_config/empty.yaml", "ok"},
    {"main_config/relative_path.yaml", "is not an absolute path"},
    {"main_config/bad_log_level.yaml", "'loud' is not a log level"},
    {"main_config/unknown_key.yaml", "unknown key 'sockPath'"},
    {"main_config/nul_byte.yaml", "jitd.yaml:1:"},
    {"main_config/not_a_mapping.yaml", "main config must be a mapping"},
    {"main_config/duplicate_key.yaml", "key 'logLevel' appears twice"},
    {"main_config/aliases.yaml", "YAML aliases (*name) are not allowed"},
    {"main_config/table_long.yaml", "jitd.yaml:1:"},
    {"main_config/nesting_5000.yaml", "jitd.yaml:1:"},
    {"main_config/flow_then_comma.yaml", "only one YAML document"},  // hung yaml-cpp's LoadAll
    // API requests.
    {"router/create.txt", "201 "},
    {"router/create_v6.txt", "201 "},
    {"router/list.txt", "200 "},
    {"router/revoke.txt", "200 "},
    {"router/revoke_missing.txt", "404 "},
    {"router/policy.txt", "200 "},
    {"router/reload.txt", "200 "},
    {"router/reload_nobody.txt", "403 "},
    {"router/create_nobody.txt", "403 "},
    {"router/put.txt", "405 "},
    {"router/no_route.txt", "404 "},
    {"router/json_nesting_5000.txt", "400 "},
    {"router/json_nesting_5000_open.txt", "400 "},
    {"router/json_truncated.txt", "400 "},
    {"router/number_huge.txt", "400 "},
    {"router/number_float.txt", "400 "},
    {"router/number_exponent.txt", "400 "},
    {"router/number_negative.txt", "400 "},
    {"router/prefix_leading_zero.txt", "400 "},
    {"router/prefix_length_33.txt", "400 "},
    {"router/duration_huge.txt", "400 "},
    {"router/end_time_huge.txt", "400 "},
    {"router/body_invalid_utf8.txt", "400 "},
    {"router/body_overlong_utf8.txt", "400 "},
    {"router/body_nul.txt", "400 "},
    {"router/grant_id_120k.txt", "400 "},
    {"router/path_invalid_utf8.txt", "404 "},
    {"router/path_overlong_utf8.txt", "400 "},
    {"router/path_newline.txt", "400 "},
    // Parsers.
    {"parsers/prefix_v4.txt", "prefix 10.0.0.0/8"},
    {"parsers/prefix_v6.txt", "prefix fd00::/64"},
    {"parsers/prefix_leading_zero.txt", "prefix error"},
    {"parsers/prefix_length_33.txt", "prefix error"},
    {"parsers/prefix_length_huge.txt", "prefix error"},
    {"parsers/prefix_host_bits.txt", "prefix error"},
    {"parsers/prefix_v6_long.txt", "prefix error"},
    {"parsers/duration_iso.txt", "duration PT1H30M"},
    {"parsers/duration_short.txt", "duration PT1H30M"},
    {"parsers/duration_fraction.txt", "duration PT45.5S"},
    {"parsers/duration_zero.txt", "duration error"},
    {"parsers/duration_huge.txt", "duration error"},
    {"parsers/duration_days_huge.txt", "duration error"},
    {"parsers/duration_sum_huge.txt", "duration error"},  // was accepted, printed unparsable
    {"parsers/utc.txt", "utc 2026-11-24T03:30:00Z"},
    {"parsers/utc_offset.txt", "utc 2026-11-24T03:30:00.125Z"},
    {"parsers/utc_bad_day.txt", "utc error"},
    {"parsers/utc_year_huge.txt", "utc error"},
    {"parsers/invalid_utf8.txt", "prefix error"},
    {"parsers/overlong_utf8.txt", "prefix error"},
    // v4-mapped addresses are IPv4, in the policy, in requests and in the parser.
    {"policy/prefix_v4_mapped.yaml", "ok"},
    {"router/prefix_v4_mapped.txt", R"("allowedSourceAddressPrefix":"1.2.3.4")"},
    {"parsers/prefix_v4_mapped.txt", "prefix 1.2.3.4"},
    {"parsers/prefix_v4_mapped_prefix.txt", "prefix 1.2.3.0/24"},
    {"parsers/prefix_nul.txt", "prefix error: address prefix contains a NUL byte"},
    {"router/json_duplicate_key.txt", "400 "},
    // A NUL in a path never reaches a route cut short.
    {"router/path_nul.txt", "400 "},
    {"router/path_nul_list.txt", "404 "},
    // Kept as given: every output escapes it (JSON \u0000, jitctl and logs \x00).
    {"router/justification_escaped_nul.txt", "201 "},
};


struct Seed {
  const jitd::fuzz::Harness* harness;
  fs::path file;
  [[nodiscard]] std::string key() const {
    return std::string(harness->name) + "/" + file.filename().string();
  }
};

// What gtest prints for a parameter: the seed's name, not its bytes.
void PrintTo(const Seed& seed, std::ostream* out) { *out << seed.key(); }

std::vector<Seed> all_seeds() {
  std::vector<Seed> seeds;
  for (const auto& harness : jitd::fuzz::harnesses) {
    const fs::path folder = fs::path(JITD_FUZZ_CORPUS) / harness.name;
    std::vector<fs::path> files;
    if (fs::is_directory(folder)) {
      for (const auto& entry : fs::directory_iterator(folder)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (auto& file : files) seeds.push_back({&harness, std::move(file)});
  }
  return seeds;
}

std::string read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class FuzzSeed : public ::testing::TestWithParam<Seed> {};

TEST_P(FuzzSeed, ReturnsWithTheExpectedOutcome) {
  const auto& seed = GetParam();
  const auto input = read(seed.file);
  const auto answer = seed.harness->run(input);  // an exception fails the test
  const auto found = expected.find(seed.key());
  if (found != expected.end()) {
    EXPECT_NE(answer.find(found->second), std::string::npos)
        << seed.key() << " should answer with \"" << found->second << "\"; it answered:\n"
        << answer.substr(0, 2000);
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, FuzzSeed, ::testing::ValuesIn(all_seeds()),
                         [](const ::testing::TestParamInfo<Seed>& info) {
                           auto name = info.param.key();
                           for (auto& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// A listed seed that was renamed or deleted would silently lose its check.
TEST(FuzzSeeds, EveryExpectationHasItsSeed) {
  for (const auto& [key, fragment] : expected) {
    EXPECT_TRUE(fs::is_regular_file(fs::path(JITD_FUZZ_CORPUS) / key)) << key;
  }
}

}  // namespace
