// A loaded model: metadata, providers, and runs through IoBinding.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "memory.h"
#include "ort/handles.h"
#include "tensor.h"

namespace kiln {

struct ValueInfo {
  std::string name;
  std::string kind;  // "tensor", "sequence", "map", "optional", "sparse_tensor", "unknown"
  DType type = DType::Undefined;  // element type for tensors
  std::vector<int64_t> shape;     // -1 for a dynamic dim
  std::vector<std::string> symbolic;  // per dim; empty when the dim is fixed or unnamed
};

struct ProviderSpec {
  std::string name;  // "cpu", "cuda", "tensorrt"
  std::vector<std::pair<std::string, std::string>> options;  // ORT's V2 option keys
};

struct SessionConfig {
  std::vector<ProviderSpec> providers;  // preference order; empty means cpu
  int intra_op_threads = -1;  // -1: the runtime's global pool; >= 0: the session's own pool
  int inter_op_threads = -1;
  bool spinning = false;      // for the session's own pool
  int graph_optimization_level = -1;  // GraphOptimizationLevel; -1: ORT's default (all)
  bool parallel_execution = false;
  std::string optimized_model_path;
  std::string profile_prefix;  // non-empty: profiling on
  int log_level = -1;
  std::vector<std::pair<std::string, std::string>> config_entries;  // AddSessionConfigEntry
  // On a GPU provider: inputs and outputs through device buffers on a stream Kiln creates for
  // the session (see Session::device()). Off: ORT copies host tensors itself.
  bool device_io = true;
};

class Session;
namespace testing {
struct DeviceEmulation;
}

// An output that owns its memory (an ORT-allocated OrtValue), keeping the session alive
// because ORT's allocator belongs to it.
struct OwnedTensor {
  DType type = DType::Undefined;
  std::vector<int64_t> shape;
  void* data = nullptr;
  size_t bytes = 0;
  std::vector<std::string> strings;
  bool preallocated = false;  // written into the caller's buffer
  int device = -1;            // >= 0: `data` is an address on this CUDA device
  Buffer storage;             // the pinned host buffer `data` points into, when it does
  ort::ValuePtr value;
  std::shared_ptr<const Session> session;
};

struct Feed {
  size_t input = 0;  // index into Session::inputs()
  TensorView view;
};

struct Fetch {
  size_t output = 0;  // index into Session::outputs()
  const TensorView* preallocated = nullptr;
  // The buffer was sized from expected_shape(), not given by the caller: if the run fails,
  // it is retried with ORT allocating this output (its shape may depend on the data).
  bool expected = false;
  // Leave the output on the session's CUDA device (a device session only).
  bool on_device = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  static std::shared_ptr<Session> load_file(const std::string& path, const SessionConfig& config);
  static std::shared_ptr<Session> load_bytes(const void* data, size_t size, const SessionConfig& config);
  ~Session();

  const std::vector<ValueInfo>& inputs() const { return inputs_; }
  const std::vector<ValueInfo>& outputs() const { return outputs_; }
  // ORT names of the providers the session was created with, in priority order.
  const std::vector<std::string>& providers() const { return providers_; }
  // Why providers earlier in the preference list were skipped.
  const std::vector<std::string>& provider_notes() const { return provider_notes_; }
  // Index of the input/output called `name`, or -1.
  int input_index(const std::string& name) const;
  int output_index(const std::string& name) const;

  // Runs once. `out` receives one tensor per fetch, in order. `options` may be null.
  // Thread-safe: concurrent runs are allowed, as ORT allows them. Outputs bound to buffers
  // sized from an expected shape (Fetch::expected, and a device session's pooled device
  // buffers) are written in place; if such a run fails, it runs again with ORT allocating
  // them, and their shapes are never expected again.
  void run(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
           std::vector<OwnedTensor>& out, OrtRunOptions* options = nullptr) const;

