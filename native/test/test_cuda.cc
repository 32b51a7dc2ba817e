// The CUDA layer (cuda.h) against the fake driver (fake_cuda.cc) and against no usable
// driver. Each case's name starts with the ctest mode whose environment it needs:
//   fake_       KILN_CUDA_LIBRARY = libkiln-fake-cuda.so (one device, CUDA 12.4, 1 GiB)
//   no_driver_  KILN_CUDA_LIBRARY = a path that does not exist
//   old_driver_ the fake, reporting CUDA 11.8
//   no_device_  the fake, with no device
// The fake runs copies only when the stream is waited for, so a case that reads a
// destination before synchronising sees the old contents.
#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "batch_run.h"
#include "check.h"
#include "cuda.h"
#include "device_emulation.h"
#include "runtime.h"
#include "session.h"

using namespace kiln;

namespace {

// The fake's counters: the same layout as kiln_fake_cuda_stats_t in fake_cuda.cc.
struct FakeStats {
  uint64_t live_host_allocs;
  uint64_t live_device_allocs;
  uint64_t device_bytes_in_use;
  uint64_t h2d_copies;
  uint64_t d2h_copies;
  uint64_t d2d_copies;
  uint64_t stream_syncs;
  uint64_t live_streams;
  uint64_t live_events;
  uint64_t retained_contexts;
};

// A symbol of the driver library cuda.cc loaded (the fake, in the fake_ cases).
void* fake_symbol(const char* name) {
  cuda::problem();  // loads the library if nothing has yet
  const std::string path = kiln_test::env_or("KILN_CUDA_LIBRARY", "");
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  void* sym = handle ? dlsym(handle, name) : nullptr;
  if (!sym) throw kiln_test::Failure{"the fake driver (KILN_CUDA_LIBRARY=" + path + ") lacks " + name};
  return sym;
}

FakeStats fake_stats() {
  static auto fn = reinterpret_cast<void (*)(FakeStats*)>(fake_symbol("kiln_fake_cuda_stats"));
  FakeStats s{};
  fn(&s);
  return s;
}

void reset_fake_counters() {
  static auto fn = reinterpret_cast<void (*)()>(fake_symbol("kiln_fake_cuda_reset_counters"));
  fn();
}

// The calling thread's current context, as the driver sees it.
void* current_context() {
  static auto fn = reinterpret_cast<int (*)(void**)>(fake_symbol("cuCtxGetCurrent"));
  void* c = nullptr;
  if (fn(&c) != 0) throw kiln_test::Failure{"cuCtxGetCurrent failed"};
  return c;
}

uint64_t fake_memory() { return std::stoull(kiln_test::env_or("KILN_FAKE_CUDA_MEMORY", "1073741824")); }

// Nothing the CUDA layer made is left in the driver: every case ends with this, once its
// devices, pools, buffers, streams and events are gone.
void check_nothing_left() {
  const FakeStats s = fake_stats();
  CHECK(s.live_host_allocs == 0);
  CHECK(s.live_device_allocs == 0);
  CHECK(s.device_bytes_in_use == 0);
  CHECK(s.live_streams == 0);
  CHECK(s.live_events == 0);
  CHECK(s.retained_contexts == 0);
}

void fill(const Buffer& b, size_t bytes, uint8_t seed) {
  auto* p = static_cast<uint8_t*>(b.data());
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(seed + i * 7);
}

bool all_zero(const Buffer& b, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(b.data());
  for (size_t i = 0; i < bytes; ++i)
    if (p[i] != 0) return false;
  return true;
}

bool same(const Buffer& a, const Buffer& b, size_t bytes) { return std::memcmp(a.data(), b.data(), bytes) == 0; }

}  // namespace

// ---- fake: the fake driver, one device ----

TEST(fake_lists_the_device) {
  const cuda::DeviceList list = cuda::devices();
  CHECK(list.problem.empty());
  CHECK(cuda::problem().empty());
  CHECK(list.driver_version == 12040);
  CHECK(cuda::version_string(list.driver_version) == "12.4");
  CHECK(list.library == kiln_test::env_or("KILN_CUDA_LIBRARY", ""));
  CHECK(list.devices.size() == 1);
  const cuda::DeviceInfo& d = list.devices[0];
  CHECK(d.id == 0);
  CHECK(d.name == "Kiln Fake GPU 0");
  CHECK(d.total_memory == fake_memory());
  CHECK(d.major == 9);
  CHECK(d.minor == 0);
  CHECK(d.multiprocessors == 132);
  CHECK(d.pci_bus_id == "0000:01:00.0");
  check_nothing_left();  // listing retains nothing
}

