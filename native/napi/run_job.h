// One run's arguments converted from JS, and the asynchronous job that executes them on a
// session's executor. Its inputs stay referenced (never copied) until it is delivered.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "addon_data.h"
#include "batch_run.h"
#include "error.h"
#include "ort/handles.h"

namespace kiln::napi {

class SessionWrap;

// The core's run and the JS values it borrows.
struct RunArgs {
  BatchRun run;
  std::vector<napi_value> feed_values;  // every request's feeds, kept alive by async runs
  // Per fetch: the caller's TypedArray, or an ArrayBuffer Kiln allocated for an output whose
  // shape is known before the run (ORT writes straight into JS memory: no copy, and none of
  // the cost of an external buffer), or null when ORT allocates.
  std::vector<napi_value> output_values;

  // Reads the arguments of run and runSync (`batch` false) or runBatch for `session`.
  void read(const Napi::CallbackInfo& info, std::shared_ptr<const Session> session, bool batch);
  // [data, dims, ...] per fetch, from the run's outputs; `outputs`: output_values as they
  // are now (an async run reads them back from its references).
  Napi::Value results(Napi::Env env, const std::vector<napi_value>& outputs);
};

class RunJob : public JsJob {
 public:
  explicit RunJob(SessionWrap* owner);
  ~RunJob() override;
  RunJob(const RunJob&) = delete;
  RunJob& operator=(const RunJob&) = delete;

  // Reads the arguments and references their JS values until the job is deleted.
  void read(const Napi::CallbackInfo& info, std::shared_ptr<const Session> session, bool batch);
  // Gives the run ORT run options so that cancel() can end it while it runs.
  void make_cancellable(uint32_t id);
  bool cancellable() const { return options_ != nullptr; }
  uint32_t cancel_id() const { return cancel_id_; }
  // Marks the run aborted: it is answered E_ABORTED whatever it computes; a running one is
  // asked to terminate.
  void abort();

  void execute() noexcept override;
  void complete(Napi::Env env) override;
  // Settles the promise with the run's results and timings, or its error.
  void settle(Napi::Env env);

 private:
  // The first input whose ArrayBuffer is detached now, if any.
  const std::string* detached_input(napi_env env) const;

  napi_env env_ = nullptr;
  SessionWrap* owner_;
  RunArgs args_;
  std::vector<napi_ref> refs_;  // feeds, then one per fetch (null when ORT allocates)
  ort::RunOptionsPtr options_;  // only for cancellable runs
  uint32_t cancel_id_ = 0;
  bool aborted_ = false;
  bool failed_ = false;
  Code code_ = Code::Ort;
  std::string message_;
};

}  // namespace kiln::napi
