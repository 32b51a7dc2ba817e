#include "json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace kiln::bench {

namespace {

std::string pair_json(const std::pair<double, double>& p) {
  return "[" + json_number(p.first) + "," + json_number(p.second) + "]";
}

bool named_percentile(double p) { return p == 50 || p == 90 || p == 95 || p == 99; }

std::string latency_json(const LatencySummary& s) {
  std::string out = "{\"count\":" + std::to_string(s.count) + ",\"mean\":" + json_number(s.mean) +
                    ",\"p50\":" + json_number(s.p50) + ",\"p90\":" + json_number(s.p90) + ",\"p95\":" + json_number(s.p95) +
                    ",\"p99\":" + json_number(s.p99) + ",\"max\":" + json_number(s.max);
  if (!named_percentile(s.percentile)) {
    out += ",\"chosen\":{\"percentile\":" + json_number(s.percentile) + ",\"value\":" + json_number(s.chosen) + "}";
  }
  return out + "}";
}

}  // namespace

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string to_json(const Load& load) {
  if (load.kind == Load::Kind::Concurrency) return "{\"kind\":\"concurrency\",\"concurrency\":" + std::to_string(load.concurrency) + "}";
  return "{\"kind\":\"rate\",\"rate\":" + json_number(load.rate) + ",\"arrival\":\"" + (load.poisson ? "poisson" : "constant") + "\"}";
}

std::string to_json(const WindowResult& w) {
  std::string out = "{\"durationUs\":" + json_number(w.duration_us) + ",\"latenciesUs\":[";
  for (size_t i = 0; i < w.latencies_us.size(); ++i) {
    if (i) out += ',';
    out += json_number(w.latencies_us[i]);
  }
  out += "],\"errors\":" + std::to_string(w.errors) + ",\"errorMessages\":[";
  for (size_t i = 0; i < w.error_messages.size(); ++i) out += (i ? "," : "") + json_string(w.error_messages[i]);
  out += "]";
  if (w.open_loop) out += ",\"lateSends\":" + std::to_string(w.late_sends) + ",\"maxSendLagUs\":" + json_number(w.max_send_lag_us);
  out += ",\"cpuUs\":" + json_number(w.cpu_us) + ",\"peakRssBytes\":" + std::to_string(w.peak_rss_bytes) + "}";
  return out;
}

std::string to_json(const StepResult& step) {
  std::string out = "{\"load\":" + to_json(step.load) + ",\"stable\":" + (step.stable ? "true" : "false") + ",\"windows\":[";
  for (size_t i = 0; i < step.windows.size(); ++i) out += (i ? "," : "") + to_json(step.windows[i]);
  out += "],\"throughput\":" + json_number(step.throughput) + ",\"latency\":" + latency_json(step.latency) +
         ",\"spread\":{\"throughput\":" + pair_json(step.spread_throughput) + ",\"p50\":" + pair_json(step.spread_p50) +
         ",\"p99\":" + pair_json(step.spread_p99) + "},\"errors\":" + std::to_string(step.errors);
  if (std::isfinite(step.cpu_us_per_request)) out += ",\"cpuUsPerRequest\":" + json_number(step.cpu_us_per_request);
  out += ",\"peakRssBytes\":" + std::to_string(step.peak_rss_bytes) + "}";
  return out;
}

std::string target_report_json(const std::string& description, const std::vector<StepResult>& steps) {
  std::string out = "{\"name\":\"native\",\"description\":" + json_string(description) + ",\"steps\":[";
  for (size_t i = 0; i < steps.size(); ++i) out += (i ? "," : "") + to_json(steps[i]);
  return out + "]}\n";
}

}  // namespace kiln::bench
