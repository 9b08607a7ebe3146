// The last valid policy copy: what is saved parses back to the same files, and a copy that is
// damaged or from a newer jitd is an error, never a silently different policy.
#include <gtest/gtest.h>

#include <fstream>

#include "jitd/config/last_valid.hpp"
#include "state_test_files.hpp"

namespace jitd::config {
namespace {

const LastValidPolicy saved_policy{
    "/etc/jitd/policies.d",
    "2026-11-30T22:00:00Z",
    {{"10-management.yaml", "ports:\n  - number: 22 # ssh\n    protocol: tcp\n"},
     {"20-empty.yml", ""},
     {"30-quotes.yaml", "description: \"a \\\"quoted\\\" \\u00e9 text\"\n\ttab\r\n"}}};

void write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(LastValidPolicy, SavedCopyLoadsBackByteForByte) {
  test::TempDir dir;
  const auto path = dir.file(last_valid_policy_name);
  ASSERT_TRUE(save_last_valid_policy(path, saved_policy).has_value());
  const auto loaded = load_last_valid_policy(path);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ(**loaded, saved_policy);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
}

TEST(LastValidPolicy, NoCopyIsNotAnError) {
  test::TempDir dir;
  const auto loaded = load_last_valid_policy(dir.file(last_valid_policy_name));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_FALSE(loaded->has_value());
}

TEST(LastValidPolicy, DamagedOrForeignCopiesAreErrorsNamingTheFile) {
  test::TempDir dir;
  const auto path = dir.file(last_valid_policy_name);
  for (const auto& [text, why] : std::initializer_list<std::pair<std::string, std::string>>{
           {R"({"format": 1, "files": )", "is damaged: not a JSON object"},
           {R"([1, 2])", "is damaged: not a JSON object"},
           {R"({"files": []})", "is damaged: no format version"},
           {R"({"format": 1, "directory": "/etc", "savedUtc": "x"})", "files missing"},
           {R"({"format": 1, "directory": "/etc", "savedUtc": "x", "files": [{"name": 1}]})",
            "a file without name or text"},
           {R"({"format": 2, "directory": "/etc", "savedUtc": "x", "files": []})",
            "has format 2, this jitd reads format 1"}}) {
    write(path, text);
    const auto loaded = load_last_valid_policy(path);
    ASSERT_FALSE(loaded.has_value()) << text;
    EXPECT_NE(loaded.error().message.find(path.string()), std::string::npos);
    EXPECT_NE(loaded.error().message.find(why), std::string::npos) << loaded.error().message;
  }
}

TEST(LastValidPolicy, InvalidUtf8IsNotSavedRatherThanAltered) {
  test::TempDir dir;
  const auto path = dir.file(last_valid_policy_name);
  LastValidPolicy bad = saved_policy;
  bad.sources.push_back({"40-bytes.yaml", "# \xff\xfe\n"});
  const auto saved = save_last_valid_policy(path, bad);
  ASSERT_FALSE(saved.has_value());
  EXPECT_NE(saved.error().message.find("not valid UTF-8"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace jitd::config
