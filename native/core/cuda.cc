#include "cuda.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <new>

#include "cuda_abi.h"
#include "error.h"

namespace kiln::cuda {
namespace {

using namespace abi;

struct Api {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDriverGetVersion)(int*);
  CUresult (*cuGetErrorName)(CUresult, const char**);
  CUresult (*cuGetErrorString)(CUresult, const char**);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetName)(char*, int, CUdevice);
  CUresult (*cuDeviceTotalMem)(size_t*, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuDeviceGetPCIBusId)(char*, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuMemGetInfo)(size_t*, size_t*);
  CUresult (*cuMemHostAlloc)(void**, size_t, unsigned);
  CUresult (*cuMemFreeHost)(void*);
  CUresult (*cuMemAlloc)(DevicePtr*, size_t);
  CUresult (*cuMemFree)(DevicePtr);
  CUresult (*cuMemcpyHtoDAsync)(DevicePtr, const void*, size_t, CUstream);
  CUresult (*cuMemcpyDtoHAsync)(void*, DevicePtr, size_t, CUstream);
  CUresult (*cuMemcpyDtoDAsync)(DevicePtr, DevicePtr, size_t, CUstream);
  CUresult (*cuStreamCreate)(CUstream*, unsigned);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuEventCreate)(CUevent*, unsigned);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float*, CUevent, CUevent);
};

struct Loaded {
  Api api{};
  std::string library;
  int driver_version = 0;
  std::string problem;  // "" when usable
};

std::string result_name(const Api& api, CUresult r) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (api.cuGetErrorName) api.cuGetErrorName(r, &name);
  if (api.cuGetErrorString) api.cuGetErrorString(r, &text);
  std::string s = name ? name : "CUDA error " + std::to_string(r);
  if (text) s += std::string(" (") + text + ")";
  return s;
}

template <typename F>
bool resolve(void* handle, const char* symbol, F& fn, std::string& problem) {
  fn = reinterpret_cast<F>(dlsym(handle, symbol));
  if (!fn && problem.empty()) problem = "the library lacks " + std::string(symbol) + ": not an NVIDIA driver, or one too old";
  return fn != nullptr;
}

