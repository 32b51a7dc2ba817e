#include "runtime.h"

#include <algorithm>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <memory>
#include <mutex>

namespace kiln {
namespace {

std::mutex g_mutex;
// Intentionally never destroyed: ORT must outlive every session and output buffer, including
// those released by finalizers during process teardown.
Runtime* g_runtime = nullptr;

// Outputs of many megabytes are allocated per run and freed when JS drops them. glibc
// serves such sizes with fresh mmaps (or trims its heap after them), so every run faults
// its output's pages in again: +25% on a 16 MiB output. Pin the thresholds at the maxima
// glibc's own dynamic heuristic moves towards (32 MiB mmap, 64 MiB trim), unless the user
// set them or turned this off (KILN_MALLOC_TUNING=0).
void tune_malloc() {
#if defined(__GLIBC__)
  const char* off = std::getenv("KILN_MALLOC_TUNING");
  if (off && std::string(off) == "0") return;
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 32 << 20);
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

}  // namespace

Runtime& Runtime::init(const RuntimeConfig& config) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_runtime) {
    if (!config.library_path.empty() && config.library_path != g_runtime->config_.library_path) {
      ort::load_library(config.library_path);  // throws the "already loaded" error
    }
    return *g_runtime;
  }
  g_runtime = new Runtime(config);
  tune_malloc();
  return *g_runtime;
}

Runtime& Runtime::get() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_runtime) throw Error(Code::ProviderUnavailable, "Kiln's ONNX Runtime environment is not initialised");
  return *g_runtime;
}

bool Runtime::initialized() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_runtime != nullptr;
}

Runtime::Runtime(const RuntimeConfig& config) : config_(config), library_(ort::load_library(config.library_path)) {
  const OrtApi& a = ort::api();
  OrtThreadingOptions* raw_tp = nullptr;
  ort::check(a.CreateThreadingOptions(&raw_tp));
  ort::ThreadingOptionsPtr tp(raw_tp);
  ort::check(a.SetGlobalIntraOpNumThreads(tp.get(), config.intra_op_threads));
  ort::check(a.SetGlobalInterOpNumThreads(tp.get(), config.inter_op_threads));
  ort::check(a.SetGlobalSpinControl(tp.get(), config.spinning ? 1 : 0));
  OrtEnv* raw_env = nullptr;
  ort::check(a.CreateEnvWithGlobalThreadPools(static_cast<OrtLoggingLevel>(config.log_level), "kiln", tp.get(), &raw_env));
  env_.reset(raw_env);
  ort::check(a.DisableTelemetryEvents(env_.get()));
  ort::check(a.GetAllocatorWithDefaultOptions(&allocator_));
  OrtMemoryInfo* mem = nullptr;
  ort::check(a.CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem));
  cpu_memory_.reset(mem);
  char** names = nullptr;
  int count = 0;
  ort::check(a.GetAvailableProviders(&names, &count));
  for (int i = 0; i < count; ++i) providers_.emplace_back(names[i]);
  ort::check(a.ReleaseAvailableProviders(names, count));
}

bool Runtime::has_provider(const std::string& ort_name) const {
  return std::find(providers_.begin(), providers_.end(), ort_name) != providers_.end();
}

}  // namespace kiln
