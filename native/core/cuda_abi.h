// The CUDA driver API's types and the few constants Kiln uses, as the driver's ABI has them
// (values from the driver's cuda.h), so that nothing needs CUDA headers to build. Shared by
// the loader (cuda.cc) and the fake driver the tests use (native/test/fake_cuda.cc).
#pragma once

#include <cstdint>

namespace kiln::cuda::abi {

using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUstream = void*;
using CUevent = void*;
using CUdeviceptr = unsigned long long;

constexpr CUresult kSuccess = 0;
constexpr CUresult kNoDevice = 100;              // CUDA_ERROR_NO_DEVICE
constexpr int kAttrMultiprocessors = 16;         // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
constexpr int kAttrMajor = 75;                   // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kAttrMinor = 76;                   // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
constexpr unsigned kHostAllocPortable = 1;       // CU_MEMHOSTALLOC_PORTABLE
constexpr unsigned kStreamNonBlocking = 1;       // CU_STREAM_NON_BLOCKING

}  // namespace kiln::cuda::abi
