#include "session.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <exception>

#include "cuda.h"
#include "providers.h"
#include "runtime.h"

namespace kiln {
namespace {

const char* kind_name(ONNXType type) {
  switch (type) {
    case ONNX_TYPE_TENSOR: return "tensor";
    case ONNX_TYPE_SEQUENCE: return "sequence";
    case ONNX_TYPE_MAP: return "map";
    case ONNX_TYPE_OPTIONAL: return "optional";
    case ONNX_TYPE_SPARSETENSOR: return "sparse_tensor";
    default: return "unknown";
  }
}

ValueInfo describe(OrtTypeInfo* info, std::string name) {
  const OrtApi& a = ort::api();
  ValueInfo v;
  v.name = std::move(name);
  ONNXType onnx_type = ONNX_TYPE_UNKNOWN;
  ort::check(a.GetOnnxTypeFromTypeInfo(info, &onnx_type));
  v.kind = kind_name(onnx_type);
  if (onnx_type != ONNX_TYPE_TENSOR) return v;
  const OrtTensorTypeAndShapeInfo* tensor = nullptr;
  ort::check(a.CastTypeInfoToTensorInfo(info, &tensor));
  ONNXTensorElementDataType element = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  ort::check(a.GetTensorElementType(tensor, &element));
  v.type = dtype_from_int(static_cast<int>(element));
  size_t rank = 0;
  ort::check(a.GetDimensionsCount(tensor, &rank));
  v.shape.resize(rank);
  ort::check(a.GetDimensions(tensor, v.shape.data(), rank));
  std::vector<const char*> symbolic(rank, nullptr);
  ort::check(a.GetSymbolicDimensions(tensor, symbolic.data(), rank));
  v.symbolic.resize(rank);
  for (size_t i = 0; i < rank; ++i) {
    if (symbolic[i] && v.shape[i] < 0) v.symbolic[i] = symbolic[i];
  }
  return v;
}

void configure(OrtSessionOptions* options, const SessionConfig& config, bool global_pools) {
  const OrtApi& a = ort::api();
  if (global_pools) {
    ort::check(a.DisablePerSessionThreads(options));
  } else {
    const RuntimeConfig& rc = Runtime::get().config();
    const int intra = config.intra_op_threads >= 0 ? config.intra_op_threads : rc.intra_op_threads;
    const int inter = config.inter_op_threads >= 0 ? config.inter_op_threads : rc.inter_op_threads;
    ort::check(a.SetIntraOpNumThreads(options, intra));
    ort::check(a.SetInterOpNumThreads(options, inter));
    ort::check(a.AddSessionConfigEntry(options, "session.intra_op.allow_spinning", config.spinning ? "1" : "0"));
    ort::check(a.AddSessionConfigEntry(options, "session.inter_op.allow_spinning", config.spinning ? "1" : "0"));
  }
  if (config.graph_optimization_level >= 0) {
    ort::check(a.SetSessionGraphOptimizationLevel(options, static_cast<GraphOptimizationLevel>(config.graph_optimization_level)));
  }
  if (config.parallel_execution) ort::check(a.SetSessionExecutionMode(options, ORT_PARALLEL));
  if (!config.optimized_model_path.empty()) {
    ort::check(a.SetOptimizedModelFilePath(options, config.optimized_model_path.c_str()));
  }
  if (!config.profile_prefix.empty()) ort::check(a.EnableProfiling(options, config.profile_prefix.c_str()));
  if (config.log_level >= 0) ort::check(a.SetSessionLogSeverityLevel(options, config.log_level));
  for (const auto& [key, value] : config.config_entries) {
    ort::check(a.AddSessionConfigEntry(options, key.c_str(), value.c_str()), Code::InvalidArgument);
  }
}

}  // namespace

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
  bool host_visible = false;  // emulate_device (tests): "device" memory is host memory
  std::mutex graph_mutex;
  std::vector<Buffer> graph_inputs;
  std::vector<std::vector<int64_t>> graph_shapes;
  std::vector<Buffer> graph_outputs;

