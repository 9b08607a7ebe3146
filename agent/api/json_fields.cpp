#include "json_fields.hpp"

#include <utility>

#include "jitd/core/text.hpp"
#include "jitd/strict_json/strict_json.hpp"

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

core::Result<json> parse_without_duplicate_keys(std::string_view body) {
  auto document = strict_json::parse(body, strict_json::Keys::exact);
  if (document) return std::move(*document);
  if (!document.error().duplicate) {
    return core::fail(ErrorCode::invalid_request, "body: not valid JSON");
  }
  return core::fail(ErrorCode::invalid_request,
                    core::excerpt(*document.error().duplicate) +
                        ": duplicate key; each key may appear once in an object");
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
