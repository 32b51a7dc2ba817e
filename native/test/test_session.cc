// Session tests against the real ONNX Runtime library (KILN_ORT_LIBRARY) and models the
// project's ONNX writer generated (KILN_TEST_MODELS, see scripts/ctest.js).
#include <atomic>
#include <fstream>
#include <iterator>
#include <thread>

#include "check.h"
#include "runtime.h"
#include "session.h"

using namespace kiln;

namespace {

std::string models() { return kiln_test::env_or("KILN_TEST_MODELS", "build-cmake/models"); }

Runtime& runtime() {
  RuntimeConfig c;
  c.library_path = kiln_test::env_or("KILN_ORT_LIBRARY", "");
  c.intra_op_threads = 1;
  return Runtime::init(c);
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

std::shared_ptr<Session> add_session(const SessionConfig& config = {}) {
  runtime();
  return Session::load_file(models() + "/add.onnx", config);
}

Feed feed(size_t index, std::vector<float>& data, std::vector<int64_t> shape) {
  Feed f;
  f.input = index;
  f.view.type = DType::Float32;
  f.view.shape = std::move(shape);
  f.view.data = data.data();
  f.view.bytes = data.size() * sizeof(float);
  return f;
}

}  // namespace

TEST(metadata_has_names_types_and_symbolic_dims) {
  auto s = add_session();
  CHECK(s->inputs().size() == 2);
  CHECK(s->inputs()[0].name == "a" && s->inputs()[1].name == "b");
  CHECK(s->inputs()[0].type == DType::Float32);
  CHECK(s->inputs()[0].shape.size() == 2 && s->inputs()[0].shape[0] == -1 && s->inputs()[0].shape[1] == 4);
  CHECK(s->inputs()[0].symbolic[0] == "N");
  CHECK(s->outputs().size() == 1 && s->outputs()[0].name == "y");
  CHECK(s->input_index("b") == 1 && s->input_index("zz") == -1 && s->output_index("y") == 0);
  CHECK(s->providers().size() == 1 && s->providers()[0] == "CPUExecutionProvider");
}

TEST(run_adds_and_outputs_outlive_the_session) {
  auto s = add_session();
  std::vector<float> a{1, 2, 3, 4, 5, 6, 7, 8}, b{10, 20, 30, 40, 50, 60, 70, 80};
  Feed feeds[] = {feed(0, a, {2, 4}), feed(1, b, {2, 4})};
  Fetch fetch;
  std::vector<OwnedTensor> out;
  s->run(feeds, 2, &fetch, 1, out);
  s.reset();  // the output keeps what it needs alive
  CHECK(out.size() == 1 && out[0].type == DType::Float32);
  CHECK(out[0].shape == (std::vector<int64_t>{2, 4}));
  CHECK(out[0].bytes == 32);
  const float* y = static_cast<const float*>(out[0].data);
  for (int i = 0; i < 8; ++i) CHECK(y[i] == a[i] + b[i]);
}

TEST(load_from_bytes_matches_file) {
  runtime();
  std::vector<char> bytes = read_file(models() + "/add.onnx");
  auto s = Session::load_bytes(bytes.data(), bytes.size(), {});
  std::vector<float> a{1, 1, 1, 1}, b{2, 2, 2, 2};
  Feed feeds[] = {feed(0, a, {1, 4}), feed(1, b, {1, 4})};
  Fetch fetch;
  std::vector<OwnedTensor> out;
  s->run(feeds, 2, &fetch, 1, out);
  CHECK(static_cast<const float*>(out[0].data)[3] == 3.0f);
}

TEST(preallocated_output_is_written_in_place) {
  auto s = add_session();
  std::vector<float> a{1, 2, 3, 4}, b{1, 1, 1, 1}, y(4, -1.0f);
  Feed feeds[] = {feed(0, a, {1, 4}), feed(1, b, {1, 4})};
  TensorView pre;
  pre.type = DType::Float32;
  pre.shape = {1, 4};
  pre.data = y.data();
  pre.bytes = 16;
  Fetch fetch{0, &pre};
  std::vector<OwnedTensor> out;
  s->run(feeds, 2, &fetch, 1, out);
  CHECK(out[0].preallocated && out[0].data == y.data());
  CHECK(y[0] == 2 && y[3] == 5);
}

TEST(buffer_size_must_match_dims) {
  auto s = add_session();
  std::vector<float> a{1, 2, 3}, b{1, 2, 3, 4};
  Feed feeds[] = {feed(0, a, {1, 4}), feed(1, b, {1, 4})};
  Fetch fetch;
  std::vector<OwnedTensor> out;
  CHECK_THROWS(s->run(feeds, 2, &fetch, 1, out), Code::InvalidArgument, "input \"a\": dims [1,4] of float32 need 16 bytes, the buffer has 12");
}

TEST(ort_shape_errors_keep_their_message_under_kilns_code) {
  auto s = add_session();
  std::vector<float> a{1, 2, 3, 4, 5, 6, 7, 8}, b{1, 2, 3, 4, 5, 6, 7, 8};
  Feed feeds[] = {feed(0, a, {1, 8}), feed(1, b, {1, 8})};  // second dim must be 4
  Fetch fetch;
  std::vector<OwnedTensor> out;
  CHECK_THROWS(s->run(feeds, 2, &fetch, 1, out), Code::ShapeMismatch, "Got invalid dimensions for input: a");
}

TEST(an_output_buffer_sized_from_a_wrong_expectation_is_retried) {
  auto s = add_session();
  std::vector<float> a{1, 2, 3, 4}, b{1, 1, 1, 1}, wrong(8, 0.0f);
  Feed feeds[] = {feed(0, a, {1, 4}), feed(1, b, {1, 4})};
  TensorView pre;
  pre.type = DType::Float32;
  pre.shape = {2, 4};  // as if a data-dependent output had changed shape
  pre.data = wrong.data();
  pre.bytes = 32;
  Fetch fetch{0, &pre, true};
  std::vector<OwnedTensor> out;
  s->run(feeds, 2, &fetch, 1, out);
  CHECK(!out[0].preallocated && out[0].shape == (std::vector<int64_t>{1, 4}));
  CHECK(static_cast<const float*>(out[0].data)[3] == 5.0f);
  std::vector<int64_t> shape;
  CHECK(!s->expected_shape(0, feeds, 2, shape));  // never expected again
}

TEST(output_shapes_are_expected_after_a_run_with_the_same_input_shapes) {
  auto s = add_session();
  std::vector<float> a(12, 1.0f), b(12, 2.0f);
  Feed feeds[] = {feed(0, a, {3, 4}), feed(1, b, {3, 4})};
  std::vector<int64_t> shape;
  CHECK(!s->expected_shape(0, feeds, 2, shape));
  Fetch fetch;
  std::vector<OwnedTensor> out;
  s->run(feeds, 2, &fetch, 1, out);
  CHECK(s->expected_shape(0, feeds, 2, shape) && shape == (std::vector<int64_t>{3, 4}));
  Feed other[] = {feed(0, a, {2, 4}), feed(1, b, {2, 4})};
  CHECK(!s->expected_shape(0, other, 2, shape));
}

TEST(missing_corrupt_and_truncated_models) {
  runtime();
  CHECK_THROWS(Session::load_file(models() + "/does-not-exist.onnx", {}), Code::NotFound, "model file not found");
  std::string junk = "this is not an onnx model";
  CHECK_THROWS(Session::load_bytes(junk.data(), junk.size(), {}), Code::ModelLoad, "cannot load model from bytes");
  std::vector<char> bytes = read_file(models() + "/mlp.onnx");
  CHECK_THROWS(Session::load_bytes(bytes.data(), bytes.size() / 2, {}), Code::ModelLoad, "cannot load model");
  CHECK_THROWS(Session::load_bytes(bytes.data(), 0, {}), Code::ModelLoad, "empty");
}

TEST(gpu_provider_unavailable_names_the_missing_piece) {
  runtime();
  SessionConfig only_cuda;
  only_cuda.providers = {{"cuda", {}}};
  CHECK_THROWS(add_session(only_cuda), Code::ProviderUnavailable, "cuda: ");
  SessionConfig fallback;
  fallback.providers = {{"tensorrt", {}}, {"cuda", {{"device_id", "0"}}}, {"cpu", {}}};
  auto s = add_session(fallback);
  CHECK(s->providers().size() == 1 && s->providers()[0] == "CPUExecutionProvider");
  CHECK(s->provider_notes().size() == 2);
  CHECK(s->provider_notes()[0].find("tensorrt: ") == 0);
}

TEST(session_thread_pool_options) {
  SessionConfig c;
  c.intra_op_threads = 2;
  c.graph_optimization_level = 0;
  auto s = add_session(c);
  CHECK(s->inputs().size() == 2);
}

TEST(concurrent_runs_are_independent) {
  auto s = add_session();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::vector<float> a(4, static_cast<float>(t)), b(4, static_cast<float>(i));
        Feed feeds[] = {feed(0, a, {1, 4}), feed(1, b, {1, 4})};
        Fetch fetch;
        std::vector<OwnedTensor> out;
        s->run(feeds, 2, &fetch, 1, out);
        if (static_cast<const float*>(out[0].data)[2] != static_cast<float>(t + i)) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong.load() == 0);
}

TEST(string_tensors_round_trip) {
  runtime();
  auto s = Session::load_file(models() + "/identity_string.onnx", {});
  std::vector<std::string> words{"kiln", "", "ünïcödé", "a longer string than the small-string buffer"};
  Feed f;
  f.input = 0;
  f.view.type = DType::String;
  f.view.shape = {4};
  f.view.strings = &words;
  Fetch fetch;
  std::vector<OwnedTensor> out;
  s->run(&f, 1, &fetch, 1, out);
  CHECK(out[0].type == DType::String && out[0].strings == words);
}
