#include "session_wrap.h"

#include "load_job.h"
#include "run_job.h"
#include "runtime.h"

namespace kiln::napi {

Napi::Function SessionWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeSession",
                     {
                         StaticMethod<&guarded_call<&SessionWrap::load>>("load"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::metadata>>("metadata"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::run>>("run"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::run_batch>>("runBatch"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::run_sync>>("runSync"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::cancel>>("cancel"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::dispose>>("dispose"),
                         InstanceMethod<&SessionWrap::guarded_method<&SessionWrap::end_profiling>>("endProfiling"),
                     });
}

SessionWrap::SessionWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<SessionWrap>(info), data_(&AddonData::of(info.Env())) {
  guarded(info.Env(), [&] { open(info); });
}

void SessionWrap::open(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw_error(info.Env(), Code::InvalidArgument, "NativeSession is created by NativeSession.load()");
  }
  auto* job = info[0].As<Napi::External<LoadJob>>().Data();
  sync_args_ = std::make_unique<RunArgs>();
  executor_ = std::make_unique<Executor>(job->executor().threads, data_->completions(), job->executor().spin_us);
  session_ = job->take_session();
  data_->add_session(this);
}

SessionWrap::~SessionWrap() {
  // Unreachable while runs are pending (the wrapper is referenced), so nothing is queued.
  if (executor_) executor_->close_and_join();
  if (data_ && !data_->tearing_down()) data_->remove_session(this);
}

Napi::Value SessionWrap::load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData& data = AddonData::of(env);
  auto job = std::make_unique<LoadJob>(info);
  Napi::Promise promise = job->promise(env);
  if (!data.loader().submit(job.get())) throw_error(env, Code::Disposed, "the environment is shutting down");
  job.release();
  data.job_started();
  return promise;
}

Napi::Value SessionWrap::metadata(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  auto describe = [&](const std::vector<ValueInfo>& list) {
    Napi::Array arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const ValueInfo& v = list[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", v.name);
      o.Set("kind", v.kind);
      o.Set("type", static_cast<int>(v.type));
      o.Set("shape", Napi::Value(env, dims_array(env, v.shape)));
      Napi::Array sym = Napi::Array::New(env, v.symbolic.size());
      for (size_t d = 0; d < v.symbolic.size(); ++d) sym.Set(static_cast<uint32_t>(d), v.symbolic[d]);
      o.Set("symbolic", sym);
      arr.Set(static_cast<uint32_t>(i), o);
    }
    return arr;
  };
  Napi::Object m = Napi::Object::New(env);
  m.Set("inputs", describe(session_->inputs()));
  m.Set("outputs", describe(session_->outputs()));
  Napi::Array providers = Napi::Array::New(env);
  for (size_t i = 0; i < session_->providers().size(); ++i) providers.Set(static_cast<uint32_t>(i), session_->providers()[i]);
  m.Set("providers", providers);
  Napi::Array notes = Napi::Array::New(env);
  for (size_t i = 0; i < session_->provider_notes().size(); ++i) notes.Set(static_cast<uint32_t>(i), session_->provider_notes()[i]);
  m.Set("providerNotes", notes);
  m.Set("device", session_->device());
  return m;
}

void SessionWrap::ensure_open(Napi::Env env) const {
  if (disposed_ || !session_) throw_error(env, Code::Disposed, "session is disposed");
}

Napi::Value SessionWrap::run_sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  RunArgs& args = *sync_args_;
  // What the run leaves (the session, outputs written into JS memory, device inputs) must not
  // live on in these reused arguments, whichever way the call ends.
  struct Clear {
    BatchRun& run;
    ~Clear() { run.clear(); }
  } clear{args.run};
  args.read(info, session_, false);
  args.run.execute();
  return args.results(env, args.output_values);
}

// (fetches, cancelId | undefined, ...feeds) -> Promise<flat results>
Napi::Value SessionWrap::run(const Napi::CallbackInfo& info) { return submit(info, false); }

// (fetches, cancelId | undefined, requests, padding, ...each request's feeds) -> Promise<flat
// results of the whole batch>
Napi::Value SessionWrap::run_batch(const Napi::CallbackInfo& info) { return submit(info, true); }

Napi::Value SessionWrap::submit(const Napi::CallbackInfo& info, bool batch) {
  Napi::Env env = info.Env();
  ensure_open(env);
  auto job = std::make_unique<RunJob>(this);
  job->read(info, session_, batch);
  if (info[1].IsNumber()) job->make_cancellable(info[1].As<Napi::Number>().Uint32Value());
  Napi::Promise promise = job->promise(env);
  RunJob* raw = job.get();
  if (!executor_->submit(raw)) throw_error(env, Code::Disposed, "session is disposed");
  job.release();
  if (raw->cancellable()) cancellable_[raw->cancel_id()] = raw;
  if (pending_++ == 0) Ref();
  data_->job_started();
  return promise;
}

void SessionWrap::deliver(RunJob* job, Napi::Env env) {
  if (job->cancellable()) cancellable_.erase(job->cancel_id());
  try {
    job->settle(env);
  } catch (...) {
    finished(env);
    throw;
  }
  finished(env);
}

void SessionWrap::finished(Napi::Env env) {
  if (--pending_ == 0) {
    if (disposed_) {
      release();
      for (auto& d : dispose_waiters_) d.Resolve(env.Undefined());
      dispose_waiters_.clear();
    }
    Unref();
  }
}

Napi::Value SessionWrap::cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto it = cancellable_.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == cancellable_.end()) return Napi::Boolean::New(env, false);
  RunJob* job = it->second;
  if (executor_ && executor_->cancel(job)) {
    // Never started: answer now; its slot is never executed.
    cancellable_.erase(it);
    job->reject(make_error(env, Code::Aborted, "run was aborted before it started").Value());
    delete job;
    data_->job_finished();
    finished(env);
    return Napi::Boolean::New(env, true);
  }
  job->abort();
  return Napi::Boolean::New(env, true);
}

Napi::Value SessionWrap::dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (!disposed_) {
    disposed_ = true;
    std::vector<Job*> unstarted = executor_ ? executor_->close() : std::vector<Job*>{};
    for (Job* j : unstarted) {
      auto* job = static_cast<RunJob*>(j);
      if (job->cancellable()) cancellable_.erase(job->cancel_id());
      job->reject(make_error(env, Code::Disposed, "session was disposed before this run started").Value());
      delete job;
      data_->job_finished();
      --pending_;
    }
    if (pending_ == 0) {
      if (!unstarted.empty()) Unref();
      release();
    }
  }
  if (pending_ == 0) {
    deferred.Resolve(env.Undefined());
  } else {
    dispose_waiters_.push_back(deferred);
  }
  return deferred.Promise();
}

void SessionWrap::release() {
  if (executor_) executor_->close_and_join();
  executor_.reset();
  session_.reset();
  if (data_) data_->remove_session(this);
  data_ = nullptr;
}

void SessionWrap::shutdown(std::vector<Job*>& orphans) {
  if (executor_) {
    std::vector<Job*> unstarted = executor_->close_and_join();
    orphans.insert(orphans.end(), unstarted.begin(), unstarted.end());
  }
  executor_.reset();
  session_.reset();
  data_ = nullptr;
}

Napi::Value SessionWrap::end_profiling(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  return Napi::String::New(env, session_->end_profiling());
}

}  // namespace kiln::napi
