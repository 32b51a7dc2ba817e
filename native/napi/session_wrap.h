// The JS-facing native session: loads models off the JS thread, runs on the session's own
// executor threads (or synchronously on the caller's), delivers through AddonData.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "addon_data.h"
#include "memory.h"
#include "session.h"

namespace kiln::napi {

class RunJob;
struct RunArgs;

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit SessionWrap(const Napi::CallbackInfo& info);
  ~SessionWrap() override;

  // Environment teardown: stop the executor (waiting for running jobs), hand back the jobs
  // that never started.
  void shutdown(std::vector<Job*>& orphans);
  void deliver(RunJob* job, Napi::Env env);

 private:
  static Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value metadata(const Napi::CallbackInfo& info);
  Napi::Value run(const Napi::CallbackInfo& info);
  Napi::Value run_sync(const Napi::CallbackInfo& info);
  Napi::Value run_batch(const Napi::CallbackInfo& info);
  Napi::Value submit(const Napi::CallbackInfo& info, bool batch);
  Napi::Value cancel(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value end_profiling(const Napi::CallbackInfo& info);

  void parse(const Napi::CallbackInfo& info, RunArgs& args, bool batch) const;
  void parse_checked(const Napi::CallbackInfo& info, RunArgs& args, bool batch) const;
  Napi::Value results(Napi::Env env, RunArgs& args, std::vector<OwnedTensor>& out, const std::vector<napi_value>& prealloc) const;
  void ensure_open(Napi::Env env) const;
  void finished(Napi::Env env);
  void release();

  AddonData* data_;
  std::shared_ptr<Session> session_;
  std::unique_ptr<Executor> executor_;
  std::shared_ptr<BufferPool> pool_;  // batch buffers, shared with the jobs using them
  size_t pending_ = 0;
  bool disposed_ = false;
  std::vector<Napi::Promise::Deferred> dispose_waiters_;
  std::unordered_map<uint32_t, RunJob*> cancellable_;
  std::unique_ptr<RunArgs> sync_args_;  // runSync's, reused so its vectors keep their capacity
  std::vector<OwnedTensor> sync_out_;

  friend class RunJob;
  friend class AddonData;
};

}  // namespace kiln::napi
