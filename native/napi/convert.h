// JS values <-> core tensors and errors. No inference logic here.
#pragma once

#include <napi.h>

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "error.h"
#include "session.h"

namespace kiln::napi {

// A JS Error carrying `code` (the TS layer rethrows it as a KilnError at the caller).
Napi::Error make_error(Napi::Env env, Code code, const std::string& message);
[[noreturn]] void throw_error(Napi::Env env, Code code, const std::string& message);

// Runs `fn` where C++ returns to JS: a kiln::Error becomes the JS error with its code, any
// other C++ exception one coded E_ORT, so that nothing but a Napi::Error leaves the addon.
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::exception& e) {
    throw make_error(env, Code::Ort, std::string("internal error: ") + e.what());
  }
}

// A function called from JS, guarded.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded_call(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return F(info); });
}

// Reads `dims` (a JS array of integers) into `shape`.
void read_dims(Napi::Env env, napi_value dims, std::vector<int64_t>& shape, const Label& what);

// Points `view` at the memory of a TypedArray (borrowed), or copies a string[] into
// `strings`. Detached buffers and lengths that do not match the dims are errors.
void read_tensor(Napi::Env env, napi_value data, DType type, TensorView& view, std::vector<std::string>& strings,
                 const Label& what);

// The TypedArray kind that carries `type` (float16 and bfloat16 as Uint16Array, bool as Uint8Array).
napi_typedarray_type typed_array_for(DType type);

// Outputs up to this size get a JS-owned ArrayBuffer: written into directly when the shape
// is known before the run, copied from ORT's memory otherwise (cheaper than an external
// buffer, and nothing of the session outlives the call).
constexpr size_t kSmallOutputBytes = 64 * 1024;

// The JS data for an output: a TypedArray over a copy (small outputs) or over an external
// ArrayBuffer that owns `t`'s memory (no copy), or a string[].
napi_value output_data(Napi::Env env, OwnedTensor&& t);
napi_value dims_array(Napi::Env env, const std::vector<int64_t>& shape);

// An output left on a CUDA device, as JS holds it: an External that owns the device memory
// until released (explicitly, or when collected). Runs holding the tensor as an input share
// ownership, so releasing it while they run frees nothing under them.
napi_value device_handle(Napi::Env env, OwnedTensor&& t);
// The tensor behind a device handle; null when `value` is not one; E_DISPOSED when released.
std::shared_ptr<const OwnedTensor> read_device_handle(Napi::Env env, napi_value value, const Label& what);
// Frees the handle's device memory now (once nothing else uses it). False when already released.
bool release_device_handle(Napi::Env env, napi_value value);

}  // namespace kiln::napi
