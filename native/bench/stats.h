// What the harness measures and how it adds up: a load, one window's result, the per-step
// summary and perf_analyzer's stability rule. The shapes mirror lib/bench/types.ts (Load,
// WindowLimit, WindowResult, LatencySummary, StepResult) and the arithmetic mirrors the JS
// side (percentiles by nearest rank, as lib/latency.ts `quantile`), so that the floor and the
// JS targets are summarised the same way.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kiln::bench {

// Closed loop (`concurrency` callers, each sending when its last answer arrived) or open loop
// (`rate` requests per second, Poisson or evenly spaced arrivals).
struct Load {
  enum class Kind { Concurrency, Rate };
  Kind kind = Kind::Concurrency;
  int concurrency = 1;
  double rate = 0;
  bool poisson = false;
};

// A window ends after `ms` milliseconds (when > 0) or after `requests` requests.
struct WindowLimit {
  double ms = 0;
  int64_t requests = 0;
};

struct WindowResult {
  double duration_us = 0;             // first send to the last answer (a timed open loop: at least its ms)
  std::vector<double> latencies_us;   // one per completed request
  int64_t errors = 0;
  std::vector<std::string> error_messages;  // distinct messages, at most kMaxErrorMessages
  bool open_loop = false;             // late_sends and max_send_lag_us are meaningful
  int64_t late_sends = 0;
  double max_send_lag_us = 0;
  double cpu_us = 0;                  // process CPU time (user + system) during the window
  int64_t peak_rss_bytes = 0;         // process peak RSS so far

  static constexpr size_t kMaxErrorMessages = 5;
  // Counts a failed request, keeping its message if it is new and there is room.
  void add_error(const std::string& message);
  // Appends `other`'s latencies and errors (workers' partial results into one window).
  void merge(WindowResult&& other);
};

struct LatencySummary {
  size_t count = 0;
  double mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;  // NaN when count is 0
  double percentile = 99;  // the chosen one (--percentile) and its value
  double chosen = 0;
};

// perf_analyzer's rule: the last `windows` windows agree when each one's throughput and
// chosen-percentile latency lie within ±`percentage`% of their average.
struct StabilityRule {
  size_t windows = 3;
  double percentage = 10;
  double percentile = 99;
};

struct StepResult {
  Load load;
  bool stable = false;
  std::vector<WindowResult> windows;
  // Over the accepted windows (the last rule.windows, or all when there are fewer).
  double throughput = 0;
  LatencySummary latency;
  std::pair<double, double> spread_throughput, spread_p50, spread_p99;  // lowest, highest
  int64_t errors = 0;
  double cpu_us_per_request = 0;  // NaN when nothing completed
  int64_t peak_rss_bytes = 0;
};

// The `q` quantile (0..1) of ascending `sorted` samples by nearest rank: index
// round(q·(n−1)); NaN when empty.
double quantile(const std::vector<double>& sorted, double q);

// Count, mean, p50/p90/p95/p99, max and the `percentile`th percentile of `samples`.
LatencySummary summarize(std::vector<double> samples, double percentile);

// Completed requests per second of a window (0 for a window of no duration).
double throughput(const WindowResult& w);

// Whether the last rule.windows of `windows` satisfy the rule (false when there are fewer).
bool is_stable(const std::vector<WindowResult>& windows, const StabilityRule& rule);

// The step's summary over the windows the rule accepts.
StepResult summarize_step(const Load& load, std::vector<WindowResult> windows, const StabilityRule& rule);

// A sweep of loads from a perf_analyzer range "start:end:step": `step` is added, or with an
// `x` prefix ("x2") multiplied; "start" alone is one value and "start:end" steps by 1.
// kiln::Error(InvalidArgument) naming `flag` for a malformed range.
std::vector<double> parse_range(const std::string& text, const std::string& flag);

}  // namespace kiln::bench
