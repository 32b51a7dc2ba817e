// Kiln's error model in the core: every failure is a kiln::Error carrying a stable code
// (see DESIGN.md "Errors"); the N-API layer turns it into a JS KilnError.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

enum class Code {
  InvalidArgument,
  DtypeMismatch,
  ShapeMismatch,
  ModelLoad,
  ProviderUnavailable,
  QueueFull,
  Timeout,
  Aborted,
  Overloaded,
  Disposed,
  NotFound,
  Ort,
};

// The code as JS sees it, e.g. "E_SHAPE_MISMATCH".
const char* code_name(Code code);

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

}  // namespace kiln
