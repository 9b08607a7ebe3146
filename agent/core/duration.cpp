#include "jitd/core/duration.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

namespace jitd::core {

namespace {

using std::chrono::duration_cast;

struct Unit {
  char letter;
  Milliseconds length;
};

constexpr Unit day{'D', std::chrono::hours(24)};
constexpr Unit week{'W', std::chrono::hours(24 * 7)};
constexpr Unit hour{'H', std::chrono::hours(1)};
constexpr Unit minute{'M', std::chrono::minutes(1)};
constexpr Unit second{'S', std::chrono::seconds(1)};
// About 31,700 years: beyond any policy, far from overflowing the clocks' arithmetic.
constexpr Milliseconds max_total{1'000'000'000'000'000};

Result<Milliseconds> invalid(std::string_view text, std::string_view why) {
  return fail(ErrorCode::invalid_argument, "'" + std::string(text) +
                                               "' is not a valid duration: " + std::string(why) +
                                               " (examples: PT3H, PT30M, 3h, 30m, 45s)");
}

// Reads "<number><unit>" pairs; `units` lists the allowed units in their required order.
Result<Milliseconds> parse_components(std::string_view whole, std::string_view text,
                                      std::initializer_list<Unit> units) {
  Milliseconds total{0};
  auto next_unit = units.begin();
  while (!text.empty()) {
    std::size_t digits = 0;
    while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) ||
                                    text[digits] == '.' || text[digits] == ',')) {
      ++digits;
    }
    if (digits == 0) return invalid(whole, "expected a number");
    if (digits == text.size()) return invalid(whole, "number without a unit");
    std::string number(text.substr(0, digits));
    for (auto& c : number) c = c == ',' ? '.' : c;
    double value = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc{} || end != number.data() + number.size()) {
      return invalid(whole, "bad number '" + number + "'");
    }
    const auto letter = static_cast<char>(std::toupper(static_cast<unsigned char>(text[digits])));
    while (next_unit != units.end() && next_unit->letter != letter) ++next_unit;
    if (next_unit == units.end()) return invalid(whole, "unexpected or misplaced unit");
    const double millis = value * static_cast<double>(next_unit->length.count());
    if (!std::isfinite(millis) || millis > static_cast<double>(max_total.count())) {
      return invalid(whole, "too long");
    }
    total += Milliseconds(static_cast<std::int64_t>(std::llround(millis)));
    ++next_unit;
    text.remove_prefix(digits + 1);
  }
  return total;
}

}  // namespace

Result<Milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return invalid(text, "empty");
  if (text.front() == '-') return invalid(text, "negative");
  Result<Milliseconds> parsed = Milliseconds{0};
  if (text.front() == 'P' || text.front() == 'p') {
    // ISO 8601: P[nW][nD][T[nH][nM][nS]]
    const auto body = text.substr(1);
    const auto t = body.find_first_of("Tt");
    const auto date_part = body.substr(0, t);
    const auto time_part = t == std::string_view::npos ? std::string_view{} : body.substr(t + 1);
    if (body.empty() || (t != std::string_view::npos && time_part.empty())) {
      return invalid(text, "no components");
    }
    auto date = parse_components(text, date_part, {week, day});
    if (!date) return date;
    auto time = parse_components(text, time_part, {hour, minute, second});
    if (!time) return time;
    parsed = *date + *time;
  } else {
    parsed = parse_components(text, text, {day, hour, minute, second});
    if (!parsed) return parsed;
  }
  if (*parsed <= Milliseconds{0}) return invalid(text, "must be longer than zero");
  // Each component is bounded above; so is the sum, or format_duration's text would not parse.
  if (*parsed > max_total) return invalid(text, "too long");
  return parsed;
}

std::string format_duration(Milliseconds duration) {
  auto ms = duration.count();
  std::string text = "PT";
  if (ms <= 0) return "PT0S";
  const auto hours = ms / 3'600'000;
  ms %= 3'600'000;
  const auto minutes = ms / 60'000;
  ms %= 60'000;
  if (hours) text += std::to_string(hours) + "H";
  if (minutes) text += std::to_string(minutes) + "M";
  if (ms) {
    text += std::to_string(ms / 1000);
    if (ms % 1000) {
      auto fraction = std::to_string(1000 + ms % 1000).substr(1);
      while (fraction.back() == '0') fraction.pop_back();
      text += "." + fraction;
    }
    text += "S";
  }
  return text;
}

}  // namespace jitd::core
