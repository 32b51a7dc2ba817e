#include "inputs.h"

#include <random>

#include "error.h"

namespace kiln::bench {

void make_inputs(const Session& s, const InputShapes& o, Inputs& in) {
  for (const auto& [name, dims] : o.shapes) {
    const int index = s.input_index(name);
    if (index < 0) throw Error(Code::InvalidArgument, "--shape names input \"" + name + "\", which the model does not have");
    if (dims.size() != s.inputs()[index].shape.size()) {
      throw Error(Code::InvalidArgument, "--shape " + name + ": the input has rank " + std::to_string(s.inputs()[index].shape.size()) +
                                             ", received " + std::to_string(dims.size()) + " dims");
    }
  }
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  in.buffers.assign(s.inputs().size(), {});
  in.strings.assign(s.inputs().size(), {});
  in.feeds.clear();
  for (size_t i = 0; i < s.inputs().size(); ++i) {
    const ValueInfo& v = s.inputs()[i];
    Feed f;
    f.input = i;
    f.view.type = v.type;
    auto given = o.shapes.find(v.name);
    if (given != o.shapes.end()) {
      f.view.shape = given->second;
    } else {
      bool batch_used = false;
      for (size_t d = 0; d < v.shape.size(); ++d) {
        int64_t dim = v.shape[d];
        if (dim < 0) {
          auto it = v.symbolic[d].empty() ? o.dims.end() : o.dims.find(v.symbolic[d]);
          if (it != o.dims.end()) dim = it->second;
          else if (!batch_used) dim = o.batch, batch_used = true;
          else dim = 1;
        }
        f.view.shape.push_back(dim);
      }
    }
    const Label label{"input", v.name};
    if (v.type == DType::String) {
      in.strings[i].assign(element_count(f.view.shape.data(), f.view.shape.size(), label), "kiln");
      f.view.strings = &in.strings[i];
    } else {
      size_t bytes = byte_size(v.type, f.view.shape.data(), f.view.shape.size(), label);
      in.buffers[i].assign(bytes, 0);
      if (v.type == DType::Float32) {
        float* p = reinterpret_cast<float*>(in.buffers[i].data());
        for (size_t k = 0; k < bytes / 4; ++k) p[k] = uni(rng);
      }
      f.view.data = in.buffers[i].data();
      f.view.bytes = bytes;
    }
    in.feeds.push_back(std::move(f));
  }
}

std::pair<std::string, std::vector<int64_t>> parse_shape(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw Error(Code::InvalidArgument, "--shape \"" + text + "\": expected name:d1,d2,...");
  }
  std::vector<int64_t> dims;
  const std::string list = text.substr(colon + 1);
  size_t from = 0;
  while (from <= list.size()) {
    size_t end = list.find_first_of(",x", from);
    if (end == std::string::npos) end = list.size();
    const std::string part = list.substr(from, end - from);
    size_t used = 0;
    long long dim = -1;
    try {
      dim = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != part.size() || dim < 0) {
      throw Error(Code::InvalidArgument, "--shape \"" + text + "\": \"" + part + "\" is not a dimension (a whole number ≥ 0)");
    }
    dims.push_back(dim);
    from = end + 1;
  }
  return {text.substr(0, colon), dims};
}

}  // namespace kiln::bench
