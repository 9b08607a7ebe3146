#pragma once
// Reading request bodies, shared by the routes' parsers (router.cpp, azure.cpp): one reading of
// JSON, one wording of type errors, so every route refuses the same mistakes the same way.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "jitd/core/error.hpp"

namespace jitd::api::fields {

using nlohmann::json;

inline constexpr std::size_t max_justification_length = 1024;
// A core parser's message quotes the caller's value: bounded, so a huge value is no huge reply.
inline constexpr std::size_t max_quoted_message = 256;

// The body as JSON, refusing text that is not JSON ("body: not valid JSON") and any object
// with a key given twice ("<key>: duplicate key; ..."): nlohmann::json would silently keep the
// last of the two, which is not the one a reader of the body sees first.
[[nodiscard]] core::Result<json> parse_without_duplicate_keys(std::string_view body);

// `object[name]` when present and of `type` (number_unsigned: any integer); nullptr when absent;
// an error "<where><name>: must be <type>, not <actual>" otherwise. `where` is the parent's
// path with its trailing dot ("ports[0].") or "" at the top.
[[nodiscard]] core::Result<const json*> field(const json& object, const char* name,
                                              json::value_t type, const std::string& where);

// A field's value was refused by a core parser, whose message quotes the value as given.
[[nodiscard]] tl::unexpected<core::Error> invalid_value(const std::string& field,
                                                        const core::Error& error);

// The optional "justification" of `object` (empty when absent), at most
// max_justification_length bytes; `where` as for field().
[[nodiscard]] core::Result<std::string> justification(const json& object, const std::string& where);

}  // namespace jitd::api::fields