  Gpu(int id, bool cuda_graph, bool host_visible_memory = false) : graph(cuda_graph), host_visible(host_visible_memory) {
    device = std::make_shared<cuda::Device>(id);
    stream = std::make_unique<cuda::Stream>(device);
    pinned = cuda::pinned_pool(device);
    memory = cuda::device_pool(device);
    const OrtApi& a = ort::api();
    OrtMemoryInfo* info = nullptr;
    ort::check(host_visible ? a.CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &info)
                            : a.CreateMemoryInfo("Cuda", OrtDeviceAllocator, id, OrtMemTypeDefault, &info));
    memory_info.reset(info);
    OrtRunOptions* ro = nullptr;
    ort::check(a.CreateRunOptions(&ro));
    run_options.reset(ro);
    ort::check(a.AddRunConfigEntry(ro, "disable_synchronize_execution_providers", "1"));
  }
};

std::shared_ptr<Session> Session::load_file(const std::string& path, const SessionConfig& config) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw Error(Code::NotFound, "model file not found: " + path);
  if (!S_ISREG(st.st_mode)) throw Error(Code::ModelLoad, "model path is not a file: " + path);
  std::shared_ptr<Session> s(new Session());
  s->create(&path, nullptr, 0, config);
  return s;
}

std::shared_ptr<Session> Session::load_bytes(const void* data, size_t size, const SessionConfig& config) {
  if (size == 0) throw Error(Code::ModelLoad, "model bytes are empty");
  std::shared_ptr<Session> s(new Session());
  s->create(nullptr, data, size, config);
  return s;
}

Session::~Session() = default;

void Session::create(const std::string* path, const void* data, size_t size, const SessionConfig& config) {
  Runtime& rt = Runtime::get();
  const OrtApi& a = ort::api();
  const bool wants_global = config.intra_op_threads < 0 && config.inter_op_threads < 0;
  auto attempt = [&](bool global_pools) -> OrtStatus* {
    OrtSessionOptions* raw_options = nullptr;
    ort::check(a.CreateSessionOptions(&raw_options));
    ort::SessionOptionsPtr options(raw_options);
    configure(options.get(), config, global_pools);
    provider_notes_.clear();
    auto stream_for = [&](const ProviderSpec& spec) -> void* {
      if (!config.device_io) return nullptr;
      const int id = provider_device(spec);
      if (!gpu_ || gpu_->device->id() != id) {
        const bool graph = std::any_of(spec.options.begin(), spec.options.end(), [](const auto& kv) {
          return kv.first == "enable_cuda_graph" && kv.second == "1";
        });
        gpu_ = std::make_unique<Gpu>(id, graph);
      }
      return gpu_->stream->handle();
    };
    providers_ = append_providers(options.get(), config.providers, provider_notes_, stream_for);
    if (std::none_of(providers_.begin(), providers_.end(), is_gpu_provider)) gpu_.reset();
    if (config.emulate_device >= 0) gpu_ = std::make_unique<Gpu>(config.emulate_device, false, true);
    OrtSession* raw = nullptr;
    OrtStatus* status = path ? a.CreateSession(rt.env(), path->c_str(), options.get(), &raw)
                             : a.CreateSessionFromArray(rt.env(), data, size, options.get(), &raw);
    session_.reset(raw);
    return status;
  };
  OrtStatus* status = attempt(wants_global && rt.global_pools());
  if (status && wants_global && rt.global_pools() &&
      std::string(a.GetErrorMessage(status)).find("EnvCreatedWithGlobalThreadPools") != std::string::npos) {
    // Another user of this ORT library (onnxruntime-node in the same process) created the
    // process's one OrtEnv first, without global pools: sessions get their own pools.
    a.ReleaseStatus(status);
    rt.global_pools_unavailable();
    status = attempt(false);
  }
  ort::check(status, Code::ModelLoad, path ? "cannot load model " + *path : std::string("cannot load model from bytes"));
  profiling_ = !config.profile_prefix.empty();
  read_metadata();
}

