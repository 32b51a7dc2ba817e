// What session.cc (host IO) and session_device.cc (CUDA IO) share: the device IO state of a
// session and the ORT value helpers of both paths. Not part of the core's interface.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "cuda.h"
#include "session.h"

namespace kiln {

// Device IO state of a session on a GPU provider.
struct Session::Gpu {
  std::shared_ptr<cuda::Device> device;
  std::unique_ptr<cuda::Stream> stream;  // the provider computes on it; Kiln copies on it
  std::shared_ptr<BufferPool> pinned;    // batch assembly and outputs copied back
  std::shared_ptr<BufferPool> memory;    // device buffers for inputs
  ort::MemoryInfoPtr memory_info;        // ORT's name for memory on `device`
  ort::RunOptionsPtr run_options;        // for runs without options of their own
  // CUDA graphs replay fixed addresses: inputs are copied into buffers that live as long as
  // the session, and runs take turns.
  bool graph = false;
  std::mutex graph_mutex;
  std::vector<Buffer> graph_inputs;
  std::vector<std::vector<int64_t>> graph_shapes;
  std::vector<Buffer> graph_outputs;

  Gpu(int id, bool cuda_graph);
};

namespace detail {

// kiln::Error(InvalidArgument) unless `view.bytes` is what its dims and type need.
void check_bytes(const TensorView& view, const Label& what);
// The error for an output whose run produced `produced` while the caller's buffer is for `given`.
Error buffer_mismatch(const Label& what, const std::vector<int64_t>& produced, const std::vector<int64_t>& given);
// Wraps host memory (never copied) or, for strings, fills an ORT string tensor.
ort::ValuePtr make_value(const TensorView& view, const Label& what);
// Reads an output's type, shape and data (strings copied) into `t`.
void read_output(OrtValue* value, OwnedTensor& t);
// Runs `binding`, keeping Kiln's codes for the shape and type checks ORT makes.
void run_binding(OrtSession* session, OrtIoBinding* binding, OrtRunOptions* options);
// The outputs of a finished run, owned before anything can throw so that none leaks.
std::vector<ort::ValuePtr> bound_outputs(OrtIoBinding* binding, size_t expected);

}  // namespace detail
}  // namespace kiln
