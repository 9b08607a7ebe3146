#include "jitd/core/clock.hpp"

#include <charconv>
#include <cstdio>

namespace jitd::core {

namespace {

using namespace std::chrono;

// Reads exactly `width` digits at `pos`.
bool read_digits(std::string_view text, std::size_t& pos, std::size_t width, int& value) {
  if (pos + width > text.size()) return false;
  // from_chars alone would accept a sign ("-1" as an hour).
  for (std::size_t i = pos; i < pos + width; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  const auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + width, value);
  if (ec != std::errc{} || end != text.data() + pos + width) return false;
  pos += width;
  return true;
}

bool expect(std::string_view text, std::size_t& pos, std::string_view choices) {
  if (pos >= text.size() || choices.find(text[pos]) == std::string_view::npos) return false;
  ++pos;
  return true;
}

}  // namespace

std::string format_utc(TimePoint when) {
  const auto day = floor<days>(when);
  const year_month_day date{day};
  const hh_mm_ss time{when - day};
  char text[40];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                static_cast<int>(time.seconds().count()));
  std::string result = text;
  if (const auto millis = time.subseconds().count(); millis != 0) {
    std::snprintf(text, sizeof text, ".%03d", static_cast<int>(millis));
    result += text;
  }
  return result + "Z";
}

Result<TimePoint> parse_utc(std::string_view text) {
  const auto invalid = [&] {
    return fail(ErrorCode::invalid_argument,
                "'" + std::string(text) +
                    "' is not a UTC time like 2026-11-24T03:30:00Z (ISO 8601 with Z or +00:00)");
  };
  std::size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!read_digits(text, pos, 4, y) || !expect(text, pos, "-") || !read_digits(text, pos, 2, mo) ||
      !expect(text, pos, "-") || !read_digits(text, pos, 2, d) || !expect(text, pos, "Tt ") ||
      !read_digits(text, pos, 2, h) || !expect(text, pos, ":") || !read_digits(text, pos, 2, mi) ||
      !expect(text, pos, ":") || !read_digits(text, pos, 2, s)) {
    return invalid();
  }
  milliseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int scale = 100;
    const auto digits_start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      fraction += milliseconds((text[pos] - '0') * scale);
      scale /= 10;
      ++pos;
    }
    if (pos == digits_start) return invalid();
  }
  const auto zone = text.substr(pos);
  if (zone != "Z" && zone != "z" && zone != "+00:00") return invalid();
  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)},
                            day{static_cast<unsigned>(d)}};
  if (!date.ok() || h > 23 || mi > 59 || s > 59) return invalid();
  return TimePoint{sys_days{date} + hours{h} + minutes{mi} + seconds{s} + fraction};
}

}  // namespace jitd::core
