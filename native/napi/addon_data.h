// Per-environment state (the addon is context-aware: each worker_thread has its own): the
// completion queue that executor threads push to, the one thread-safe function that wakes
// this environment's JS thread, and the live sessions that teardown must stop.
#pragma once

#include <napi.h>

#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "executor.h"

namespace kiln::napi {

class SessionWrap;

// A job whose result settles a promise on the JS thread.
class JsJob : public Job {
 public:
  // The job's promise, created once its arguments are read (a call that throws instead
  // leaves no promise behind unsettled).
  Napi::Promise promise(Napi::Env env);
  // Delivers the result on the JS thread through resolve() or reject(), then the job is
  // deleted. If it throws or settles nothing, AddonData rejects the promise instead.
  virtual void complete(Napi::Env env) = 0;
  // Each settles the promise if nothing has yet; later calls do nothing.
  void resolve(Napi::Value value);
  void reject(Napi::Value error);
  bool settled() const { return settled_; }

 private:
  std::optional<Napi::Promise::Deferred> deferred_;
  bool settled_ = false;
};

class AddonData {
 public:
  explicit AddonData(Napi::Env env);
  ~AddonData();

  static AddonData& of(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

  CompletionQueue& completions() { return completions_; }
  Executor& loader();  // runs model loads off the JS thread

  // Every job handed to an executor is counted until delivered: the thread-safe function
  // keeps the event loop alive only while something is in flight.
  void job_started();
  void job_finished();

  // Delivers every finished job now, on the JS thread; `keep_polling` says whether the JS
  // thread will call again soon (workers then skip the wake-up signal).
  void poll(Napi::Env env, bool keep_polling);

  void add_session(SessionWrap* s) { sessions_.insert(s); }
  void remove_session(SessionWrap* s) { sessions_.erase(s); }

  Napi::FunctionReference session_constructor;
  bool tearing_down() const { return tearing_down_; }

 private:
  static void drain(napi_env env, napi_value, void* context, void*);
  void deliver(Napi::Env env);
  static void settle(Napi::Env env, JsJob& job);
  static void teardown(void* self);

  napi_env env_;
  napi_threadsafe_function wake_ = nullptr;
  CompletionQueue completions_;
  std::unique_ptr<Executor> loader_;
  std::set<SessionWrap*> sessions_;
  size_t in_flight_ = 0;
  bool tearing_down_ = false;
  std::vector<Job*> scratch_;
};

}  // namespace kiln::napi
