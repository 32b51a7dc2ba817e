#include "session_wrap.h"

#include <chrono>

#include "batch.h"
#include "convert.h"
#include "runtime.h"

namespace kiln::napi {

// One run's inputs and outputs as the core sees them. Vectors are sized before views are
// taken so that the pointers into them stay valid.
struct RunArgs {
  std::vector<Feed> feeds;
  std::vector<std::vector<std::string>> strings;
  std::vector<napi_value> feed_values;  // the TypedArrays, kept alive by async runs
  std::vector<Fetch> fetches;
  std::vector<TensorView> prealloc;
  // Per fetch: the caller's TypedArray, or an ArrayBuffer Kiln allocated for an output whose
  // shape is known before the run (ORT writes straight into JS memory: no copy, and none of
  // the cost of an external buffer), or null when ORT allocates.
  std::vector<napi_value> prealloc_values;
  std::vector<bool> caller_owned;
  // A batch (runBatch): per input, each request's tensor, gathered on the executor thread
  // into one pooled buffer per input.
  std::vector<std::vector<TensorView>> parts;
  std::vector<Buffer> storage;
  std::vector<std::vector<std::string>> gathered;
  std::vector<std::unique_ptr<Padding>> padding;  // per input; null when not padded
  // Inputs that live on a CUDA device: owned by the run too, so that releasing one while
  // the run is in flight frees nothing under it.
  std::vector<std::shared_ptr<const OwnedTensor>> device_inputs;
};

namespace {

// Outputs up to kSmallOutputBytes get a zero-filled ArrayBuffer (cheapest for small sizes);
// larger ones an uninitialized Node Buffer's memory, which ORT overwrites completely and which
// the allocator recycles without faulting pages in again.

// JS memory for an output of `bytes`: V8 owns and accounts it, so a caller that drops
// results in a tight loop lets GC reclaim them at once (an external buffer's finalizer
// waits for the event loop, and ORT's arena would grow meanwhile).
napi_value output_buffer(napi_env env, size_t bytes, void** data) {
  napi_value buffer;
  bool ok;
  if (bytes <= kSmallOutputBytes) {
    ok = napi_create_arraybuffer(env, bytes, data, &buffer) == napi_ok;
  } else {
    napi_value node_buffer;
    size_t offset = 0;
    ok = napi_create_buffer(env, bytes, data, &node_buffer) == napi_ok &&
         napi_get_typedarray_info(env, node_buffer, nullptr, nullptr, nullptr, &buffer, &offset) == napi_ok && offset == 0;
  }
  if (ok) return buffer;
  // Too large for JS memory: ORT allocates the output instead (and says so if it cannot).
  // The exception the failed call left pending is not the caller's.
  napi_value ignored;
  napi_get_and_clear_last_exception(env, &ignored);
  return nullptr;
}

struct ExecutorSettings {
  size_t threads = 1;
  unsigned spin_us = 0;
};

// The result of a load: a core session and how to run it.
class LoadJob : public JsJob {
 public:
  LoadJob(napi_env env, Napi::Promise::Deferred deferred) : env_(env), deferred_(deferred) {}
  void execute() noexcept override {
    try {
      session_ = from_bytes_ ? Session::load_bytes(bytes_.data(), bytes_.size(), config_) : Session::load_file(path_, config_);
      std::vector<char>().swap(bytes_);
    } catch (const Error& e) {
      code_ = e.code();
      message_ = e.what();
    } catch (const std::exception& e) {
      code_ = Code::ModelLoad;
      message_ = e.what();
    }
  }

  void complete(Napi::Env env) override {
    if (!session_) {
      deferred_.Reject(make_error(env, code_, message_).Value());
      return;
    }
    Napi::Object wrap = AddonData::of(env).session_constructor.New({Napi::External<LoadJob>::New(env, this)});
    deferred_.Resolve(wrap);
  }

  napi_env env_;
  Napi::Promise::Deferred deferred_;
  std::string path_;
  bool from_bytes_ = false;
  // The model's bytes, copied: the caller's buffer could be resized, transferred or written
  // while the loader thread parses it.
  std::vector<char> bytes_;
  SessionConfig config_;
  ExecutorSettings executor_;
  std::shared_ptr<Session> session_;
  Code code_ = Code::ModelLoad;
  std::string message_;
};

std::vector<std::pair<std::string, std::string>> read_pairs(const Napi::Value& v) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Array kv = a.Get(i).As<Napi::Array>();
    out.emplace_back(kv.Get(0u).ToString().Utf8Value(), kv.Get(1u).ToString().Utf8Value());
  }
  return out;
}

