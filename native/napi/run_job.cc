#include "run_job.h"

#include "convert.h"
#include "session_wrap.h"

namespace kiln::napi {
namespace {

// JS memory for an output of `bytes` that ORT writes completely: V8 owns and accounts it, so
// a caller that drops results in a tight loop lets GC reclaim them at once (an external
// buffer's finalizer waits for the event loop, and ORT's arena would grow meanwhile). Up to
// kSmallOutputBytes a zero-filled ArrayBuffer (cheapest for small sizes); larger ones an
// uninitialized Node Buffer's memory, which the allocator recycles without faulting pages in
// again.
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

}  // namespace

// Arguments of run and runSync: (fetches, cancelId, data0, dims0, data1, dims1, ...) with
// one (data, dims) pair per model input, in the model's order; fetches is null for every
// output, else [outputIndex, preallocatedData | null | 'cuda', dims | null, ...]. runBatch
// takes, after cancelId, the number of requests and the padding (null, or per input null |
// [padValue, ...non-batch dims to pad to]), then each request's pairs in turn.
void RunArgs::read(const Napi::CallbackInfo& info, std::shared_ptr<const Session> session, bool batch) {
  Napi::Env env = info.Env();
  const std::vector<ValueInfo>& inputs = session->inputs();
  const std::vector<ValueInfo>& outputs = session->outputs();
  const size_t feed_count = inputs.size();
  const size_t requests = batch ? info[2].As<Napi::Number>().Uint32Value() : 1;
  const size_t first = batch ? 4 : 2;
  if (requests == 0 || info.Length() != first + 2 * feed_count * requests) {
    throw_error(env, Code::InvalidArgument, "wrong number of feeds");
  }
  run.reset(std::move(session), requests, batch);
  feed_values.resize(feed_count * requests);
  if (batch && info[3].IsArray()) {
    Napi::Array spec = info[3].As<Napi::Array>();
    for (size_t i = 0; i < feed_count && i < spec.Length(); ++i) {
      Napi::Value v = spec.Get(static_cast<uint32_t>(i));
      if (!v.IsArray()) continue;
      Napi::Array p = v.As<Napi::Array>();
      Padding padding;
      padding.pad_value = p.Get(0u).As<Napi::Number>().DoubleValue();
      for (uint32_t d = 1; d < p.Length(); ++d) padding.target.push_back(p.Get(d).As<Napi::Number>().Int64Value());
      run.pad(i, std::move(padding));
    }
  }
  for (size_t r = 0; r < requests; ++r) {
    for (size_t i = 0; i < feed_count; ++i) {
      const size_t k = r * feed_count + i;
      const Label label{"input", inputs[i].name};
      TensorView& view = run.part(i, r);
      napi_value data = info[first + 2 * k];
      read_dims(env, info[first + 2 * k + 1], view.shape, label);
      feed_values[k] = data;
      if (std::shared_ptr<const OwnedTensor> d = read_device_handle(env, data, label)) {
        run.device_part(i, r, std::move(d));
      } else {
        read_tensor(env, data, inputs[i].type, view, run.strings(i, r), label);
      }
    }
  }
  run.shape_feeds();
  napi_value fetches = info[0];
  napi_valuetype fetches_type;
  napi_typeof(env, fetches, &fetches_type);
  const bool all = fetches_type == napi_null || fetches_type == napi_undefined;
  size_t fetch_count = 0;
  if (all) {
    run.fetch_all();
    fetch_count = run.fetch_count();
  } else {
    uint32_t n = 0;
    napi_get_array_length(env, fetches, &n);
    fetch_count = n / 3;
  }
  output_values.assign(fetch_count, nullptr);
  for (size_t i = 0; i < fetch_count; ++i) {
    napi_value data = nullptr, dims = nullptr;
    if (!all) {
      napi_value index;
      napi_get_element(env, fetches, static_cast<uint32_t>(3 * i), &index);
      napi_get_element(env, fetches, static_cast<uint32_t>(3 * i + 1), &data);
      napi_get_element(env, fetches, static_cast<uint32_t>(3 * i + 2), &dims);
      uint32_t output = 0;
      napi_get_value_uint32(env, index, &output);
      run.fetch(output);
    }
    napi_valuetype t = napi_null;
    if (data) napi_typeof(env, data, &t);
    if (t == napi_string) {  // 'cuda': the output stays on the device
      run.keep_on_device(i);
    } else if (t == napi_null || t == napi_undefined) {
      const size_t bytes = run.expected_bytes(i);
      void* memory = nullptr;
      if (bytes > 0) output_values[i] = output_buffer(env, bytes, &memory);
      if (output_values[i]) run.write_expected(i, memory);
    } else {
      const ValueInfo& output = outputs[run.fetches()[i].output];
      const Label label{"output", output.name};
      TensorView& buffer = run.caller_buffer(i);
      std::vector<std::string> unused;
      read_dims(env, dims, buffer.shape, label);
      read_tensor(env, data, output.type, buffer, unused, label);
      output_values[i] = data;
    }
  }
}

Napi::Value RunArgs::results(Napi::Env env, const std::vector<napi_value>& outputs) {
  std::vector<OwnedTensor>& out = run.outputs();
  napi_value arr;
  napi_create_array_with_length(env, 2 * out.size(), &arr);
  for (size_t i = 0; i < out.size(); ++i) {
    napi_value dims = dims_array(env, out[i].shape);
    napi_value data;
    if (out[i].device >= 0) {
      data = device_handle(env, std::move(out[i]));
    } else if (!out[i].preallocated) {
      data = output_data(env, std::move(out[i]));
    } else if (run.wrote_caller_buffer(i)) {
      data = outputs[i];
    } else {
      napi_create_typedarray(env, typed_array_for(out[i].type), out[i].bytes / dtype_size(out[i].type), outputs[i], 0, &data);
    }
    napi_set_element(env, arr, static_cast<uint32_t>(2 * i), data);
    napi_set_element(env, arr, static_cast<uint32_t>(2 * i + 1), dims);
  }
  return Napi::Value(env, arr);
}

RunJob::RunJob(SessionWrap* owner) : owner_(owner) {}

RunJob::~RunJob() {
  for (napi_ref r : refs_)
    if (r) napi_delete_reference(env_, r);
}

void RunJob::read(const Napi::CallbackInfo& info, std::shared_ptr<const Session> session, bool batch) {
  args_.read(info, std::move(session), batch);
  env_ = info.Env();
  refs_.assign(args_.feed_values.size() + args_.output_values.size(), nullptr);
  for (size_t i = 0; i < args_.feed_values.size(); ++i) napi_create_reference(env_, args_.feed_values[i], 1, &refs_[i]);
  for (size_t i = 0; i < args_.output_values.size(); ++i) {
    if (args_.output_values[i]) napi_create_reference(env_, args_.output_values[i], 1, &refs_[args_.feed_values.size() + i]);
  }
}

void RunJob::make_cancellable(uint32_t id) {
  OrtRunOptions* ro = nullptr;
  ort::check(ort::api().CreateRunOptions(&ro));
  options_.reset(ro);
  // An abort ends the run with an error status that ORT would log; the caller gets
  // E_ABORTED, so the log line is noise.
  ort::check(ort::api().RunOptionsSetRunLogSeverityLevel(ro, ORT_LOGGING_LEVEL_FATAL));
  cancel_id_ = id;
}

void RunJob::abort() {
  aborted_ = true;
  if (options_) ort::check(ort::api().RunOptionsSetTerminate(options_.get()));
}

void RunJob::execute() noexcept {
  try {
    args_.run.execute(options_.get());
  } catch (const Error& e) {
    failed_ = true;
    code_ = e.code();
    message_ = e.what();
  } catch (const std::exception& e) {
    failed_ = true;
    message_ = e.what();
  }
}

void RunJob::complete(Napi::Env env) { owner_->deliver(this, env); }

void RunJob::settle(Napi::Env env) {
  if (aborted_) {
    reject(make_error(env, Code::Aborted, "run was aborted").Value());
  } else if (failed_) {
    reject(make_error(env, code_, message_).Value());
  } else if (const std::string* moved = detached_input(env)) {
    // The input's memory was transferred away while the run was in flight: whatever the run
    // computed from it cannot be trusted.
    reject(make_error(env, Code::InvalidArgument, "input \"" + *moved +
                                                      "\": its ArrayBuffer was detached while the run was in flight; the result is discarded")
               .Value());
  } else {
    std::vector<napi_value> outputs(args_.output_values.size(), nullptr);
    const size_t base = args_.feed_values.size();
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (refs_[base + i]) napi_get_reference_value(env, refs_[base + i], &outputs[i]);
    }
    const size_t count = args_.run.outputs().size();
    Napi::Value r = args_.results(env, outputs);
    const RunTimings& timings = args_.run.timings();
    napi_set_element(env, r, static_cast<uint32_t>(2 * count), Napi::Number::New(env, timings.compute_us));
    napi_set_element(env, r, static_cast<uint32_t>(2 * count + 1), Napi::Number::New(env, timings.input_us));
    resolve(r);
  }
}

const std::string* RunJob::detached_input(napi_env env) const {
  const size_t feed_count = args_.run.feeds().size();
  for (size_t k = 0; k < args_.feed_values.size(); ++k) {
    napi_value data;
    bool is_typed = false;
    if (napi_get_reference_value(env, refs_[k], &data) != napi_ok || napi_is_typedarray(env, data, &is_typed) != napi_ok || !is_typed) continue;
    napi_value buffer;
    bool detached = false;
    napi_get_typedarray_info(env, data, nullptr, nullptr, nullptr, &buffer, nullptr);
    napi_is_detached_arraybuffer(env, buffer, &detached);
    if (detached) return &args_.run.session().inputs()[k % feed_count].name;
  }
  return nullptr;
}

}  // namespace kiln::napi
