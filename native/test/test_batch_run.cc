// BatchRun against the real ONNX Runtime library (KILN_ORT_LIBRARY) and the generated models
// (KILN_TEST_MODELS): gathering, padding, running, timings, output buffers and errors.
#include <cstring>

#include "batch_run.h"
#include "check.h"
#include "runtime.h"

using namespace kiln;

namespace {

std::shared_ptr<Session> load(const char* name) {
  RuntimeConfig c;
  c.library_path = kiln_test::env_or("KILN_ORT_LIBRARY", "");
  c.intra_op_threads = 1;
  Runtime::init(c);
  return Session::load_file(kiln_test::env_or("KILN_TEST_MODELS", "build-cmake/models") + "/" + name, {});
}

void fill(BatchRun& run, size_t input, size_t request, std::vector<float>& data, std::vector<int64_t> shape) {
  TensorView& v = run.part(input, request);
  v.type = DType::Float32;
  v.shape = std::move(shape);
  v.data = data.data();
  v.bytes = data.size() * sizeof(float);
  v.strings = nullptr;
}

std::vector<float> range(size_t n, float from) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = from + static_cast<float>(i);
  return v;
}

const float* floats(const OwnedTensor& t) { return static_cast<const float*>(t.data); }

}  // namespace

// add.onnx: y = a + b, all [N,4].
TEST(a_batch_of_requests_equals_their_separate_runs) {
  auto s = load("add.onnx");
  const std::vector<int64_t> rows{1, 2, 1};
  std::vector<std::vector<float>> a, b;
  for (size_t r = 0; r < rows.size(); ++r) {
    a.push_back(range(4 * rows[r], 10.0f * r));
    b.push_back(range(4 * rows[r], 100.0f + r));
  }
  BatchRun batch;
  batch.reset(s, rows.size(), true);
  for (size_t r = 0; r < rows.size(); ++r) {
    fill(batch, 0, r, a[r], {rows[r], 4});
    fill(batch, 1, r, b[r], {rows[r], 4});
  }
  batch.shape_feeds();
  CHECK(batch.feeds()[0].view.shape == (std::vector<int64_t>{4, 4}));
  batch.fetch_all();
  batch.execute();
  CHECK(batch.outputs().size() == 1 && batch.outputs()[0].shape == (std::vector<int64_t>{4, 4}));
  const float* y = floats(batch.outputs()[0]);
  BatchRun single;
  for (size_t r = 0; r < rows.size(); ++r) {
    single.reset(s, 1, false);
    fill(single, 0, 0, a[r], {rows[r], 4});
    fill(single, 1, 0, b[r], {rows[r], 4});
    single.shape_feeds();
    single.fetch(0);
    single.execute();
    const OwnedTensor& own = single.outputs()[0];
    CHECK(own.shape == (std::vector<int64_t>{rows[r], 4}));
    CHECK(std::memcmp(y, own.data, own.bytes) == 0);
    y += 4 * rows[r];
  }
}

TEST(a_batch_is_gathered_into_the_sessions_pool_and_the_buffers_are_reused) {
  auto s = load("add.onnx");
  std::vector<float> a = range(4, 0), b = range(4, 1);
  for (int round = 0; round < 3; ++round) {
    BatchRun batch;
    batch.reset(s, 2, true);
    for (size_t r = 0; r < 2; ++r) {
      fill(batch, 0, r, a, {1, 4});
      fill(batch, 1, r, b, {1, 4});
    }
    batch.shape_feeds();
    batch.fetch_all();
    batch.execute();
    CHECK(floats(batch.outputs()[0])[7] == a[3] + b[3]);
  }
  CHECK(s->batch_pool()->allocations() == 2);  // one per input, reused by every round
  CHECK(s->batch_pool()->live() == 2);
}

TEST(a_padded_batch_has_the_target_shape_and_the_pad_value) {
  auto s = load("add.onnx");
  std::vector<float> short_a{1, 2}, long_a = range(8, 1), short_b{10, 20}, long_b = range(8, 10);
  BatchRun batch;
  batch.reset(s, 2, true);
  fill(batch, 0, 0, short_a, {1, 2});
  fill(batch, 0, 1, long_a, {2, 4});
  fill(batch, 1, 0, short_b, {1, 2});
  fill(batch, 1, 1, long_b, {2, 4});
  batch.pad(0, Padding{{4}, 0.5});
  batch.pad(1, Padding{{4}, 0.25});
  batch.shape_feeds();
  CHECK(batch.feeds()[0].view.shape == (std::vector<int64_t>{3, 4}));
  CHECK(batch.feeds()[1].view.shape == (std::vector<int64_t>{3, 4}));
  batch.fetch_all();
  batch.execute();
  const float* y = floats(batch.outputs()[0]);
  CHECK(y[0] == 11 && y[1] == 22 && y[2] == 0.75f && y[3] == 0.75f);  // the first request, padded
  for (int i = 0; i < 8; ++i) CHECK(y[4 + i] == long_a[i] + long_b[i]);
}

TEST(timings_are_measured) {
  auto s = load("mlp.onnx");
  BatchRun batch;
  batch.reset(s, 4, true);
  std::vector<float> row(512, 0.25f);
  for (size_t r = 0; r < 4; ++r) fill(batch, 0, r, row, {1, 512});
  batch.shape_feeds();
  batch.fetch_all();
  CHECK(batch.timings().input_us == 0 && batch.timings().compute_us == 0);
  batch.execute();
  CHECK(batch.timings().input_us > 0);
  CHECK(batch.timings().compute_us > 0);
}

