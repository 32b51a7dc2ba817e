// Element types, shapes and non-owning views of tensor memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

// Values are ONNX's TensorProto.DataType (and ORT's ONNXTensorElementDataType).
enum class DType : int {
  Undefined = 0,
  Float32 = 1,
  Uint8 = 2,
  Int8 = 3,
  Uint16 = 4,
  Int16 = 5,
  Int32 = 6,
  Int64 = 7,
  String = 8,
  Bool = 9,
  Float16 = 10,
  Float64 = 11,
  Uint32 = 12,
  Uint64 = 13,
  BFloat16 = 16,
};

// Bytes per element; 0 for String and for types Kiln does not carry.
size_t dtype_size(DType type);
// "float32", ...; "undefined" for types Kiln does not carry.
const char* dtype_name(DType type);
bool dtype_supported(DType type);
DType dtype_from_int(int value);  // Undefined when not a supported type

// Names a tensor in error messages ("input \"x\""), built only when an error is thrown.
struct Label {
  const char* kind;
  const std::string& name;
  std::string str() const { return std::string(kind) + " \"" + name + "\""; }
};

// Element count of `shape`; throws kiln::Error(InvalidArgument) naming `what` for a negative
// dim or a count that overflows size_t.
size_t element_count(const int64_t* shape, size_t rank, const Label& what);
// Byte size of a numeric tensor, overflow-checked the same way.
size_t byte_size(DType type, const int64_t* shape, size_t rank, const Label& what);

std::string format_shape(const int64_t* shape, size_t rank);

// A borrowed tensor: memory owned by the caller, valid for the duration of a run.
struct TensorView {
  DType type = DType::Undefined;
  std::vector<int64_t> shape;
  void* data = nullptr;  // numeric types
  size_t bytes = 0;
  const std::vector<std::string>* strings = nullptr;  // String type
  int device = -1;  // -1: host memory; else `data` is an address on this CUDA device
};

}  // namespace kiln