int read_int(const Napi::Object& o, const char* key, int fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

std::string read_string(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

// The TS layer validated the options (lib/options.ts); this only reads them.
void read_config(const Napi::Object& o, SessionConfig& c, ExecutorSettings& e) {
  Napi::Value providers = o.Get("providers");
  if (providers.IsArray()) {
    Napi::Array list = providers.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Object p = list.Get(i).As<Napi::Object>();
      c.providers.push_back({p.Get("name").ToString().Utf8Value(), read_pairs(p.Get("options"))});
    }
  }
  c.intra_op_threads = read_int(o, "intraOpThreads", -1);
  c.inter_op_threads = read_int(o, "interOpThreads", -1);
  c.spinning = o.Get("spinning").ToBoolean();
  c.graph_optimization_level = read_int(o, "graphOptimizationLevel", -1);
  c.parallel_execution = o.Get("parallelExecution").ToBoolean();
  c.optimized_model_path = read_string(o, "optimizedModelPath");
  c.profile_prefix = read_string(o, "profilePrefix");
  c.log_level = read_int(o, "logLevel", -1);
  c.config_entries = read_pairs(o.Get("configEntries"));
  c.device_io = !o.Get("deviceIo").IsBoolean() || o.Get("deviceIo").ToBoolean();
  e.threads = static_cast<size_t>(read_int(o, "executorThreads", 1));
  e.spin_us = static_cast<unsigned>(read_int(o, "executorSpinMicroseconds", 0));
}

}  // namespace

// One asynchronous run. Its inputs stay referenced (never copied) until it is delivered.
class RunJob : public JsJob {
 public:
  RunJob(napi_env env, SessionWrap* owner, Napi::Promise::Deferred deferred)
      : env_(env), owner_(owner), session_(owner->session_), pool_(owner->pool_), deferred_(deferred) {}
  ~RunJob() override {
    for (napi_ref r : refs_)
      if (r) napi_delete_reference(env_, r);
  }

  void execute() noexcept override {
    auto start = std::chrono::steady_clock::now();
    try {
      for (size_t i = 0; i < args_.parts.size(); ++i) {
        std::vector<const TensorView*> parts;
        for (const TensorView& v : args_.parts[i]) parts.push_back(&v);
        const std::string& name = session_->inputs()[i].name;
        if (const Padding* padding = args_.padding[i].get()) {
          gather_padded(parts, name, *padding, *pool_, args_.storage[i], args_.feeds[i].view);
        } else {
          gather(parts, name, *pool_, args_.storage[i], args_.gathered[i], args_.feeds[i].view);
        }
      }
      const auto gathered = std::chrono::steady_clock::now();
      input_us_ = std::chrono::duration<double, std::micro>(gathered - start).count();
      start = gathered;
      session_->run(args_.feeds.data(), args_.feeds.size(), args_.fetches.data(), args_.fetches.size(), out_,
                    options_.get());
      compute_us_ = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
      for (Buffer& b : args_.storage) b.reset();  // the batch's inputs are no longer needed
    } catch (const Error& e) {
      failed_ = true;
      code_ = e.code();
      message_ = e.what();
    } catch (const std::exception& e) {
      failed_ = true;
      message_ = e.what();
    }
  }

  void complete(Napi::Env env) override { owner_->deliver(this, env); }

  // The first input whose ArrayBuffer is detached now, if any.
  const ValueInfo* detached_input(napi_env env) const {
    for (size_t k = 0; k < args_.feed_values.size(); ++k) {
      napi_value data;
      bool is_typed = false;
      if (napi_get_reference_value(env, refs_[k], &data) != napi_ok || napi_is_typedarray(env, data, &is_typed) != napi_ok || !is_typed) continue;
      napi_value buffer;
      bool detached = false;
      napi_get_typedarray_info(env, data, nullptr, nullptr, nullptr, &buffer, nullptr);
      napi_is_detached_arraybuffer(env, buffer, &detached);
      if (detached) return &session_->inputs()[k % args_.feeds.size()];
    }
    return nullptr;
  }

