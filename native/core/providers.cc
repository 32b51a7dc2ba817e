#include "providers.h"

#include <dlfcn.h>

#include <cstdlib>

#include "runtime.h"

namespace kiln {
namespace {

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string s;
  for (const auto& item : items) {
    if (!s.empty()) s += sep;
    s += item;
  }
  return s;
}

std::string library_lacks(const std::string& provider) {
  const Runtime& rt = Runtime::get();
  return "the ONNX Runtime library " + rt.library().path + " (" + rt.library().version + ") has no " + provider +
         " (it has " + join(rt.available_providers(), ", ") +
         "); point KILN_ORT_LIBRARY at an ONNX Runtime GPU build";
}

void append_cuda(OrtSessionOptions* options, const ProviderSpec& spec) {
  const OrtApi& a = ort::api();
  OrtCUDAProviderOptionsV2* raw = nullptr;
  ort::check(a.CreateCUDAProviderOptions(&raw), Code::ProviderUnavailable);
  ort::CudaOptionsPtr cuda(raw);
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : spec.options) {
    if (key == "user_compute_stream") {
      void* stream = reinterpret_cast<void*>(static_cast<uintptr_t>(std::strtoull(value.c_str(), nullptr, 0)));
      ort::check(a.UpdateCUDAProviderOptionsWithValue(cuda.get(), "user_compute_stream", stream),
                 Code::ProviderUnavailable);
      continue;
    }
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  if (!keys.empty()) {
    ort::check(a.UpdateCUDAProviderOptions(cuda.get(), keys.data(), values.data(), keys.size()),
               Code::InvalidArgument, "cuda provider options");
  }
  ort::check(a.SessionOptionsAppendExecutionProvider_CUDA_V2(options, cuda.get()), Code::ProviderUnavailable);
}

void append_tensorrt(OrtSessionOptions* options, const ProviderSpec& spec) {
  const OrtApi& a = ort::api();
  OrtTensorRTProviderOptionsV2* raw = nullptr;
  ort::check(a.CreateTensorRTProviderOptions(&raw), Code::ProviderUnavailable);
  ort::TensorRtOptionsPtr trt(raw);
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : spec.options) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  if (!keys.empty()) {
    ort::check(a.UpdateTensorRTProviderOptions(trt.get(), keys.data(), values.data(), keys.size()),
               Code::InvalidArgument, "tensorrt provider options");
  }
  ort::check(a.SessionOptionsAppendExecutionProvider_TensorRT_V2(options, trt.get()), Code::ProviderUnavailable);
}

}  // namespace

const char* ort_provider_name(const std::string& name) {
  if (name == "cpu") return "CPUExecutionProvider";
  if (name == "cuda") return "CUDAExecutionProvider";
  if (name == "tensorrt") return "TensorrtExecutionProvider";
  return "";
}

std::string cuda_driver_problem() {
  void* handle = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    return std::string("no NVIDIA driver: libcuda.so.1 cannot be loaded (") + (why ? why : "not found") + ")";
  }
  dlclose(handle);
  return "";
}

std::vector<std::string> append_providers(OrtSessionOptions* options, const std::vector<ProviderSpec>& specs,
                                          std::vector<std::string>& notes) {
  std::vector<std::string> used;
  if (specs.empty()) return {"CPUExecutionProvider"};
  for (const ProviderSpec& spec : specs) {
    const std::string ort_name = ort_provider_name(spec.name);
    if (spec.name == "cpu") {
      used.push_back(ort_name);
      return used;  // ORT's CPU provider is implicit and always last; nothing after it runs
    }
    if (ort_name.empty()) throw Error(Code::InvalidArgument, "unknown provider \"" + spec.name + "\"");
    std::string problem;
    if (!Runtime::get().has_provider(ort_name)) {
      problem = library_lacks(ort_name);
    } else {
      problem = cuda_driver_problem();
    }
    if (problem.empty()) {
      try {
        if (spec.name == "cuda") {
          append_cuda(options, spec);
        } else {
          append_tensorrt(options, spec);
        }
        used.push_back(ort_name);
        continue;
      } catch (const Error& e) {
        if (e.code() == Code::InvalidArgument) throw;
        problem = e.what();
      }
    }
    notes.push_back(spec.name + ": " + problem);
  }
  if (used.empty()) {
    throw Error(Code::ProviderUnavailable, "no requested execution provider is available: " + join(notes, "; "));
  }
  return used;
}

}  // namespace kiln
