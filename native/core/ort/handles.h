// RAII for ORT handles and OrtStatus -> kiln::Error.
#pragma once

#include <memory>
#include <string>

#include "error.h"
#include "ort/library.h"

namespace kiln::ort {

// Maps an ORT status code to Kiln's; `context` prefixes the message (e.g. the model path).
Code code_for(OrtErrorCode code);

// Throws kiln::Error when `status` is not OK (and releases it).
void check(OrtStatus* status, Code fallback = Code::Ort, const std::string& context = {});

#define KILN_ORT_HANDLE(Type)                                      \
  struct Type##Deleter {                                           \
    void operator()(Ort##Type* p) const { api().Release##Type(p); } \
  };                                                               \
  using Type##Ptr = std::unique_ptr<Ort##Type, Type##Deleter>;

KILN_ORT_HANDLE(Env)
KILN_ORT_HANDLE(Session)
KILN_ORT_HANDLE(SessionOptions)
KILN_ORT_HANDLE(Value)
KILN_ORT_HANDLE(IoBinding)
KILN_ORT_HANDLE(MemoryInfo)
KILN_ORT_HANDLE(RunOptions)
KILN_ORT_HANDLE(TypeInfo)
KILN_ORT_HANDLE(TensorTypeAndShapeInfo)
KILN_ORT_HANDLE(ThreadingOptions)
#undef KILN_ORT_HANDLE

struct CudaOptionsDeleter {
  void operator()(OrtCUDAProviderOptionsV2* p) const { api().ReleaseCUDAProviderOptions(p); }
};
using CudaOptionsPtr = std::unique_ptr<OrtCUDAProviderOptionsV2, CudaOptionsDeleter>;
struct TensorRtOptionsDeleter {
  void operator()(OrtTensorRTProviderOptionsV2* p) const { api().ReleaseTensorRTProviderOptions(p); }
};
using TensorRtOptionsPtr = std::unique_ptr<OrtTensorRTProviderOptionsV2, TensorRtOptionsDeleter>;

// Memory handed out by an OrtAllocator (names, bound output arrays).
struct AllocatorFree {
  OrtAllocator* allocator;
  void operator()(void* p) const {
    if (p) allocator->Free(allocator, p);
  }
};
template <typename T>
using AllocatedPtr = std::unique_ptr<T, AllocatorFree>;

}  // namespace kiln::ort