  napi_env env_;
  SessionWrap* owner_;
  std::shared_ptr<Session> session_;
  std::shared_ptr<BufferPool> pool_;
  Napi::Promise::Deferred deferred_;
  RunArgs args_;
  std::vector<napi_ref> refs_;  // feeds, then one per fetch (null when ORT allocates)
  std::vector<OwnedTensor> out_;
  ort::RunOptionsPtr options_;  // only for cancellable runs
  uint32_t cancel_id_ = 0;
  double compute_us_ = 0;  // time in ORT, reported with the results
  double input_us_ = 0;    // time gathering a batch's inputs
  bool aborted_ = false;
  bool failed_ = false;
  Code code_ = Code::Ort;
  std::string message_;
};

Napi::Function SessionWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeSession",
                     {
                         StaticMethod<&SessionWrap::load>("load"),
                         InstanceMethod<&SessionWrap::metadata>("metadata"),
                         InstanceMethod<&SessionWrap::run>("run"),
                         InstanceMethod<&SessionWrap::run_batch>("runBatch"),
                         InstanceMethod<&SessionWrap::run_sync>("runSync"),
                         InstanceMethod<&SessionWrap::cancel>("cancel"),
                         InstanceMethod<&SessionWrap::dispose>("dispose"),
                         InstanceMethod<&SessionWrap::end_profiling>("endProfiling"),
                     });
}

SessionWrap::SessionWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<SessionWrap>(info),
      data_(&AddonData::of(info.Env())),
      pool_(BufferPool::create()),
      sync_args_(std::make_unique<RunArgs>()) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw_error(info.Env(), Code::InvalidArgument, "NativeSession is created by NativeSession.load()");
  }
  auto* job = info[0].As<Napi::External<LoadJob>>().Data();
  session_ = std::move(job->session_);
  pool_ = session_->batch_pool();
  executor_ = std::make_unique<Executor>(job->executor_.threads, data_->completions(), job->executor_.spin_us);
  data_->add_session(this);
}

SessionWrap::~SessionWrap() {
  // Unreachable while runs are pending (the wrapper is referenced), so nothing is queued.
  if (executor_) executor_->close_and_join();
  if (data_ && !data_->tearing_down()) data_->remove_session(this);
}

Napi::Value SessionWrap::load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData& data = AddonData::of(env);
  auto deferred = Napi::Promise::Deferred::New(env);
  auto job = std::make_unique<LoadJob>(env, deferred);
  if (info[0].IsString()) {
    job->path_ = info[0].As<Napi::String>().Utf8Value();
    if (job->path_.find('\0') != std::string::npos) {
      throw_error(env, Code::InvalidArgument, "model path contains a NUL byte");
    }
  } else if (info[0].IsTypedArray()) {
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    job->from_bytes_ = true;
    const char* data = reinterpret_cast<const char*>(bytes.Data());
    job->bytes_.assign(data, data + bytes.ByteLength());
  } else {
    throw_error(env, Code::InvalidArgument, "model must be a path or a Uint8Array");
  }
  if (info[1].IsObject()) read_config(info[1].As<Napi::Object>(), job->config_, job->executor_);
  if (!data.loader().submit(job.get())) throw_error(env, Code::Disposed, "the environment is shutting down");
  job.release();
  data.job_started();
  return deferred.Promise();
}

Napi::Value SessionWrap::metadata(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  auto describe = [&](const std::vector<ValueInfo>& list) {
    Napi::Array arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const ValueInfo& v = list[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", v.name);
      o.Set("kind", v.kind);
      o.Set("type", static_cast<int>(v.type));
      o.Set("shape", Napi::Value(env, dims_array(env, v.shape)));
      Napi::Array sym = Napi::Array::New(env, v.symbolic.size());
      for (size_t d = 0; d < v.symbolic.size(); ++d) sym.Set(static_cast<uint32_t>(d), v.symbolic[d]);
      o.Set("symbolic", sym);
      arr.Set(static_cast<uint32_t>(i), o);
    }
    return arr;
  };
  Napi::Object m = Napi::Object::New(env);
  m.Set("inputs", describe(session_->inputs()));
  m.Set("outputs", describe(session_->outputs()));
  Napi::Array providers = Napi::Array::New(env);
  for (size_t i = 0; i < session_->providers().size(); ++i) providers.Set(static_cast<uint32_t>(i), session_->providers()[i]);
  m.Set("providers", providers);
  Napi::Array notes = Napi::Array::New(env);
  for (size_t i = 0; i < session_->provider_notes().size(); ++i) notes.Set(static_cast<uint32_t>(i), session_->provider_notes()[i]);
  m.Set("providerNotes", notes);
  m.Set("device", session_->device());
  return m;
}

