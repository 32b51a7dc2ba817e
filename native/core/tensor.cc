#include "tensor.h"

#include <limits>

#include "error.h"

namespace kiln {

size_t dtype_size(DType type) {
  switch (type) {
    case DType::Float32: case DType::Int32: case DType::Uint32: return 4;
    case DType::Float64: case DType::Int64: case DType::Uint64: return 8;
    case DType::Float16: case DType::BFloat16: case DType::Int16: case DType::Uint16: return 2;
    case DType::Int8: case DType::Uint8: case DType::Bool: return 1;
    default: return 0;
  }
}

const char* dtype_name(DType type) {
  switch (type) {
    case DType::Float32: return "float32";
    case DType::Uint8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Uint16: return "uint16";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::String: return "string";
    case DType::Bool: return "bool";
    case DType::Float16: return "float16";
    case DType::Float64: return "float64";
    case DType::Uint32: return "uint32";
    case DType::Uint64: return "uint64";
    case DType::BFloat16: return "bfloat16";
    default: return "undefined";
  }
}

bool dtype_supported(DType type) { return type == DType::String || dtype_size(type) != 0; }

DType dtype_from_int(int value) {
  DType t = static_cast<DType>(value);
  return dtype_supported(t) ? t : DType::Undefined;
}

size_t element_count(const int64_t* shape, size_t rank, const Label& what) {
  size_t n = 1;
  for (size_t i = 0; i < rank; ++i) {
    if (shape[i] < 0) {
      throw Error(Code::InvalidArgument, what.str() + ": dims[" + std::to_string(i) + "] must be non-negative, received " +
                                             std::to_string(shape[i]));
    }
    size_t d = static_cast<size_t>(shape[i]);
    if (d != 0 && n > std::numeric_limits<size_t>::max() / d) {
      throw Error(Code::InvalidArgument, what.str() + ": dims " + format_shape(shape, rank) + " overflow the element count");
    }
    n *= d;
  }
  return n;
}

size_t byte_size(DType type, const int64_t* shape, size_t rank, const Label& what) {
  size_t n = element_count(shape, rank, what);
  size_t e = dtype_size(type);
  if (e != 0 && n > std::numeric_limits<size_t>::max() / e) {
    throw Error(Code::InvalidArgument, what.str() + ": dims " + format_shape(shape, rank) + " overflow the byte size");
  }
  return n * e;
}

std::string format_shape(const int64_t* shape, size_t rank) {
  std::string s = "[";
  for (size_t i = 0; i < rank; ++i) {
    if (i) s += ",";
    s += shape[i] < 0 ? std::string("?") : std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace kiln
