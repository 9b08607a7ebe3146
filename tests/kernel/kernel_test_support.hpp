// Shared plumbing of the C++ kernel tests: shell helpers for `nft`/`conntrack` children and a
// main() that moves the process into a private network namespace before running the tests.
#pragma once

#include <string>

namespace jitd::test {

struct Output {
  int status = -1;
  std::string text;
};

// Runs a shell command (in our namespace) and returns its exit status and stdout.
Output run(const std::string& command);

// Runs a shell command with `input` on its stdin and returns its exit status.
int feed(const std::string& command, const std::string& input);

// True when run_in_private_network_namespace() could create no namespace outside CI; every
// test should then skip itself.
bool skip_all();

// The whole main() of a kernel test: initialises GoogleTest, moves the process into a new
// network namespace, so nothing can touch the host's, and runs all tests. Without the
// privilege for that (EPERM) the tests are skipped, unless CI=true, where that fails as any
// other error does.
int run_in_private_network_namespace(int argc, char** argv);

}  // namespace jitd::test