void SessionWrap::ensure_open(Napi::Env env) const {
  if (disposed_ || !session_) throw_error(env, Code::Disposed, "session is disposed");
}

// Arguments of run and runSync: (fetches, cancelId, data0, dims0, data1, dims1, ...) with
// one (data, dims) pair per model input, in the model's order; fetches is null for every
// output, else [outputIndex, preallocatedData | null, dims | null, ...]. runBatch takes, after
// cancelId, the number of requests and the padding (null, or per input null | [padValue,
// ...non-batch dims to pad to]), then each request's pairs in turn.
void SessionWrap::parse(const Napi::CallbackInfo& info, RunArgs& args, bool batch) const {
  Napi::Env env = info.Env();
  const auto& inputs = session_->inputs();
  const size_t feed_count = inputs.size();
  const size_t requests = batch ? info[2].As<Napi::Number>().Uint32Value() : 1;
  const size_t first = batch ? 4 : 2;
  if (requests == 0 || info.Length() != first + 2 * feed_count * requests) {
    throw_error(env, Code::InvalidArgument, "wrong number of feeds");
  }
  args.feeds.resize(feed_count);
  args.device_inputs.clear();
  args.strings.resize(feed_count * requests);
  args.feed_values.resize(feed_count * requests);
  if (batch) {
    args.parts.assign(feed_count, std::vector<TensorView>(requests));
    args.storage.resize(feed_count);
    args.gathered.resize(feed_count);
    args.padding.resize(feed_count);
    if (info[3].IsArray()) {
      Napi::Array spec = info[3].As<Napi::Array>();
      for (size_t i = 0; i < feed_count && i < spec.Length(); ++i) {
        Napi::Value v = spec.Get(static_cast<uint32_t>(i));
        if (!v.IsArray()) continue;
        Napi::Array p = v.As<Napi::Array>();
        auto padding = std::make_unique<Padding>();
        padding->pad_value = p.Get(0u).As<Napi::Number>().DoubleValue();
        for (uint32_t d = 1; d < p.Length(); ++d) padding->target.push_back(p.Get(d).As<Napi::Number>().Int64Value());
        args.padding[i] = std::move(padding);
      }
    }
  }
  for (size_t r = 0; r < requests; ++r) {
    for (size_t i = 0; i < feed_count; ++i) {
      if (inputs[i].kind != "tensor") throw_error(env, Code::InvalidArgument, "input \"" + inputs[i].name + "\" is not a tensor");
      const size_t k = r * feed_count + i;
      TensorView& view = batch ? args.parts[i][r] : args.feeds[i].view;
      const Label label{"input", inputs[i].name};
      napi_value data = info[first + 2 * k];
      read_dims(env, info[first + 2 * k + 1], view.shape, label);
      args.feed_values[k] = data;
      if (std::shared_ptr<const OwnedTensor> d = read_device_handle(env, data, label)) {
        if (batch) throw_error(env, Code::InvalidArgument, label.str() + ": a device tensor cannot join a batch; run it with session.run()");
        if (d->type != inputs[i].type) {
          throw_error(env, Code::DtypeMismatch, label.str() + ": expected " + dtype_name(inputs[i].type) + ", received a " +
                                                    dtype_name(d->type) + " device tensor");
        }
        if (d->shape != view.shape) {
          throw_error(env, Code::ShapeMismatch, label.str() + ": the device tensor has dims " + format_shape(d->shape.data(), d->shape.size()) +
                                                    ", the feed says " + format_shape(view.shape.data(), view.shape.size()));
        }
        view.type = d->type;
        view.data = d->data;
        view.bytes = d->bytes;
        view.device = d->device;
        args.device_inputs.push_back(std::move(d));
        continue;
      }
      view.device = -1;
      read_tensor(env, data, inputs[i].type, view, args.strings[k], label);
    }
  }
  for (size_t i = 0; i < feed_count; ++i) {
    Feed& feed = args.feeds[i];
    feed.input = i;
    if (!batch) continue;
    // The batch's shape now (expected output shapes depend on it); its data is gathered on
    // the executor thread.
    std::vector<const TensorView*> parts;
    for (const TensorView& v : args.parts[i]) parts.push_back(&v);
    feed.view.type = inputs[i].type;
    if (const Padding* padding = args.padding[i].get()) {
      int64_t rows = 0;
      for (const TensorView* v : parts) rows += v->shape.empty() ? 0 : v->shape[0];
      feed.view.shape = {rows};
      feed.view.shape.insert(feed.view.shape.end(), padding->target.begin(), padding->target.end());
      continue;
    }
    try {
      feed.view.shape = batch_shape(parts, inputs[i].name);
    } catch (const Error& e) {
      throw_error(env, e.code(), e.what());
    }
  }
  const auto& outputs = session_->outputs();
  napi_value g = info[0];
  napi_valuetype gt;
  napi_typeof(env, g, &gt);
  const bool all = gt == napi_null || gt == napi_undefined;
  size_t fetch_count = 0;
  if (all) {
    for (const ValueInfo& o : outputs) fetch_count += o.kind == "tensor" && o.type != DType::Undefined;
  } else {
    uint32_t n = 0;
    napi_get_array_length(env, g, &n);
    fetch_count = n / 3;
  }
  args.fetches.resize(fetch_count);
  args.prealloc.resize(fetch_count);
  args.prealloc_values.assign(fetch_count, nullptr);
  args.caller_owned.assign(fetch_count, false);
  size_t next_output = 0;
  for (size_t i = 0; i < fetch_count; ++i) {
    napi_value data = nullptr, dims = nullptr;
    size_t index;
    if (all) {
      while (outputs[next_output].kind != "tensor" || outputs[next_output].type == DType::Undefined) ++next_output;
      index = next_output++;
    } else {
      napi_value idx;
      napi_get_element(env, g, static_cast<uint32_t>(3 * i), &idx);
      napi_get_element(env, g, static_cast<uint32_t>(3 * i + 1), &data);
      napi_get_element(env, g, static_cast<uint32_t>(3 * i + 2), &dims);
      uint32_t raw = 0;
      napi_get_value_uint32(env, idx, &raw);
      index = raw;
      if (index >= outputs.size() || outputs[index].kind != "tensor") throw_error(env, Code::InvalidArgument, "invalid output index");
    }
    args.fetches[i] = Fetch{index, nullptr, false};
    napi_valuetype t = napi_null;
    if (data) napi_typeof(env, data, &t);
    if (t == napi_string) {  // 'cuda': the output stays on the device
      args.fetches[i].on_device = true;
      continue;
    }
    if (t == napi_null || t == napi_undefined) {
      TensorView& view = args.prealloc[i];
      const DType type = outputs[index].type;
      // A device session copies outputs back into pinned buffers of its own.
      if (session_->device() >= 0) continue;
      if (type == DType::String || !session_->expected_shape(index, args.feeds.data(), args.feeds.size(), view.shape)) continue;
      const size_t bytes = byte_size(type, view.shape.data(), view.shape.size(), Label{"output", outputs[index].name});
      if (bytes == 0) continue;
      args.prealloc_values[i] = output_buffer(env, bytes, &view.data);
      if (!args.prealloc_values[i]) continue;
      view.type = type;
      view.bytes = bytes;
      view.strings = nullptr;
      args.fetches[i].preallocated = &view;
      args.fetches[i].expected = true;
      continue;
    }
    const Label label{"output", outputs[index].name};
    if (outputs[index].type == DType::String) {
      throw_error(env, Code::InvalidArgument, label.str() + ": string outputs cannot be preallocated");
    }
    std::vector<std::string> unused;
    read_dims(env, dims, args.prealloc[i].shape, label);
    read_tensor(env, data, outputs[index].type, args.prealloc[i], unused, label);
    args.fetches[i].preallocated = &args.prealloc[i];
    args.prealloc_values[i] = data;
    args.caller_owned[i] = true;
  }
}

