#include "jitd/daemon/failpoints.hpp"

#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "jitd/core/failpoint.hpp"

namespace jitd::daemon {

namespace {

std::map<std::string, double, std::less<>>& probabilities() {
  static std::map<std::string, double, std::less<>> table;
  return table;
}

std::mt19937_64& generator() {
  static std::mt19937_64 engine;
  return engine;
}

void maybe_crash(std::string_view name) {
  const auto found = probabilities().find(name);
  if (found == probabilities().end()) return;
  if (std::uniform_real_distribution<double>(0, 1)(generator()) < found->second) {
    kill(getpid(), SIGKILL);
  }
}

}  // namespace

void install_failpoints_from_environment() {
  const char* spec = std::getenv("JITD_FAILPOINTS");
  if (spec == nullptr || *spec == '\0') return;
  std::istringstream items(spec);
  std::string item;
  while (std::getline(items, item, ',')) {
    const auto equals = item.find('=');
    const auto name = item.substr(0, equals);
    const double probability =
        equals == std::string::npos ? 1.0 : std::atof(item.c_str() + equals + 1);
    probabilities()[name] = probability;
  }
  const char* seed = std::getenv("JITD_FAILPOINT_SEED");
  generator().seed(seed != nullptr ? std::strtoull(seed, nullptr, 10) : std::random_device{}());
  core::set_failpoint_handler(&maybe_crash);
  spdlog::warn("failpoints armed (test only): {}", spec);
}

}  // namespace jitd::daemon
