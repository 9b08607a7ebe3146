#include "jitd/metrics/exposition.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <iterator>

namespace jitd::metrics {

namespace {

std::string_view type_name(Type type) {
  switch (type) {
    case Type::counter: return "counter";
    case Type::histogram: return "histogram";
    case Type::gauge: break;
  }
  return "gauge";
}

// HELP text escapes backslash and newline; label values also the double quote.
void append_escaped(std::string& out, std::string_view text, bool quote) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `{a="x",b="y"}`, with `extra` (a histogram's le) last; nothing when there are no labels.
void append_labels(std::string& out, const Labels& labels,
                   const std::pair<std::string_view, std::string>* extra = nullptr) {
  if (labels.empty() && extra == nullptr) return;
  out += '{';
  bool first = true;
  const auto append = [&](std::string_view name, std::string_view value) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
  };
  for (const auto& [name, value] : labels) append(name, value);
  if (extra != nullptr) append(extra->first, extra->second);
  out += '}';
}

void append_line(std::string& out, std::string_view name, const Labels& labels, double value,
                 const std::pair<std::string_view, std::string>* extra = nullptr) {
  out += name;
  append_labels(out, labels, extra);
  out += ' ';
  out += format_value(value);
  out += '\n';
}

void append_histogram(std::string& out, const std::string& name, const HistogramSample& sample) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < sample.bounds.size(); ++i) {
    cumulative += i < sample.counts.size() ? sample.counts[i] : 0;
    const std::pair<std::string_view, std::string> le{"le", format_value(sample.bounds[i])};
    append_line(out, name + "_bucket", sample.labels, static_cast<double>(cumulative), &le);
  }
  const std::pair<std::string_view, std::string> infinity{"le", "+Inf"};
  append_line(out, name + "_bucket", sample.labels, static_cast<double>(sample.count), &infinity);
  append_line(out, name + "_sum", sample.labels, sample.sum);
  append_line(out, name + "_count", sample.labels, static_cast<double>(sample.count));
}

}  // namespace

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Counters are whole numbers: exact up to 2^53, and shown without an exponent.
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    return std::to_string(static_cast<std::int64_t>(value));
  }
  // Bucket bounds read better as 0.0005 than as 5e-04; the exponent form is kept for values
  // whose fixed form would run long.
  const auto magnitude = std::fabs(value);
  const auto format =
      magnitude >= 1e-6 && magnitude < 1e15 ? std::chars_format::fixed : std::chars_format::general;
  std::array<char, 64> text{};
  const auto written = std::to_chars(text.data(), text.data() + text.size(), value, format);
  return std::string(text.data(), written.ptr);
}

std::string render(const std::vector<Family>& families) {
  std::string out;
  for (const auto& family : families) {
    if (family.samples.empty() && family.histograms.empty()) continue;
    out += "# HELP " + family.name + ' ';
    append_escaped(out, family.help, false);
    out += "\n# TYPE " + family.name + ' ';
    out += type_name(family.type);
    out += '\n';
    for (const auto& sample : family.samples) {
      append_line(out, family.name, sample.labels, sample.value);
    }
    for (const auto& histogram : family.histograms) append_histogram(out, family.name, histogram);
  }
  return out;
}

void Histogram::observe(const Labels& labels, double value) {
  auto found = std::find_if(series_.begin(), series_.end(),
                            [&](const HistogramSample& series) { return series.labels == labels; });
  if (found == series_.end()) {
    series_.push_back({labels, bounds_, std::vector<std::uint64_t>(bounds_.size(), 0), 0, 0});
    found = std::prev(series_.end());
  }
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  if (bucket != bounds_.end()) ++found->counts[static_cast<std::size_t>(bucket - bounds_.begin())];
  found->sum += value;
  ++found->count;
}

Family Histogram::family(std::string name, std::string help) const {
  return {std::move(name), std::move(help), Type::histogram, {}, series_};
}

std::vector<Family> Registry::collect() const {
  std::vector<Family> families;
  for (const auto& collector : collectors_) collector(families);
  return families;
}

}  // namespace jitd::metrics
