// The native harness's statistics on known samples (the same rules as lib/bench and
// lib/latency.ts, so the floor and the JS targets are summarised alike), its JSON, and its
// load generator on the add model (KILN_ORT_LIBRARY, KILN_TEST_MODELS: see scripts/ctest.js).
#include <cmath>

#include "check.h"
#include "json.h"
#include "load.h"
#include "runtime.h"
#include "stats.h"

using namespace kiln;
using namespace kiln::bench;

namespace {

// A window of `count` requests of `latency` µs each over `duration` µs.
WindowResult window_of(size_t count, double latency, double duration) {
  WindowResult w;
  w.latencies_us.assign(count, latency);
  w.duration_us = duration;
  return w;
}

std::vector<double> one_to(int n) {
  std::vector<double> v;
  for (int i = 1; i <= n; ++i) v.push_back(i);
  return v;
}

std::shared_ptr<Session> add_session() {
  RuntimeConfig c;
  c.library_path = kiln_test::env_or("KILN_ORT_LIBRARY", "");
  c.intra_op_threads = 1;
  c.log_level = ORT_LOGGING_LEVEL_FATAL;  // the failing runs below are meant to fail
  Runtime::init(c);
  return Session::load_file(kiln_test::env_or("KILN_TEST_MODELS", "build-cmake/models") + "/add.onnx", {});
}

}  // namespace

TEST(quantile_is_nearest_rank_as_in_lib_latency) {
  const std::vector<double> v = one_to(10);
  CHECK(quantile(v, 0) == 1);
  CHECK(quantile(v, 0.5) == 6);   // round(4.5) = 5: halves round up, as Math.round
  CHECK(quantile(v, 0.9) == 9);   // round(8.1) = 8
  CHECK(quantile(v, 0.99) == 10); // round(8.91) = 9
  CHECK(quantile(v, 1) == 10);
  CHECK(quantile({7}, 0.99) == 7);
  CHECK(std::isnan(quantile({}, 0.5)));
}

TEST(summary_of_known_samples) {
  const LatencySummary s = summarize({5, 1, 3, 2, 4}, 75);
  CHECK(s.count == 5);
  CHECK(s.mean == 3);
  CHECK(s.p50 == 3 && s.p90 == 5 && s.p95 == 5 && s.p99 == 5 && s.max == 5);
  CHECK(s.percentile == 75 && s.chosen == 4);  // round(0.75 · 4) = 3
  const LatencySummary empty = summarize({}, 99);
  CHECK(empty.count == 0 && std::isnan(empty.mean) && std::isnan(empty.p99) && std::isnan(empty.max));
}

TEST(throughput_counts_completed_requests_per_second) {
  CHECK(throughput(window_of(100, 10, 200000)) == 500);
  WindowResult failed = window_of(100, 10, 200000);
  failed.add_error("E_ORT: boom");  // errors are not throughput
  CHECK(throughput(failed) == 500);
  CHECK(throughput(window_of(3, 10, 0)) == 0);
}

TEST(stability_needs_the_last_windows_within_the_tolerance) {
  const StabilityRule rule{3, 10, 99};
  // Throughputs 500, 525, 475 (avg 500, all within 10%), equal latencies: stable.
  std::vector<WindowResult> w{window_of(100, 10, 200000), window_of(105, 10, 200000), window_of(95, 10, 200000)};
  CHECK(is_stable(w, rule));
  CHECK(!is_stable({w[0], w[1]}, rule));  // too few windows
  // 500, 500, 650: avg 550, 650 is 18% off.
  CHECK(!is_stable({window_of(100, 10, 200000), window_of(100, 10, 200000), window_of(130, 10, 200000)}, rule));
  // Same throughputs, p99 latencies 10, 10, 14: avg 11.33, 14 is 24% off.
  CHECK(!is_stable({window_of(100, 10, 200000), window_of(100, 10, 200000), window_of(100, 14, 200000)}, rule));
  // Only the last three count: an early outlier (a cold first window) does not matter.
  w.insert(w.begin(), window_of(10, 100, 200000));
  CHECK(is_stable(w, rule));
  CHECK(!is_stable(w, StabilityRule{4, 10, 99}));
  // A window with no answers has no latency to agree on.
  CHECK(!is_stable({window_of(0, 0, 200000), window_of(0, 0, 200000), window_of(0, 0, 200000)}, rule));
}

