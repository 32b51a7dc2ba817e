// The CUDA driver, loaded at run time (dlopen of libcuda.so.1), so that one binary serves
// machines with and without a GPU. Only the driver API is used: it needs no toolkit on the
// user's machine, and its primary context is the one ONNX Runtime's CUDA provider (through
// the CUDA runtime) runs in, so streams and memory made here are valid there.
//
// The few declarations Kiln needs are written here (the driver ABI is stable and versioned
// by symbol suffix), so building needs no CUDA headers either.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory.h"

namespace kiln::cuda {

using DevicePtr = uint64_t;  // CUdeviceptr
using StreamHandle = void*;  // CUstream (== cudaStream_t)

// The oldest driver Kiln accepts: CUDA 12.0, what ONNX Runtime's CUDA 12 builds need.
constexpr int kMinDriverVersion = 12000;

struct DeviceInfo {
  int id = 0;
  std::string name;
  uint64_t total_memory = 0;  // bytes
  int major = 0;              // compute capability
  int minor = 0;
  int multiprocessors = 0;
  std::string pci_bus_id;
};

struct DeviceList {
  int driver_version = 0;  // e.g. 12040 for CUDA 12.4; 0 when no driver loads
  std::string library;     // the driver library loaded (or tried)
  std::vector<DeviceInfo> devices;
  std::string problem;     // why there are no devices: no driver, no device, driver too old
};

// The machine's CUDA devices, or why there are none. Never throws.
DeviceList devices();

// Why CUDA cannot be used here ("" when it can): the driver does not load, cuInit fails, no
// device, or the driver is older than kMinDriverVersion.
std::string problem();

// "12.4" for 12040.
std::string version_string(int driver_version);

// A device's primary context, retained for the lifetime of the object (the CUDA runtime,
// and so ONNX Runtime, uses the same context). Throws kiln::Error(ProviderUnavailable) when
// CUDA cannot be used or `id` does not exist.
class Device {
 public:
  explicit Device(int id);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  int id() const { return id_; }
  void* context() const { return context_; }

 private:
  int id_;
  int handle_ = 0;          // CUdevice
  void* context_ = nullptr;  // CUcontext
};

// Makes `device`'s context current on the calling thread while the scope lives. Never
// throws: a failure shows in the CUDA call that needed the context.
class ContextScope {
 public:
  explicit ContextScope(const Device& device) noexcept;
  ~ContextScope();
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  void* previous_ = nullptr;
  bool switched_ = false;
};

// A non-blocking stream (does not synchronise with the legacy default stream).
class Stream {
 public:
  explicit Stream(std::shared_ptr<Device> device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamHandle handle() const { return stream_; }
  int device() const { return device_->id(); }
  void copy_to_device(DevicePtr dst, const void* src, size_t bytes);  // async on this stream
  void copy_to_host(void* dst, DevicePtr src, size_t bytes);          // async on this stream
  void copy_device(DevicePtr dst, DevicePtr src, size_t bytes);       // async on this stream
  void synchronize();

 private:
  std::shared_ptr<Device> device_;
  StreamHandle stream_ = nullptr;
};

// A timing event on a stream.
class Event {
 public:
  explicit Event(std::shared_ptr<Device> device);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const Stream& stream);
  void synchronize();
  // Milliseconds between two recorded, completed events.
  static float elapsed_ms(const Event& start, const Event& end);

 private:
  std::shared_ptr<Device> device_;
  void* event_ = nullptr;
};

// Page-locked host memory (cuMemHostAlloc, portable across contexts): what makes copies to
// and from the device asynchronous and run at full bus bandwidth.
std::shared_ptr<BufferPool> pinned_pool(std::shared_ptr<Device> device, size_t max_free_per_class = 8);
// Device memory (cuMemAlloc); Buffer::data() holds the device address.
std::shared_ptr<BufferPool> device_pool(std::shared_ptr<Device> device, size_t max_free_per_class = 8);

inline DevicePtr device_ptr(const Buffer& b) { return reinterpret_cast<DevicePtr>(b.data()); }

// Free and total memory of `device`, in bytes.
void memory_info(const Device& device, uint64_t& free_bytes, uint64_t& total_bytes);

}  // namespace kiln::cuda
