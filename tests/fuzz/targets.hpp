#pragma once
// The fuzz targets' bodies, shared by the libFuzzer executables (fuzz_main.cpp) and the seed
// unit test (seeds_test.cpp). Each takes the raw input and returns a short text of what the
// code under test answered ("ok", the errors, or the HTTP status and body), so the seed test
// can check an expected fragment. An invariant that does not hold throws
// `InvariantViolated`: under libFuzzer that is an uncaught exception, i.e. a crash.
#include <stdexcept>
#include <string>
#include <string_view>

namespace jitd::fuzz {

struct InvariantViolated : std::logic_error {
  using std::logic_error::logic_error;
};

// config::parse_policy_text, then the cross-file checks on what parsed.
std::string policy(std::string_view input);
// config::parse_main_config_text.
std::string main_config(std::string_view input);
// api::Router::handle over a real AccessEngine and the fake backend. Input: a first line
// "<caller> <method> <path>" (caller: root, alice = may manage, anything else = nobody; the
// path is percent-decoded as libmicrohttpd does, so "%00" and "%0a" reach the router as
// bytes), then the body. The engine already holds one grant, "g1".
std::string router(std::string_view input);
// core::Prefix::parse, core::parse_duration and core::parse_utc on the same text; whatever
// parses must print back to text that parses to the same value.
std::string parsers(std::string_view input);

struct Harness {
  const char* name;  // also the corpus folder: tests/fuzz/corpus/<name>/
  std::string (*run)(std::string_view);
};
inline constexpr Harness harnesses[] = {
    {"policy", policy}, {"main_config", main_config}, {"router", router}, {"parsers", parsers}};

}  // namespace jitd::fuzz
