// The core's device IO path against the fake driver in eager mode: KILN_FAKE_CUDA_EAGER=1
// runs each copy as it is issued (in stream order), so ONNX Runtime's CPU provider can compute
// on the fake's "device" memory between Kiln's copies; the sessions run with device IO
// emulated (device_emulation.h). Needs KILN_CUDA_LIBRARY (the fake), KILN_ORT_LIBRARY and
// KILN_TEST_MODELS.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "batch_run.h"
#include "check.h"
#include "device_emulation.h"
#include "fake_driver.h"
#include "runtime.h"
#include "session.h"

using namespace kiln;
using namespace kiln_test;

namespace {

// `device` -1: a host IO session.
std::shared_ptr<Session> load_model(const char* name, int device) {
  RuntimeConfig rc;
  rc.library_path = kiln_test::env_or("KILN_ORT_LIBRARY", "");
  rc.intra_op_threads = 1;
  Runtime::init(rc);
  auto session = Session::load_file(kiln_test::env_or("KILN_TEST_MODELS", "build-cmake/models") + "/" + name, {});
  if (device >= 0) testing::DeviceEmulation::attach(*session, device);
  return session;
}

Feed float_feed(size_t input, float* data, size_t count, std::vector<int64_t> shape, int device = -1) {
  Feed f;
  f.input = input;
  f.view.type = DType::Float32;
  f.view.shape = std::move(shape);
  f.view.data = data;
  f.view.bytes = count * sizeof(float);
  f.view.device = device;
  return f;
}

std::vector<float> pattern(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 37) % 101) / 101.0f - 0.5f * scale;
  return v;
}

}  // namespace

TEST(session_device_io_matches_the_host_run_with_one_synchronisation) {
  {
    auto host = load_model("mlp.onnx", -1);
    auto device = load_model("mlp.onnx", 0);
    CHECK(host->device() == -1 && device->device() == 0);
    {
      // A device session assembles batches in the driver's pinned memory, a host session not.
      const uint64_t pinned = fake_stats().live_host_allocs;
      Buffer h = host->batch_pool()->acquire(64);
      CHECK(fake_stats().live_host_allocs == pinned);
      Buffer d = device->batch_pool()->acquire(64);
      CHECK(fake_stats().live_host_allocs == pinned + 1);
    }
    std::vector<float> x = pattern(4 * 512, 2.0f);
    Feed f = float_feed(0, x.data(), x.size(), {4, 512});
    Fetch all{0, nullptr, false};
    std::vector<OwnedTensor> want, got;
    host->run(&f, 1, &all, 1, want);
    for (int round = 0; round < 3; ++round) {
      reset_fake_counters();
      got.clear();
      device->run(&f, 1, &all, 1, got);
      const FakeStats st = fake_stats();
      CHECK(st.h2d_copies == 1);   // the one input
      CHECK(st.stream_syncs == 1);  // one synchronisation per run
      // The first run's output shape is unknown (ORT allocates it: in emulation, host memory
      // copied directly); from the second on it is bound to a pooled device buffer and
      // copied back with one device-to-host copy.
      CHECK(st.d2h_copies == (round == 0 ? 0u : 1u));
      CHECK(got.size() == 1 && got[0].shape == want[0].shape && got[0].device == -1);
      CHECK(got[0].storage.data() == got[0].data);  // a pinned buffer of the session's pool
      CHECK(std::memcmp(got[0].data, want[0].data, want[0].bytes) == 0);
    }
  }
  check_nothing_left();
}

