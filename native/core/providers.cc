#include "providers.h"

#include <algorithm>
#include <cstdlib>

#include "cuda.h"
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

// Checks the status of setting a provider's options: a provider library that cannot be
// loaded (ORT loads it on first use) makes the provider unavailable; anything else is the
// caller's option being refused.
void check_options(OrtStatus* status, const char* what) {
  if (!status) return;
  const std::string message = ort::api().GetErrorMessage(status);
  const bool unavailable = message.find("Failed to load library") != std::string::npos ||
                           message.find("cannot open shared object") != std::string::npos;
  ort::check(status, unavailable ? Code::ProviderUnavailable : Code::InvalidArgument, what);
}

void append_cuda(OrtSessionOptions* options, const ProviderSpec& spec, void* kiln_stream) {
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
    check_options(a.UpdateCUDAProviderOptions(cuda.get(), keys.data(), values.data(), keys.size()), "cuda provider options");
  }
  if (kiln_stream) {
    ort::check(a.UpdateCUDAProviderOptionsWithValue(cuda.get(), "user_compute_stream", kiln_stream),
               Code::ProviderUnavailable);
  }
  ort::check(a.SessionOptionsAppendExecutionProvider_CUDA_V2(options, cuda.get()), Code::ProviderUnavailable);
}

void append_tensorrt(OrtSessionOptions* options, const ProviderSpec& spec, void* kiln_stream) {
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
    check_options(a.UpdateTensorRTProviderOptions(trt.get(), keys.data(), values.data(), keys.size()),
                  "tensorrt provider options");
  }
  if (kiln_stream) {
    ort::check(a.UpdateTensorRTProviderOptionsWithValue(trt.get(), "user_compute_stream", kiln_stream),
               Code::ProviderUnavailable);
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

int provider_device(const ProviderSpec& spec) {
  for (const auto& [key, value] : spec.options) {
    if (key == "device_id") return std::atoi(value.c_str());
  }
  return 0;
}

bool is_gpu_provider(const std::string& ort_name) {
  return ort_name == "CUDAExecutionProvider" || ort_name == "TensorrtExecutionProvider";
}

std::vector<std::string> append_providers(OrtSessionOptions* options, const std::vector<ProviderSpec>& specs,
                                          std::vector<std::string>& notes,
                                          const std::function<void*(const ProviderSpec&)>& stream_for) {
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
      problem = cuda::problem();
    }
    if (problem.empty()) {
      try {
        const bool own_stream = std::any_of(spec.options.begin(), spec.options.end(),
                                            [](const auto& kv) { return kv.first == "user_compute_stream"; });
        void* stream = !own_stream && stream_for ? stream_for(spec) : nullptr;
        if (spec.name == "cuda") {
          append_cuda(options, spec, stream);
        } else {
          append_tensorrt(options, spec, stream);
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
