// The main config's metrics keys: metricsListen (loopback only, IPv4 or bracketed IPv6),
// metricsTextfile (*.prom) and its interval; each error names file:line:col.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "jitd/config/config.hpp"

namespace {

using namespace jitd::config;
using namespace std::chrono_literals;
using Lines = std::vector<std::string>;

Lines errors_of(const std::string& text) {
  Lines lines;
  for (const auto& error : parse_main_config_text(text, "jitd.yaml").errors) {
    lines.push_back(error.to_string());
  }
  return lines;
}

TEST(ConfigMetrics, OffByDefault) {
  const auto loaded = parse_main_config_text("", "jitd.yaml");
  EXPECT_FALSE(loaded.value.metrics_listen);
  EXPECT_TRUE(loaded.value.metrics_textfile.empty());
  EXPECT_EQ(loaded.value.metrics_textfile_interval, 15s);
}

TEST(ConfigMetrics, LoopbackAddresses) {
  for (const auto& [text, ipv6, address, port] :
       {std::tuple{"127.0.0.1:9464", false, "127.0.0.1", 9464},
        std::tuple{"127.1.2.3:1", false, "127.1.2.3", 1},
        std::tuple{"'[::1]:9464'", true, "::1", 9464}}) {
    const auto loaded = parse_main_config_text(std::string("metricsListen: ") + text, "jitd.yaml");
    ASSERT_TRUE(loaded.ok()) << text << ": " << loaded.errors.front().to_string();
    ASSERT_TRUE(loaded.value.metrics_listen);
    EXPECT_EQ(loaded.value.metrics_listen->ipv6, ipv6);
    EXPECT_EQ(loaded.value.metrics_listen->address, address);
    EXPECT_EQ(loaded.value.metrics_listen->port, port);
  }
  const auto v6 = parse_main_config_text("metricsListen: '[::1]:9464'", "jitd.yaml");
  EXPECT_EQ(v6.value.metrics_listen->to_string(), "[::1]:9464");
}

TEST(ConfigMetrics, OtherAddressesAreRefusedSayingWhy) {
  const std::string expected =
      "; expected a loopback address and port such as 127.0.0.1:9464 or [::1]:9464";
  EXPECT_EQ(errors_of("metricsListen: 0.0.0.0:9464\n"),
            Lines{"jitd.yaml:1:16: '0.0.0.0:9464' is not on loopback: jitd serves metrics "
                  "without authentication, so only on 127.0.0.0/8 or [::1]" +
                  expected});
  EXPECT_EQ(errors_of("metricsListen: '[2001:db8::1]:9464'\n"),
            Lines{"jitd.yaml:1:16: '[2001:db8::1]:9464' is not on loopback: jitd serves metrics "
                  "without authentication, so only on 127.0.0.0/8 or [::1]" +
                  expected});
  EXPECT_EQ(errors_of("metricsListen: localhost:9464\n"),
            Lines{"jitd.yaml:1:16: 'localhost:9464' does not start with an IPv4 address (host "
                  "names are not resolved)" +
                  expected});
  EXPECT_EQ(errors_of("metricsListen: ::1:9464\n"),
            Lines{"jitd.yaml:1:16: '::1:9464' is an IPv6 address without brackets" + expected});
  EXPECT_EQ(errors_of("metricsListen: 127.0.0.1\n"),
            Lines{"jitd.yaml:1:16: '127.0.0.1' has no :port" + expected});
  EXPECT_EQ(errors_of("metricsListen: 127.0.0.1:0\n"),
            Lines{"jitd.yaml:1:16: '127.0.0.1:0' has no valid port (1 to 65535)" + expected});
  EXPECT_EQ(errors_of("metricsListen: '[::1]9464'\n"),
            Lines{"jitd.yaml:1:16: '[::1]9464' has no ]:port after its IPv6 address" + expected});
}

TEST(ConfigMetrics, Textfile) {
  const auto loaded = parse_main_config_text(
      "metricsTextfile: /var/lib/prometheus/node-exporter/jitd.prom\n"
      "metricsTextfileInterval: 1m\n",
      "jitd.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.errors.front().to_string();
  EXPECT_EQ(loaded.value.metrics_textfile, "/var/lib/prometheus/node-exporter/jitd.prom");
  EXPECT_EQ(loaded.value.metrics_textfile_interval, 1min);
  EXPECT_EQ(errors_of("metricsTextfile: /tmp/jitd.txt\n"),
            Lines{"jitd.yaml:1:18: '/tmp/jitd.txt' does not end in .prom, and node_exporter's "
                  "textfile collector reads only files that do"});
  EXPECT_EQ(errors_of("metricsTextfile: jitd.prom\n"),
            Lines{"jitd.yaml:1:18: 'jitd.prom' is not an absolute path"});
  EXPECT_EQ(errors_of("metricsTextfile: /x/jitd.prom\nmetricsTextfileInterval: 2h\n"),
            Lines{"jitd.yaml:2:26: '2h' is longer than PT1H, the range jitd rewrites the metrics "
                  "textfile in (node_exporter reads it at each scrape)"});
  EXPECT_EQ(errors_of("metricsTextfileInterval: 30s\n"),
            Lines{"jitd.yaml:1:26: 'metricsTextfileInterval' applies to metricsTextfile, which "
                  "is not set"});
}

}  // namespace
