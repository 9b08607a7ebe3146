#include "jitd/core/text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "jitd/core/hex.hpp"

namespace jitd::core {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence at the start of `text` (1..4), or 0 when it is not one:
// overlong forms, surrogates and values above U+10FFFF are not valid (RFC 3629).
std::size_t utf8_length(std::string_view text, char32_t& code_point) {
  const auto lead = static_cast<unsigned char>(text[0]);
  std::size_t length = 0;
  char32_t minimum = 0;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  if ((lead & 0xe0) == 0xc0) {
    length = 2, minimum = 0x80, code_point = lead & 0x1f;
  } else if ((lead & 0xf0) == 0xe0) {
    length = 3, minimum = 0x800, code_point = lead & 0x0f;
  } else if ((lead & 0xf8) == 0xf0) {
    length = 4, minimum = 0x10000, code_point = lead & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[i]);
    if ((next & 0xc0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3f);
  }
  const bool surrogate = code_point >= 0xd800 && code_point <= 0xdfff;
  if (code_point < minimum || code_point > 0x10ffff || surrogate) return 0;
  return length;
}

void append_byte_escape(std::string& out, unsigned char byte) { out += "\\x" + to_hex(&byte, 1); }

std::string escape(std::string_view text, std::size_t max_characters) {
  std::string out;
  std::size_t characters = 0;
  while (!text.empty()) {
    if (characters++ == max_characters) {
      out += "…";
      break;
    }
    char32_t code_point = 0;
    const std::size_t length = utf8_length(text, code_point);
    if (length == 0) {
      append_byte_escape(out, static_cast<unsigned char>(text[0]));
      text.remove_prefix(1);
      continue;
    }
    if (code_point == '\n') {
      out += "\\n";
    } else if (code_point == '\r') {
      out += "\\r";
    } else if (code_point == '\t') {
      out += "\\t";
    } else if (code_point < 0x20 || code_point == 0x7f) {
      append_byte_escape(out, static_cast<unsigned char>(code_point));
    } else if (code_point >= 0x80 && code_point <= 0x9f) {
      const auto c1 = static_cast<unsigned char>(code_point);
      out += "\\u00" + to_hex(&c1, 1);
    } else {
      out.append(text.substr(0, length));
    }
    text.remove_prefix(length);
  }
  return out;
}

}  // namespace

std::string escaped(std::string_view text) { return escape(text, std::string_view::npos); }

std::string excerpt(std::string_view text, std::size_t max_characters) {
  return escape(text, max_characters);
}

std::optional<std::size_t> first_invalid_utf8(std::string_view text) {
  for (std::size_t offset = 0; offset < text.size();) {
    char32_t code_point = 0;
    const std::size_t length = utf8_length(text.substr(offset), code_point);
    if (length == 0) return offset;
    offset += length;
  }
  return std::nullopt;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string to_hex(const unsigned char* bytes, std::size_t size) {
  std::string text;
  text.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    text += hex_digits[bytes[i] >> 4];
    text += hex_digits[bytes[i] & 0xf];
  }
  return text;
}

}  // namespace jitd::core
