#include <limits>

#include "check.h"
#include "tensor.h"

using namespace kiln;

static const std::string kName = "x";

TEST(dtype_sizes_and_names) {
  CHECK(dtype_size(DType::Float32) == 4);
  CHECK(dtype_size(DType::Float64) == 8);
  CHECK(dtype_size(DType::Float16) == 2);
  CHECK(dtype_size(DType::BFloat16) == 2);
  CHECK(dtype_size(DType::Int64) == 8);
  CHECK(dtype_size(DType::Bool) == 1);
  CHECK(dtype_size(DType::String) == 0);
  CHECK(std::string(dtype_name(DType::BFloat16)) == "bfloat16");
  CHECK(dtype_from_int(16) == DType::BFloat16);
  CHECK(dtype_from_int(14) == DType::Undefined);  // complex64: not carried
  CHECK(dtype_supported(DType::String));
}

TEST(element_count_and_bytes) {
  int64_t shape[] = {2, 3, 4};
  CHECK(element_count(shape, 3, Label{"input", kName}) == 24);
  CHECK(byte_size(DType::Float64, shape, 3, Label{"input", kName}) == 192);
  int64_t scalar[] = {0};
  CHECK(element_count(scalar, 0, Label{"input", kName}) == 1);  // rank 0: one element
  int64_t empty[] = {4, 0};
  CHECK(byte_size(DType::Float32, empty, 2, Label{"input", kName}) == 0);
}

TEST(negative_dims_are_rejected) {
  int64_t shape[] = {2, -3};
  CHECK_THROWS(element_count(shape, 2, Label{"input", kName}), Code::InvalidArgument, "input \"x\": dims[1] must be non-negative");
}

TEST(overflowing_dims_are_rejected) {
  const int64_t big = std::numeric_limits<int64_t>::max();
  int64_t shape[] = {big, big};
  CHECK_THROWS(element_count(shape, 2, Label{"input", kName}), Code::InvalidArgument, "overflow the element count");
  int64_t bytes[] = {big / 2};
  CHECK_THROWS(byte_size(DType::Float64, bytes, 1, Label{"input", kName}), Code::InvalidArgument, "overflow the byte size");
}

TEST(format_shape_marks_dynamic_dims) {
  int64_t shape[] = {-1, 3, 224};
  CHECK(format_shape(shape, 3) == "[?,3,224]");
}
