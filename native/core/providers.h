// Execution providers: appended to session options in the caller's preference order, with
// fallback to the next one when a provider cannot be had.
#pragma once

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
std::vector<std::string> append_providers(OrtSessionOptions* options, const std::vector<ProviderSpec>& specs,
                                          std::vector<std::string>& notes);

// Why the CUDA driver cannot be used on this machine, or "" when libcuda loads.
std::string cuda_driver_problem();

}  // namespace kiln
