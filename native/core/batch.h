// Batch assembly: the requests of a batch, each a tensor per input with its own leading
// (batch) dim, gathered into one pooled buffer per input — one copy per request per input.
#pragma once

#include <string>
#include <vector>

#include "memory.h"
#include "tensor.h"

namespace kiln {

// The batched shape of `parts` (same element type and non-batch dims, batch dims summed);
// throws kiln::Error(ShapeMismatch / DtypeMismatch) naming `name` and the request when not.
std::vector<int64_t> batch_shape(const std::vector<const TensorView*>& parts, const std::string& name);

// Copies `parts` one after another into `storage` (acquired from `pool`) and points `out`
// at it with the batched shape. Strings are concatenated into `strings`.
void gather(const std::vector<const TensorView*>& parts, const std::string& name, BufferPool& pool,
            Buffer& storage, std::vector<std::string>& strings, TensorView& out);

// Padding for ragged batches: each request is placed in a batch whose non-batch dims are
// `target` (each at least the request's own), the rest filled with `pad_value` (converted
// to the element type).
struct Padding {
  std::vector<int64_t> target;
  double pad_value = 0;
};

// Like gather(), padding every request to `padding.target` (numeric types only).
void gather_padded(const std::vector<const TensorView*>& parts, const std::string& name, const Padding& padding,
                   BufferPool& pool, Buffer& storage, TensorView& out);

// Copies the block of `src` (shape `src_shape`) that starts at row `row` and has shape
// `dst_shape` (same rank, each dim at most the source's) into `dst`: a request's own part of
// a padded batch output.
void crop(const void* src, const std::vector<int64_t>& src_shape, int64_t row, const std::vector<int64_t>& dst_shape,
          size_t element_size, void* dst);

}  // namespace kiln