void Session::read_metadata() {
  const OrtApi& a = ort::api();
  OrtAllocator* alloc = Runtime::get().allocator();
  auto read = [&](bool input, std::vector<ValueInfo>& into) {
    size_t count = 0;
    ort::check(input ? a.SessionGetInputCount(session_.get(), &count) : a.SessionGetOutputCount(session_.get(), &count));
    for (size_t i = 0; i < count; ++i) {
      char* raw_name = nullptr;
      ort::check(input ? a.SessionGetInputName(session_.get(), i, alloc, &raw_name)
                       : a.SessionGetOutputName(session_.get(), i, alloc, &raw_name));
      ort::AllocatedPtr<char> name(raw_name, ort::AllocatorFree{alloc});
      OrtTypeInfo* raw_info = nullptr;
      ort::check(input ? a.SessionGetInputTypeInfo(session_.get(), i, &raw_info)
                       : a.SessionGetOutputTypeInfo(session_.get(), i, &raw_info));
      ort::TypeInfoPtr info(raw_info);
      into.push_back(describe(info.get(), name.get()));
    }
  };
  read(true, inputs_);
  read(false, outputs_);
  last_output_shapes_.resize(outputs_.size());
  data_dependent_.assign(outputs_.size(), false);
}

int Session::input_index(const std::string& name) const {
  for (size_t i = 0; i < inputs_.size(); ++i)
    if (inputs_[i].name == name) return static_cast<int>(i);
  return -1;
}

int Session::output_index(const std::string& name) const {
  for (size_t i = 0; i < outputs_.size(); ++i)
    if (outputs_[i].name == name) return static_cast<int>(i);
  return -1;
}

Session::BindingLease Session::acquire_binding() const {
  {
    std::lock_guard<std::mutex> lock(bindings_mutex_);
    if (!bindings_.empty()) {
      ort::IoBindingPtr b = std::move(bindings_.back());
      bindings_.pop_back();
      return BindingLease(*this, std::move(b));
    }
  }
  OrtIoBinding* raw = nullptr;
  ort::check(ort::api().CreateIoBinding(session_.get(), &raw));
  return BindingLease(*this, ort::IoBindingPtr(raw));
}

void Session::release_binding(ort::IoBindingPtr binding) const {
  const OrtApi& a = ort::api();
  a.ClearBoundInputs(binding.get());
  a.ClearBoundOutputs(binding.get());
  std::lock_guard<std::mutex> lock(bindings_mutex_);
  bindings_.push_back(std::move(binding));
}

