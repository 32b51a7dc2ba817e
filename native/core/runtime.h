// The process-wide ONNX Runtime environment: one OrtEnv with global intra/inter-op thread
// pools that every session shares unless it asks for its own threads.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "ort/handles.h"

namespace kiln {

struct RuntimeConfig {
  std::string library_path;  // libonnxruntime to dlopen
  int intra_op_threads = 0;  // 0: ORT's default (one per physical core)
  int inter_op_threads = 0;
  bool spinning = false;     // a spinning pool steals the cores the event loop needs
  int log_level = ORT_LOGGING_LEVEL_WARNING;
};

class Runtime {
 public:
  // Creates the runtime on first call; later calls return it and ignore `config` unless it
  // names another library (an error). Thread-safe.
  static Runtime& init(const RuntimeConfig& config);
  // The runtime, or kiln::Error(ProviderUnavailable) when init has not succeeded.
  static Runtime& get();
  static bool initialized();

  OrtEnv* env() const { return env_.get(); }
  OrtAllocator* allocator() const { return allocator_; }
  const OrtMemoryInfo* cpu_memory() const { return cpu_memory_.get(); }
  const ort::LibraryInfo& library() const { return library_; }
  const RuntimeConfig& config() const { return config_; }
  const std::vector<std::string>& available_providers() const { return providers_; }
  bool has_provider(const std::string& ort_name) const;
  // Whether sessions can share the global pools: false when the process's OrtEnv was
  // created by someone else without them (ORT keeps one env per process).
  bool global_pools() const { return global_pools_.load(); }
  void global_pools_unavailable() { global_pools_.store(false); }

 private:
  explicit Runtime(const RuntimeConfig& config);

  RuntimeConfig config_;
  ort::LibraryInfo library_;
  ort::EnvPtr env_;
  OrtAllocator* allocator_ = nullptr;  // ORT's default CPU allocator, owned by ORT
  ort::MemoryInfoPtr cpu_memory_;
  std::vector<std::string> providers_;
  std::atomic<bool> global_pools_{true};
};

}  // namespace kiln
