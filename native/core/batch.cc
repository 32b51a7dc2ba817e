#include "batch.h"

#include <cstring>

#include "error.h"

namespace kiln {

std::vector<int64_t> batch_shape(const std::vector<const TensorView*>& parts, const std::string& name) {
  if (parts.empty()) throw Error(Code::InvalidArgument, "input \"" + name + "\": a batch needs at least one request");
  const TensorView& first = *parts[0];
  if (first.shape.empty()) {
    throw Error(Code::ShapeMismatch, "input \"" + name + "\": a scalar has no batch dimension to batch along");
  }
  std::vector<int64_t> shape = first.shape;
  for (size_t r = 1; r < parts.size(); ++r) {
    const TensorView& p = *parts[r];
    if (p.type != first.type) {
      throw Error(Code::DtypeMismatch, "input \"" + name + "\" of request " + std::to_string(r) + ": " +
                                           dtype_name(p.type) + " does not batch with " + dtype_name(first.type));
    }
    bool same = p.shape.size() == first.shape.size();
    for (size_t d = 1; same && d < p.shape.size(); ++d) same = p.shape[d] == first.shape[d];
    if (!same) {
      throw Error(Code::ShapeMismatch, "input \"" + name + "\" of request " + std::to_string(r) + ": shape " +
                                           format_shape(p.shape.data(), p.shape.size()) + " does not batch with " +
                                           format_shape(first.shape.data(), first.shape.size()));
    }
    shape[0] += p.shape[0];
  }
  return shape;
}

void gather(const std::vector<const TensorView*>& parts, const std::string& name, BufferPool& pool,
            Buffer& storage, std::vector<std::string>& strings, TensorView& out) {
  out.type = parts.at(0)->type;
  out.shape = batch_shape(parts, name);
  if (out.type == DType::String) {
    strings.clear();
    for (const TensorView* p : parts) strings.insert(strings.end(), p->strings->begin(), p->strings->end());
    out.strings = &strings;
    out.data = nullptr;
    out.bytes = 0;
    return;
  }
  size_t total = 0;
  for (const TensorView* p : parts) total += p->bytes;
  storage = pool.acquire(total);
  char* dst = static_cast<char*>(storage.data());
  for (const TensorView* p : parts) {
    if (p->bytes) std::memcpy(dst, p->data, p->bytes);
    dst += p->bytes;
  }
  out.data = storage.data();
  out.bytes = total;
  out.strings = nullptr;
}

namespace {

template <typename T>
void fill_as(void* dst, size_t count, double value) {
  T v = static_cast<T>(value);
  T* p = static_cast<T*>(dst);
  for (size_t i = 0; i < count; ++i) p[i] = v;
}

// Fills `count` elements of `type` with `value`; float16/bfloat16 get their bit patterns.
void fill(DType type, void* dst, size_t count, double value) {
  switch (type) {
    case DType::Float32: return fill_as<float>(dst, count, value);
    case DType::Float64: return fill_as<double>(dst, count, value);
    case DType::Int8: return fill_as<int8_t>(dst, count, value);
    case DType::Uint8: case DType::Bool: return fill_as<uint8_t>(dst, count, value);
    case DType::Int16: return fill_as<int16_t>(dst, count, value);
    case DType::Uint16: return fill_as<uint16_t>(dst, count, value);
    case DType::Int32: return fill_as<int32_t>(dst, count, value);
    case DType::Uint32: return fill_as<uint32_t>(dst, count, value);
    case DType::Int64: return fill_as<int64_t>(dst, count, value);
    case DType::Uint64: return fill_as<uint64_t>(dst, count, value);
    case DType::Float16: case DType::BFloat16: {
      if (value != 0) throw Error(Code::InvalidArgument, "a non-zero pad value for float16/bfloat16 is not supported");
      std::memset(dst, 0, count * 2);
      return;
    }
    default: throw Error(Code::InvalidArgument, std::string("cannot pad ") + dtype_name(type) + " tensors");
  }
}

// Copies a block between two row-major tensors of the same rank: `shape` elements, from
// `src` (dims `src_dims`, starting at row `src_row`) to `dst` (dims `dst_dims`, at `dst_row`).
void copy_block(const char* src, const std::vector<int64_t>& src_dims, int64_t src_row, char* dst,
                const std::vector<int64_t>& dst_dims, int64_t dst_row, const std::vector<int64_t>& shape, size_t esize) {
  const size_t rank = shape.size();
  std::vector<size_t> src_stride(rank, esize), dst_stride(rank, esize);
  for (size_t d = rank - 1; d > 0; --d) {
    src_stride[d - 1] = src_stride[d] * static_cast<size_t>(src_dims[d]);
    dst_stride[d - 1] = dst_stride[d] * static_cast<size_t>(dst_dims[d]);
  }
  for (int64_t d : shape)
    if (d == 0) return;
  const size_t run = static_cast<size_t>(shape[rank - 1]) * esize;  // contiguous innermost run
  std::vector<int64_t> index(rank, 0);
  for (;;) {
    size_t so = static_cast<size_t>(src_row) * src_stride[0], doff = static_cast<size_t>(dst_row) * dst_stride[0];
    for (size_t d = 0; d + 1 < rank; ++d) {
      so += static_cast<size_t>(index[d]) * src_stride[d];
      doff += static_cast<size_t>(index[d]) * dst_stride[d];
    }
    std::memcpy(dst + doff, src + so, run);
    size_t d = rank - 1;  // advance the multi-index over all dims but the innermost
    while (d > 0) {
      --d;
      if (++index[d] < shape[d]) break;
      index[d] = 0;
      if (d == 0) return;
    }
    if (rank == 1) return;
  }
}

}  // namespace

void gather_padded(const std::vector<const TensorView*>& parts, const std::string& name, const Padding& padding,
                   BufferPool& pool, Buffer& storage, TensorView& out) {
  const DType type = parts.at(0)->type;
  const size_t esize = dtype_size(type);
  if (esize == 0) throw Error(Code::InvalidArgument, "input \"" + name + "\": " + dtype_name(type) + " tensors cannot be padded");
  std::vector<int64_t> shape{0};
  shape.insert(shape.end(), padding.target.begin(), padding.target.end());
  for (size_t r = 0; r < parts.size(); ++r) {
    const TensorView& p = *parts[r];
    bool fits = p.type == type && p.shape.size() == shape.size();
    for (size_t d = 1; fits && d < shape.size(); ++d) fits = p.shape[d] <= shape[d];
    if (!fits) {
      throw Error(Code::ShapeMismatch, "input \"" + name + "\" of request " + std::to_string(r) + ": shape " +
                                           format_shape(p.shape.data(), p.shape.size()) + " does not pad to " +
                                           format_shape(shape.data() + 1, shape.size() - 1));
    }
    shape[0] += p.shape[0];
  }
  const Label label{"input", name};
  const size_t total = byte_size(type, shape.data(), shape.size(), label);
  storage = pool.acquire(total);
  char* dst = static_cast<char*>(storage.data());
  fill(type, dst, total / esize, padding.pad_value);
  int64_t row = 0;
  for (const TensorView* p : parts) {
    if (p->bytes) copy_block(static_cast<const char*>(p->data), p->shape, 0, dst, shape, row, p->shape, esize);
    row += p->shape[0];
  }
  out.type = type;
  out.shape = std::move(shape);
  out.data = storage.data();
  out.bytes = total;
  out.strings = nullptr;
}

void crop(const void* src, const std::vector<int64_t>& src_shape, int64_t row, const std::vector<int64_t>& dst_shape,
          size_t element_size, void* dst) {
  bool fits = src_shape.size() == dst_shape.size() && !src_shape.empty() && row >= 0 && row + dst_shape[0] <= src_shape[0];
  for (size_t d = 1; fits && d < src_shape.size(); ++d) fits = dst_shape[d] <= src_shape[d];
  if (!fits) {
    throw Error(Code::InvalidArgument, "cannot crop " + format_shape(dst_shape.data(), dst_shape.size()) + " at row " +
                                           std::to_string(row) + " from " + format_shape(src_shape.data(), src_shape.size()));
  }
  copy_block(static_cast<const char*>(src), src_shape, row, static_cast<char*>(dst), dst_shape, 0, dst_shape, element_size);
}

}  // namespace kiln