namespace {

// Wraps caller memory (never copied) or, for strings, fills an ORT string tensor.
ort::ValuePtr make_value(const TensorView& view, const Label& what) {
  const OrtApi& a = ort::api();
  Runtime& rt = Runtime::get();
  const size_t rank = view.shape.size();
  OrtValue* raw = nullptr;
  if (view.type == DType::String) {
    size_t n = element_count(view.shape.data(), rank, what);
    if (!view.strings || view.strings->size() != n) {
      throw Error(Code::InvalidArgument, what.str() + ": dims " + format_shape(view.shape.data(), rank) + " need " +
                                             std::to_string(n) + " strings, received " +
                                             std::to_string(view.strings ? view.strings->size() : 0));
    }
    ort::check(a.CreateTensorAsOrtValue(rt.allocator(), view.shape.data(), rank, ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, &raw));
    ort::ValuePtr value(raw);
    // Element by element with explicit lengths: FillStringTensor would stop at an embedded NUL.
    for (size_t i = 0; i < n; ++i) {
      const std::string& str = (*view.strings)[i];
      char* dst = nullptr;
      ort::check(a.GetResizedStringTensorElementBuffer(value.get(), i, str.size(), &dst));
      if (!str.empty()) std::memcpy(dst, str.data(), str.size());
    }
    return value;
  }
  size_t bytes = byte_size(view.type, view.shape.data(), rank, what);
  if (bytes != view.bytes) {
    throw Error(Code::InvalidArgument, what.str() + ": dims " + format_shape(view.shape.data(), rank) + " of " +
                                           dtype_name(view.type) + " need " + std::to_string(bytes) +
                                           " bytes, the buffer has " + std::to_string(view.bytes));
  }
  // ORT rejects a null data pointer even for an empty tensor.
  static char empty_tensor_storage[64];
  void* data = bytes == 0 ? empty_tensor_storage : view.data;
  ort::check(a.CreateTensorWithDataAsOrtValue(rt.cpu_memory(), data, bytes, view.shape.data(), rank,
                                              static_cast<ONNXTensorElementDataType>(view.type), &raw));
  return ort::ValuePtr(raw);
}

void read_output(OrtValue* value, OwnedTensor& t) {
  const OrtApi& a = ort::api();
  OrtTensorTypeAndShapeInfo* raw_info = nullptr;
  ort::check(a.GetTensorTypeAndShape(value, &raw_info));
  ort::TensorTypeAndShapeInfoPtr info(raw_info);
  ONNXTensorElementDataType element;
  ort::check(a.GetTensorElementType(info.get(), &element));
  t.type = dtype_from_int(static_cast<int>(element));
  size_t rank = 0;
  ort::check(a.GetDimensionsCount(info.get(), &rank));
  t.shape.resize(rank);
  ort::check(a.GetDimensions(info.get(), t.shape.data(), rank));
  size_t count = 0;
  ort::check(a.GetTensorShapeElementCount(info.get(), &count));
  if (t.type == DType::String) {
    size_t total = 0;
    ort::check(a.GetStringTensorDataLength(value, &total));
    std::string chars(total, '\0');
    std::vector<size_t> offsets(count);
    if (count) ort::check(a.GetStringTensorContent(value, chars.data(), total, offsets.data(), count));
    t.strings.resize(count);
    for (size_t i = 0; i < count; ++i) {
      size_t end = i + 1 < count ? offsets[i + 1] : total;
      t.strings[i].assign(chars, offsets[i], end - offsets[i]);
    }
    return;
  }
  if (t.type == DType::Undefined) {
    throw Error(Code::Ort, "output has an element type Kiln does not support (" + std::to_string(element) + ")");
  }
  t.bytes = count * dtype_size(t.type);
  ort::check(a.GetTensorMutableData(value, &t.data));
}

// Runs `binding`, keeping Kiln's codes for the shape and type checks ORT makes that the
// metadata cannot express (an input declared without a shape reads as rank 0).
void run_binding(OrtSession* session, OrtIoBinding* binding, OrtRunOptions* options) {
  const OrtApi& a = ort::api();
  OrtStatus* status = a.RunWithBinding(session, options, binding);
  if (!status) return;
  const std::string message = a.GetErrorMessage(status);
  Code code = Code::Ort;
  if (message.find("Invalid rank for input") != std::string::npos ||
      message.find("Got invalid dimensions for input") != std::string::npos) {
    code = Code::ShapeMismatch;
  } else if (message.find("Unexpected input data type") != std::string::npos) {
    code = Code::DtypeMismatch;
  }
  ort::check(status, code);
}

// The outputs of a finished run, owned before anything can throw so that none leaks.
std::vector<ort::ValuePtr> bound_outputs(OrtIoBinding* binding, size_t expected) {
  const OrtApi& a = ort::api();
  OrtAllocator* alloc = Runtime::get().allocator();
  OrtValue** raw_values = nullptr;
  size_t count = 0;
  ort::check(a.GetBoundOutputValues(binding, alloc, &raw_values, &count));
  ort::AllocatedPtr<OrtValue*> values(raw_values, ort::AllocatorFree{alloc});
  std::vector<ort::ValuePtr> owned(count);
  for (size_t i = 0; i < count; ++i) owned[i].reset(raw_values[i]);
  if (count != expected) {
    throw Error(Code::Ort, "ONNX Runtime returned " + std::to_string(count) + " outputs, expected " + std::to_string(expected));
  }
  return owned;
}

}  // namespace

bool Session::expected_shape(size_t output, const Feed* feeds, size_t feed_count, std::vector<int64_t>& shape) const {
  const ValueInfo& info = outputs_.at(output);
  // Rank 0 in ORT's metadata is a scalar or an undeclared shape: only a run tells.
  if (info.kind != "tensor") return false;
  std::lock_guard<std::mutex> lock(shapes_mutex_);
  if (data_dependent_[output]) return false;
  if (!info.shape.empty() && std::all_of(info.shape.begin(), info.shape.end(), [](int64_t d) { return d >= 0; })) {
    shape = info.shape;
    return true;
  }
  if (last_output_shapes_[output].empty()) return false;
  if (feed_count != last_input_shapes_.size()) return false;
  for (size_t i = 0; i < feed_count; ++i) {
    if (feeds[i].view.shape != last_input_shapes_[feeds[i].input]) return false;
  }
  shape = last_output_shapes_[output];
  return true;
}