TEST(fake_missing_device_throws) {
  CHECK_THROWS(cuda::Device(5), Code::ProviderUnavailable, "does not exist");
  CHECK_THROWS(cuda::Device(-1), Code::ProviderUnavailable, "does not exist");
  check_nothing_left();
}

TEST(fake_devices_share_the_primary_context) {
  {
    cuda::Device a(0), b(0);
    CHECK(a.id() == 0);
    CHECK(a.context() != nullptr);
    CHECK(a.context() == b.context());
    CHECK(fake_stats().retained_contexts == 2);
    CHECK(current_context() == nullptr);  // retaining does not make it current
  }
  check_nothing_left();
}

TEST(fake_context_scope_switches_and_restores) {
  auto device = std::make_shared<cuda::Device>(0);
  CHECK(current_context() == nullptr);
  {
    cuda::ContextScope outer(*device);
    CHECK(current_context() == device->context());
    {
      cuda::ContextScope inner(*device);  // already current: nothing to switch
      CHECK(current_context() == device->context());
    }
    CHECK(current_context() == device->context());
  }
  CHECK(current_context() == nullptr);
  device.reset();
  check_nothing_left();
}

TEST(fake_pinned_pool_reuses_buffers) {
  auto device = std::make_shared<cuda::Device>(0);
  auto pool = cuda::pinned_pool(device);
  void* first = nullptr;
  for (int i = 0; i < 5; ++i) {
    Buffer b = pool->acquire(10000);
    CHECK(b.capacity() >= 10000);
    if (i == 0) first = b.data();
    CHECK(b.data() == first);
    fill(b, b.capacity(), static_cast<uint8_t>(i));  // host memory: writable here
  }
  CHECK(pool->allocations() == 1);
  CHECK(pool->live() == 1);
  CHECK(fake_stats().live_host_allocs == 1);
  CHECK(fake_stats().live_device_allocs == 0);
  CHECK(current_context() == nullptr);  // the allocator's scope is gone
  pool.reset();
  CHECK(fake_stats().live_host_allocs == 0);
  device.reset();
  check_nothing_left();
}

TEST(fake_pinned_pool_frees_beyond_its_cache) {
  auto device = std::make_shared<cuda::Device>(0);
  auto pool = cuda::pinned_pool(device, 1);
  {
    Buffer a = pool->acquire(4096);
    Buffer b = pool->acquire(4096);
    CHECK(fake_stats().live_host_allocs == 2);
  }
  CHECK(pool->allocations() == 2);
  CHECK(pool->live() == 1);  // one kept for reuse, one freed
  CHECK(fake_stats().live_host_allocs == 1);
  device.reset();  // the pool keeps the device (and its context) alive
  CHECK(fake_stats().retained_contexts == 1);
  pool.reset();
  check_nothing_left();
}

TEST(fake_device_pool_reuses_buffers) {
  auto device = std::make_shared<cuda::Device>(0);
  auto pool = cuda::device_pool(device);
  cuda::DevicePtr first = 0;
  for (int i = 0; i < 5; ++i) {
    Buffer b = pool->acquire(10000);
    if (i == 0) first = cuda::device_ptr(b);
    CHECK(cuda::device_ptr(b) == first);
    CHECK(first != 0);
  }
  CHECK(pool->allocations() == 1);
  CHECK(pool->live() == 1);
  const FakeStats s = fake_stats();
  CHECK(s.live_device_allocs == 1);
  CHECK(s.device_bytes_in_use == 16384);  // 10000 rounds up to the 16 KiB class
  CHECK(s.live_host_allocs == 0);
  pool.reset();
  CHECK(fake_stats().live_device_allocs == 0);
  device.reset();
  check_nothing_left();
}

TEST(fake_buffers_outliving_their_pool_are_freed) {
  auto device = std::make_shared<cuda::Device>(0);
  auto pool = cuda::device_pool(device);
  Buffer b = pool->acquire(4096);
  pool.reset();  // the buffer keeps the pool alive
  device.reset();
  CHECK(fake_stats().live_device_allocs == 1);
  b.reset();
  check_nothing_left();
}