// parse(), with any core error (a size check deep in a conversion) turned into a JS one: a
// C++ exception other than Napi::Error must not leave the addon.
void SessionWrap::parse_checked(const Napi::CallbackInfo& info, RunArgs& args, bool batch) const {
  try {
    parse(info, args, batch);
  } catch (const Error& e) {
    throw_error(info.Env(), e.code(), e.what());
  }
}

Napi::Value SessionWrap::results(Napi::Env env, RunArgs& args, std::vector<OwnedTensor>& out,
                                 const std::vector<napi_value>& prealloc) const {
  napi_value arr;
  napi_create_array_with_length(env, 2 * out.size(), &arr);
  for (size_t i = 0; i < out.size(); ++i) {
    napi_value dims = dims_array(env, out[i].shape);
    napi_value data;
    if (out[i].device >= 0) {
      data = device_handle(env, std::move(out[i]));
    } else if (!out[i].preallocated) {
      data = output_data(env, std::move(out[i]));
    } else if (args.caller_owned[i]) {
      data = prealloc[i];
    } else {
      napi_create_typedarray(env, typed_array_for(out[i].type), out[i].bytes / dtype_size(out[i].type), prealloc[i], 0, &data);
    }
    napi_set_element(env, arr, static_cast<uint32_t>(2 * i), data);
    napi_set_element(env, arr, static_cast<uint32_t>(2 * i + 1), dims);
  }
  return Napi::Value(env, arr);
}