void Session::remember_shapes(const Feed* feeds, size_t feed_count, const Fetch* fetches,
                              const std::vector<OwnedTensor>& out) const {
  std::lock_guard<std::mutex> lock(shapes_mutex_);
  bool same = last_input_shapes_.size() == inputs_.size();
  for (size_t i = 0; same && i < feed_count; ++i) same = feeds[i].view.shape == last_input_shapes_[feeds[i].input];
  if (!same) {
    last_input_shapes_.assign(inputs_.size(), {});
    for (size_t i = 0; i < feed_count; ++i) last_input_shapes_[feeds[i].input] = feeds[i].view.shape;
    for (auto& s : last_output_shapes_) s.clear();
  }
  for (size_t i = 0; i < out.size(); ++i) last_output_shapes_[fetches[i].output] = out[i].shape;
}

void Session::run(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                  std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
  if (gpu_) {
    run_device(feeds, feed_count, fetches, fetch_count, out, options);
    return;
  }
  for (size_t i = 0; i < feed_count; ++i) {
    if (feeds[i].view.device >= 0) {
      throw Error(Code::InvalidArgument, Label{"input", inputs_.at(feeds[i].input).name}.str() + ": it lives on CUDA device " +
                                             std::to_string(feeds[i].view.device) + ", and this session runs on " +
                                             providers_.front() + " with host inputs");
    }
  }
  for (size_t i = 0; i < fetch_count; ++i) {
    if (fetches[i].on_device) {
      throw Error(Code::InvalidArgument, Label{"output", outputs_.at(fetches[i].output).name}.str() +
                                             ": outputs stay on a CUDA device only for a session running on a GPU "
                                             "provider; this one runs on " + providers_.front());
    }
  }
  try {
    run_once(feeds, feed_count, fetches, fetch_count, out, options);
  } catch (const Error&) {
    if (std::none_of(fetches, fetches + fetch_count, [](const Fetch& f) { return f.expected; })) throw;
    // A buffer sized from an expected shape may have been wrong: run again with ORT
    // allocating those outputs. Any other failure fails again, and is reported then.
    std::vector<Fetch> plain(fetches, fetches + fetch_count);
    for (Fetch& f : plain) {
      if (f.expected) f = Fetch{f.output, nullptr, false};
    }
    out.clear();
    run_once(feeds, feed_count, plain.data(), plain.size(), out, options);
    // It was the expected shapes: those outputs' shapes depend on the data, never expect them again.
    std::lock_guard<std::mutex> lock(shapes_mutex_);
    for (size_t i = 0; i < fetch_count; ++i) {
      if (fetches[i].expected) data_dependent_[fetches[i].output] = true;
    }
    return;
  }
  remember_shapes(feeds, feed_count, fetches, out);
}

void Session::run_once(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                       std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
  const OrtApi& a = ort::api();
  const BindingLease binding = acquire_binding();

  for (size_t i = 0; i < feed_count; ++i) {
    const Feed& f = feeds[i];
    const ValueInfo& info = inputs_.at(f.input);
    const Label label{"input", info.name};
    ort::ValuePtr value = make_value(f.view, label);
    if (OrtStatus* s = a.BindInput(binding.get(), info.name.c_str(), value.get())) ort::check(s, Code::Ort, label.str());
  }
  const OrtMemoryInfo* cpu = Runtime::get().cpu_memory();
  for (size_t i = 0; i < fetch_count; ++i) {
    const Fetch& f = fetches[i];
    const ValueInfo& info = outputs_.at(f.output);
    const Label label{"output", info.name};
    OrtStatus* s = nullptr;
    if (f.preallocated) {
      ort::ValuePtr value = make_value(*f.preallocated, label);
      s = a.BindOutput(binding.get(), info.name.c_str(), value.get());
    } else {
      s = a.BindOutputToDevice(binding.get(), info.name.c_str(), cpu);
    }
    if (s) ort::check(s, Code::Ort, label.str());
  }
  run_binding(session_.get(), binding.get(), options);
  std::vector<ort::ValuePtr> owned = bound_outputs(binding.get(), fetch_count);
  const size_t count = owned.size();
  out.resize(fetch_count);
  std::shared_ptr<const Session> self = shared_from_this();
  for (size_t i = 0; i < count; ++i) {
    OwnedTensor& t = out[i];
    read_output(owned[i].get(), t);
    const TensorView* dst = fetches[i].preallocated;
    // ORT may answer with a value of its own instead of writing into the bound buffer: an
    // output that is a graph input or an initializer passes through unchanged. The caller
    // reads the buffer, so the value goes there.
    if (dst && t.data != dst->data && t.type != DType::String) {
      if (t.bytes != dst->bytes) {
        throw Error(Code::ShapeMismatch, Label{"output", outputs_[fetches[i].output].name}.str() + ": the run produced " +
                                             format_shape(t.shape.data(), t.shape.size()) + ", the buffer given is for " +
                                             format_shape(dst->shape.data(), dst->shape.size()));
      }
      if (t.bytes) std::memcpy(dst->data, t.data, t.bytes);
      t.data = dst->data;
    }
    t.preallocated = dst != nullptr;
    t.value = std::move(owned[i]);
    t.session = self;
  }
}