TEST(session_outputs_stay_on_the_device_and_feed_the_next_run) {
  {
    auto add = load_model("add.onnx", 0);  // y = a + b, [N,4]
    std::vector<float> a = pattern(8, 1.0f), b = pattern(8, 3.0f);
    Feed feeds[2] = {float_feed(0, a.data(), 8, {2, 4}), float_feed(1, b.data(), 8, {2, 4})};
    // A first run teaches the session the output's shape: then the output is bound to a
    // pooled device buffer (in emulation an ORT-allocated output would be host memory).
    Fetch host{0, nullptr, false};
    std::vector<OwnedTensor> warm;
    add->run(feeds, 2, &host, 1, warm);
    Fetch keep{0, nullptr, false};
    keep.on_device = true;
    std::vector<OwnedTensor> first;
    add->run(feeds, 2, &keep, 1, first);
    CHECK(first[0].storage.data() == first[0].data);  // a buffer of the session's device pool
    CHECK(first.size() == 1 && first[0].device == 0 && first[0].shape == std::vector<int64_t>({2, 4}));
    // Feed it back as `a`: y2 = (a + b) + b, with no copy of `a` to the device.
    Feed again[2] = {float_feed(0, static_cast<float*>(first[0].data), 8, {2, 4}, 0), feeds[1]};
    reset_fake_counters();
    std::vector<OwnedTensor> second;
    add->run(again, 2, &host, 1, second);
    CHECK(fake_stats().h2d_copies == 1);  // only b
    std::vector<float> y(8);
    add->download(first[0], y.data());
    for (size_t i = 0; i < 8; ++i) {
      CHECK(y[i] == a[i] + b[i]);
      CHECK(static_cast<const float*>(second[0].data)[i] == (a[i] + b[i]) + b[i]);
    }
    // A device tensor of another device is refused, naming both.
    Feed elsewhere[2] = {float_feed(0, static_cast<float*>(first[0].data), 8, {2, 4}, 1), feeds[1]};
    std::vector<OwnedTensor> none;
    CHECK_THROWS(add->run(elsewhere, 2, &host, 1, none), Code::InvalidArgument, "lives on CUDA device 1");
  }
  check_nothing_left();
}

TEST(session_host_sessions_refuse_device_tensors_and_outputs) {
  auto add = load_model("add.onnx", -1);
  std::vector<float> a(8), b(8);
  Feed feeds[2] = {float_feed(0, a.data(), 8, {2, 4}, 0), float_feed(1, b.data(), 8, {2, 4})};
  Fetch y{0, nullptr, false};
  std::vector<OwnedTensor> out;
  CHECK_THROWS(add->run(feeds, 2, &y, 1, out), Code::InvalidArgument, "lives on CUDA device 0");
  feeds[0].view.device = -1;
  y.on_device = true;
  CHECK_THROWS(add->run(feeds, 2, &y, 1, out), Code::InvalidArgument, "only for a session running on a GPU");
}

TEST(session_batches_gather_in_pinned_memory_and_outputs_stay_the_sessions_to_bind) {
  {
    auto add = load_model("add.onnx", 0);  // y = a + b, [N,4]
    std::vector<float> a = pattern(8, 1.0f), b = pattern(8, 3.0f);
    size_t allocations = 0;
    for (int round = 0; round < 3; ++round) {
      BatchRun batch;
      batch.reset(add, 2, true);
      for (size_t r = 0; r < 2; ++r) {
        for (size_t input = 0; input < 2; ++input) {
          TensorView& v = batch.part(input, r);
          v = float_feed(input, (input == 0 ? a : b).data() + 4 * r, 4, {1, 4}).view;
        }
      }
      batch.shape_feeds();
      batch.fetch_all();
      CHECK(batch.expected_bytes(0) == 0);  // the session binds pooled device buffers itself
      reset_fake_counters();
      batch.execute();
      CHECK(fake_stats().h2d_copies == 2);  // each input's gathered batch, once
      const OwnedTensor& y = batch.outputs()[0];
      CHECK(y.shape == std::vector<int64_t>({2, 4}));
      for (size_t i = 0; i < 8; ++i) CHECK(static_cast<const float*>(y.data)[i] == a[i] + b[i]);
      if (round == 0) allocations = add->batch_pool()->allocations();
      CHECK(add->batch_pool()->allocations() == allocations);  // pinned buffers reused
    }
  }
  check_nothing_left();
}

TEST(session_device_runs_retry_a_buffer_sized_from_a_wrong_expectation) {
  {
    auto add = load_model("add.onnx", 0);
    std::vector<float> a = pattern(4, 1.0f), b = pattern(4, 3.0f), wrong(8, 0.0f);
    Feed feeds[2] = {float_feed(0, a.data(), 4, {1, 4}), float_feed(1, b.data(), 4, {1, 4})};
    // Sized as if a data-dependent output had changed shape.
    const TensorView pre = float_feed(0, wrong.data(), wrong.size(), {2, 4}).view;
    Fetch fetch{0, &pre, true};
    std::vector<OwnedTensor> out;
    add->run(feeds, 2, &fetch, 1, out);
    CHECK(!out[0].preallocated && out[0].shape == std::vector<int64_t>({1, 4}));
    for (size_t i = 0; i < 4; ++i) CHECK(static_cast<const float*>(out[0].data)[i] == a[i] + b[i]);
    std::vector<int64_t> shape;
    CHECK(!add->expected_shape(0, feeds, 2, shape));  // never expected again
  }
  check_nothing_left();
}
