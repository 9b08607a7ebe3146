#include "jitd/sys/accounts.hpp"

#include <grp.h>
#include <pwd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "jitd/sys/system_error.hpp"

namespace jitd::sys {

namespace {

// getpwnam_r and getgrnam_r: a large group needs a larger buffer than any fixed guess.
template <class Entry, class Id, class Lookup>
core::Result<std::optional<Id>> look_up(std::string_view name, const char* kind, Lookup lookup,
                                        Id Entry::*id) {
  const std::string text(name);
  std::vector<char> buffer(16384);
  Entry entry{};
  Entry* found = nullptr;
  int error = 0;
  while ((error = lookup(text.c_str(), &entry, buffer.data(), buffer.size(), &found)) == ERANGE) {
    buffer.resize(buffer.size() * 2);
  }
  if (error != 0) {
    return fail_system(core::ErrorCode::invalid_argument, std::string(kind) + " '" + text + "'",
                       error);
  }
  if (found == nullptr) return std::optional<Id>{};
  return std::optional<Id>{found->*id};
}

}  // namespace

core::Result<std::optional<uid_t>> user_id(std::string_view name) {
  return look_up(name, "user", getpwnam_r, &passwd::pw_uid);
}

core::Result<std::optional<gid_t>> group_id(std::string_view name) {
  return look_up(name, "group", getgrnam_r, &group::gr_gid);
}

}  // namespace jitd::sys
