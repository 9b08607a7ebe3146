#include "kernel_test_support.hpp"

#include <arpa/inet.h>
#include <sched.h>
#include <sys/wait.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

namespace jitd::test {
namespace {

bool skipping =
    false;  // set outside CI when no namespace could be created or a requirement is missing

// What the C++ kernel tests run or read, each with the Debian package that provides it
// (scripts/install-deps.sh installs them all). Without /etc/protocols nft prints "6" for "tcp".
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> requirements = {
    {{"nft", "nftables"},
     {"conntrack", "conntrack"},
     {"ip", "iproute2"},
     {"/etc/protocols", "netbase"}}};

// Why the tests cannot run on this machine as set up, or nothing.
std::optional<std::string> missing_requirement() {
  for (const auto& [name, package] : requirements) {
    const bool is_file = name.starts_with('/');
    const bool present = is_file ? std::filesystem::exists(name)
                                 : run("command -v " + std::string(name)).status == 0;
    if (!present) {
      return "missing " + std::string(is_file ? "file" : "program") + " '" + std::string(name) +
             "' (Debian package " + std::string(package) + "): run scripts/install-deps.sh";
    }
  }
  return std::nullopt;
}

}  // namespace

bool running_under_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

Output run(const std::string& command) {
  Output output;
  FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return output;
  std::array<char, 4096> chunk{};
  std::size_t read = 0;
  while ((read = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0) {
    output.text.append(chunk.data(), read);
  }
  output.status = WEXITSTATUS(pclose(pipe));
  return output;
}

int feed(const std::string& command, const std::string& input) {
  FILE* pipe = popen((command + " >/dev/null 2>&1").c_str(), "w");
  if (pipe == nullptr) return -1;
  std::fwrite(input.data(), 1, input.size(), pipe);
  return WEXITSTATUS(pclose(pipe));
}

std::vector<nlohmann::json> nft_json(const std::string& arguments) {
  const Output output = run("nft -j " + arguments);
  if (output.status != 0) return {};
  return nlohmann::json::parse(output.text).at("nftables").get<std::vector<nlohmann::json>>();
}

std::vector<nlohmann::json> nft_objects(const std::string& what, const std::string& kind) {
  std::vector<nlohmann::json> objects;
  for (const nlohmann::json& item : nft_json("list " + what)) {
    if (item.contains(kind)) objects.push_back(item.at(kind));
  }
  return objects;
}

bool skip_all() { return skipping; }

int run_in_private_network_namespace(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (unshare(CLONE_NEWNET) != 0) {
    const int error = errno;
    if (error != EPERM || running_under_ci()) {
      std::fprintf(stderr, "FAILED: cannot create a network namespace for the kernel tests (%s)\n",
                   std::strerror(error));
      return 1;
    }
    std::fprintf(stderr, "SKIPPED: cannot create a network namespace (%s); run as root\n",
                 std::strerror(error));
    skipping = true;
  } else if (const auto missing = missing_requirement()) {
    if (running_under_ci()) {
      std::fprintf(stderr, "FAILED: %s\n", missing->c_str());
      return 1;
    }
    std::fprintf(stderr, "SKIPPED: %s\n", missing->c_str());
    skipping = true;
  }
  return RUN_ALL_TESTS();
}

core::AddressValue address(const char* text) {
  std::array<unsigned char, 16> bytes{};
  const bool v4 = inet_pton(AF_INET, text, bytes.data()) == 1;
  if (!v4 && inet_pton(AF_INET6, text, bytes.data()) != 1) throw std::invalid_argument(text);
  core::AddressValue value = 0;
  for (int i = 0; i < (v4 ? 4 : 16); ++i) value = value << 8 | bytes[i];
  return value;
}

core::ElementKey key(const char* first, const char* last, core::Protocol protocol,
                     std::uint16_t port) {
  const auto family = std::strchr(first, ':') ? core::Family::ipv6 : core::Family::ipv4;
  return core::ElementKey{core::AddressRange{family, address(first), address(last)},
                          core::PortKey{protocol, port}};
}

core::ElementKey key(const char* single, core::Protocol protocol, std::uint16_t port) {
  return key(single, single, protocol, port);
}

std::vector<core::ElementKey> keys_of(const std::vector<core::TimedElement>& grants) {
  std::vector<core::ElementKey> keys;
  for (const auto& grant : grants) keys.push_back(grant.key);
  return keys;
}

}  // namespace jitd::test
