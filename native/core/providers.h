// Execution providers: appended to session options in the caller's preference order, with
// fallback to the next one when a provider cannot be had.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "session.h"

namespace kiln {

// ORT's name for a Kiln provider name ("cuda" -> "CUDAExecutionProvider"); "" if unknown.
const char* ort_provider_name(const std::string& name);

// Appends `specs` to `options`. Returns the ORT names of the providers appended (the CPU
// provider last, when it was listed). Providers that cannot be had are skipped with a reason
// added to `notes`; when none of the list can serve, throws kiln::Error(ProviderUnavailable)
// naming every reason.
//
// `stream_for` is asked, for a GPU provider about to be appended (and without a
// user_compute_stream of its own), for the CUDA stream the provider should compute on; null
// leaves the provider its own stream.
std::vector<std::string> append_providers(OrtSessionOptions* options, const std::vector<ProviderSpec>& specs,
                                          std::vector<std::string>& notes,
                                          const std::function<void*(const ProviderSpec&)>& stream_for = nullptr);

// The CUDA device a GPU provider spec names (its device_id option; 0 when absent).
int provider_device(const ProviderSpec& spec);
bool is_gpu_provider(const std::string& ort_name);

}  // namespace kiln
