// A fake CUDA driver (libkiln-fake-cuda.so) for the tests: point KILN_CUDA_LIBRARY at it and
// cuda.cc loads it in place of libcuda.so.1. It exports, with the driver's ABI, every symbol
// cuda.cc resolves, so pools, streams, events and copies run on a machine without a GPU.
//
// Device memory is host memory (malloc) at addresses tracked here, so a device address can
// be checked: an async copy must name a range inside one live allocation. Copies are not run
// when issued but queued on their stream and run, in order, only when something waits for
// the stream (cuStreamSynchronize, cuEventSynchronize of an event recorded after them,
// cuStreamDestroy, or a free). A caller that reads a destination without synchronising sees
// stale data, which is the point: the tests catch a missing synchronisation.
//
// Environment, read on first use:
//   KILN_FAKE_CUDA_DEVICES         devices (default 1; 0 makes cuInit fail with NO_DEVICE)
//   KILN_FAKE_CUDA_DRIVER_VERSION  what cuDriverGetVersion reports (default 12040)
//   KILN_FAKE_CUDA_MEMORY          bytes of memory per device (default 1 GiB)
//
// kiln_fake_cuda_stats() reports live objects and copy counters, so tests can check that
// nothing leaks and that copies happened.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cuda_abi.h"

namespace {

using namespace kiln::cuda::abi;

// The results this fake returns (values from the driver's cuda.h).
constexpr CUresult kInvalidValue = 1;
constexpr CUresult kOutOfMemory = 2;
constexpr CUresult kNotInitialized = 3;
constexpr CUresult kInvalidDevice = 101;
constexpr CUresult kInvalidContext = 201;
constexpr CUresult kInvalidHandle = 400;
constexpr CUresult kNotReady = 600;

struct ResultText {
  CUresult code;
  const char* name;
  const char* text;
};

constexpr ResultText kResults[] = {
    {kSuccess, "CUDA_SUCCESS", "no error"},
    {kInvalidValue, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {kOutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {kNotInitialized, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {kNoDevice, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {kInvalidDevice, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {kInvalidContext, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {kInvalidHandle, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {kNotReady, "CUDA_ERROR_NOT_READY", "device not ready"},
};

const ResultText* find_result(CUresult r) {
  for (const ResultText& t : kResults)
    if (t.code == r) return &t;
  return nullptr;
}

// The special stream handles that name the default stream.
constexpr uintptr_t kStreamLegacy = 1;     // CU_STREAM_LEGACY
constexpr uintptr_t kStreamPerThread = 2;  // CU_STREAM_PER_THREAD

// Device attributes the fake knows.

struct Config {
  int devices = 1;
  int driver_version = 12040;
  uint64_t memory = 1ull << 30;
  // Runs copies as they are issued (still in stream order): lets ONNX Runtime's CPU provider
  // compute on "device" memory between Kiln's copies (device IO emulated: device_emulation.h).
  bool eager = false;
};

// An environment variable as an unsigned number, or `fallback` when unset or malformed.
uint64_t env_number(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  return end && *end == '\0' ? n : fallback;
}

const Config& config() {
  static const Config c = [] {
    Config c;
    c.devices = static_cast<int>(env_number("KILN_FAKE_CUDA_DEVICES", c.devices));
    c.driver_version = static_cast<int>(env_number("KILN_FAKE_CUDA_DRIVER_VERSION", c.driver_version));
    c.memory = env_number("KILN_FAKE_CUDA_MEMORY", c.memory);
    c.eager = env_number("KILN_FAKE_CUDA_EAGER", 0) != 0;
    return c;
  }();
  return c;
}

// A device's primary context: one per device, alive while retained.
struct Context {
  int device = 0;
  int refs = 0;
};

struct Event {
  uint64_t record = 0;  // which cuEventRecord is the latest (0: never recorded)
  bool done = false;    // the latest record has been reached on its stream
  std::chrono::steady_clock::time_point when;
};

// A queued operation: a copy, or an event's record marker.
struct Op {
  enum Kind { HtoD, DtoH, DtoD, Mark } kind;
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
  Event* event = nullptr;  // Mark: the event, matched by `record` (it may have been re-recorded)
  uint64_t record = 0;
};

struct Stream {
  std::deque<Op> queue;
};

struct Allocation {
  size_t bytes = 0;
  int device = 0;
};

}  // namespace

// The fake's counters, read by the tests through kiln_fake_cuda_stats (the tests declare the
// same struct: this is the fake's ABI). Copies and syncs count successful calls.
struct kiln_fake_cuda_stats_t {
  uint64_t live_host_allocs;    // cuMemHostAlloc not yet freed
  uint64_t live_device_allocs;  // cuMemAlloc not yet freed
  uint64_t device_bytes_in_use;
  uint64_t h2d_copies;  // copies issued
  uint64_t d2h_copies;
  uint64_t d2d_copies;
  uint64_t stream_syncs;  // cuStreamSynchronize calls
  uint64_t live_streams;
  uint64_t live_events;
  uint64_t retained_contexts;  // primary context references held, all devices
};

namespace {

struct State {
  std::mutex mutex;
  bool initialised = false;
  std::vector<Context> contexts;  // per device; sized once at cuInit, so pointers are stable
  std::vector<uint64_t> in_use;   // device bytes allocated, per device
  std::map<uintptr_t, Allocation> device_allocs;  // by base address
  std::set<void*> host_allocs;
  std::set<Stream*> streams;
  std::set<Event*> events;
  Stream default_stream;  // the legacy default stream (handle 0, 1 or 2)
  uint64_t records = 0;   // cuEventRecord calls, to tell records apart
  kiln_fake_cuda_stats_t stats{};
};

// Never destroyed: a process's static destructors may still call into the driver.
State& state() {
  static State* s = new State;
  return *s;
}

// The calling thread's current context (the driver's is per thread too).
thread_local Context* current = nullptr;

bool valid_context(State& s, Context* c) {
  if (!c || s.contexts.empty()) return false;
  return c >= &s.contexts.front() && c <= &s.contexts.back() && c->refs > 0;
}

// The current context when one is current and still retained, else null.
Context* current_context(State& s) { return valid_context(s, current) ? current : nullptr; }

bool valid_device(const State& s, CUdevice d) { return d >= 0 && static_cast<size_t>(d) < s.contexts.size(); }

// The stream a handle names, or null when it names none.
Stream* find_stream(State& s, CUstream h) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(h);
  if (v == 0 || v == kStreamLegacy || v == kStreamPerThread) return &s.default_stream;
  Stream* st = static_cast<Stream*>(h);
  return s.streams.count(st) ? st : nullptr;
}

Event* find_event(State& s, CUevent h) {
  Event* e = static_cast<Event*>(h);
  return s.events.count(e) ? e : nullptr;
}

// Whether [p, p + bytes) lies inside one live device allocation.
bool device_range_ok(const State& s, CUdeviceptr p, size_t bytes) {
  auto it = s.device_allocs.upper_bound(static_cast<uintptr_t>(p));
  if (it == s.device_allocs.begin()) return false;
  --it;
  const uintptr_t offset = static_cast<uintptr_t>(p) - it->first;
  return offset < it->second.bytes && bytes <= it->second.bytes - offset;
}

void run(State& s, const Op& op) {
  if (op.kind == Op::Mark) {
    // Only the event's latest record completes it, and only if the event still exists.
    if (s.events.count(op.event) && op.event->record == op.record) {
      op.event->done = true;
      op.event->when = std::chrono::steady_clock::now();
    }
    return;
  }
  std::memmove(op.dst, op.src, op.bytes);
}

// Runs a stream's queued work: all of it, or up to and including `until`'s record marker.
void drain(State& s, Stream& st, const Event* until = nullptr, uint64_t record = 0) {
  while (!st.queue.empty()) {
    const Op op = st.queue.front();
    st.queue.pop_front();
    run(s, op);
    if (until && op.kind == Op::Mark && op.event == until && op.record == record) return;
  }
}

// Runs every stream's work: what a free waits for before the memory goes.
void drain_all(State& s) {
  drain(s, s.default_stream);
  for (Stream* st : s.streams) drain(s, *st);
}

#define FAKE_LOCK_INITIALISED()                  \
  State& s = state();                            \
  std::lock_guard<std::mutex> lock(s.mutex);     \
  if (!s.initialised) return kNotInitialized

// Queues a copy after the checks every copy shares: a current context and a known stream.
CUresult queue_copy(State& s, Op op, CUstream h, uint64_t kiln_fake_cuda_stats_t::*counter) {
  if (!current_context(s)) return kInvalidContext;
  Stream* st = find_stream(s, h);
  if (!st) return kInvalidHandle;
  if (op.bytes == 0) return kSuccess;
  st->queue.push_back(op);
  ++(s.stats.*counter);
  if (config().eager) drain(s, *st);
  return kSuccess;
}

}  // namespace

extern "C" {

CUresult cuInit(unsigned flags) {
  if (flags != 0) return kInvalidValue;
  const Config& c = config();
  if (c.devices <= 0) return kNoDevice;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.initialised) return kSuccess;
  s.contexts.resize(static_cast<size_t>(c.devices));
  for (int i = 0; i < c.devices; ++i) s.contexts[i].device = i;
  s.in_use.assign(static_cast<size_t>(c.devices), 0);
  s.initialised = true;
  return kSuccess;
}

// Like the real driver, works before cuInit.
CUresult cuDriverGetVersion(int* version) {
  if (!version) return kInvalidValue;
  *version = config().driver_version;
  return kSuccess;
}

CUresult cuGetErrorName(CUresult r, const char** name) {
  if (!name) return kInvalidValue;
  const ResultText* t = find_result(r);
  *name = t ? t->name : nullptr;
  return t ? kSuccess : kInvalidValue;
}

CUresult cuGetErrorString(CUresult r, const char** text) {
  if (!text) return kInvalidValue;
  const ResultText* t = find_result(r);
  *text = t ? t->text : nullptr;
  return t ? kSuccess : kInvalidValue;
}

CUresult cuDeviceGetCount(int* count) {
  FAKE_LOCK_INITIALISED();
  if (!count) return kInvalidValue;
  *count = static_cast<int>(s.contexts.size());
  return kSuccess;
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  FAKE_LOCK_INITIALISED();
  if (!device) return kInvalidValue;
  if (!valid_device(s, ordinal)) return kInvalidDevice;
  *device = ordinal;
  return kSuccess;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
  FAKE_LOCK_INITIALISED();
  if (!name || len <= 0) return kInvalidValue;
  if (!valid_device(s, device)) return kInvalidDevice;
  std::snprintf(name, static_cast<size_t>(len), "Kiln Fake GPU %d", device);
  return kSuccess;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  FAKE_LOCK_INITIALISED();
  if (!bytes) return kInvalidValue;
  if (!valid_device(s, device)) return kInvalidDevice;
  *bytes = static_cast<size_t>(config().memory);
  return kSuccess;
}

CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice device) {
  FAKE_LOCK_INITIALISED();
  if (!value) return kInvalidValue;
  if (!valid_device(s, device)) return kInvalidDevice;
  switch (attribute) {
    case kAttrMajor: *value = 9; return kSuccess;
    case kAttrMinor: *value = 0; return kSuccess;
    case kAttrMultiprocessors: *value = 132; return kSuccess;
    default: return kInvalidValue;
  }
}

CUresult cuDeviceGetPCIBusId(char* bus, int len, CUdevice device) {
  FAKE_LOCK_INITIALISED();
  if (!bus || len <= 0) return kInvalidValue;
  if (!valid_device(s, device)) return kInvalidDevice;
  std::snprintf(bus, static_cast<size_t>(len), "0000:%02x:00.0", device + 1);
  return kSuccess;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  FAKE_LOCK_INITIALISED();
  if (!context) return kInvalidValue;
  if (!valid_device(s, device)) return kInvalidDevice;
  Context& c = s.contexts[device];
  ++c.refs;
  ++s.stats.retained_contexts;
  *context = &c;
  return kSuccess;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  FAKE_LOCK_INITIALISED();
  if (!valid_device(s, device)) return kInvalidDevice;
  Context& c = s.contexts[device];
  if (c.refs == 0) return kInvalidContext;  // released more often than retained
  --c.refs;
  --s.stats.retained_contexts;
  return kSuccess;
}

CUresult cuCtxGetCurrent(CUcontext* context) {
  FAKE_LOCK_INITIALISED();
  if (!context) return kInvalidValue;
  *context = current;
  return kSuccess;
}

CUresult cuCtxSetCurrent(CUcontext context) {
  FAKE_LOCK_INITIALISED();
  Context* c = static_cast<Context*>(context);
  if (c && !valid_context(s, c)) return kInvalidContext;
  current = c;
  return kSuccess;
}

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  FAKE_LOCK_INITIALISED();
  if (!free_bytes || !total_bytes) return kInvalidValue;
  Context* c = current_context(s);
  if (!c) return kInvalidContext;
  const uint64_t total = config().memory;
  *total_bytes = static_cast<size_t>(total);
  *free_bytes = static_cast<size_t>(total - std::min(total, s.in_use[c->device]));
  return kSuccess;
}

CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned flags) {
  FAKE_LOCK_INITIALISED();
  if (!p || bytes == 0) return kInvalidValue;
  if (!current_context(s)) return kInvalidContext;  // like the driver: allocation needs a context
  // Page-aligned, as pinned memory is.
  constexpr size_t kPage = 4096;
  void* m = std::aligned_alloc(kPage, (bytes + kPage - 1) / kPage * kPage);
  if (!m) return kOutOfMemory;
  s.host_allocs.insert(m);
  ++s.stats.live_host_allocs;
  *p = m;
  return kSuccess;
}

// Like the driver: no context needed, null is a no-op, and pending copies finish first.
CUresult cuMemFreeHost(void* p) {
  FAKE_LOCK_INITIALISED();
  if (!p) return kSuccess;
  if (!s.host_allocs.count(p)) return kInvalidValue;
  drain_all(s);
  s.host_allocs.erase(p);
  std::free(p);
  --s.stats.live_host_allocs;
  return kSuccess;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
  FAKE_LOCK_INITIALISED();
  if (!p || bytes == 0) return kInvalidValue;
  Context* c = current_context(s);
  if (!c) return kInvalidContext;
  uint64_t& used = s.in_use[c->device];
  if (bytes > config().memory - std::min(config().memory, used)) return kOutOfMemory;
  void* m = std::malloc(bytes);
  if (!m) return kOutOfMemory;
  s.device_allocs[reinterpret_cast<uintptr_t>(m)] = Allocation{bytes, c->device};
  used += bytes;
  ++s.stats.live_device_allocs;
  s.stats.device_bytes_in_use += bytes;
  *p = reinterpret_cast<uintptr_t>(m);
  return kSuccess;
}

// Frees from any thread, context or not (the driver finds the allocation by address);
// pending copies finish first, as the driver's free waits for the device.
CUresult cuMemFree_v2(CUdeviceptr p) {
  FAKE_LOCK_INITIALISED();
  auto it = s.device_allocs.find(static_cast<uintptr_t>(p));
  if (it == s.device_allocs.end()) return kInvalidValue;
  drain_all(s);
  const Allocation a = it->second;
  s.device_allocs.erase(it);
  std::free(reinterpret_cast<void*>(static_cast<uintptr_t>(p)));
  s.in_use[a.device] -= a.bytes;
  --s.stats.live_device_allocs;
  s.stats.device_bytes_in_use -= a.bytes;
  return kSuccess;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  FAKE_LOCK_INITIALISED();
  if (bytes && (!src || !device_range_ok(s, dst, bytes))) return kInvalidValue;
  Op op{Op::HtoD};
  op.dst = reinterpret_cast<void*>(static_cast<uintptr_t>(dst));
  op.src = src;
  op.bytes = bytes;
  return queue_copy(s, op, stream, &kiln_fake_cuda_stats_t::h2d_copies);
}

CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  FAKE_LOCK_INITIALISED();
  if (bytes && (!dst || !device_range_ok(s, src, bytes))) return kInvalidValue;
  Op op{Op::DtoH};
  op.dst = dst;
  op.src = reinterpret_cast<const void*>(static_cast<uintptr_t>(src));
  op.bytes = bytes;
  return queue_copy(s, op, stream, &kiln_fake_cuda_stats_t::d2h_copies);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  FAKE_LOCK_INITIALISED();
  if (bytes && (!device_range_ok(s, dst, bytes) || !device_range_ok(s, src, bytes))) return kInvalidValue;
  Op op{Op::DtoD};
  op.dst = reinterpret_cast<void*>(static_cast<uintptr_t>(dst));
  op.src = reinterpret_cast<const void*>(static_cast<uintptr_t>(src));
  op.bytes = bytes;
  return queue_copy(s, op, stream, &kiln_fake_cuda_stats_t::d2d_copies);
}

CUresult cuStreamCreate(CUstream* stream, unsigned flags) {
  FAKE_LOCK_INITIALISED();
  if (!stream) return kInvalidValue;
  if (!current_context(s)) return kInvalidContext;
  Stream* st = new Stream;
  s.streams.insert(st);
  ++s.stats.live_streams;
  *stream = st;
  return kSuccess;
}

// Like the driver, the stream's pending work still completes.
CUresult cuStreamDestroy_v2(CUstream stream) {
  FAKE_LOCK_INITIALISED();
  Stream* st = static_cast<Stream*>(stream);
  if (!s.streams.count(st)) return kInvalidHandle;
  drain(s, *st);
  s.streams.erase(st);
  delete st;
  --s.stats.live_streams;
  return kSuccess;
}

CUresult cuStreamSynchronize(CUstream stream) {
  FAKE_LOCK_INITIALISED();
  Stream* st = find_stream(s, stream);
  if (!st) return kInvalidHandle;
  drain(s, *st);
  ++s.stats.stream_syncs;
  return kSuccess;
}

CUresult cuEventCreate(CUevent* event, unsigned flags) {
  FAKE_LOCK_INITIALISED();
  if (!event) return kInvalidValue;
  if (!current_context(s)) return kInvalidContext;
  Event* e = new Event;
  s.events.insert(e);
  ++s.stats.live_events;
  *event = e;
  return kSuccess;
}

CUresult cuEventDestroy_v2(CUevent event) {
  FAKE_LOCK_INITIALISED();
  Event* e = find_event(s, event);
  if (!e) return kInvalidHandle;
  // A marker still queued for it is skipped when run (run() checks the event is alive).
  s.events.erase(e);
  delete e;
  --s.stats.live_events;
  return kSuccess;
}

CUresult cuEventRecord(CUevent event, CUstream stream) {
  FAKE_LOCK_INITIALISED();
  Event* e = find_event(s, event);
  Stream* st = find_stream(s, stream);
  if (!e || !st) return kInvalidHandle;
  e->record = ++s.records;
  e->done = false;
  Op op{Op::Mark};
  op.event = e;
  op.record = e->record;
  st->queue.push_back(op);
  return kSuccess;
}

// Waits for the event's latest record: runs its stream up to the marker. An event never
// recorded is complete, as in the driver.
CUresult cuEventSynchronize(CUevent event) {
  FAKE_LOCK_INITIALISED();
  Event* e = find_event(s, event);
  if (!e) return kInvalidHandle;
  if (e->record == 0 || e->done) return kSuccess;
  auto has_marker = [e](const Stream& st) {
    return std::any_of(st.queue.begin(), st.queue.end(),
                       [e](const Op& op) { return op.kind == Op::Mark && op.event == e && op.record == e->record; });
  };
  if (has_marker(s.default_stream)) {
    drain(s, s.default_stream, e, e->record);
  } else {
    for (Stream* st : s.streams) {
      if (!has_marker(*st)) continue;
      drain(s, *st, e, e->record);
      break;
    }
  }
  return kSuccess;
}

CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
  FAKE_LOCK_INITIALISED();
  if (!ms) return kInvalidValue;
  Event* a = find_event(s, start);
  Event* b = find_event(s, end);
  if (!a || !b || a->record == 0 || b->record == 0) return kInvalidHandle;
  if (!a->done || !b->done) return kNotReady;
  *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
  return kSuccess;
}

// Test hooks, not part of the driver API.
void kiln_fake_cuda_stats(kiln_fake_cuda_stats_t* out) {
  if (!out) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  *out = s.stats;
}

// Zeroes the copy and sync counters (the live counts stay: they are state, not history).
void kiln_fake_cuda_reset_counters() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.stats.h2d_copies = s.stats.d2h_copies = s.stats.d2d_copies = s.stats.stream_syncs = 0;
}

}  // extern "C"
