#include <cstring>
#include <exception>

#include "runtime.h"
#include "session_detail.h"

namespace kiln {
namespace {

// Whether ORT put `value` in host memory (a session whose "device" memory ORT sees as host
// memory: then there is nothing for the stream to copy).
bool in_host_memory(const OrtValue* value) {
  const OrtApi& a = ort::api();
  const OrtMemoryInfo* info = nullptr;
  ort::check(a.GetTensorMemoryInfo(value, &info));
  OrtMemoryInfoDeviceType type = OrtMemoryInfoDeviceType_CPU;
  a.MemoryInfoGetDeviceType(info, &type);
  return type == OrtMemoryInfoDeviceType_CPU;
}

}  // namespace

Session::Gpu::Gpu(int id, bool cuda_graph) : graph(cuda_graph) {
  device = std::make_shared<cuda::Device>(id);
  stream = std::make_unique<cuda::Stream>(device);
  pinned = cuda::pinned_pool(device);
  memory = cuda::device_pool(device);
  const OrtApi& a = ort::api();
  OrtMemoryInfo* info = nullptr;
  ort::check(a.CreateMemoryInfo("Cuda", OrtDeviceAllocator, id, OrtMemTypeDefault, &info));
  memory_info.reset(info);
  OrtRunOptions* ro = nullptr;
  ort::check(a.CreateRunOptions(&ro));
  run_options.reset(ro);
  ort::check(a.AddRunConfigEntry(ro, "disable_synchronize_execution_providers", "1"));
}

void Session::device_attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                             const std::vector<bool>& prebind, const std::vector<std::vector<int64_t>>& shapes,
                             std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
  using namespace detail;
  const OrtApi& a = ort::api();
  Gpu& g = *gpu_;
  const int id = g.device->id();
  std::unique_lock<std::mutex> graph_turn;
  if (g.graph) graph_turn = std::unique_lock<std::mutex>(g.graph_mutex);
  const BindingLease binding = acquire_binding();

