// The fake CUDA driver (fake_cuda.cc) as the tests see it: its counters, read through the
// library cuda.cc loaded (KILN_CUDA_LIBRARY), and the check every case ends with.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <string>

#include "check.h"
#include "cuda.h"

namespace kiln_test {

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
inline void* fake_symbol(const char* name) {
  kiln::cuda::problem();  // loads the library if nothing has yet
  const std::string path = env_or("KILN_CUDA_LIBRARY", "");
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  void* sym = handle ? dlsym(handle, name) : nullptr;
  if (!sym) throw Failure{"the fake driver (KILN_CUDA_LIBRARY=" + path + ") lacks " + name};
  return sym;
}

inline FakeStats fake_stats() {
  static auto fn = reinterpret_cast<void (*)(FakeStats*)>(fake_symbol("kiln_fake_cuda_stats"));
  FakeStats s{};
  fn(&s);
  return s;
}

inline void reset_fake_counters() {
  static auto fn = reinterpret_cast<void (*)()>(fake_symbol("kiln_fake_cuda_reset_counters"));
  fn();
}

// Nothing the CUDA layer made is left in the driver: every case ends with this, once its
// devices, pools, buffers, streams and events are gone.
inline void check_nothing_left() {
  const FakeStats s = fake_stats();
  CHECK(s.live_host_allocs == 0);
  CHECK(s.live_device_allocs == 0);
  CHECK(s.device_bytes_in_use == 0);
  CHECK(s.live_streams == 0);
  CHECK(s.live_events == 0);
  CHECK(s.retained_contexts == 0);
}

}  // namespace kiln_test
