#include "targets.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fake_backend.hpp"
#include "jitd/api/router.hpp"
#include "jitd/config/config.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/duration.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::fuzz {

namespace {

void check(bool holds, const std::string& what) {
  if (!holds) throw InvariantViolated(what);
}

// "ok", or every diagnostic on its own line; each must name the file it came from.
template <class T>
std::string outcome(const config::Loaded<T>& loaded, const std::vector<config::Diagnostic>& more,
                    std::string_view file) {
  std::string text;
  for (const auto* errors : {&loaded.errors, &more}) {
    for (const auto& error : *errors) {
      const auto line = error.to_string();
      check(line.starts_with(std::string(file) + ":"), "diagnostic without its file: " + line);
      text += line + "\n";
    }
  }
  return text.empty() ? "ok" : text;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// As libmicrohttpd's default unescaping: "%XX" with two hex digits is one byte, the rest stays.
std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      const int high = hex_digit(text[i + 1]);
      const int low = hex_digit(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out += static_cast<char>(high * 16 + low);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::string_view take_word(std::string_view& text) {
  const auto space = text.find(' ');
  const auto word = text.substr(0, space);
  text.remove_prefix(space == std::string_view::npos ? text.size() : space + 1);
  return word;
}

core::PortRule rule(core::PortSpec port, std::vector<std::string_view> sources,
                    core::Milliseconds max) {
  core::PortRule r;
  r.port = port;
  r.any_source = sources.empty();
  for (const auto source : sources) r.allowed_sources.push_back(*core::Prefix::parse(source));
  r.max_duration = max;
  return r;
}

core::Policy router_policy() {
  using namespace std::chrono_literals;
  core::Policy policy;
  policy.rules = {rule({22, core::ProtocolSpec::tcp}, {}, 3h),
                  rule({3389, core::ProtocolSpec::tcp}, {"10.0.0.0/8", "fd00::/64"}, 10min),
                  rule({53, core::ProtocolSpec::any}, {}, 1h)};
  return policy;
}

}  // namespace

std::string policy(std::string_view input) {
  constexpr std::string_view file = "fuzz.yaml";
  const auto loaded = config::parse_policy_text(std::string(input), std::string(file));
  std::vector<config::Diagnostic> merged;
  if (loaded.ok()) config::check_merged_policy(loaded.value, merged);
  return outcome(loaded, merged, file);
}

std::string main_config(std::string_view input) {
  constexpr std::string_view file = "jitd.yaml";
  const auto loaded = config::parse_main_config_text(std::string(input), std::string(file));
  return outcome(loaded, {}, file);
}

std::string router(std::string_view input) {
  const auto newline = input.find('\n');
  auto head = input.substr(0, newline);
  const auto body =
      newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);
  const auto who = take_word(head);
  const auto method = take_word(head);
  const auto path = percent_decode(head);

  const core::Caller root{0, 0, "root", true, {}};
  const core::Caller alice{1000, 1000, "alice", true, {}};
  const core::Caller nobody{65534, 65534, "nobody", false, {}};
  const auto& caller = who == "root" ? root : who == "alice" ? alice : nobody;

  test::FakeEngine fakes(router_policy());
  const api::Router router{fakes.engine, fakes.clock, [](const core::Caller&) {
                             return api::ReloadOutcome{true, {}, {}};
                           }};
  const auto first = router.handle(
      root, "POST", "/v1/grants",
      R"({"ports":[{"number":22,"protocol":"tcp"}],"allowedSourceAddressPrefix":"203.0.113.7",)"
      R"("duration":"PT30M","justification":"fuzz"})");
  check(first.status == 201, "the first grant was refused: " + first.body);

  const auto response = router.handle(caller, method, path, body);
  check(response.status >= 200 && response.status < 600,
        "status " + std::to_string(response.status));
  check(nlohmann::json::accept(response.body), "reply is not JSON: " + response.body);
  for (const auto& violation : fakes.backend.violations) check(false, "kernel model: " + violation);
  return std::to_string(response.status) + " " + response.body;
}

std::string parsers(std::string_view input) {
  std::string text;
  if (const auto prefix = core::Prefix::parse(input)) {
    const auto printed = prefix->to_string();
    const auto again = core::Prefix::parse(printed);
    check(again && *again == *prefix, "prefix does not survive printing: " + printed);
    text += "prefix " + printed + "\n";
  } else {
    text += "prefix error: " + prefix.error().message + "\n";
  }
  if (const auto duration = core::parse_duration(input)) {
    check(duration->count() > 0, "duration not positive");
    const auto printed = core::format_duration(*duration);
    const auto again = core::parse_duration(printed);
    check(again && *again == *duration, "duration does not survive printing: " + printed);
    text += "duration " + printed + "\n";
  } else {
    text += "duration error: " + duration.error().message + "\n";
  }
  if (const auto when = core::parse_utc(input)) {
    const auto printed = core::format_utc(*when);
    const auto again = core::parse_utc(printed);
    check(again && *again == *when, "time does not survive printing: " + printed);
    text += "utc " + printed + "\n";
  } else {
    text += "utc error: " + when.error().message + "\n";
  }
  return text;
}

}  // namespace jitd::fuzz
