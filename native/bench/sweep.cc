#include "sweep.h"

#include <cmath>
#include <string>

namespace kiln::bench {

namespace {

std::string describe(const Load& load) {
  char buf[64];
  if (load.kind == Load::Kind::Concurrency) std::snprintf(buf, sizeof buf, "concurrency %d", load.concurrency);
  else std::snprintf(buf, sizeof buf, "%g/s %s", load.rate, load.poisson ? "poisson" : "constant");
  return buf;
}

void print_header(std::FILE* out) {
  std::fprintf(out, "%-22s %12s %11s %11s %11s %11s %11s %9s %7s %8s %s\n", "load", "req/s", "p50", "p90", "p95", "p99", "max",
               "cpu/req", "errors", "windows", "stable");
}

void print_row(std::FILE* out, const StepResult& s) {
  std::fprintf(out, "%-22s %12.1f %11s %11s %11s %11s %11s %9s %7lld %8zu %s\n", describe(s.load).c_str(), s.throughput,
               format_us(s.latency.p50).c_str(), format_us(s.latency.p90).c_str(), format_us(s.latency.p95).c_str(),
               format_us(s.latency.p99).c_str(), format_us(s.latency.max).c_str(), format_us(s.cpu_us_per_request).c_str(),
               static_cast<long long>(s.errors),
               s.windows.size(), s.stable ? "yes" : "no");
  std::fflush(out);
}

}  // namespace

std::string format_us(double us) {
  if (!std::isfinite(us)) return "-";
  char buf[32];
  if (us >= 1000) std::snprintf(buf, sizeof buf, "%.2f ms", us / 1000);
  else std::snprintf(buf, sizeof buf, "%.1f µs", us);
  return buf;
}

std::vector<StepResult> run_sweep(LoadGenerator& generator, const SweepSettings& settings, std::FILE* table) {
  print_header(table);
  std::vector<StepResult> steps;
  for (const Load& load : settings.loads) {
    std::vector<WindowResult> windows;
    do {
      windows.push_back(generator.window(load, settings.limit));
    } while (windows.size() < settings.max_windows && !is_stable(windows, settings.rule));
    steps.push_back(summarize_step(load, std::move(windows), settings.rule));
    print_row(table, steps.back());
  }
  return steps;
}

}  // namespace kiln::bench