  // Device buffers holding this run's inputs and the outputs copied back: released only
  // after the synchronisation.
  std::vector<Buffer> staged;
  staged.reserve(feed_count + fetch_count);
  // A failure after copies were queued waits for them before the buffers go back to the pools.
  struct DrainOnError {
    cuda::Stream& stream;
    int pending = std::uncaught_exceptions();
    ~DrainOnError() {
      if (std::uncaught_exceptions() > pending) {
        try {
          stream.synchronize();
        } catch (const Error&) {
        }
      }
    }
  } drain{*g.stream};
  if (g.graph && g.graph_inputs.empty()) {
    g.graph_inputs.resize(inputs_.size());
    g.graph_shapes.resize(inputs_.size());
    g.graph_outputs.resize(outputs_.size());
  }
  for (size_t i = 0; i < feed_count; ++i) {
    const Feed& f = feeds[i];
    const ValueInfo& info = inputs_.at(f.input);
    const Label label{"input", info.name};
    const TensorView& v = f.view;
    ort::ValuePtr value;
    if (v.type == DType::String) {
      value = make_value(v, label);  // ORT keeps strings on the host
    } else {
      check_bytes(v, label);
      const size_t bytes = v.bytes;
      if (v.device >= 0 && v.device != id) {
        throw Error(Code::InvalidArgument, label.str() + ": it lives on CUDA device " + std::to_string(v.device) +
                                               ", and this session runs on device " + std::to_string(id));
      }
      void* address = v.data;
      if (g.graph) {
        // The captured graph reads from one address per input, so every run copies there.
        std::vector<int64_t>& captured = g.graph_shapes[f.input];
        if (captured.empty()) {
          captured = v.shape;
          g.graph_inputs[f.input] = g.memory->acquire(bytes ? bytes : 1);
        } else if (captured != v.shape) {
          throw Error(Code::ShapeMismatch, label.str() + ": a session with enableCudaGraph replays the shape it captured, " +
                                               format_shape(captured.data(), captured.size()) + "; received " +
                                               format_shape(v.shape.data(), v.shape.size()));
        }
        address = g.graph_inputs[f.input].data();
        if (v.device >= 0) {
          g.stream->copy_device(cuda::device_ptr(g.graph_inputs[f.input]), reinterpret_cast<cuda::DevicePtr>(v.data), bytes);
        } else {
          g.stream->copy_to_device(cuda::device_ptr(g.graph_inputs[f.input]), v.data, bytes);
        }
      } else if (v.device < 0) {
        staged.push_back(g.memory->acquire(bytes ? bytes : 1));
        address = staged.back().data();
        g.stream->copy_to_device(cuda::device_ptr(staged.back()), v.data, bytes);
      }
      value = device_value(address, bytes, v.type, v.shape);
    }
    if (OrtStatus* st = a.BindInput(binding.get(), info.name.c_str(), value.get())) ort::check(st, Code::Ort, label.str());
  }
  std::vector<Buffer> bound(fetch_count);  // device buffers of the prebound outputs
  for (size_t i = 0; i < fetch_count; ++i) {
    const ValueInfo& info = outputs_.at(fetches[i].output);
    const Label label{"output", info.name};
    OrtStatus* st = nullptr;
    if (prebind[i]) {
      const size_t bytes = byte_size(info.type, shapes[i].data(), shapes[i].size(), label);
      void* address = nullptr;
      if (g.graph) {
        // A replayed graph writes where it was captured: one buffer per output for the
        // session's life (ORT captures after its first runs, once these addresses hold).
        Buffer& fixed = g.graph_outputs[fetches[i].output];
        if (fixed.capacity() < bytes) fixed = g.memory->acquire(bytes ? bytes : 1);
        address = fixed.data();
      } else {
        bound[i] = g.memory->acquire(bytes ? bytes : 1);
        address = bound[i].data();
      }
      ort::ValuePtr value = device_value(address, bytes, info.type, shapes[i]);
      st = a.BindOutput(binding.get(), info.name.c_str(), value.get());
    } else {
      const OrtMemoryInfo* where = info.type == DType::String ? Runtime::get().cpu_memory() : g.memory_info.get();
      st = a.BindOutputToDevice(binding.get(), info.name.c_str(), where);
    }
    if (st) ort::check(st, Code::Ort, label.str());
  }
  // The provider computes on the session's stream, after the input copies; ORT does not
  // synchronise at the end of the run: the one synchronisation below does.
  if (options) ort::check(a.AddRunConfigEntry(options, "disable_synchronize_execution_providers", "1"));
  run_binding(session_.get(), binding.get(), options ? options : g.run_options.get());
  std::vector<ort::ValuePtr> owned = bound_outputs(binding.get(), fetch_count);
  out.resize(fetch_count);
  std::shared_ptr<const Session> self = shared_from_this();
  for (size_t i = 0; i < fetch_count; ++i) {
    OwnedTensor& t = out[i];
    read_output(owned[i].get(), t);
    t.value = std::move(owned[i]);
    t.session = self;
    if (t.type == DType::String) continue;
    if (fetches[i].on_device) {
      t.device = id;
      if (g.graph && prebind[i]) {
        // The graph's buffer is rewritten by the next run: the caller gets a copy of its own.
        t.storage = g.memory->acquire(t.bytes ? t.bytes : 1);
        g.stream->copy_device(cuda::device_ptr(t.storage), reinterpret_cast<cuda::DevicePtr>(t.data), t.bytes);
        t.data = t.storage.data();
        t.value.reset();
      } else {
        t.storage = std::move(bound[i]);  // back to the device pool when the tensor goes
      }
      continue;
    }
    const auto from = reinterpret_cast<cuda::DevicePtr>(t.data);
    void* to = nullptr;
    if (const TensorView* dst = fetches[i].preallocated) {
      // The caller's buffer (pageable: the driver stages the copy).
      if (dst->bytes != t.bytes || dst->shape != t.shape) {
        throw buffer_mismatch(Label{"output", outputs_[fetches[i].output].name}, t.shape, dst->shape);
      }
      to = dst->data;
      t.preallocated = true;
    } else {
      t.storage = g.pinned->acquire(t.bytes ? t.bytes : 1);
      to = t.storage.data();
    }
    if (!prebind[i] && in_host_memory(t.value.get())) {
      std::memcpy(to, t.data, t.bytes);
    } else {
      g.stream->copy_to_host(to, from, t.bytes);
    }
    t.data = to;
    if (bound[i].data()) staged.push_back(std::move(bound[i]));
  }
  g.stream->synchronize();
  for (OwnedTensor& t : out) {
    if (t.device < 0 && t.type != DType::String) t.value.reset();  // its device memory goes back
  }
}

ort::ValuePtr Session::device_value(void* address, size_t bytes, DType type, const std::vector<int64_t>& shape) const {
  OrtValue* raw = nullptr;
  ort::check(ort::api().CreateTensorWithDataAsOrtValue(gpu_->memory_info.get(), address, bytes, shape.data(), shape.size(),
                                                       static_cast<ONNXTensorElementDataType>(type), &raw));
  return ort::ValuePtr(raw);
}


int Session::device() const { return gpu_ ? gpu_->device->id() : -1; }

void Session::download(const OwnedTensor& t, void* dst) const {
  if (!gpu_ || t.device != gpu_->device->id()) throw Error(Code::InvalidArgument, "the tensor is not on this session's device");
  std::unique_lock<std::mutex> graph_turn;
  if (gpu_->graph) graph_turn = std::unique_lock<std::mutex>(gpu_->graph_mutex);
  gpu_->stream->copy_to_host(dst, reinterpret_cast<cuda::DevicePtr>(t.data), t.bytes);
  gpu_->stream->synchronize();
}


}  // namespace kiln