TEST(step_summarises_the_accepted_windows) {
  std::vector<WindowResult> w{window_of(10, 100, 200000), window_of(100, 10, 200000), window_of(105, 20, 200000),
                              window_of(95, 30, 200000)};
  w[0].add_error("E_ORT: cold");
  w[3].add_error("E_ORT: late");
  w[2].cpu_us = 300;
  w[3].cpu_us = 300;
  w[1].peak_rss_bytes = 7;
  w[3].peak_rss_bytes = 5;
  Load load;
  load.concurrency = 4;
  const StepResult s = summarize_step(load, w, StabilityRule{3, 10, 99});
  CHECK(s.windows.size() == 4);
  CHECK(s.throughput == 500);  // 300 requests over 0.6 s; the first window is not accepted
  CHECK(s.latency.count == 300);
  CHECK(s.latency.p50 == 20 && s.latency.max == 30);
  CHECK(std::fabs(s.latency.mean - (100 * 10 + 105 * 20 + 95 * 30) / 300.0) < 1e-9);
  CHECK(s.errors == 2);  // over every window, as the JS side counts them: none hidden
  // CPU over the accepted windows per request sent in them, answered or failed (301).
  CHECK(std::fabs(s.cpu_us_per_request - 600.0 / 301) < 1e-12);
  CHECK(s.peak_rss_bytes == 7);
  CHECK(s.spread_throughput.first == 475 && s.spread_throughput.second == 525);
  CHECK(s.spread_p50.first == 10 && s.spread_p50.second == 30);
  // Latencies 10, 20, 30 disagree by far more than 10%.
  CHECK(!s.stable);
}

TEST(errors_keep_a_few_distinct_messages) {
  WindowResult a, b;
  for (int i = 0; i < 3; ++i) a.add_error("E_ORT: same");
  for (int i = 0; i < 8; ++i) b.add_error("E_ORT: " + std::to_string(i));
  a.merge(std::move(b));
  CHECK(a.errors == 11);
  CHECK(a.error_messages.size() == WindowResult::kMaxErrorMessages);
  CHECK(a.error_messages[0] == "E_ORT: same" && a.error_messages[1] == "E_ORT: 0");
}

TEST(ranges_read_as_perf_analyzer_reads_them) {
  CHECK((parse_range("1:16:x2", "r") == std::vector<double>{1, 2, 4, 8, 16}));
  CHECK((parse_range("100:800:x2", "r") == std::vector<double>{100, 200, 400, 800}));
  CHECK((parse_range("1:10:4", "r") == std::vector<double>{1, 5, 9}));
  CHECK((parse_range("1:3", "r") == std::vector<double>{1, 2, 3}));
  CHECK((parse_range("8", "r") == std::vector<double>{8}));
  CHECK_THROWS(parse_range("16:1", "--concurrency-range"), Code::InvalidArgument, "--concurrency-range \"16:1\": the end is below the start");
  CHECK_THROWS(parse_range("1:8:x1", "r"), Code::InvalidArgument, "a factor must be above 1");
  CHECK_THROWS(parse_range("a:4", "r"), Code::InvalidArgument, "\"a\" is not a number");
  CHECK_THROWS(parse_range("0:4", "r"), Code::InvalidArgument, "\"0\" is not a positive number");
  CHECK_THROWS(parse_range("1:2:3:4", "r"), Code::InvalidArgument, "too many parts");
  CHECK((parse_range("1:1000", "r").size() == 1000));
  CHECK_THROWS(parse_range("1:1e9", "r"), Code::InvalidArgument, "more than 1000 steps");
}

