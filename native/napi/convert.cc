#include "convert.h"

#include <cstring>

#include <memory>

namespace kiln::napi {
napi_typedarray_type typed_array_for(DType type) {
  switch (type) {
    case DType::Float32: return napi_float32_array;
    case DType::Float64: return napi_float64_array;
    case DType::Int8: return napi_int8_array;
    case DType::Int16: return napi_int16_array;
    case DType::Int32: return napi_int32_array;
    case DType::Int64: return napi_bigint64_array;
    case DType::Uint16: case DType::Float16: case DType::BFloat16: return napi_uint16_array;
    case DType::Uint32: return napi_uint32_array;
    case DType::Uint64: return napi_biguint64_array;
    default: return napi_uint8_array;  // uint8, bool
  }
}

namespace {

size_t array_element_size(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

void check(Napi::Env env, napi_status status) {
  if (status != napi_ok) throw Napi::Error::New(env);
}

}  // namespace

Napi::Error make_error(Napi::Env env, Code code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code_name(code)));
  return e;
}

void throw_error(Napi::Env env, Code code, const std::string& message) { throw make_error(env, code, message); }

void read_dims(Napi::Env env, napi_value dims, std::vector<int64_t>& shape, const Label& what) {
  uint32_t rank = 0;
  if (napi_get_array_length(env, dims, &rank) != napi_ok) throw_error(env, Code::InvalidArgument, what.str() + ": dims must be an array");
  shape.resize(rank);
  for (uint32_t i = 0; i < rank; ++i) {
    napi_value d;
    check(env, napi_get_element(env, dims, i, &d));
    double v;
    if (napi_get_value_double(env, d, &v) != napi_ok || v != static_cast<double>(static_cast<int64_t>(v))) {
      throw_error(env, Code::InvalidArgument, what.str() + ": dims[" + std::to_string(i) + "] must be an integer");
    }
    shape[i] = static_cast<int64_t>(v);
  }
}

void read_tensor(Napi::Env env, napi_value data, DType type, TensorView& view, std::vector<std::string>& strings,
                 const Label& what) {
  view.type = type;
  if (type == DType::String) {
    uint32_t n = 0;
    bool is_array = false;
    check(env, napi_is_array(env, data, &is_array));
    if (!is_array) throw_error(env, Code::DtypeMismatch, what.str() + ": string tensors need a string[]");
    check(env, napi_get_array_length(env, data, &n));
    strings.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      napi_value s;
      check(env, napi_get_element(env, data, i, &s));
      size_t len = 0;
      if (napi_get_value_string_utf8(env, s, nullptr, 0, &len) != napi_ok) {
        throw_error(env, Code::DtypeMismatch, what.str() + ": element " + std::to_string(i) + " is not a string");
      }
      strings[i].resize(len);
      check(env, napi_get_value_string_utf8(env, s, strings[i].data(), len + 1, &len));
    }
    view.strings = &strings;
    size_t expected = element_count(view.shape.data(), view.shape.size(), what);
    if (expected != n) {
      throw_error(env, Code::InvalidArgument, what.str() + ": dims " + format_shape(view.shape.data(), view.shape.size()) +
                                                  " need " + std::to_string(expected) + " strings, received " + std::to_string(n));
    }
    return;
  }
  bool is_typed = false;
  check(env, napi_is_typedarray(env, data, &is_typed));
  if (!is_typed) throw_error(env, Code::DtypeMismatch, what.str() + ": data must be a TypedArray");
  napi_typedarray_type t;
  size_t length = 0;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  check(env, napi_get_typedarray_info(env, data, &t, &length, &ptr, &buffer, &offset));
  bool detached = false;
  napi_is_detached_arraybuffer(env, buffer, &detached);
  size_t expected = byte_size(type, view.shape.data(), view.shape.size(), what);
  if (detached) {
    throw_error(env, Code::InvalidArgument, what.str() + ": its ArrayBuffer is detached (transferred or released)");
  }
  view.data = ptr;
  view.bytes = length * array_element_size(t);
  if (view.bytes != expected) {
    throw_error(env, Code::InvalidArgument,
                what.str() + ": dims " + format_shape(view.shape.data(), view.shape.size()) + " of " + dtype_name(type) +
                    " need " + std::to_string(expected) + " bytes, the data has " + std::to_string(view.bytes) +
                    " (its buffer may have been resized)");
  }
}