TEST(fake_memory_info_reports_the_device) {
  auto device = std::make_shared<cuda::Device>(0);
  uint64_t free_bytes = 0, total_bytes = 0;
  cuda::memory_info(*device, free_bytes, total_bytes);
  CHECK(total_bytes == fake_memory());
  CHECK(total_bytes == cuda::devices().devices[0].total_memory);
  CHECK(free_bytes == total_bytes);
  {
    auto pool = cuda::device_pool(device);
    Buffer b = pool->acquire(1 << 20);
    cuda::memory_info(*device, free_bytes, total_bytes);
    CHECK(total_bytes == fake_memory());
    CHECK(free_bytes == total_bytes - (1 << 20));
  }
  cuda::memory_info(*device, free_bytes, total_bytes);
  CHECK(free_bytes == total_bytes);
  CHECK(current_context() == nullptr);
  device.reset();
  check_nothing_left();
}

TEST(fake_device_pool_out_of_memory_throws_bad_alloc) {
  auto device = std::make_shared<cuda::Device>(0);
  auto pool = cuda::device_pool(device);
  uint64_t free_bytes = 0, total = 0;
  cuda::memory_info(*device, free_bytes, total);
  bool threw = false;
  try {
    pool->acquire(total + 1);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(pool->allocations() == 0);
  CHECK(fake_stats().live_device_allocs == 0);
  {
    // Half the device, then a class that no longer fits beside it.
    Buffer half = pool->acquire(total / 2);
    threw = false;
    try {
      pool->acquire(total / 2 + 1);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    CHECK(threw);
    // The pool still works: small buffers, and the big one again once released.
    Buffer small = pool->acquire(4096);
    CHECK(small.data() != nullptr);
  }
  Buffer again = pool->acquire(total / 2);
  CHECK(pool->allocations() == 2);  // the half-device buffer was reused
  again.reset();
  pool.reset();
  device.reset();
  check_nothing_left();
}

// The round trip host -> device -> device -> host: nothing lands before synchronize(), all
// of it after, which is why every Kiln path that reads a copy's result must synchronise.
TEST(fake_stream_copies_land_only_after_synchronize) {
  constexpr size_t kBytes = 64 * 1024;
  auto device = std::make_shared<cuda::Device>(0);
  auto pinned = cuda::pinned_pool(device);
  auto memory = cuda::device_pool(device);
  {
    cuda::Stream stream(device);
    CHECK(stream.handle() != nullptr);
    CHECK(stream.device() == 0);
    Buffer src = pinned->acquire(kBytes), dst = pinned->acquire(kBytes);
    Buffer d1 = memory->acquire(kBytes), d2 = memory->acquire(kBytes);
    fill(src, kBytes, 3);
    std::memset(dst.data(), 0, kBytes);
    reset_fake_counters();

    stream.copy_to_device(cuda::device_ptr(d1), src.data(), kBytes);
    stream.copy_device(cuda::device_ptr(d2), cuda::device_ptr(d1), kBytes);
    stream.copy_to_host(dst.data(), cuda::device_ptr(d2), kBytes);
    CHECK(all_zero(dst, kBytes));  // queued, not run
    FakeStats s = fake_stats();
    CHECK(s.h2d_copies == 1);
    CHECK(s.d2d_copies == 1);
    CHECK(s.d2h_copies == 1);
    CHECK(s.stream_syncs == 0);

    stream.synchronize();
    CHECK(same(src, dst, kBytes));
    CHECK(fake_stats().stream_syncs == 1);

    // Zero-byte copies are no-ops, not driver calls.
    stream.copy_to_device(cuda::device_ptr(d1), src.data(), 0);
    CHECK(fake_stats().h2d_copies == 1);
    CHECK(current_context() == nullptr);
  }
  pinned.reset();
  memory.reset();
  device.reset();
  check_nothing_left();
}

TEST(fake_stream_destruction_finishes_pending_copies) {
  constexpr size_t kBytes = 8192;
  auto device = std::make_shared<cuda::Device>(0);
  auto pinned = cuda::pinned_pool(device);
  auto memory = cuda::device_pool(device);
  Buffer src = pinned->acquire(kBytes), dst = pinned->acquire(kBytes), d = memory->acquire(kBytes);
  fill(src, kBytes, 11);
  std::memset(dst.data(), 0, kBytes);
  {
    cuda::Stream stream(device);
    stream.copy_to_device(cuda::device_ptr(d), src.data(), kBytes);
    stream.copy_to_host(dst.data(), cuda::device_ptr(d), kBytes);
    CHECK(all_zero(dst, kBytes));
  }
  CHECK(same(src, dst, kBytes));
  src.reset();
  dst.reset();
  d.reset();
  pinned.reset();
  memory.reset();
  device.reset();
  check_nothing_left();
}

TEST(fake_copies_outside_an_allocation_throw) {
  auto device = std::make_shared<cuda::Device>(0);
  auto pinned = cuda::pinned_pool(device);
  auto memory = cuda::device_pool(device);
  {
    cuda::Stream stream(device);
    Buffer host = pinned->acquire(4096), d = memory->acquire(4096), d2 = memory->acquire(4096);
    const cuda::DevicePtr end = cuda::device_ptr(d) + d.capacity();
    // Runs past the end of the allocation.
    CHECK_THROWS(stream.copy_to_device(end - 8, host.data(), 16), Code::ProviderUnavailable,
                 "cuMemcpyHtoDAsync failed: CUDA_ERROR_INVALID_VALUE");
    // Not device memory at all (a host pointer).
    CHECK_THROWS(stream.copy_to_host(host.data(), reinterpret_cast<cuda::DevicePtr>(host.data()), 16),
                 Code::ProviderUnavailable, "cuMemcpyDtoHAsync failed: CUDA_ERROR_INVALID_VALUE");
    CHECK_THROWS(stream.copy_device(cuda::device_ptr(d2), end - 8, 16), Code::ProviderUnavailable,
                 "cuMemcpyDtoDAsync failed");
    // The last bytes of an allocation are fine.
    stream.copy_to_device(end - 16, host.data(), 16);
    stream.synchronize();
    CHECK(current_context() == nullptr);  // the scope is undone when the call throws too
  }
  pinned.reset();
  memory.reset();
  device.reset();
  check_nothing_left();
}

TEST(fake_event_times_the_stream) {
  constexpr size_t kBytes = 16384;
  auto device = std::make_shared<cuda::Device>(0);
  auto pinned = cuda::pinned_pool(device);
  auto memory = cuda::device_pool(device);
  {
    cuda::Stream stream(device);
    cuda::Event start(device), end(device);
    CHECK(fake_stats().live_events == 2);
    Buffer src = pinned->acquire(kBytes), dst = pinned->acquire(kBytes), d = memory->acquire(kBytes);
    fill(src, kBytes, 5);
    std::memset(dst.data(), 0, kBytes);

    start.record(stream);
    stream.copy_to_device(cuda::device_ptr(d), src.data(), kBytes);
    stream.copy_to_host(dst.data(), cuda::device_ptr(d), kBytes);
    end.record(stream);
    // Not reached yet: timing them is an error, not a number.
    CHECK_THROWS(cuda::Event::elapsed_ms(start, end), Code::ProviderUnavailable, "CUDA_ERROR_NOT_READY");
    CHECK(all_zero(dst, kBytes));

    end.synchronize();  // waits for everything recorded before it
    CHECK(same(src, dst, kBytes));
    const float ms = cuda::Event::elapsed_ms(start, end);
    CHECK(ms >= 0);

    // Re-recording restarts the wait.
    start.record(stream);
    start.synchronize();
    end.record(stream);
    end.synchronize();
    CHECK(cuda::Event::elapsed_ms(start, end) >= 0);
  }
  CHECK(fake_stats().live_events == 0);
  CHECK(fake_stats().live_streams == 0);
  pinned.reset();
  memory.reset();
  device.reset();
  check_nothing_left();
}

TEST(fake_streams_and_events_hold_the_device) {
  auto device = std::make_shared<cuda::Device>(0);
  auto stream = std::make_unique<cuda::Stream>(device);
  auto other = std::make_unique<cuda::Stream>(device);
  auto event = std::make_unique<cuda::Event>(device);
  CHECK(stream->handle() != other->handle());
  device.reset();
  FakeStats s = fake_stats();
  CHECK(s.live_streams == 2);
  CHECK(s.live_events == 1);
  CHECK(s.retained_contexts == 1);  // still held by the stream and event
  stream.reset();
  other.reset();
  CHECK(fake_stats().live_streams == 0);
  CHECK(fake_stats().retained_contexts == 1);
  event.reset();
  check_nothing_left();
}

// A thread that never made the context current (a worker, a libuv thread) uses the
// pools and the stream: ContextScope makes the context current for each call and undoes it.
TEST(fake_stream_works_from_another_thread) {
  constexpr size_t kBytes = 32768;
  auto device = std::make_shared<cuda::Device>(0);
  auto pinned = cuda::pinned_pool(device);
  auto memory = cuda::device_pool(device);
  auto stream = std::make_unique<cuda::Stream>(device);
  std::string failure;
  std::thread worker([&] {
    try {
      if (current_context() != nullptr) throw kiln_test::Failure{"the new thread has a context"};
      Buffer src = pinned->acquire(kBytes), dst = pinned->acquire(kBytes);
      Buffer d1 = memory->acquire(kBytes), d2 = memory->acquire(kBytes);
      fill(src, kBytes, 9);
      std::memset(dst.data(), 0, kBytes);
      stream->copy_to_device(cuda::device_ptr(d1), src.data(), kBytes);
      stream->copy_device(cuda::device_ptr(d2), cuda::device_ptr(d1), kBytes);
      stream->copy_to_host(dst.data(), cuda::device_ptr(d2), kBytes);
      if (!all_zero(dst, kBytes)) throw kiln_test::Failure{"copies ran before synchronize"};
      stream->synchronize();
      if (!same(src, dst, kBytes)) throw kiln_test::Failure{"round trip from the worker differs"};
      uint64_t free_bytes = 0, total = 0;
      cuda::memory_info(*device, free_bytes, total);
      if (free_bytes != total - 2 * kBytes) throw kiln_test::Failure{"memory_info from the worker is wrong"};
      if (current_context() != nullptr) throw kiln_test::Failure{"the worker was left with a context"};
    } catch (const kiln_test::Failure& f) {
      failure = f.what;
    } catch (const std::exception& e) {
      failure = std::string("worker threw: ") + e.what();
    }
  });
  worker.join();
  if (!failure.empty()) throw kiln_test::Failure{failure};
  CHECK(current_context() == nullptr);
  // Buffers acquired on the worker went back to the pools and are reused here.
  CHECK(pinned->allocations() == 2);
  Buffer again = pinned->acquire(kBytes);
  CHECK(pinned->allocations() == 2);
  again.reset();
  stream.reset();
  pinned.reset();
  memory.reset();
  device.reset();
  check_nothing_left();
}

// ---- no_driver: KILN_CUDA_LIBRARY names a library that does not exist ----

TEST(no_driver_reports_why) {
  const std::string path = kiln_test::env_or("KILN_CUDA_LIBRARY", "");
  const cuda::DeviceList list = cuda::devices();
  CHECK(list.devices.empty());
  CHECK(list.driver_version == 0);
  CHECK(list.library == path);
  CHECK(list.problem.rfind("no NVIDIA driver", 0) == 0);
  CHECK(list.problem.find(path) != std::string::npos);
  CHECK(cuda::problem() == list.problem);
}

// Without a driver there is no Device, and so no stream, event or pool: each takes one,
// and the Device constructor is where "CUDA is unavailable" surfaces.
TEST(no_driver_device_throws) {
  CHECK_THROWS(cuda::Device(0), Code::ProviderUnavailable, "CUDA is unavailable");
  CHECK_THROWS(cuda::Device(0), Code::ProviderUnavailable, "no NVIDIA driver");
  CHECK_THROWS(std::make_shared<cuda::Device>(0), Code::ProviderUnavailable, "CUDA is unavailable");
}

// ---- old_driver: the fake reports CUDA 11.8 ----

TEST(old_driver_is_refused) {
  const cuda::DeviceList list = cuda::devices();
  CHECK(list.devices.empty());
  CHECK(list.driver_version == 11080);
  CHECK(list.problem.find("too old") != std::string::npos);
  CHECK(list.problem.find("11.8") != std::string::npos);
  CHECK(list.problem.find("12.0") != std::string::npos);
  CHECK(cuda::problem() == list.problem);
  CHECK_THROWS(cuda::Device(0), Code::ProviderUnavailable, "too old");
}

// ---- no_device: the fake has no device ----

TEST(no_device_is_reported) {
  const cuda::DeviceList list = cuda::devices();
  CHECK(list.devices.empty());
  CHECK(list.driver_version == 12040);
  CHECK(list.problem.rfind("no CUDA device", 0) == 0);
  CHECK(cuda::problem() == list.problem);
  CHECK_THROWS(cuda::Device(0), Code::ProviderUnavailable, "no CUDA device");
}

// ---- session: the core's device IO path, against the fake driver in eager mode ----
// KILN_FAKE_CUDA_EAGER=1 runs each copy as it is issued (in stream order), so ONNX Runtime's
// CPU provider can compute on the fake's "device" memory between Kiln's copies; the session
// runs with device IO emulated (device_emulation.h). Needs KILN_ORT_LIBRARY and KILN_TEST_MODELS.

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
