#include "ort/library.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "error.h"

namespace kiln::ort {
namespace {

std::mutex g_mutex;
LibraryInfo g_info;
std::atomic<const OrtApi*> g_api{nullptr};

}  // namespace

const LibraryInfo& load_library(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_api.load()) {
    if (!path.empty() && path != g_info.path) {
      throw Error(Code::InvalidArgument, "ONNX Runtime is already loaded from " + g_info.path +
                                             "; a process can use only one library, cannot switch to " + path);
    }
    return g_info;
  }
  if (path.empty()) {
    throw Error(Code::ProviderUnavailable,
                "no ONNX Runtime library found: install onnxruntime-node (it ships libonnxruntime) or set "
                "KILN_ORT_LIBRARY to the path of libonnxruntime.so");
  }
  // ORT writes a device id and a telemetry database under ~/.cache unless told not to; a
  // user's explicit setting wins.
  setenv("ORT_DISABLE_TELEMETRY", "1", 0);
  // RTLD_LOCAL keeps ORT's symbols out of the global namespace; a library already loaded by
  // onnxruntime-node from the same file is shared, which is what both expect.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    throw Error(Code::ProviderUnavailable, "cannot load ONNX Runtime library " + path + ": " +
                                               (why ? why : "unknown dlopen error") +
                                               " (set KILN_ORT_LIBRARY to a valid libonnxruntime.so)");
  }
  using GetApiBaseFn = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (!get_base) {
    dlclose(handle);
    throw Error(Code::ProviderUnavailable, path + " is not an ONNX Runtime library (no OrtGetApiBase symbol)");
  }
  const OrtApiBase* base = get_base();
  const char* version = base->GetVersionString();
  // A library serves every API version up to its own; asking for the headers' version
  // fails only when the library is older than the headers.
  const OrtApi* table = base->GetApi(ORT_API_VERSION);
  if (!table) {
    dlclose(handle);
    throw Error(Code::ProviderUnavailable, "ONNX Runtime " + std::string(version ? version : "?") + " at " + path +
                                               " is too old: Kiln needs API version " +
                                               std::to_string(ORT_API_VERSION) + " (ONNX Runtime 1." +
                                               std::to_string(ORT_API_VERSION) + " or newer)");
  }
  g_info = LibraryInfo{path, version ? version : "", ORT_API_VERSION};
  g_api.store(table);
  return g_info;
}

const OrtApi& api() {
  const OrtApi* table = g_api.load(std::memory_order_acquire);
  if (!table) {
    throw Error(Code::ProviderUnavailable, "ONNX Runtime is not loaded (no library was found or configured)");
  }
  return *table;
}

bool library_loaded() { return g_api.load() != nullptr; }

}  // namespace kiln::ort
