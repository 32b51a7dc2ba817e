#include "addon_data.h"

#include "convert.h"
#include "session_wrap.h"

namespace kiln::napi {

AddonData::AddonData(Napi::Env env)
    : env_(env), completions_([this] { napi_call_threadsafe_function(wake_, nullptr, napi_tsfn_nonblocking); }) {
  napi_value name;
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_string_utf8(env, "kiln.completions", NAPI_AUTO_LENGTH, &name));
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr,
                                                                 this, &AddonData::drain, &wake_));
  NAPI_THROW_IF_FAILED_VOID(env, napi_unref_threadsafe_function(env, wake_));
  NAPI_THROW_IF_FAILED_VOID(env, napi_add_env_cleanup_hook(env, &AddonData::teardown, this));
}

AddonData::~AddonData() { napi_remove_env_cleanup_hook(env_, &AddonData::teardown, this); }

Executor& AddonData::loader() {
  if (!loader_) loader_ = std::make_unique<Executor>(2, completions_);
  return *loader_;
}

void AddonData::job_started() {
  if (in_flight_++ == 0) napi_ref_threadsafe_function(env_, wake_);
}

void AddonData::job_finished() {
  if (--in_flight_ == 0) napi_unref_threadsafe_function(env_, wake_);
}

void AddonData::drain(napi_env env, napi_value, void* context, void*) {
  if (!env) return;  // the function is being torn down
  static_cast<AddonData*>(context)->deliver(Napi::Env(env));
}

void AddonData::poll(Napi::Env env, bool keep_polling) {
  completions_.set_polled(keep_polling);
  deliver(env);
}

Napi::Promise JsJob::promise(Napi::Env env) {
  deferred_.emplace(env);
  return deferred_->Promise();
}

// `settled_` is set first: a deferred is released by the call that settles it, and must never
// be used again even when that call failed.
void JsJob::resolve(Napi::Value value) {
  if (settled_ || !deferred_) return;
  settled_ = true;
  deferred_->Resolve(value);
}

void JsJob::reject(Napi::Value error) {
  if (settled_ || !deferred_) return;
  settled_ = true;
  deferred_->Reject(error);
}

// Completes `job`; whatever fails on the way rejects its promise with a coded error instead,
// so that no caller waits forever.
void AddonData::settle(Napi::Env env, JsJob& job) {
  try {
    guarded(env, [&] { job.complete(env); });
  } catch (const Napi::Error& e) {
    job.reject(e.Value());
  }
  // Only a job that settled nothing gets this error: building it costs a JS Error per run.
  if (!job.settled()) job.reject(make_error(env, Code::Ort, "internal error: a finished job delivered no result").Value());
}

void AddonData::deliver(Napi::Env e) {
  std::vector<Job*>& done = scratch_;
  completions_.drain(done);
  for (Job* job : done) {
    auto* js = static_cast<JsJob*>(job);
    try {
      Napi::HandleScope scope(e);
      settle(e, *js);
    } catch (...) {
      // Settling fails only when the environment is terminating (a worker exiting): nobody
      // is left to receive the result, and the other completions must still be released.
    }
    delete js;
    job_finished();
  }
  done.clear();
}

// The environment is going away (worker exit, process exit): stop every executor, waiting
// for runs in flight, and drop results nobody can receive any more.
void AddonData::teardown(void* arg) {
  auto* self = static_cast<AddonData*>(arg);
  self->tearing_down_ = true;
  std::vector<Job*> orphans;
  for (SessionWrap* s : std::set<SessionWrap*>(self->sessions_)) s->shutdown(orphans);
  if (self->loader_) {
    std::vector<Job*> unstarted = self->loader_->close_and_join();
    orphans.insert(orphans.end(), unstarted.begin(), unstarted.end());
  }
  self->completions_.drain(orphans);
  for (Job* job : orphans) delete job;
  napi_release_threadsafe_function(self->wake_, napi_tsfn_abort);
}

}  // namespace kiln::napi
