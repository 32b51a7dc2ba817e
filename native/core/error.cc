#include "error.h"

namespace kiln {

const char* code_name(Code code) {
  switch (code) {
    case Code::InvalidArgument: return "E_INVALID_ARGUMENT";
    case Code::DtypeMismatch: return "E_DTYPE_MISMATCH";
    case Code::ShapeMismatch: return "E_SHAPE_MISMATCH";
    case Code::ModelLoad: return "E_MODEL_LOAD";
    case Code::ProviderUnavailable: return "E_PROVIDER_UNAVAILABLE";
    case Code::QueueFull: return "E_QUEUE_FULL";
    case Code::Timeout: return "E_TIMEOUT";
    case Code::Aborted: return "E_ABORTED";
    case Code::Overloaded: return "E_OVERLOADED";
    case Code::Disposed: return "E_DISPOSED";
    case Code::NotFound: return "E_NOT_FOUND";
    case Code::Ort: return "E_ORT";
  }
  return "E_ORT";
}

}  // namespace kiln
