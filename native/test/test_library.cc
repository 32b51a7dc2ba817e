// Loader errors: each case needs a process where ORT was never loaded, so this is its own
// executable and loads the real library last.
#include "check.h"
#include "runtime.h"

using namespace kiln;

TEST(api_before_load_is_a_clear_error) {
  CHECK(!ort::library_loaded());
  CHECK_THROWS(ort::api(), Code::ProviderUnavailable, "not loaded");
  CHECK_THROWS(Runtime::get(), Code::ProviderUnavailable, "not initialised");
}

TEST(missing_library_names_the_path_and_the_fix) {
  CHECK_THROWS(ort::load_library("/nonexistent/libonnxruntime.so.1"), Code::ProviderUnavailable,
               "cannot load ONNX Runtime library /nonexistent/libonnxruntime.so.1");
  CHECK_THROWS(ort::load_library(""), Code::ProviderUnavailable, "KILN_ORT_LIBRARY");
}

TEST(a_library_without_ort_symbols_is_rejected) {
  CHECK_THROWS(ort::load_library("libm.so.6"), Code::ProviderUnavailable, "not an ONNX Runtime library");
}

TEST(real_library_loads_once_with_negotiated_api) {
  RuntimeConfig c;
  c.library_path = kiln_test::env_or("KILN_ORT_LIBRARY", "");
  Runtime& rt = Runtime::init(c);
  CHECK(rt.library().api_version == ORT_API_VERSION);
  CHECK(!rt.library().version.empty());
  CHECK(rt.has_provider("CPUExecutionProvider"));
  CHECK(&Runtime::init(c) == &rt);
  CHECK_THROWS(ort::load_library("/some/other/libonnxruntime.so"), Code::InvalidArgument, "already loaded");
}
