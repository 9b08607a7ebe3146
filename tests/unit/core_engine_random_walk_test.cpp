#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- random walk

// Random requests, revokes, installs and clock steps against the kernel model. After
// every step the kernel must let each sample address through exactly until the latest
// end among the live grants covering it, and no transaction may be one a kernel refuses.
TEST_F(CoreEngineTest, PropertyKernelMatchesLiveGrants) {
  std::mt19937 random(424242);
  const std::vector<std::string> sources = {
      "10.0.0.0/24", "10.0.0.0/25", "10.0.0.77",   "10.0.0.128/26", "10.0.0.200", "10.0.0.0/30",
      "0.0.0.0/0",   "203.0.113.7", "fd00::/64",   "fd00::1",       "fd00::/126", "::/0"};
  const std::vector<std::vector<PortSpec>> port_sets = {
      {ssh}, {https}, {dns}, {PortSpec{53, ProtocolSpec::udp}}, {ssh, dns}, {ssh, https}};
  std::vector<Prefix> samples;
  for (unsigned i = 0; i < 256; i += 3) samples.push_back(prefix("10.0.0." + std::to_string(i)));
  for (const auto* text : {"10.0.0.76", "10.0.0.77", "10.0.0.78", "10.0.0.127", "10.0.0.128",
                           "10.0.0.191", "10.0.0.192", "10.0.0.255", "10.0.1.0", "0.0.0.0",
                           "255.255.255.255", "203.0.113.7", "fd00::", "fd00::1", "fd00::3",
                           "fd00::4", "fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::", "::",
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    samples.push_back(prefix(text));
  }
  const PortKey keys[] = {ssh_key, https_key, dns_tcp, dns_udp};

  int granted = 0, revoked = 0;
  for (int step = 0; step < 600; ++step) {
    const int action = static_cast<int>(random() % 10);
    if (action < 5) {
      const auto& source = sources[random() % sources.size()];
      const auto& ports = port_sets[random() % port_sets.size()];
      const auto duration = Milliseconds((1 + random() % 120) * 60'000);
      if (engine.request(admin, ask(ports, source, duration))) ++granted;
    } else if (action < 7) {
      const auto active = engine.active_grants();
      if (!active.empty()) {
        const auto& victim = active[random() % active.size()];
        ASSERT_TRUE(engine.revoke(admin, victim.id).has_value()) << "step " << step;
        ++revoked;
      }
    } else if (action < 9) {
      clock.advance(Milliseconds((random() % 40) * 60'000 + random() % 1000));
      if (random() % 2 == 0) engine.expire_due();
    } else {
      ASSERT_TRUE(engine.install().has_value()) << "step " << step;
    }
    ASSERT_TRUE(backend.violations.empty()) << "step " << step << ": " << backend.violations[0];

    const auto active = engine.active_grants();
    for (const auto& sample : samples) {
      for (const auto port : keys) {
        std::optional<Deadline> expected;
        for (const auto& grant : active) {
          if (!grant.source.prefix().contains(sample)) continue;
          for (const auto& spec : grant.ports) {
            if (spec.number != port.port) continue;
            for (const auto protocol : expand(spec.protocol)) {
              if (protocol != port.protocol) continue;
              expected = std::max(expected.value_or(grant.deadline), grant.deadline);
            }
          }
        }
        ASSERT_EQ(backend.end_for(sample.family(), sample.address(), port), expected)
            << "step " << step << " " << sample.to_string() << " " << to_string(port.protocol)
            << "/" << port.port;
      }
    }
  }
  EXPECT_GT(granted, 100);
  EXPECT_GT(revoked, 30);
}

}  // namespace
}  // namespace jitd::core
