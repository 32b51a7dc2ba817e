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
void gather(const std::vector<const TensorView*>& parts, const std::string& name, HostBufferPool& pool,
            HostBuffer& storage, std::vector<std::string>& strings, TensorView& out);

}  // namespace kiln
