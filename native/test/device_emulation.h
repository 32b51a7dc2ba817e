// Test seam: the core's device IO path on a machine without a GPU. A session loaded on ORT's
// CPU provider is given device IO state for a CUDA device of a driver whose device memory is
// host memory (fake_cuda.cc), with that memory described to ORT as host memory: every step of
// the device path (staging, copies, one synchronisation) runs, and ORT computes in between.
#pragma once

#include <memory>

#include "session_detail.h"

namespace kiln::testing {

struct DeviceEmulation {
  static void attach(Session& session, int device) {
    auto gpu = std::make_unique<Session::Gpu>(device, false);
    OrtMemoryInfo* info = nullptr;
    ort::check(ort::api().CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &info));
    gpu->memory_info.reset(info);
    session.gpu_ = std::move(gpu);
  }
};

}  // namespace kiln::testing