Loaded load() {
  Loaded l;
  const char* override_path = std::getenv("KILN_CUDA_LIBRARY");
  l.library = override_path && *override_path ? override_path : "libcuda.so.1";
  // Never unloaded: ORT's CUDA provider holds the same library for the process's lifetime.
  void* h = dlopen(l.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* why = dlerror();
    l.problem = "no NVIDIA driver: " + l.library + " cannot be loaded (" + (why ? why : "not found") + ")";
    return l;
  }
  Api& a = l.api;
  std::string& p = l.problem;
  resolve(h, "cuInit", a.cuInit, p);
  resolve(h, "cuDriverGetVersion", a.cuDriverGetVersion, p);
  resolve(h, "cuGetErrorName", a.cuGetErrorName, p);
  resolve(h, "cuGetErrorString", a.cuGetErrorString, p);
  resolve(h, "cuDeviceGetCount", a.cuDeviceGetCount, p);
  resolve(h, "cuDeviceGet", a.cuDeviceGet, p);
  resolve(h, "cuDeviceGetName", a.cuDeviceGetName, p);
  resolve(h, "cuDeviceTotalMem_v2", a.cuDeviceTotalMem, p);
  resolve(h, "cuDeviceGetAttribute", a.cuDeviceGetAttribute, p);
  resolve(h, "cuDeviceGetPCIBusId", a.cuDeviceGetPCIBusId, p);
  resolve(h, "cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain, p);
  resolve(h, "cuDevicePrimaryCtxRelease_v2", a.cuDevicePrimaryCtxRelease, p);
  resolve(h, "cuCtxGetCurrent", a.cuCtxGetCurrent, p);
  resolve(h, "cuCtxSetCurrent", a.cuCtxSetCurrent, p);
  resolve(h, "cuMemGetInfo_v2", a.cuMemGetInfo, p);
  resolve(h, "cuMemHostAlloc", a.cuMemHostAlloc, p);
  resolve(h, "cuMemFreeHost", a.cuMemFreeHost, p);
  resolve(h, "cuMemAlloc_v2", a.cuMemAlloc, p);
  resolve(h, "cuMemFree_v2", a.cuMemFree, p);
  resolve(h, "cuMemcpyHtoDAsync_v2", a.cuMemcpyHtoDAsync, p);
  resolve(h, "cuMemcpyDtoHAsync_v2", a.cuMemcpyDtoHAsync, p);
  resolve(h, "cuMemcpyDtoDAsync_v2", a.cuMemcpyDtoDAsync, p);
  resolve(h, "cuStreamCreate", a.cuStreamCreate, p);
  resolve(h, "cuStreamDestroy_v2", a.cuStreamDestroy, p);
  resolve(h, "cuStreamSynchronize", a.cuStreamSynchronize, p);
  resolve(h, "cuEventCreate", a.cuEventCreate, p);
  resolve(h, "cuEventDestroy_v2", a.cuEventDestroy, p);
  resolve(h, "cuEventRecord", a.cuEventRecord, p);
  resolve(h, "cuEventSynchronize", a.cuEventSynchronize, p);
  resolve(h, "cuEventElapsedTime", a.cuEventElapsedTime, p);
  if (!p.empty()) return l;
  if (CUresult r = a.cuDriverGetVersion(&l.driver_version); r != kSuccess) {
    p = "the NVIDIA driver cannot report its version: " + result_name(a, r);
    return l;
  }
  if (l.driver_version < kMinDriverVersion) {
    p = "the NVIDIA driver is too old: it supports CUDA " + version_string(l.driver_version) + ", Kiln needs " +
        version_string(kMinDriverVersion) + " or newer";
    return l;
  }
  if (CUresult r = a.cuInit(0); r != kSuccess) {
    p = (r == kNoDevice ? "no CUDA device: " : "the NVIDIA driver failed to initialise: ") + result_name(a, r);
    return l;
  }
  int count = 0;
  if (CUresult r = a.cuDeviceGetCount(&count); r != kSuccess || count == 0) {
    p = "no CUDA device" + (r != kSuccess ? ": " + result_name(a, r) : std::string(" is visible"));
  }
  return l;
}

const Loaded& loaded() {
  static const Loaded l = load();
  return l;
}

const Api& api() {
  const Loaded& l = loaded();
  if (!l.problem.empty()) throw Error(Code::ProviderUnavailable, "CUDA is unavailable: " + l.problem);
  return l.api;
}

void check(CUresult r, const char* what) {
  if (r == kSuccess) return;
  throw Error(Code::ProviderUnavailable, std::string("CUDA: ") + what + " failed: " + result_name(loaded().api, r));
}

CUdevice device_handle(int id) {
  const Api& a = api();
  int count = 0;
  check(a.cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (id < 0 || id >= count) {
    throw Error(Code::ProviderUnavailable, "CUDA device " + std::to_string(id) + " does not exist (this machine has " +
                                               std::to_string(count) + ")");
  }
  CUdevice d = 0;
  check(a.cuDeviceGet(&d, id), "cuDeviceGet");
  return d;
}

}  // namespace

std::string version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

std::string problem() { return loaded().problem; }

DeviceList devices() {
  const Loaded& l = loaded();
  DeviceList list;
  list.library = l.library;
  list.driver_version = l.driver_version;
  list.problem = l.problem;
  if (!l.problem.empty()) return list;
  const Api& a = l.api;
  int count = 0;
  if (a.cuDeviceGetCount(&count) != kSuccess) count = 0;
  for (int i = 0; i < count; ++i) {
    CUdevice d = 0;
    if (a.cuDeviceGet(&d, i) != kSuccess) continue;
    DeviceInfo info;
    info.id = i;
    char name[256] = {0};
    if (a.cuDeviceGetName(name, sizeof(name) - 1, d) == kSuccess) info.name = name;
    size_t total = 0;
    if (a.cuDeviceTotalMem(&total, d) == kSuccess) info.total_memory = total;
    a.cuDeviceGetAttribute(&info.major, kAttrMajor, d);
    a.cuDeviceGetAttribute(&info.minor, kAttrMinor, d);
    a.cuDeviceGetAttribute(&info.multiprocessors, kAttrMultiprocessors, d);
    char bus[64] = {0};
    if (a.cuDeviceGetPCIBusId(bus, sizeof(bus) - 1, d) == kSuccess) info.pci_bus_id = bus;
    list.devices.push_back(std::move(info));
  }
  return list;
}

Device::Device(int id) : id_(id), handle_(device_handle(id)) {
  check(api().cuDevicePrimaryCtxRetain(&context_, handle_), "cuDevicePrimaryCtxRetain");
}

Device::~Device() { loaded().api.cuDevicePrimaryCtxRelease(handle_); }

ContextScope::ContextScope(const Device& device) noexcept {
  const Api& a = loaded().api;
  if (a.cuCtxGetCurrent(&previous_) == kSuccess && previous_ == device.context()) return;
  switched_ = a.cuCtxSetCurrent(device.context()) == kSuccess;
}

ContextScope::~ContextScope() {
  if (switched_) loaded().api.cuCtxSetCurrent(previous_);
}

Stream::Stream(std::shared_ptr<Device> device) : device_(std::move(device)) {
  ContextScope scope(*device_);
  check(api().cuStreamCreate(&stream_, kStreamNonBlocking), "cuStreamCreate");
}

Stream::~Stream() {
  if (!stream_) return;
  ContextScope scope(*device_);
  const Api& a = loaded().api;
  a.cuStreamSynchronize(stream_);
  a.cuStreamDestroy(stream_);
}

void Stream::copy_to_device(DevicePtr dst, const void* src, size_t bytes) {
  ContextScope scope(*device_);
  if (bytes) check(api().cuMemcpyHtoDAsync(dst, src, bytes, stream_), "cuMemcpyHtoDAsync");
}

void Stream::copy_to_host(void* dst, DevicePtr src, size_t bytes) {
  ContextScope scope(*device_);
  if (bytes) check(api().cuMemcpyDtoHAsync(dst, src, bytes, stream_), "cuMemcpyDtoHAsync");
}

void Stream::copy_device(DevicePtr dst, DevicePtr src, size_t bytes) {
  ContextScope scope(*device_);
  if (bytes) check(api().cuMemcpyDtoDAsync(dst, src, bytes, stream_), "cuMemcpyDtoDAsync");
}

void Stream::synchronize() {
  ContextScope scope(*device_);
  check(api().cuStreamSynchronize(stream_), "cuStreamSynchronize");
}

Event::Event(std::shared_ptr<Device> device) : device_(std::move(device)) {
  ContextScope scope(*device_);
  check(api().cuEventCreate(&event_, 0), "cuEventCreate");
}

Event::~Event() {
  if (event_) loaded().api.cuEventDestroy(event_);
}

void Event::record(const Stream& stream) {
  ContextScope scope(*device_);
  check(api().cuEventRecord(event_, stream.handle()), "cuEventRecord");
}

void Event::synchronize() { check(api().cuEventSynchronize(event_), "cuEventSynchronize"); }

float Event::elapsed_ms(const Event& start, const Event& end) {
  float ms = 0;
  check(api().cuEventElapsedTime(&ms, start.event_, end.event_), "cuEventElapsedTime");
  return ms;
}

std::shared_ptr<BufferPool> pinned_pool(std::shared_ptr<Device> device, size_t max_free_per_class) {
  Allocator alloc;
  alloc.allocate = [device](size_t bytes) -> void* {
    ContextScope scope(*device);
    void* p = nullptr;
    if (api().cuMemHostAlloc(&p, bytes, kHostAllocPortable) != kSuccess) throw std::bad_alloc();
    return p;
  };
  alloc.release = [device](void* p) { loaded().api.cuMemFreeHost(p); };
  return BufferPool::create(std::move(alloc), max_free_per_class);
}

std::shared_ptr<BufferPool> device_pool(std::shared_ptr<Device> device, size_t max_free_per_class) {
  Allocator alloc;
  alloc.allocate = [device](size_t bytes) -> void* {
    ContextScope scope(*device);
    DevicePtr p = 0;
    if (api().cuMemAlloc(&p, bytes) != kSuccess) throw std::bad_alloc();
    return reinterpret_cast<void*>(p);
  };
  alloc.release = [device](void* p) {
    ContextScope scope(*device);
    loaded().api.cuMemFree(reinterpret_cast<DevicePtr>(p));
  };
  return BufferPool::create(std::move(alloc), max_free_per_class);
}

void memory_info(const Device& device, uint64_t& free_bytes, uint64_t& total_bytes) {
  ContextScope scope(device);
  size_t f = 0, t = 0;
  check(api().cuMemGetInfo(&f, &t), "cuMemGetInfo");
  free_bytes = f;
  total_bytes = t;
}

}  // namespace kiln::cuda