namespace {

void release_owned(napi_env, void*, void* hint) { delete static_cast<OwnedTensor*>(hint); }

}  // namespace

napi_value output_data(Napi::Env env, OwnedTensor&& t) {
  napi_value result;
  if (t.type == DType::String) {
    check(env, napi_create_array_with_length(env, t.strings.size(), &result));
    for (size_t i = 0; i < t.strings.size(); ++i) {
      napi_value s;
      check(env, napi_create_string_utf8(env, t.strings[i].data(), t.strings[i].size(), &s));
      check(env, napi_set_element(env, result, static_cast<uint32_t>(i), s));
    }
    return result;
  }
  const size_t count = t.bytes / dtype_size(t.type);
  const napi_typedarray_type array = typed_array_for(t.type);
  napi_value buffer;
  if (t.bytes == 0) {
    check(env, napi_create_arraybuffer(env, 0, nullptr, &buffer));
  } else if (t.bytes <= kSmallOutputBytes) {
    // Small and allocated by ORT (its shape was not known before the run): copied into JS
    // memory and released now. Handed over as an external buffer it would keep the session
    // (and its weights) alive until V8 collected a few bytes it has no reason to collect.
    void* data = nullptr;
    check(env, napi_create_arraybuffer(env, t.bytes, &data, &buffer));
    std::memcpy(data, t.data, t.bytes);
    t = OwnedTensor{};
  } else {
    auto owned = std::make_unique<OwnedTensor>(std::move(t));
    void* data = owned->data;
    size_t bytes = owned->bytes;
    check(env, napi_create_external_arraybuffer(env, data, bytes, release_owned, owned.get(), &buffer));
    owned.release();
  }
  check(env, napi_create_typedarray(env, array, count, buffer, 0, &result));
  return result;
}

namespace {

struct DeviceHold {
  std::shared_ptr<const OwnedTensor> tensor;
};

// Marks Kiln's device handles so that no other External passes for one.
constexpr napi_type_tag kDeviceTag = {0x6b696c6e2d646576ULL, 0x6963652d74656e73ULL};

void release_hold(napi_env, void* data, void*) { delete static_cast<DeviceHold*>(data); }

DeviceHold* hold_of(napi_env env, napi_value value) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, value, &kDeviceTag, &tagged) != napi_ok || !tagged) return nullptr;
  void* data = nullptr;
  napi_get_value_external(env, value, &data);
  return static_cast<DeviceHold*>(data);
}

}  // namespace

napi_value device_handle(Napi::Env env, OwnedTensor&& t) {
  auto hold = std::make_unique<DeviceHold>();
  hold->tensor = std::make_shared<const OwnedTensor>(std::move(t));
  napi_value external;
  check(env, napi_create_external(env, hold.get(), release_hold, nullptr, &external));
  hold.release();
  check(env, napi_type_tag_object(env, external, &kDeviceTag));
  return external;
}

std::shared_ptr<const OwnedTensor> read_device_handle(Napi::Env env, napi_value value, const Label& what) {
  DeviceHold* hold = hold_of(env, value);
  if (!hold) return nullptr;
  if (!hold->tensor) throw_error(env, Code::Disposed, what.str() + ": the device tensor was disposed");
  return hold->tensor;
}

bool release_device_handle(Napi::Env env, napi_value value) {
  DeviceHold* hold = hold_of(env, value);
  if (!hold || !hold->tensor) return false;
  hold->tensor.reset();
  return true;
}

napi_value dims_array(Napi::Env env, const std::vector<int64_t>& shape) {
  napi_value dims;
  check(env, napi_create_array_with_length(env, shape.size(), &dims));
  for (size_t i = 0; i < shape.size(); ++i) {
    napi_value d;
    check(env, napi_create_double(env, static_cast<double>(shape[i]), &d));
    check(env, napi_set_element(env, dims, static_cast<uint32_t>(i), d));
  }
  return dims;
}

}  // namespace kiln::napi
