#include "stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "error.h"

namespace kiln::bench {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> sorted_latencies(const WindowResult& w) {
  std::vector<double> v = w.latencies_us;
  std::sort(v.begin(), v.end());
  return v;
}

// Whether every value lies within ±percentage% of their average.
bool agree(const std::vector<double>& values, double percentage) {
  double sum = 0;
  for (double v : values) sum += v;
  const double avg = sum / static_cast<double>(values.size());
  for (double v : values) {
    if (!std::isfinite(v) || std::fabs(v - avg) > avg * percentage / 100) return false;
  }
  return true;
}

std::pair<double, double> min_max(const std::vector<double>& values) {
  auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  return {*lo, *hi};
}

}  // namespace

void WindowResult::add_error(const std::string& message) {
  ++errors;
  if (error_messages.size() < kMaxErrorMessages &&
      std::find(error_messages.begin(), error_messages.end(), message) == error_messages.end()) {
    error_messages.push_back(message);
  }
}

void WindowResult::merge(WindowResult&& other) {
  latencies_us.insert(latencies_us.end(), other.latencies_us.begin(), other.latencies_us.end());
  const int64_t others = other.errors - static_cast<int64_t>(other.error_messages.size());
  for (const std::string& m : other.error_messages) add_error(m);
  errors += others;
}

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  // std::round rounds halves away from zero, Math.round towards +inf: the same for q·(n−1) ≥ 0.
  const double i = std::round(q * static_cast<double>(sorted.size() - 1));
  const size_t k = static_cast<size_t>(std::clamp(i, 0.0, static_cast<double>(sorted.size() - 1)));
  return sorted[k];
}

LatencySummary summarize(std::vector<double> samples, double percentile) {
  LatencySummary s;
  s.percentile = percentile;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.mean = samples.empty() ? kNaN : std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(s.count);
  s.p50 = quantile(samples, 0.5);
  s.p90 = quantile(samples, 0.9);
  s.p95 = quantile(samples, 0.95);
  s.p99 = quantile(samples, 0.99);
  s.max = samples.empty() ? kNaN : samples.back();
  s.chosen = quantile(samples, percentile / 100);
  return s;
}

double throughput(const WindowResult& w) {
  return w.duration_us > 0 ? static_cast<double>(w.latencies_us.size()) * 1e6 / w.duration_us : 0;
}

bool is_stable(const std::vector<WindowResult>& windows, const StabilityRule& rule) {
  if (rule.windows == 0 || windows.size() < rule.windows) return false;
  std::vector<double> rates, latencies;
  for (size_t i = windows.size() - rule.windows; i < windows.size(); ++i) {
    rates.push_back(throughput(windows[i]));
    latencies.push_back(quantile(sorted_latencies(windows[i]), rule.percentile / 100));
  }
  return agree(rates, rule.percentage) && agree(latencies, rule.percentage);
}

StepResult summarize_step(const Load& load, std::vector<WindowResult> windows, const StabilityRule& rule) {
  StepResult step;
  step.load = load;
  step.stable = is_stable(windows, rule);
  step.windows = std::move(windows);
  const size_t n = step.windows.size();
  const size_t first = n > rule.windows ? n - rule.windows : 0;
  std::vector<double> all, rates, p50s, p99s;
  double duration = 0, cpu = 0;
  int64_t failed = 0;
  // As lib/bench/stats.ts: errors count over every window (none hidden), the rest over the accepted ones.
  for (const WindowResult& w : step.windows) step.errors += w.errors;
  for (size_t i = first; i < n; ++i) {
    const WindowResult& w = step.windows[i];
    all.insert(all.end(), w.latencies_us.begin(), w.latencies_us.end());
    duration += w.duration_us;
    cpu += w.cpu_us;
    failed += w.errors;
    step.peak_rss_bytes = std::max(step.peak_rss_bytes, w.peak_rss_bytes);
    const std::vector<double> sorted = sorted_latencies(w);
    rates.push_back(throughput(w));
    p50s.push_back(quantile(sorted, 0.5));
    p99s.push_back(quantile(sorted, 0.99));
  }
  step.throughput = duration > 0 ? static_cast<double>(all.size()) * 1e6 / duration : 0;
  // CPU per request sent, answered or failed (as lib/bench/stats.ts).
  const double sent = static_cast<double>(all.size()) + static_cast<double>(failed);
  step.cpu_us_per_request = sent > 0 ? cpu / sent : kNaN;
  step.latency = summarize(std::move(all), rule.percentile);
  if (!rates.empty()) {
    step.spread_throughput = min_max(rates);
    step.spread_p50 = min_max(p50s);
    step.spread_p99 = min_max(p99s);
  }
  return step;
}

std::vector<double> parse_range(const std::string& text, const std::string& flag) {
  auto bad = [&](const std::string& why) {
    return Error(Code::InvalidArgument, flag + " \"" + text + "\": " + why + " (expected start[:end[:step]], step a number or x<factor>)");
  };
  std::vector<std::string> parts;
  size_t from = 0;
  for (size_t colon; (colon = text.find(':', from)) != std::string::npos; from = colon + 1) parts.push_back(text.substr(from, colon - from));
  parts.push_back(text.substr(from));
  if (parts.size() > 3) throw bad("too many parts");
  auto number = [&](const std::string& s) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      throw bad("\"" + s + "\" is not a number");
    }
    if (used != s.size() || !std::isfinite(v) || v <= 0) throw bad("\"" + s + "\" is not a positive number");
    return v;
  };
  const double start = number(parts[0]);
  const double end = parts.size() > 1 ? number(parts[1]) : start;
  if (end < start) throw bad("the end is below the start");
  const bool factor = parts.size() > 2 && !parts[2].empty() && parts[2][0] == 'x';
  const double step = parts.size() > 2 ? number(factor ? parts[2].substr(1) : parts[2]) : 1;
  if (factor && step <= 1) throw bad("a factor must be above 1");
  std::vector<double> values;
  // A small tolerance so that 0.1-steps reach their end despite rounding.
  for (double v = start; v <= end * (1 + 1e-9); v = factor ? v * step : v + step) {
    // As lib/bench/runner.ts: a range of more than 1000 steps is a typing error, not a sweep.
    if (values.size() == 1000) throw bad("it makes more than 1000 steps");
    values.push_back(v);
  }
  return values;
}

}  // namespace kiln::bench
