// Module entry: per-environment data, the runtime initialisation and the session class.
#include <napi.h>

#include "addon_data.h"
#include "batch.h"
#include "convert.h"
#include "cuda.h"
#include "runtime.h"
#include "session_wrap.h"

namespace kiln::napi {
namespace {

Napi::Object runtime_info(Napi::Env env, const Runtime& rt) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", rt.library().path);
  o.Set("version", rt.library().version);
  o.Set("apiVersion", rt.library().api_version);
  Napi::Array providers = Napi::Array::New(env, rt.available_providers().size());
  for (size_t i = 0; i < rt.available_providers().size(); ++i) providers.Set(static_cast<uint32_t>(i), rt.available_providers()[i]);
  o.Set("providers", providers);
  o.Set("intraOpThreads", rt.config().intra_op_threads);
  o.Set("interOpThreads", rt.config().inter_op_threads);
  o.Set("spinning", rt.config().spinning);
  return o;
}

// init({ library, intraOpThreads, interOpThreads, spinning, logLevel }) -> runtime info.
// The first call in the process creates the runtime; later calls return it.
Napi::Value init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RuntimeConfig config;
  if (info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    if (o.Get("library").IsString()) config.library_path = o.Get("library").As<Napi::String>().Utf8Value();
    if (o.Get("intraOpThreads").IsNumber()) config.intra_op_threads = o.Get("intraOpThreads").As<Napi::Number>().Int32Value();
    if (o.Get("interOpThreads").IsNumber()) config.inter_op_threads = o.Get("interOpThreads").As<Napi::Number>().Int32Value();
    config.spinning = o.Get("spinning").ToBoolean();
    if (o.Get("logLevel").IsNumber()) config.log_level = o.Get("logLevel").As<Napi::Number>().Int32Value();
  }
  return runtime_info(env, Runtime::init(config));
}

Napi::Value initialized(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Runtime::initialized()); }

// poll(keepPolling): delivers finished runs now (see AddonData::poll).
Napi::Value poll(const Napi::CallbackInfo& info) {
  AddonData::of(info.Env()).poll(info.Env(), info[0].ToBoolean());
  return info.Env().Undefined();
}

// crop(data, dims, row, shape): a new TypedArray with the block of `data` (a batch output of
// `dims`) starting at `row` with `shape` — a request's own part of a padded batch's output.
Napi::Value crop_rows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray src = info[0].As<Napi::TypedArray>();
  std::vector<int64_t> src_shape, dst_shape;
  const std::string name = "output";
  read_dims(env, info[1], src_shape, Label{"output", name});
  read_dims(env, info[3], dst_shape, Label{"output", name});
  const int64_t row = info[2].As<Napi::Number>().Int64Value();
  const size_t esize = src.ElementSize();
  size_t count = 1;
  for (int64_t d : dst_shape) count *= static_cast<size_t>(d);
  size_t src_count = 1;
  for (int64_t d : src_shape) src_count *= static_cast<size_t>(d);
  if (src_count != src.ElementLength()) throw_error(env, Code::InvalidArgument, "crop: dims do not match the data");
  void* dst = nullptr;
  napi_value buffer;
  if (napi_create_arraybuffer(env, count * esize, &dst, &buffer) != napi_ok) throw Napi::Error::New(env);
  crop(static_cast<const char*>(src.ArrayBuffer().Data()) + src.ByteOffset(), src_shape, row, dst_shape, esize, dst);
  napi_value out;
  if (napi_create_typedarray(env, src.TypedArrayType(), count, buffer, 0, &out) != napi_ok) throw Napi::Error::New(env);
  return Napi::Value(env, out);
}

// {driverVersion, library, problem, devices: [{id, name, totalMemory, computeCapability, multiprocessors, pciBusId}]}
Napi::Value cuda_devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::DeviceList list = cuda::devices();
  Napi::Object o = Napi::Object::New(env);
  o.Set("driverVersion", list.driver_version);
  o.Set("library", list.library);
  o.Set("problem", list.problem);
  Napi::Array devices = Napi::Array::New(env, list.devices.size());
  for (size_t i = 0; i < list.devices.size(); ++i) {
    const cuda::DeviceInfo& d = list.devices[i];
    Napi::Object e = Napi::Object::New(env);
    e.Set("id", d.id);
    e.Set("name", d.name);
    e.Set("totalMemory", static_cast<double>(d.total_memory));
    e.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    e.Set("multiprocessors", d.multiprocessors);
    e.Set("pciBusId", d.pci_bus_id);
    devices.Set(static_cast<uint32_t>(i), e);
  }
  o.Set("devices", devices);
  return o;
}

Napi::Value device_release(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), release_device_handle(info.Env(), info[0]));
}

// (handle) -> ArrayBuffer with the tensor's bytes, copied from the device (blocks until done).
Napi::Value device_download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = "tensor";
  std::shared_ptr<const OwnedTensor> t = read_device_handle(env, info[0], Label{"device", name});
  if (!t) throw_error(env, Code::InvalidArgument, "not a device tensor");
  void* dst = nullptr;
  napi_value buffer;
  if (napi_create_arraybuffer(env, t->bytes, &dst, &buffer) != napi_ok) throw Napi::Error::New(env);
  t->session->download(*t, dst);
  return Napi::Value(env, buffer);
}

Napi::Object init_module(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData(env);
  env.SetInstanceData<AddonData>(data);
  Napi::Function ctor = SessionWrap::define(env);
  data->session_constructor = Napi::Persistent(ctor);
  exports.Set("NativeSession", ctor);
  exports.Set("init", Napi::Function::New<guarded_call<init>>(env, "init"));
  exports.Set("poll", Napi::Function::New<guarded_call<poll>>(env, "poll"));
  exports.Set("crop", Napi::Function::New<guarded_call<crop_rows>>(env, "crop"));
  exports.Set("initialized", Napi::Function::New<guarded_call<initialized>>(env, "initialized"));
  exports.Set("cudaDevices", Napi::Function::New<guarded_call<cuda_devices>>(env, "cudaDevices"));
  exports.Set("deviceRelease", Napi::Function::New<guarded_call<device_release>>(env, "deviceRelease"));
  exports.Set("deviceDownload", Napi::Function::New<guarded_call<device_download>>(env, "deviceDownload"));
  return exports;
}

}  // namespace
}  // namespace kiln::napi

static Napi::Object InitKiln(Napi::Env env, Napi::Object exports) {
  return kiln::napi::guarded(env, [&] { return kiln::napi::init_module(env, exports); });
}

NODE_API_MODULE(kiln, InitKiln)