TEST(json_is_the_shape_lib_bench_reads) {
  CHECK(json_number(0.1) == "0.1");
  CHECK(json_number(12.345) == "12.345");
  CHECK(json_number(std::nan("")) == "null");
  CHECK(json_string("a\"b\\c\n") == "\"a\\\"b\\\\c\\u000a\"");
  WindowResult w = window_of(2, 1.5, 10);
  w.add_error("E_ORT: x");
  w.cpu_us = 3;
  w.peak_rss_bytes = 4096;
  CHECK(to_json(w) == "{\"durationUs\":10,\"latenciesUs\":[1.5,1.5],\"errors\":1,\"errorMessages\":[\"E_ORT: x\"],"
                      "\"cpuUs\":3,\"peakRssBytes\":4096}");
  w.open_loop = true;
  w.late_sends = 1;
  w.max_send_lag_us = 2.5;
  CHECK(to_json(w).find(",\"lateSends\":1,\"maxSendLagUs\":2.5,") != std::string::npos);
  Load rate;
  rate.kind = Load::Kind::Rate;
  rate.rate = 250;
  rate.poisson = false;
  CHECK(to_json(rate) == "{\"kind\":\"rate\",\"rate\":250,\"arrival\":\"constant\"}");
}

TEST(load_closed_loop_by_count_sends_exactly_that_many) {
  auto s = add_session();
  Inputs inputs;
  make_inputs(*s, InputShapes{}, inputs);
  LoadGenerator gen({s}, inputs, 2);
  Load load;
  load.concurrency = 3;
  const WindowResult w = gen.window(load, WindowLimit{0, 37});
  CHECK(w.latencies_us.size() == 37);
  CHECK(w.errors == 0);
  for (double l : w.latencies_us) CHECK(l > 0 && l <= w.duration_us);
  CHECK(!w.open_loop);
}

TEST(load_open_loop_sends_the_schedule) {
  auto s = add_session();
  Inputs inputs;
  make_inputs(*s, InputShapes{}, inputs);
  LoadGenerator gen({s, s}, inputs, 4);
  Load load;
  load.kind = Load::Kind::Rate;
  load.rate = 1000;
  load.poisson = false;
  // Evenly spaced: sends at 0, 1, ... 49 ms, whatever the timing.
  const WindowResult w = gen.window(load, WindowLimit{50, 0});
  CHECK(w.latencies_us.size() == 50);
  CHECK(w.open_loop && w.late_sends >= 0 && w.max_send_lag_us >= 0);
  CHECK(w.duration_us >= 49000);
  load.poisson = true;
  CHECK(gen.window(load, WindowLimit{0, 20}).latencies_us.size() == 20);
}

TEST(load_rejects_bad_windows_and_counts_failed_requests) {
  auto s = add_session();
  Inputs inputs;
  InputShapes shapes;
  shapes.shapes["a"] = {2, 4};
  shapes.shapes["b"] = {3, 4};  // the model adds [N,4] to [N,4]: every run fails
  make_inputs(*s, shapes, inputs);
  LoadGenerator gen({s}, inputs, 1);
  Load load;
  CHECK_THROWS(gen.window(load, WindowLimit{0, 0}), Code::InvalidArgument, "a window ends after");
  CHECK_THROWS(gen.window(load, WindowLimit{10, 5}), Code::InvalidArgument, "a window ends after");
  load.concurrency = 0;
  CHECK_THROWS(gen.window(load, WindowLimit{0, 5}), Code::InvalidArgument, "concurrency must be 1 to 4096");
  load.concurrency = 2;
  const WindowResult w = gen.window(load, WindowLimit{0, 5});
  CHECK(w.latencies_us.empty() && w.errors == 5 && w.error_messages.size() == 1);
  CHECK(w.error_messages[0].rfind("E_", 0) == 0);
  InputShapes unknown;
  unknown.shapes["z"] = {1, 4};
  CHECK_THROWS(make_inputs(*s, unknown, inputs), Code::InvalidArgument, "--shape names input \"z\"");
}