Napi::Value SessionWrap::run_sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  RunArgs& args = *sync_args_;
  parse_checked(info, args, false);
  std::vector<OwnedTensor>& out = sync_out_;
  out.clear();
  try {
    session_->run(args.feeds.data(), args.feeds.size(), args.fetches.data(), args.fetches.size(), out);
  } catch (const Error& e) {
    throw_error(env, e.code(), e.what());
  }
  Napi::Value r = results(env, args, out, args.prealloc_values);
  // What results() left (outputs written into JS memory) still references the session: a
  // disposed session must not live on in this reused vector.
  out.clear();
  return r;
}

// (fetches, cancelId | undefined, ...feeds) -> Promise<flat results>
Napi::Value SessionWrap::run(const Napi::CallbackInfo& info) { return submit(info, false); }

// (fetches, cancelId | undefined, requests, padding, ...each request's feeds) -> Promise<flat
// results of the whole batch>
Napi::Value SessionWrap::run_batch(const Napi::CallbackInfo& info) { return submit(info, true); }

Napi::Value SessionWrap::submit(const Napi::CallbackInfo& info, bool batch) {
  Napi::Env env = info.Env();
  ensure_open(env);
  auto deferred = Napi::Promise::Deferred::New(env);
  auto job = std::make_unique<RunJob>(env, this, deferred);
  parse_checked(info, job->args_, batch);
  RunArgs& a = job->args_;
  job->refs_.assign(a.feed_values.size() + a.prealloc_values.size(), nullptr);
  for (size_t i = 0; i < a.feed_values.size(); ++i) napi_create_reference(env, a.feed_values[i], 1, &job->refs_[i]);
  for (size_t i = 0; i < a.prealloc_values.size(); ++i) {
    if (a.prealloc_values[i]) napi_create_reference(env, a.prealloc_values[i], 1, &job->refs_[a.feed_values.size() + i]);
  }
  if (info[1].IsNumber()) {
    OrtRunOptions* ro = nullptr;
    ort::check(ort::api().CreateRunOptions(&ro));
    job->options_.reset(ro);
    // An abort ends the run with an error status that ORT would log; the caller gets
    // E_ABORTED, so the log line is noise.
    ort::check(ort::api().RunOptionsSetRunLogSeverityLevel(ro, ORT_LOGGING_LEVEL_FATAL));
    job->cancel_id_ = info[1].As<Napi::Number>().Uint32Value();
  }
  RunJob* raw = job.get();
  if (!executor_->submit(raw)) throw_error(env, Code::Disposed, "session is disposed");
  job.release();
  if (raw->options_) cancellable_[raw->cancel_id_] = raw;
  if (pending_++ == 0) Ref();
  data_->job_started();
  return deferred.Promise();
}

