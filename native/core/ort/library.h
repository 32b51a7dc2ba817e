// ONNX Runtime is loaded with dlopen at run time so that one addon binary serves the CPU
// library shipped in onnxruntime-node and a user's GPU build (KILN_ORT_LIBRARY).
#pragma once

#include <onnxruntime_c_api.h>

#include <string>

namespace kiln::ort {

struct LibraryInfo {
  std::string path;     // what was dlopen'ed
  std::string version;  // OrtGetApiBase()->GetVersionString()
  uint32_t api_version; // the API table asked for (ORT_API_VERSION of the headers)
};

// Loads the library at `path` (first call wins; later calls with another path throw).
// Throws kiln::Error(ProviderUnavailable) naming the path and dlerror() when it cannot.
const LibraryInfo& load_library(const std::string& path);

// The API table; throws kiln::Error(ProviderUnavailable) if load_library has not succeeded.
const OrtApi& api();

bool library_loaded();

}  // namespace kiln::ort
