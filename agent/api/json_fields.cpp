#include "json_fields.hpp"

#include <optional>
#include <set>
#include <vector>

#include "jitd/core/text.hpp"

namespace jitd::api::fields {

using core::ErrorCode;

core::Result<const json*> field(const json& object, const char* name, json::value_t type,
                                const std::string& where) {
  const auto it = object.find(name);
  if (it == object.end()) return nullptr;
  const bool matches =
      type == json::value_t::number_unsigned ? it->is_number_integer() : it->type() == type;
  if (!matches) {
    const char* expected = type == json::value_t::string            ? "a string"
                           : type == json::value_t::array           ? "an array"
                           : type == json::value_t::number_unsigned ? "an integer"
                                                                    : "an object";
    return core::fail(ErrorCode::invalid_request,
                      where + name + ": must be " + expected + ", not " + it->type_name());
  }
  return &*it;
}

tl::unexpected<core::Error> invalid_value(const std::string& field, const core::Error& error) {
  return core::fail(ErrorCode::invalid_request,
                    field + ": " + core::excerpt(error.message, max_quoted_message));
}

// nlohmann::json's parser callback is shown every object's keys in turn: the first key seen
// twice in one object is refused.
core::Result<json> parse_without_duplicate_keys(std::string_view body) {
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
      if (open_objects.back().count(key) != 0)
        duplicate = std::move(key);
      else
        open_objects.back().insert(std::move(key));
    }
    return true;
  };
  json document = json::parse(body, check, false);
  if (document.is_discarded()) {
    return core::fail(ErrorCode::invalid_request, "body: not valid JSON");
  }
  if (duplicate) {
    return core::fail(
        ErrorCode::invalid_request,
        core::excerpt(*duplicate) + ": duplicate key; each key may appear once in an object");
  }
  return document;
}

core::Result<std::string> justification(const json& object, const std::string& where) {
  const auto found = field(object, "justification", json::value_t::string, where);
  if (!found) return tl::unexpected(found.error());
  if (*found == nullptr) return std::string();
  auto text = (*found)->get<std::string>();
  if (text.size() > max_justification_length) {
    return core::fail(ErrorCode::invalid_request, where + "justification: longer than " +
                                                      std::to_string(max_justification_length) +
                                                      " bytes");
  }
  return text;
}

}  // namespace jitd::api::fields