  // The shape output `output` will have for these feeds, when it can be known before the
  // run: fixed in the model, or what the last run with the same input shapes produced.
  // Lets callers hand ORT a buffer of their own to write into.
  bool expected_shape(size_t output, const Feed* feeds, size_t feed_count, std::vector<int64_t>& shape) const;

  // Ends profiling and returns the profile file's path ("" when profiling was off).
  std::string end_profiling();

  // The CUDA device this session's inputs and outputs go through, or -1 (host IO). A device
  // session copies host inputs to pooled device buffers on its own non-blocking stream (the
  // one ORT's provider computes on), binds outputs on the device, copies them back into
  // pinned host buffers and synchronises once per run.
  int device() const;
  // Where this session's batches are assembled: pinned host memory for device IO (the copy
  // to the device runs at bus speed), aligned host memory otherwise.
  std::shared_ptr<BufferPool> batch_pool() const;
  // Copies a device output of this session into host memory (`bytes` of `t`), blocking until done.
  void download(const OwnedTensor& t, void* dst) const;

 private:
  Session() = default;
  void create(const std::string* path, const void* data, size_t size, const SessionConfig& config);
  void read_metadata();
  // A pooled IoBinding for one run, given back (cleared) to the pool on every path.
  class BindingLease {
   public:
    BindingLease(const Session& s, ort::IoBindingPtr b) : session_(s), binding_(std::move(b)) {}
    ~BindingLease() { session_.release_binding(std::move(binding_)); }
    BindingLease(const BindingLease&) = delete;
    BindingLease& operator=(const BindingLease&) = delete;
    OrtIoBinding* get() const { return binding_.get(); }

   private:
    const Session& session_;
    ort::IoBindingPtr binding_;
  };
  BindingLease acquire_binding() const;
  void release_binding(ort::IoBindingPtr binding) const;

  struct Gpu;
  friend struct testing::DeviceEmulation;  // native/test: device IO on a fake driver
  // One try of run(). `prebind[i]`: fetch i is bound to a buffer sized from an expected
  // shape (on a device session, a pooled device buffer of shape `shapes[i]`).
  void attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
               const std::vector<bool>& prebind, const std::vector<std::vector<int64_t>>& shapes,
               std::vector<OwnedTensor>& out, OrtRunOptions* options) const;
  void host_attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                    std::vector<OwnedTensor>& out, OrtRunOptions* options) const;
  void device_attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                      const std::vector<bool>& prebind, const std::vector<std::vector<int64_t>>& shapes,
                      std::vector<OwnedTensor>& out, OrtRunOptions* options) const;
  // Refuses device tensors and device outputs on a host IO session.
  void check_host_io(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count) const;
  ort::ValuePtr device_value(void* address, size_t bytes, DType type, const std::vector<int64_t>& shape) const;

  std::unique_ptr<Gpu> gpu_;  // device IO state; null for host IO
  std::shared_ptr<BufferPool> host_pool_ = BufferPool::create();  // batches of a host IO session
  ort::SessionPtr session_;
  std::vector<ValueInfo> inputs_;
  std::vector<ValueInfo> outputs_;
  std::vector<std::string> providers_;
  std::vector<std::string> provider_notes_;
  bool profiling_ = false;
  // IoBindings are reused across runs: creating one per run costs more than the run of a
  // tiny model.
  mutable std::mutex bindings_mutex_;
  mutable std::vector<ort::IoBindingPtr> bindings_;

  void remember_shapes(const Feed* feeds, size_t feed_count, const Fetch* fetches,
                       const std::vector<OwnedTensor>& out) const;

  // Input shapes of the last run and the output shapes they produced (empty: unknown).
  mutable std::mutex shapes_mutex_;
  mutable std::vector<std::vector<int64_t>> last_input_shapes_;
  mutable std::vector<std::vector<int64_t>> last_output_shapes_;
  mutable std::vector<bool> data_dependent_;  // outputs whose shape a prediction got wrong
};

}  // namespace kiln
