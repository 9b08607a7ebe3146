// Shared plumbing of the C++ kernel tests: shell helpers for `nft`/`conntrack` children, readers
// of `nft -j` output, and a main() that moves the process into a private network namespace
// before running the tests.
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "jitd/core/backend.hpp"
#include "jitd/core/error.hpp"

namespace jitd::test {

struct Output {
  int status = -1;
  std::string text;
};

// Runs a shell command (in our namespace) and returns its exit status and stdout.
Output run(const std::string& command);

// Runs a shell command with `input` on its stdin and returns its exit status.
int feed(const std::string& command, const std::string& input);

// The items of the "nftables" array that `nft -j <arguments>` prints; empty when nft fails
// (its output always holds a "metainfo" item otherwise).
std::vector<nlohmann::json> nft_json(const std::string& arguments);

// The `nft -j list <what>` objects of one kind ("table", "set", "chain", "rule"); empty when
// the command fails.
std::vector<nlohmann::json> nft_objects(const std::string& what, const std::string& kind);

// Passes when `result` holds a value; otherwise fails with its error's message.
template <class T>
testing::AssertionResult succeeded(const core::Result<T>& result) {
  if (result) return testing::AssertionSuccess();
  return testing::AssertionFailure() << result.error().message;
}

// Backend elements from text, as both backends' tests write them.
// An IPv4 or IPv6 address as the engine's number; throws std::invalid_argument on bad text.
core::AddressValue address(const char* text);
// The range first-last (or one address) for one (protocol, port).
core::ElementKey key(const char* first, const char* last, core::Protocol protocol,
                     std::uint16_t port);
core::ElementKey key(const char* single, core::Protocol protocol, std::uint16_t port);
std::vector<core::ElementKey> keys_of(const std::vector<core::TimedElement>& grants);

// True when CI=true: there a test that cannot run fails instead of skipping.
bool running_under_ci();

// True when run_in_private_network_namespace() found, outside CI, no privilege for a namespace
// or a missing program or file; every test should then skip itself.
bool skip_all();

// The whole main() of a kernel test: initialises GoogleTest, moves the process into a new
// network namespace, so nothing can touch the host's, checks that the programs and files the
// tests use are installed, and runs all tests. Without the privilege for the namespace (EPERM)
// or with something missing the tests are skipped, unless CI=true, where that fails as any
// other error does.
int run_in_private_network_namespace(int argc, char** argv);

}  // namespace jitd::test
