#pragma once
// Text from outside (a caller's path, key or justification) made safe to echo in a reply, to
// log, or to print on an admin's terminal: it can neither forge a line or a table row nor send
// a terminal escape sequence, and it is valid UTF-8 of bounded length.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace jitd::core {

// `text` with every control character escaped: \n, \r, \t, and \xNN for the rest of C0 and
// DEL; \u0080..\u009f for C1 (a terminal takes U+009B as CSI); each byte that is not part
// of valid UTF-8 as \xNN. Printable text, backslashes included, is kept as it is.
[[nodiscard]] std::string escaped(std::string_view text);

// The offset of the first byte of `text` that is not part of valid UTF-8; nullopt when all is.
[[nodiscard]] std::optional<std::size_t> first_invalid_utf8(std::string_view text);

// The first `max_characters` characters of `text`, escaped; "…" marks a cut.
[[nodiscard]] std::string excerpt(std::string_view text, std::size_t max_characters = 32);

// Equal when ASCII letters are compared without case (Azure's keys and names, host names).
[[nodiscard]] bool equal_ignoring_case(std::string_view a, std::string_view b);

// "a, b, c": the items (anything a std::string can be appended from) between separators.
template <class Items>
[[nodiscard]] std::string join(const Items& items, std::string_view separator = ", ") {
  std::string text;
  for (const auto& item : items) {
    if (!text.empty()) text += separator;
    text += item;
  }
  return text;
}

}  // namespace jitd::core
