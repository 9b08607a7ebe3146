#include "jitd/core/failpoint.hpp"

#include <atomic>

namespace jitd::core {

namespace {
std::atomic<FailpointHandler> installed_handler{nullptr};
}  // namespace

void set_failpoint_handler(FailpointHandler handler) { installed_handler.store(handler); }

void failpoint(std::string_view name) {
  if (const auto handler = installed_handler.load()) handler(name);
}

bool failpoints_enabled() { return installed_handler.load() != nullptr; }

}  // namespace jitd::core
