// The JS-facing native session: loads models off the JS thread, runs on the session's own
// executor threads (or synchronously on the caller's), delivers through AddonData.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "addon_data.h"
#include "convert.h"
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
  // A run finished: settles its promise and counts it done.
  void deliver(RunJob* job, Napi::Env env);

 private:
  // A method callable from JS, guarded (convert.h).
  template <Napi::Value (SessionWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value guarded_method(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return (this->*M)(info); });
  }

  void open(const Napi::CallbackInfo& info);
  static Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value metadata(const Napi::CallbackInfo& info);
  Napi::Value run(const Napi::CallbackInfo& info);
  Napi::Value run_sync(const Napi::CallbackInfo& info);
  Napi::Value run_batch(const Napi::CallbackInfo& info);
  Napi::Value submit(const Napi::CallbackInfo& info, bool batch);
  Napi::Value cancel(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value end_profiling(const Napi::CallbackInfo& info);

  void ensure_open(Napi::Env env) const;
  void finished(Napi::Env env);
  void release();

  AddonData* data_;
  std::shared_ptr<Session> session_;
  std::unique_ptr<Executor> executor_;
  size_t pending_ = 0;
  bool disposed_ = false;
  std::vector<Napi::Promise::Deferred> dispose_waiters_;
  std::unordered_map<uint32_t, RunJob*> cancellable_;
  std::unique_ptr<RunArgs> sync_args_;  // runSync's, reused so its vectors keep their capacity

  friend class AddonData;
};

}  // namespace kiln::napi
