#include "load_job.h"

#include "convert.h"

namespace kiln::napi {
namespace {

std::vector<std::pair<std::string, std::string>> read_pairs(const Napi::Value& v) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Array kv = a.Get(i).As<Napi::Array>();
    out.emplace_back(kv.Get(0u).ToString().Utf8Value(), kv.Get(1u).ToString().Utf8Value());
  }
  return out;
}

int read_int(const Napi::Object& o, const char* key, int fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

std::string read_string(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

// The TS layer validated the options (lib/options.ts); this only reads them.
void read_config(const Napi::Object& o, SessionConfig& c, ExecutorSettings& e) {
  Napi::Value providers = o.Get("providers");
  if (providers.IsArray()) {
    Napi::Array list = providers.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Object p = list.Get(i).As<Napi::Object>();
      c.providers.push_back({p.Get("name").ToString().Utf8Value(), read_pairs(p.Get("options"))});
    }
  }
  c.intra_op_threads = read_int(o, "intraOpThreads", -1);
  c.inter_op_threads = read_int(o, "interOpThreads", -1);
  c.spinning = o.Get("spinning").ToBoolean();
  c.graph_optimization_level = read_int(o, "graphOptimizationLevel", -1);
  c.parallel_execution = o.Get("parallelExecution").ToBoolean();
  c.optimized_model_path = read_string(o, "optimizedModelPath");
  c.profile_prefix = read_string(o, "profilePrefix");
  c.log_level = read_int(o, "logLevel", -1);
  c.config_entries = read_pairs(o.Get("configEntries"));
  c.device_io = !o.Get("deviceIo").IsBoolean() || o.Get("deviceIo").ToBoolean();
  e.threads = static_cast<size_t>(read_int(o, "executorThreads", 1));
  e.spin_us = static_cast<unsigned>(read_int(o, "executorSpinMicroseconds", 0));
}

}  // namespace

LoadJob::LoadJob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info[0].IsString()) {
    path_ = info[0].As<Napi::String>().Utf8Value();
    if (path_.find('\0') != std::string::npos) throw_error(env, Code::InvalidArgument, "model path contains a NUL byte");
  } else if (info[0].IsTypedArray()) {
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    from_bytes_ = true;
    const char* data = reinterpret_cast<const char*>(bytes.Data());
    bytes_.assign(data, data + bytes.ByteLength());
  } else {
    throw_error(env, Code::InvalidArgument, "model must be a path or a Uint8Array");
  }
  if (info[1].IsObject()) read_config(info[1].As<Napi::Object>(), config_, executor_);
}

void LoadJob::execute() noexcept {
  try {
    session_ = from_bytes_ ? Session::load_bytes(bytes_.data(), bytes_.size(), config_) : Session::load_file(path_, config_);
    std::vector<char>().swap(bytes_);
  } catch (const Error& e) {
    code_ = e.code();
    message_ = e.what();
  } catch (const std::exception& e) {
    code_ = Code::ModelLoad;
    message_ = e.what();
  }
}

void LoadJob::complete(Napi::Env env) {
  if (!session_) {
    reject(make_error(env, code_, message_).Value());
    return;
  }
  resolve(AddonData::of(env).session_constructor.New({Napi::External<LoadJob>::New(env, this)}));
}

}  // namespace kiln::napi
