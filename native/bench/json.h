// JSON text of the harness's results, in the shapes of lib/bench/types.ts (WindowResult,
// StepResult, TargetReport), so that Node reads them with JSON.parse and nothing else.
#pragma once

#include <string>
#include <vector>

#include "stats.h"

namespace kiln::bench {

// A JSON string literal of `s`.
std::string json_string(const std::string& s);
// The shortest text that reads back as `v`; null for NaN and infinities (as JSON.stringify).
std::string json_number(double v);

std::string to_json(const Load& load);
std::string to_json(const WindowResult& w);
std::string to_json(const StepResult& step);
// A TargetReport: {"name":"native","description":...,"steps":[...]}.
std::string target_report_json(const std::string& description, const std::vector<StepResult>& steps);

}  // namespace kiln::bench
