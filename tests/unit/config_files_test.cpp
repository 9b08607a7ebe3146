// Issue 7: what jitd refuses to read as policy or config — links, files others may change,
// oversized files, aliases, deep nesting — and how little of a file an error may quote.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "jitd/config/config.hpp"

namespace jitd::config {
namespace {

namespace fs = std::filesystem;
using Lines = std::vector<std::string>;

Lines texts(const std::vector<Diagnostic>& errors) {
  Lines lines;
  for (const auto& error : errors) lines.push_back(error.to_string());
  return lines;
}

std::string joined(const std::vector<Diagnostic>& errors) {
  std::string text;
  for (const auto& line : texts(errors)) text += line + "\n";
  return text;
}

constexpr const char* valid_rule =
    "ports:\n"
    "  - number: 22\n"
    "    protocol: tcp\n"
    "    allowedSourceAddressPrefixes: ['*']\n"
    "    maxRequestAccessDuration: PT1H\n";

class PolicyDir {
 public:
  PolicyDir() {
    auto pattern = (fs::temp_directory_path() / "jitd-config-files-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root_ = pattern;
    fs::create_directory(path());
    fs::permissions(path(), fs::perms(0755));
  }
  ~PolicyDir() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  PolicyDir(const PolicyDir&) = delete;
  PolicyDir& operator=(const PolicyDir&) = delete;

  // The policy directory; root_ holds files that are not in it.
  [[nodiscard]] fs::path path() const { return root_ / "policies.d"; }
  [[nodiscard]] std::string at(const std::string& name) const { return (path() / name).string(); }
  fs::path write(const std::string& name, const std::string& text, mode_t mode = 0644) const {
    const auto file = path() / name;
    std::ofstream(file, std::ios::binary) << text;
    fs::permissions(file, fs::perms(mode));
    return file;
  }
  fs::path outside(const std::string& name, const std::string& text) const {
    std::ofstream(root_ / name, std::ios::binary) << text;
    return root_ / name;
  }
  [[nodiscard]] Loaded<core::Policy> load() const { return load_policy_directory(path()); }

 private:
  fs::path root_;
};

// --- Defect 2: links and leaks ----------------------------------------------------------------

TEST(ConfigFiles, PolicySymlinkIsRefusedByNameWithoutReadingIt) {
  PolicyDir dir;
  const auto shadow =
      dir.outside("shadow", "root:$6$secrethash:19000:0:99999:7:::\nbin: secret2\n");
  fs::create_symlink(shadow, dir.path() / "x.yaml");
  const auto loaded = dir.load();
  EXPECT_EQ(texts(loaded.errors),
            Lines{dir.at("x.yaml") +
                  ": cannot open: is a symbolic link; jitd does not follow links here"});
  EXPECT_EQ(joined(loaded.errors).find("secret"), std::string::npos);
}

TEST(ConfigFiles, FifoIsRefusedByName) {
  PolicyDir dir;
  ASSERT_EQ(::mkfifo(dir.at("x.yaml").c_str(), 0644), 0);
  EXPECT_EQ(texts(dir.load().errors),
            Lines{dir.at("x.yaml") + ": refused: is a FIFO, not a regular file"});
}

TEST(ConfigFiles, ErrorsQuoteAShortEscapedExcerpt) {
  const std::string key = "secret\x1b[2J" + std::string(200, 'k');
  const auto loaded = parse_policy_text("\"" + std::string("secret\\e[2J") +
                                            std::string(200, 'k') + "\": 1\n",
                                        "a.yaml");
  ASSERT_EQ(loaded.errors.size(), 1u);
  const auto& message = loaded.errors[0].message;
  EXPECT_EQ(message.find(key), std::string::npos);
  EXPECT_NE(message.find("'secret\\x1b[2Jkkk"), std::string::npos) << message;
  EXPECT_NE(message.find("... (210 characters)'"), std::string::npos) << message;
  EXPECT_LT(message.size(), 200u) << message;
}

TEST(ConfigFiles, ValueErrorsFromOtherParsersAreExcerptedToo) {
  const auto long_prefix = std::string(300, '1');
  const auto loaded = parse_policy_text(
      "ports:\n  - number: 22\n    protocol: tcp\n    allowedSourceAddressPrefix: \"" +
          long_prefix + "\"\n    maxRequestAccessDuration: PT1H\n",
      "a.yaml");
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.errors[0].message.find(long_prefix), std::string::npos)
      << loaded.errors[0].message;
  EXPECT_NE(loaded.errors[0].message.find("(300 characters)"), std::string::npos)
      << loaded.errors[0].message;
}

// --- Defect 11: only root may be able to change policy ----------------------------------------

TEST(ConfigFiles, WorldWritablePolicyFileIsRefusedNamingTheBit) {
  PolicyDir dir;
  dir.write("10-a.yaml", valid_rule, 0646);
  const auto loaded = dir.load();
  EXPECT_EQ(texts(loaded.errors),
            Lines{dir.at("10-a.yaml") +
                  ": refused: mode 0646 lets others change it (o+w); only root may control jitd"});
  EXPECT_TRUE(loaded.value.rules.empty());
}

TEST(ConfigFiles, GroupWritablePolicyDirectoryIsRefused) {
  PolicyDir dir;
  dir.write("10-a.yaml", valid_rule);
  fs::permissions(dir.path(), fs::perms(0775));
  EXPECT_EQ(texts(dir.load().errors),
            Lines{dir.path().string() +
                  ": refused policy directory: mode 0775 lets others change it (g+w); only root "
                  "may control jitd"});
}

TEST(ConfigFiles, PolicyFileOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file away";
  PolicyDir dir;
  const auto file = dir.write("10-a.yaml", valid_rule);
  ASSERT_EQ(::chown(file.c_str(), 65534, 65534), 0);
  EXPECT_EQ(texts(dir.load().errors),
            Lines{dir.at("10-a.yaml") +
                  ": refused: owned by uid 65534, not root; only root may control jitd"});
}

TEST(ConfigFiles, CandidateFileIsCheckedOnItsOwn) {
  PolicyDir dir;
  fs::permissions(dir.path(), fs::perms(01777));  // like /tmp: the directory does not count
  const auto file = dir.write("candidate.yaml", valid_rule);
  const auto loaded = load_policy_file(file);
  EXPECT_EQ(texts(loaded.errors), Lines{});
  EXPECT_EQ(loaded.value.rules.size(), 1u);

  fs::permissions(file, fs::perms(0666));
  EXPECT_EQ(texts(load_policy_file(file).errors),
            Lines{file.string() + ": refused: mode 0666 lets others change it (g+w, o+w); only "
                                  "root may control jitd"});
}

TEST(ConfigFiles, CandidateSymlinkIsRefused) {
  PolicyDir dir;
  const auto target = dir.write("real.yaml", valid_rule);
  fs::create_symlink(target, dir.path() / "link.yaml");
  EXPECT_EQ(texts(load_policy_file(dir.path() / "link.yaml").errors),
            Lines{dir.at("link.yaml") +
                  ": cannot open: is a symbolic link; jitd does not follow links here"});
}

TEST(ConfigFiles, WorldWritableMainConfigIsRefused) {
  PolicyDir dir;
  const auto file = dir.outside("jitd.yaml", "logLevel: debug\n");
  fs::permissions(file, fs::perms(0666));
  EXPECT_EQ(texts(load_main_config(file).errors),
            Lines{file.string() + ": refused: mode 0666 lets others change it (g+w, o+w); only "
                                  "root may control jitd"});
}

// --- Defect 14: bounded cost ------------------------------------------------------------------

TEST(ConfigFiles, OversizedFileIsRefusedBeforeReading) {
  PolicyDir dir;
  const auto text = std::string(valid_rule) + "# " + std::string(1 << 20, 'x') + "\n";
  dir.write("10-big.yaml", text);
  EXPECT_EQ(texts(dir.load().errors),
            Lines{dir.at("10-big.yaml") + ": refused: " + std::to_string(text.size()) +
                  " bytes is larger than the limit of 1048576 bytes"});
}

TEST(ConfigFiles, AliasesAreRefused) {
  // Nine levels of ten aliases each would be a billion nodes.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level < 9; ++level) {
    const auto previous = "*a" + std::to_string(level - 1);
    text += "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
    for (int i = 0; i < 10; ++i) text += (i > 0 ? ", " : "") + previous;
    text += "]\n";
  }
  EXPECT_EQ(texts(parse_policy_text(text, "a.yaml").errors),
            Lines{"a.yaml:2:10: YAML aliases (*name) are not allowed: they can expand a small "
                  "file without bound; write the value out"});
}

TEST(ConfigFiles, DeepFlowNestingIsRefusedBeforeParsing) {
  const std::string text = "ports: " + std::string(5000, '[') + std::string(5000, ']') + "\n";
  EXPECT_EQ(texts(parse_policy_text(text, "a.yaml").errors),
            Lines{"a.yaml:1:1: nested deeper than jitd reads (more than 100 levels, counting "
                  "indentation and open brackets)"});
}

TEST(ConfigFiles, DeepBlockNestingIsRefusedBeforeParsing) {
  std::string sequences = "ports:\n";
  for (int i = 0; i < 5000; ++i) sequences += "- ";
  sequences += "x\n";
  EXPECT_EQ(texts(parse_policy_text(sequences, "a.yaml").errors).size(), 1u);

  std::string mappings;
  for (int i = 0; i < 5000; ++i) mappings += std::string(i, ' ') + "k:\n";
  const auto errors = texts(parse_policy_text(mappings, "a.yaml").errors);
  EXPECT_EQ(errors, Lines{"a.yaml:101:1: nested deeper than jitd reads (more than 100 levels, "
                          "counting indentation and open brackets)"});
}

TEST(ConfigFiles, BracketsInQuotesAndCommentsDoNotCount) {
  const std::string brackets(150, '[');
  const auto loaded = parse_policy_text(std::string(valid_rule) + "# " + brackets + "\n" +
                                            "permanentAllowList:\n"
                                            "  - sourceAddressPrefix: 10.0.0.0/8\n"
                                            "    description: \"" + brackets + "\"\n",
                                        "a.yaml");
  EXPECT_EQ(texts(loaded.errors), Lines{});
}

}  // namespace
}  // namespace jitd::config