void SessionWrap::deliver(RunJob* job, Napi::Env env) {
  if (job->options_) cancellable_.erase(job->cancel_id_);
  if (job->aborted_) {
    job->deferred_.Reject(make_error(env, Code::Aborted, "run was aborted").Value());
  } else if (job->failed_) {
    job->deferred_.Reject(make_error(env, job->code_, job->message_).Value());
  } else if (const ValueInfo* moved = job->detached_input(env)) {
    // The input's memory was transferred away while the run was in flight: whatever the run
    // computed from it cannot be trusted.
    job->deferred_.Reject(make_error(env, Code::InvalidArgument, "input \"" + moved->name +
                                          "\": its ArrayBuffer was detached while the run was in flight; the result is discarded")
                              .Value());
  } else {
    std::vector<napi_value> prealloc(job->args_.prealloc_values.size(), nullptr);
    const size_t base = job->args_.feed_values.size();
    for (size_t i = 0; i < prealloc.size(); ++i) {
      if (job->refs_[base + i]) napi_get_reference_value(env, job->refs_[base + i], &prealloc[i]);
    }
    try {
      Napi::Value r = results(env, job->args_, job->out_, prealloc);
      napi_set_element(env, r, static_cast<uint32_t>(2 * job->out_.size()), Napi::Number::New(env, job->compute_us_));
      napi_set_element(env, r, static_cast<uint32_t>(2 * job->out_.size() + 1), Napi::Number::New(env, job->input_us_));
      job->deferred_.Resolve(r);
    } catch (const Napi::Error& e) {
      job->deferred_.Reject(e.Value());
    }
  }
  finished(env);
}

void SessionWrap::finished(Napi::Env env) {
  if (--pending_ == 0) {
    if (disposed_) {
      release();
      for (auto& d : dispose_waiters_) d.Resolve(env.Undefined());
      dispose_waiters_.clear();
    }
    Unref();
  }
}

Napi::Value SessionWrap::cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto it = cancellable_.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == cancellable_.end()) return Napi::Boolean::New(env, false);
  RunJob* job = it->second;
  job->aborted_ = true;
  if (executor_ && executor_->cancel(job)) {
    // Never started: answer now; its slot is never executed.
    cancellable_.erase(it);
    job->deferred_.Reject(make_error(env, Code::Aborted, "run was aborted before it started").Value());
    delete job;
    data_->job_finished();
    finished(env);
    return Napi::Boolean::New(env, true);
  }
  ort::check(ort::api().RunOptionsSetTerminate(job->options_.get()));
  return Napi::Boolean::New(env, true);
}

Napi::Value SessionWrap::dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (!disposed_) {
    disposed_ = true;
    std::vector<Job*> unstarted = executor_ ? executor_->close() : std::vector<Job*>{};
    for (Job* j : unstarted) {
      auto* job = static_cast<RunJob*>(j);
      if (job->options_) cancellable_.erase(job->cancel_id_);
      job->deferred_.Reject(make_error(env, Code::Disposed, "session was disposed before this run started").Value());
      delete job;
      data_->job_finished();
      --pending_;
    }
    if (pending_ == 0) {
      if (!unstarted.empty()) Unref();
      release();
    }
  }
  if (pending_ == 0) {
    deferred.Resolve(env.Undefined());
  } else {
    dispose_waiters_.push_back(deferred);
  }
  return deferred.Promise();
}

void SessionWrap::release() {
  if (executor_) executor_->close_and_join();
  executor_.reset();
  session_.reset();
  if (data_) data_->remove_session(this);
  data_ = nullptr;
}

void SessionWrap::shutdown(std::vector<Job*>& orphans) {
  if (executor_) {
    std::vector<Job*> unstarted = executor_->close_and_join();
    orphans.insert(orphans.end(), unstarted.begin(), unstarted.end());
  }
  executor_.reset();
  session_.reset();
  data_ = nullptr;
}

Napi::Value SessionWrap::end_profiling(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  try {
    return Napi::String::New(env, session_->end_profiling());
  } catch (const Error& e) {
    throw_error(env, e.code(), e.what());
  }
}

}  // namespace kiln::napi
