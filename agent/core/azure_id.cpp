#include "jitd/core/azure_id.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

#include "jitd/core/text.hpp"

namespace jitd::core {

bool same_vm_name(std::string_view a, std::string_view b) { return equal_ignoring_case(a, b); }

std::optional<std::string> azure_vm_name(std::string_view id) {
  if (id.empty()) return std::nullopt;
  if (id.find('/') == std::string_view::npos) {
    // Azure's VM names: letters, digits, '-', '_', '.', at most 64 (Linux VMs); anything else
    // is no VM's name, and may be text meant to mislead a log or a comment.
    const bool name =
        id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
        });
    return name ? std::optional<std::string>(id) : std::nullopt;
  }
  std::vector<std::string_view> segments;
  for (std::size_t at = 0; at <= id.size();) {
    const auto end = std::min(id.find('/', at), id.size());
    segments.push_back(id.substr(at, end - at));
    at = end + 1;
  }
  // "" in a place other than the first: a value of the caller's (subscription, group, name).
  static constexpr std::array<std::string_view, 9> shape = {"",
                                                            "subscriptions",
                                                            "",
                                                            "resourceGroups",
                                                            "",
                                                            "providers",
                                                            "Microsoft.Compute",
                                                            "virtualMachines",
                                                            ""};
  if (segments.size() != shape.size() || !segments.front().empty()) return std::nullopt;
  for (std::size_t i = 1; i < shape.size(); ++i) {
    const bool fits =
        shape[i].empty() ? !segments[i].empty() : equal_ignoring_case(segments[i], shape[i]);
    if (!fits) return std::nullopt;
  }
  return std::string(segments.back());
}

}  // namespace jitd::core
