#include <cstdint>
#include <new>
#include <cstring>

#include "batch.h"
#include "check.h"

using namespace kiln;

namespace {

TensorView view(std::vector<float>& data, std::vector<int64_t> shape) {
  TensorView v;
  v.type = DType::Float32;
  v.shape = std::move(shape);
  v.data = data.data();
  v.bytes = data.size() * sizeof(float);
  return v;
}

}  // namespace

TEST(gather_concatenates_requests_in_order) {
  auto pool = BufferPool::create();
  std::vector<float> a{1, 2, 3, 4}, b{5, 6, 7, 8, 9, 10, 11, 12};
  TensorView va = view(a, {1, 4}), vb = view(b, {2, 4});
  Buffer storage;
  std::vector<std::string> strings;
  TensorView out;
  gather({&va, &vb}, "x", *pool, storage, strings, out);
  CHECK(out.shape == (std::vector<int64_t>{3, 4}));
  CHECK(out.bytes == 48);
  const float* p = static_cast<const float*>(out.data);
  for (int i = 0; i < 12; ++i) CHECK(p[i] == static_cast<float>(i + 1));
  CHECK(reinterpret_cast<uintptr_t>(out.data) % BufferPool::kAlignment == 0);
}

TEST(pooled_buffers_are_reused) {
  auto pool = BufferPool::create();
  void* first;
  {
    Buffer b = pool->acquire(10000);
    first = b.data();
    CHECK(b.capacity() == 16384);
  }
  Buffer again = pool->acquire(12000);
  CHECK(again.data() == first);
  CHECK(pool->allocations() == 1);
}

TEST(mismatched_requests_do_not_batch) {
  std::vector<float> a(4), b(6);
  TensorView va = view(a, {1, 4}), vb = view(b, {1, 6});
  CHECK_THROWS(batch_shape({&va, &vb}, "x"), Code::ShapeMismatch, "input \"x\" of request 1: shape [1,6] does not batch with [1,4]");
  TensorView vc = view(a, {1, 4});
  vc.type = DType::Int32;
  CHECK_THROWS(batch_shape({&va, &vc}, "x"), Code::DtypeMismatch, "int32 does not batch with float32");
  std::vector<float> s(1);
  TensorView scalar = view(s, {});
  CHECK_THROWS(batch_shape({&scalar}, "x"), Code::ShapeMismatch, "no batch dimension");
}

TEST(strings_are_concatenated) {
  auto pool = BufferPool::create();
  std::vector<std::string> a{"a", "b"}, b{"c"};
  TensorView va, vb;
  va.type = vb.type = DType::String;
  va.shape = {2};
  vb.shape = {1};
  va.strings = &a;
  vb.strings = &b;
  Buffer storage;
  std::vector<std::string> strings;
  TensorView out;
  gather({&va, &vb}, "s", *pool, storage, strings, out);
  CHECK(out.shape == (std::vector<int64_t>{3}) && strings == (std::vector<std::string>{"a", "b", "c"}));
}

TEST(padded_gather_places_each_request_and_fills_the_rest) {
  auto pool = BufferPool::create();
  std::vector<float> a{1, 2}, b{3, 4, 5, 6, 7, 8};  // [1,2] and [2,3]
  TensorView va = view(a, {1, 2}), vb = view(b, {2, 3});
  Buffer storage;
  TensorView out;
  Padding pad{{4}, -1};
  gather_padded({&va, &vb}, "x", pad, *pool, storage, out);
  CHECK(out.shape == (std::vector<int64_t>{3, 4}));
  const float* p = static_cast<const float*>(out.data);
  const float expect[] = {1, 2, -1, -1, 3, 4, 5, -1, 6, 7, 8, -1};
  for (int i = 0; i < 12; ++i) CHECK(p[i] == expect[i]);
  Padding small{{2}, 0};
  CHECK_THROWS(gather_padded({&va, &vb}, "x", small, *pool, storage, out), Code::ShapeMismatch, "does not pad to [2]");
}

TEST(crop_takes_a_requests_block_back) {
  // rows 1..2 of a [3,4] batch, cropped to 3 columns
  std::vector<float> src{1, 2, -1, -1, 3, 4, 5, -1, 6, 7, 8, -1}, dst(6, 0);
  crop(src.data(), {3, 4}, 1, {2, 3}, sizeof(float), dst.data());
  const float expect[] = {3, 4, 5, 6, 7, 8};
  for (int i = 0; i < 6; ++i) CHECK(dst[i] == expect[i]);
  // rank 3: [2,2,3] -> row 1 cropped to [1,1,2]
  std::vector<int32_t> s3(12), d3(2);
  for (int i = 0; i < 12; ++i) s3[i] = i;
  crop(s3.data(), {2, 2, 3}, 1, {1, 1, 2}, sizeof(int32_t), d3.data());
  CHECK(d3[0] == 6 && d3[1] == 7);
  CHECK_THROWS(crop(s3.data(), {2, 2, 3}, 1, {2, 1, 2}, 4, d3.data()), Code::InvalidArgument, "cannot crop");
}

TEST(pool_refuses_sizes_no_class_holds) {
  auto pool = kiln::BufferPool::create();
  bool thrown = false;
  try {
    pool->acquire(SIZE_MAX);
  } catch (const std::bad_alloc&) {
    thrown = true;
  }
  CHECK(thrown);
  CHECK(pool->acquire(100).capacity() == kiln::BufferPool::kMinClass);  // still usable
}
