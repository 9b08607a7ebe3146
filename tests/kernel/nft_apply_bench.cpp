// Cost of one grant in the kernel as the number of live grants grows: per N, one install() with
// N single-address grants, then M apply() calls that each add one element (with a timeout)
// and M that each remove one. Not a test: it prints timings and asserts nothing.
//
// Usage: nft_apply_bench [M [N...]]   (defaults: M = 200, N = 0 10000 100000)
//
// Runs as root in a network namespace of its own (unshare), which the kernel removes with the
// table in it when the process exits, however it exits: nothing touches the host's ruleset.
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "jitd/nft/nft_backend.hpp"

namespace {

using jitd::core::AddressValue;
using jitd::core::ElementChanges;
using jitd::core::ElementKey;
using jitd::core::EnforcementSpec;
using jitd::core::Family;
using jitd::core::Protocol;
using jitd::core::TimedElement;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr AddressValue fill_base = 0x0a000000;   // 10.0.0.0: the N grants already there
constexpr AddressValue probe_base = 0x0b000000;  // 11.0.0.0: the M grants timed one by one

ElementKey single(AddressValue address) {
  return ElementKey{{Family::ipv4, address, address}, {Protocol::tcp, 22}};
}

double milliseconds(Clock::duration duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

struct Summary {
  double p50, p99, max;
};

Summary summarise(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double quantile) {
    return samples[static_cast<std::size_t>(quantile * static_cast<double>(samples.size() - 1))];
  };
  return {at(0.50), at(0.99), samples.back()};
}

bool report_failure(const char* what, const jitd::core::Error& error) {
  std::fprintf(stderr, "%s: %s\n", what, error.message.c_str());
  return false;
}

bool run(jitd::nft::NftBackend& backend, std::size_t n, std::size_t m) {
  EnforcementSpec spec;
  spec.protected_ports = {{Protocol::tcp, 22}};
  for (std::size_t i = 0; i < n; ++i) spec.grants.push_back({single(fill_base + i), 1h});
  const auto install_start = Clock::now();
  if (auto installed = backend.install(spec); !installed) {
    return report_failure("install", installed.error());
  }
  const double install_ms = milliseconds(Clock::now() - install_start);

  std::vector<double> adds;
  std::vector<double> removes;
  for (std::size_t j = 0; j < m; ++j) {
    const TimedElement grant{single(probe_base + j), 1h};
    const auto start = Clock::now();
    if (auto applied = backend.apply(ElementChanges{{}, {grant}}); !applied) {
      return report_failure("apply add", applied.error());
    }
    adds.push_back(milliseconds(Clock::now() - start));
  }
  // The timed calls must really have added: every element is in the kernel.
  auto snapshot = backend.snapshot();
  if (!snapshot) return report_failure("snapshot", snapshot.error());
  if (snapshot->grants.size() != n + m) {
    std::fprintf(stderr, "expected %zu elements, the kernel holds %zu\n", n + m,
                 snapshot->grants.size());
    return false;
  }
  for (std::size_t j = 0; j < m; ++j) {
    const auto start = Clock::now();
    if (auto applied = backend.apply(ElementChanges{{single(probe_base + j)}, {}}); !applied) {
      return report_failure("apply remove", applied.error());
    }
    removes.push_back(milliseconds(Clock::now() - start));
  }
  const Summary add = summarise(adds);
  const Summary remove = summarise(removes);
  std::printf("%7zu  %10.1f  %8.3f %8.3f %8.3f  %8.3f %8.3f %8.3f\n", n, install_ms, add.p50,
              add.p99, add.max, remove.p50, remove.p99, remove.max);
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t m = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200;
  std::vector<std::size_t> sizes;
  for (int i = 2; i < argc; ++i) sizes.push_back(std::strtoul(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {0, 10'000, 100'000};
  if (m == 0) {
    std::fprintf(stderr, "usage: nft_apply_bench [M [N...]]\n");
    return 2;
  }
  // A namespace of our own: the host's ruleset is never touched, and the table dies with us.
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "unshare(CLONE_NEWNET): %s (run as root)\n", std::strerror(errno));
    return 1;
  }
  auto backend = jitd::nft::NftBackend::open("jitd", /*claim_ownership=*/false);
  if (!backend) {
    std::fprintf(stderr, "open: %s\n", backend.error().message.c_str());
    return 1;
  }
  std::printf("M = %zu single-address apply() calls per N (ms)\n", m);
  std::printf("%7s  %10s  %8s %8s %8s  %8s %8s %8s\n", "N", "install", "add p50", "p99", "max",
              "del p50", "p99", "max");
  for (const std::size_t n : sizes) {
    if (!run(**backend, n, m)) return 1;
  }
  if (auto removed = (*backend)->uninstall(); !removed) {
    return report_failure("uninstall", removed.error()) ? 0 : 1;
  }
  return 0;
}
