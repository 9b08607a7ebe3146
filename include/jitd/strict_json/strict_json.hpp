#pragma once
// JSON that people wrote (API request bodies, Azure policy exports for jitctl import-azure),
// parsed so that a key given twice in one object is refused: nlohmann::json would silently keep
// the last of the two, which is not the one a reader of the text sees first. The one reading of
// such text for api and config; each words the refusal for its own readers.
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

namespace jitd::strict_json {

enum class Keys {
  exact,        // "a" and "A" are two keys
  ignore_case,  // ASCII case folded: Azure and PowerShell read "Number" as "number"
};

// Why a text was refused.
struct Refusal {
  // The first key given twice in one object, as written the second time; nullopt when the
  // text is no JSON at all.
  std::optional<std::string> duplicate;
};

[[nodiscard]] tl::expected<nlohmann::json, Refusal> parse(std::string_view text, Keys keys);

}  // namespace jitd::strict_json
