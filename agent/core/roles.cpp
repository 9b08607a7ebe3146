#include "jitd/core/roles.hpp"

#include <algorithm>

#include "jitd/core/text.hpp"

namespace jitd::core {

namespace {

template <class T>
bool contains(const std::vector<T>& values, const T& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace

std::string_view to_string(Right right) {
  switch (right) {
    case Right::read: return "read";
    case Right::request: return "request";
    case Right::administer: return "administer";
  }
  return "unknown";
}

bool Principals::includes(const Caller& caller) const {
  if (contains(uids, caller.uid) || contains(gids, caller.gid)) return true;
  return std::any_of(caller.groups.begin(), caller.groups.end(),
                     [this](std::uint32_t gid) { return contains(gids, gid); });
}

std::string Principals::describe() const {
  std::string text;
  if (!users.empty()) text = "users " + join(users);
  if (!groups.empty()) text += (text.empty() ? "groups " : "; groups ") + join(groups);
  return text.empty() ? "nobody" : text;
}

bool Roles::grants(const Caller& caller, Right right) const {
  if (caller.uid == unknown_uid) return false;
  if (caller.uid == 0 || (administrators && administrators->includes(caller))) return true;
  if (right == Right::administer) return false;
  if (requesters ? requesters->includes(caller) : caller.in_socket_group) return true;
  if (right == Right::request) return false;
  return !readers || readers->includes(caller);
}

std::string Roles::refusal(const Caller& caller, Right right, std::string_view action) const {
  const auto role = [](const char* name, const std::optional<Principals>& members,
                       const char* fallback) {
    return std::string("roles.") + name + ": " + (members ? members->describe() : fallback);
  };
  std::string holders;
  switch (right) {
    case Right::administer: holders = role("administrators", administrators, "root"); break;
    case Right::request: holders = role("requesters", requesters, "the socket's group"); break;
    case Right::read: holders = role("readers", readers, "everyone"); break;
  }
  return "user " + caller.name + " (uid " + std::to_string(caller.uid) + ") may not " +
         std::string(action) + ": that needs the " + std::string(to_string(right)) + " right (" +
         holders + ")";
}

}  // namespace jitd::core
