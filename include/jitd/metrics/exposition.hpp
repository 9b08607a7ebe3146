#pragma once
// Prometheus' text exposition format 0.0.4: metric families (counters, gauges, histograms) with
// labels, rendered with HELP and TYPE lines and escaped label values. A Registry asks its
// collectors for their families at each scrape, so a module that keeps its own statistics
// (webhooks, say) adds one callback and nothing else.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jitd::metrics {

// What a scrape answers with, for the HTTP Content-Type header.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

enum class Type { counter, gauge, histogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  Labels labels;
  double value = 0;
};

// One labelled histogram: per upper bound, the observations at or below it (not cumulative:
// render() sums them); `+Inf` is implied by `count`.
struct HistogramSample {
  Labels labels;
  std::vector<double> bounds;         // ascending
  std::vector<std::uint64_t> counts;  // one per bound
  double sum = 0;
  std::uint64_t count = 0;
};

struct Family {
  std::string name;  // a counter's ends in _total; units as suffixes (_seconds)
  std::string help;
  Type type = Type::gauge;
  std::vector<Sample> samples;              // counter, gauge
  std::vector<HistogramSample> histograms;  // histogram
};

// The exposition text of `families`, in the order given; a family without samples is left out
// (a HELP without a sample says nothing).
[[nodiscard]] std::string render(const std::vector<Family>& families);

// A number as the format spells it: integers without a fraction, NaN, +Inf, -Inf.
[[nodiscard]] std::string format_value(double value);

// Observations by label set, for request latencies and the like.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {}
  void observe(const Labels& labels, double value);
  [[nodiscard]] Family family(std::string name, std::string help) const;

 private:
  std::vector<double> bounds_;
  std::vector<HistogramSample> series_;  // few label sets: a linear search is the cheapest
};

// Appends its families to the scrape's.
using Collector = std::function<void(std::vector<Family>&)>;

class Registry {
 public:
  void add(Collector collector) { collectors_.push_back(std::move(collector)); }
  [[nodiscard]] std::vector<Family> collect() const;
  [[nodiscard]] std::string scrape() const { return render(collect()); }

 private:
  std::vector<Collector> collectors_;
};

}  // namespace jitd::metrics