void Session::run_device(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                         std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
  // Outputs whose shape is known before the run are bound to pooled device buffers (no
  // allocation in ORT, and fixed addresses for CUDA graphs); if the run shows a shape was
  // data-dependent, it runs again with ORT allocating those outputs, which are never
  // expected again.
  std::vector<std::vector<int64_t>> shapes(fetch_count);
  std::vector<bool> prebind(fetch_count, false);
  bool any = false;
  for (size_t i = 0; i < fetch_count; ++i) {
    const Fetch& f = fetches[i];
    if (f.preallocated || outputs_.at(f.output).type == DType::String) continue;
    prebind[i] = expected_shape(f.output, feeds, feed_count, shapes[i]);
    any = any || prebind[i];
  }
  try {
    device_attempt(feeds, feed_count, fetches, fetch_count, prebind, shapes, out, options);
  } catch (const Error&) {
    if (!any) throw;
    out.clear();
    std::fill(prebind.begin(), prebind.end(), false);
    device_attempt(feeds, feed_count, fetches, fetch_count, prebind, shapes, out, options);
    std::lock_guard<std::mutex> lock(shapes_mutex_);
    for (size_t i = 0; i < fetch_count; ++i) {
      if (!shapes[i].empty()) data_dependent_[fetches[i].output] = true;
    }
    return;
  }
  remember_shapes(feeds, feed_count, fetches, out);
}

void Session::device_attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                             const std::vector<bool>& prebind, const std::vector<std::vector<int64_t>>& shapes,
                             std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
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
      const size_t bytes = byte_size(v.type, v.shape.data(), v.shape.size(), label);
      if (bytes != v.bytes) {
        throw Error(Code::InvalidArgument, label.str() + ": dims " + format_shape(v.shape.data(), v.shape.size()) + " of " +
                                               dtype_name(v.type) + " need " + std::to_string(bytes) +
                                               " bytes, the buffer has " + std::to_string(v.bytes));
      }
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
        throw Error(Code::ShapeMismatch, Label{"output", outputs_[fetches[i].output].name}.str() + ": the run produced " +
                                             format_shape(t.shape.data(), t.shape.size()) + ", the buffer given is for " +
                                             format_shape(dst->shape.data(), dst->shape.size()));
      }
      to = dst->data;
      t.preallocated = true;
    } else {
      t.storage = g.pinned->acquire(t.bytes ? t.bytes : 1);
      to = t.storage.data();
    }
    if (g.host_visible && !prebind[i]) {
      std::memcpy(to, t.data, t.bytes);  // emulate_device: ORT allocated it in host memory
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

std::shared_ptr<BufferPool> Session::pinned_pool() const { return gpu_ ? gpu_->pinned : nullptr; }

void Session::download(const OwnedTensor& t, void* dst) const {
  if (!gpu_ || t.device != gpu_->device->id()) throw Error(Code::InvalidArgument, "the tensor is not on this session's device");
  std::unique_lock<std::mutex> graph_turn;
  if (gpu_->graph) graph_turn = std::unique_lock<std::mutex>(gpu_->graph_mutex);
  gpu_->stream->copy_to_host(dst, reinterpret_cast<cuda::DevicePtr>(t.data), t.bytes);
  gpu_->stream->synchronize();
}

std::string Session::end_profiling() {
  if (!profiling_) return "";
  OrtAllocator* alloc = Runtime::get().allocator();
  char* raw = nullptr;
  ort::check(ort::api().SessionEndProfiling(session_.get(), alloc, &raw));
  ort::AllocatedPtr<char> path(raw, ort::AllocatorFree{alloc});
  profiling_ = false;
  return path.get();
}

}  // namespace kiln
