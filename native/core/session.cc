#include "session.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "providers.h"
#include "runtime.h"
#include "session_detail.h"

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

namespace detail {

void check_bytes(const TensorView& view, const Label& what) {
  const size_t bytes = byte_size(view.type, view.shape.data(), view.shape.size(), what);
  if (bytes != view.bytes) {
    throw Error(Code::InvalidArgument, what.str() + ": dims " + format_shape(view.shape.data(), view.shape.size()) + " of " +
                                           dtype_name(view.type) + " need " + std::to_string(bytes) +
                                           " bytes, the buffer has " + std::to_string(view.bytes));
  }
}

Error buffer_mismatch(const Label& what, const std::vector<int64_t>& produced, const std::vector<int64_t>& given) {
  return Error(Code::ShapeMismatch, what.str() + ": the run produced " + format_shape(produced.data(), produced.size()) +
                                        ", the buffer given is for " + format_shape(given.data(), given.size()));
}

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
  check_bytes(view, what);
  const size_t bytes = view.bytes;
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

// An input declared without a shape reads as rank 0 in the metadata: ORT's own checks say
// what the shape should have been.
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

}  // namespace detail

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
  if (!gpu_) check_host_io(feeds, feed_count, fetches, fetch_count);
  // A device session binds every output whose shape it expects to a pooled device buffer (no
  // allocation in ORT, and fixed addresses for CUDA graphs).
  std::vector<bool> prebind(fetch_count, false);
  std::vector<std::vector<int64_t>> shapes(fetch_count);
  // Per fetch: written into a buffer sized from an expected shape (the caller's or a pooled one).
  std::vector<bool> expected(fetch_count, false);
  for (size_t i = 0; i < fetch_count; ++i) {
    const Fetch& f = fetches[i];
    if (gpu_ && !f.preallocated && outputs_.at(f.output).type != DType::String) {
      prebind[i] = expected_shape(f.output, feeds, feed_count, shapes[i]);
    }
    expected[i] = f.expected || prebind[i];
  }
  try {
    attempt(feeds, feed_count, fetches, fetch_count, prebind, shapes, out, options);
  } catch (const Error&) {
    if (std::none_of(expected.begin(), expected.end(), [](bool e) { return e; })) throw;
    // A buffer sized from an expected shape may have been wrong: run again with ORT
    // allocating those outputs. Any other failure fails again, and is reported then.
    std::vector<Fetch> plain(fetches, fetches + fetch_count);
    for (Fetch& f : plain) {
      if (!f.expected) continue;
      f.preallocated = nullptr;
      f.expected = false;
    }
    out.clear();
    attempt(feeds, feed_count, plain.data(), fetch_count, std::vector<bool>(fetch_count, false), shapes, out, options);
    // It was the expected shapes: those outputs' shapes depend on the data, never expect them again.
    std::lock_guard<std::mutex> lock(shapes_mutex_);
    for (size_t i = 0; i < fetch_count; ++i) {
      if (expected[i]) data_dependent_[fetches[i].output] = true;
    }
    return;
  }
  remember_shapes(feeds, feed_count, fetches, out);
}

void Session::attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                      const std::vector<bool>& prebind, const std::vector<std::vector<int64_t>>& shapes,
                      std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
  if (gpu_) {
    device_attempt(feeds, feed_count, fetches, fetch_count, prebind, shapes, out, options);
  } else {
    host_attempt(feeds, feed_count, fetches, fetch_count, out, options);  // its buffers are the fetches'
  }
}

void Session::check_host_io(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count) const {
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
}

void Session::host_attempt(const Feed* feeds, size_t feed_count, const Fetch* fetches, size_t fetch_count,
                           std::vector<OwnedTensor>& out, OrtRunOptions* options) const {
  using namespace detail;
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
      if (t.bytes != dst->bytes) throw buffer_mismatch(Label{"output", outputs_[fetches[i].output].name}, t.shape, dst->shape);
      if (t.bytes) std::memcpy(dst->data, t.data, t.bytes);
      t.data = dst->data;
    }
    t.preallocated = dst != nullptr;
    t.value = std::move(owned[i]);
    t.session = self;
  }
}

std::shared_ptr<BufferPool> Session::batch_pool() const { return gpu_ ? gpu_->pinned : host_pool_; }

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
