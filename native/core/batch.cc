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

void gather(const std::vector<const TensorView*>& parts, const std::string& name, HostBufferPool& pool,
            HostBuffer& storage, std::vector<std::string>& strings, TensorView& out) {
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

}  // namespace kiln
