#include "jitd/strict_json/strict_json.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>
#include <vector>

namespace jitd::strict_json {

using nlohmann::json;

// nlohmann::json's parser callback is shown every object's keys in turn: the first key seen
// twice in one object is refused.
tl::expected<json, Refusal> parse(std::string_view text, Keys keys) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  const json::parser_callback_t check = [&](int /*depth*/, json::parse_event_t event,
                                            json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !duplicate) {
      auto key = parsed.get<std::string>();
      auto seen = key;
      if (keys == Keys::ignore_case) {
        std::transform(seen.begin(), seen.end(), seen.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      }
      if (!open_objects.back().insert(std::move(seen)).second) duplicate = std::move(key);
    }
    return true;
  };
  auto document = json::parse(text, check, false);
  if (document.is_discarded()) return tl::unexpected(Refusal{});
  if (duplicate) return tl::unexpected(Refusal{std::move(duplicate)});
  return document;
}

}  // namespace jitd::strict_json
