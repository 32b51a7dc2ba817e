// The standalone harness's sweep: for each load, windows until perf_analyzer's stability rule
// holds (or the trials run out), one table row per step, as `kiln bench` does for its targets.
#pragma once

#include <cstdio>
#include <vector>

#include "load.h"
#include "stats.h"

namespace kiln::bench {

struct SweepSettings {
  std::vector<Load> loads;
  WindowLimit limit;
  StabilityRule rule;
  size_t max_windows = 10;  // perf_analyzer's --max-trials
};

// Runs every step, printing the table to `table` as the steps finish.
std::vector<StepResult> run_sweep(LoadGenerator& generator, const SweepSettings& settings, std::FILE* table);

// "12.3 µs" below a millisecond, else "1.23 ms" (lib/latency.ts formatMicroseconds); "-" for NaN.
std::string format_us(double us);

}  // namespace kiln::bench
