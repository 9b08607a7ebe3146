#pragma once
#include <cstddef>
#include <string>

namespace jitd::core {

// Lower-case hexadecimal, two digits a byte: ids, signatures, escaped control characters.
[[nodiscard]] std::string to_hex(const unsigned char* bytes, std::size_t size);

}  // namespace jitd::core
