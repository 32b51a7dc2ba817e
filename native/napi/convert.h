// JS values <-> core tensors and errors. No inference logic here.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "error.h"
#include "session.h"

namespace kiln::napi {

// A JS Error carrying `code` (the TS layer rethrows it as a KilnError at the caller).
Napi::Error make_error(Napi::Env env, Code code, const std::string& message);
[[noreturn]] void throw_error(Napi::Env env, Code code, const std::string& message);

// Reads `dims` (a JS array of integers) into `shape`.
void read_dims(Napi::Env env, napi_value dims, std::vector<int64_t>& shape, const Label& what);

// Points `view` at the memory of a TypedArray (borrowed), or copies a string[] into
// `strings`. Detached buffers and lengths that do not match the dims are errors.
void read_tensor(Napi::Env env, napi_value data, DType type, TensorView& view, std::vector<std::string>& strings,
                 const Label& what);

// The TypedArray kind that carries `type` (float16 and bfloat16 as Uint16Array, bool as Uint8Array).
napi_typedarray_type typed_array_for(DType type);

// The JS data for an output: a TypedArray over an external ArrayBuffer that owns `t`'s
// memory (no copy), or a string[].
napi_value output_data(Napi::Env env, OwnedTensor&& t);
napi_value dims_array(Napi::Env env, const std::vector<int64_t>& shape);

}  // namespace kiln::napi