TEST(outputs_of_an_expected_shape_are_written_into_the_buffer_given) {
  auto s = load("add.onnx");
  std::vector<float> a = range(8, 0), b = range(8, 1), kiln_owned(8, -1), callers(8, -1);
  auto start = [&](BatchRun& run) {
    run.reset(s, 1, false);
    fill(run, 0, 0, a, {2, 4});
    fill(run, 1, 0, b, {2, 4});
    run.shape_feeds();
    run.fetch(0);
  };
  BatchRun run;
  start(run);
  CHECK(run.expected_bytes(0) == 0);  // [N,4]: unknown before a run with these input shapes
  run.execute();
  CHECK(!run.outputs()[0].preallocated);
  start(run);
  CHECK(run.expected_bytes(0) == 32);
  run.write_expected(0, kiln_owned.data());
  run.execute();
  CHECK(run.outputs()[0].preallocated && run.outputs()[0].data == kiln_owned.data() && !run.wrote_caller_buffer(0));
  CHECK(kiln_owned[7] == a[7] + b[7]);
  start(run);
  TensorView& buffer = run.caller_buffer(0);
  buffer.type = DType::Float32;
  buffer.shape = {2, 4};
  buffer.data = callers.data();
  buffer.bytes = 32;
  run.execute();
  CHECK(run.wrote_caller_buffer(0) && callers[0] == a[0] + b[0]);
  run.clear();
  CHECK(run.outputs().empty());
}

TEST(string_outputs_are_left_to_ort_and_string_batches_concatenate) {
  auto s = load("identity_string.onnx");
  std::vector<std::string> first{"a", "bc"}, second{"", "déf"};
  BatchRun batch;
  for (int round = 0; round < 2; ++round) {
    batch.reset(s, 2, true);
    for (size_t r = 0; r < 2; ++r) {
      TensorView& v = batch.part(0, r);
      v.type = DType::String;
      v.shape = {2};
      batch.strings(0, r) = r == 0 ? first : second;
      v.strings = &batch.strings(0, r);
    }
    batch.shape_feeds();
    batch.fetch_all();
    CHECK(batch.expected_bytes(0) == 0);
    batch.execute();
    CHECK(batch.outputs()[0].strings == (std::vector<std::string>{"a", "bc", "", "déf"}));
  }
  CHECK_THROWS(batch.caller_buffer(0), Code::InvalidArgument, "output \"y\": string outputs cannot be preallocated");
}

TEST(errors_carry_their_codes) {
  auto s = load("add.onnx");
  BatchRun run;
  CHECK_THROWS(run.reset(s, 0, true), Code::InvalidArgument, "at least one");
  CHECK_THROWS(run.reset(s, 2, false), Code::InvalidArgument, "one request");
  std::vector<float> four(4), three(3);
  run.reset(s, 2, true);
  fill(run, 0, 0, four, {1, 4});
  fill(run, 0, 1, three, {1, 3});
  fill(run, 1, 0, four, {1, 4});
  fill(run, 1, 1, four, {1, 4});
  CHECK_THROWS(run.shape_feeds(), Code::ShapeMismatch, "input \"a\" of request 1: shape [1,3] does not batch with [1,4]");
  run.part(0, 1).type = DType::Int32;
  CHECK_THROWS(run.shape_feeds(), Code::DtypeMismatch, "int32 does not batch with float32");
  CHECK_THROWS(run.fetch(1), Code::InvalidArgument, "invalid output index");
  auto device_tensor = std::make_shared<OwnedTensor>();
  device_tensor->type = DType::Float32;
  device_tensor->shape = {1, 4};
  device_tensor->device = 0;
  CHECK_THROWS(run.device_part(0, 0, device_tensor), Code::InvalidArgument, "a device tensor cannot join a batch");
  // A request larger than the padding's target.
  fill(run, 0, 1, four, {1, 4});
  run.pad(0, Padding{{2}, 0});
  run.shape_feeds();
  run.fetch(0);
  CHECK_THROWS(run.execute(), Code::ShapeMismatch, "input \"a\" of request 0: shape [1,4] does not pad to [2]");

  run.reset(s, 1, false);
  CHECK_THROWS(run.pad(0, Padding{{4}, 0}), Code::InvalidArgument, "only a batch's inputs are padded");
  fill(run, 0, 0, three, {1, 4});
  fill(run, 1, 0, four, {1, 4});
  run.shape_feeds();
  run.fetch(0);
  CHECK_THROWS(run.execute(), Code::InvalidArgument, "input \"a\": dims [1,4] of float32 need 16 bytes, the buffer has 12");
  device_tensor->type = DType::Int32;
  CHECK_THROWS(run.device_part(0, 0, device_tensor), Code::DtypeMismatch, "expected float32, received a int32 device tensor");
  device_tensor->type = DType::Float32;
  device_tensor->shape = {2, 4};
  CHECK_THROWS(run.device_part(0, 0, device_tensor), Code::ShapeMismatch, "the device tensor has dims [2,4], the feed says [1,4]");
  run.part(0, 0).shape = {2, 4};
  run.device_part(0, 0, device_tensor);
  CHECK(run.feeds()[0].view.device == 0);
  CHECK_THROWS(run.execute(), Code::InvalidArgument, "lives on CUDA device 0");
  fill(run, 0, 0, four, {1, 4});
  run.keep_on_device(0);
  CHECK_THROWS(run.execute(), Code::InvalidArgument, "only for a session running on a GPU");
}
