// The CUDA layer (cuda.h) against the fake driver (fake_cuda.cc) and against no usable
// driver. Each case's name starts with the ctest mode whose environment it needs:
//   fake_       KILN_CUDA_LIBRARY = libkiln-fake-cuda.so (one device, CUDA 12.4, 1 GiB)
//   no_driver_  KILN_CUDA_LIBRARY = a path that does not exist
//   old_driver_ the fake, reporting CUDA 11.8
//   no_device_  the fake, with no device
// The fake runs copies only when the stream is waited for, so a case that reads a
// destination before synchronising sees the old contents.
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "cuda.h"
#include "fake_driver.h"

using namespace kiln;
using namespace kiln_test;

namespace {

// The calling thread's current context, as the driver sees it.
void* current_context() {
  static auto fn = reinterpret_cast<int (*)(void**)>(fake_symbol("cuCtxGetCurrent"));
  void* c = nullptr;
  if (fn(&c) != 0) throw kiln_test::Failure{"cuCtxGetCurrent failed"};
  return c;
}

uint64_t fake_memory() { return std::stoull(kiln_test::env_or("KILN_FAKE_CUDA_MEMORY", "1073741824")); }

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
