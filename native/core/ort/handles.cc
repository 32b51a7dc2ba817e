#include "ort/handles.h"

namespace kiln::ort {

Code code_for(OrtErrorCode code) {
  switch (code) {
    case ORT_NO_SUCHFILE: return Code::NotFound;
    case ORT_INVALID_PROTOBUF:
    case ORT_INVALID_GRAPH:
    case ORT_NO_MODEL:
    case ORT_MODEL_LOADED:
    case ORT_NOT_IMPLEMENTED: return Code::ModelLoad;
    case ORT_EP_FAIL: return Code::ProviderUnavailable;
    default: return Code::Ort;
  }
}

void check(OrtStatus* status, Code fallback, const std::string& context) {
  if (!status) return;
  const OrtApi& a = api();
  OrtErrorCode ort_code = a.GetErrorCode(status);
  std::string message = a.GetErrorMessage(status);
  a.ReleaseStatus(status);
  // ORT's messages may end in a newline; a Kiln message is one line.
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  Code code = code_for(ort_code);
  if (code == Code::Ort) code = fallback;
  throw Error(code, context.empty() ? message : context + ": " + message);
}

}  // namespace kiln::ort
