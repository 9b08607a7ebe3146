// One libFuzzer executable per harness: JITD_FUZZ_HARNESS is the harness's index in
// jitd::fuzz::harnesses (set by tests/fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)jitd::fuzz::harnesses[JITD_FUZZ_HARNESS].run(input);
  return 0;
}
