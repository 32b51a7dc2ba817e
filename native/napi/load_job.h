// A model load, run on the environment's loader threads: the model's path or bytes and the
// session's configuration as JS gave them, and the loaded core session.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "addon_data.h"
#include "error.h"
#include "session.h"

namespace kiln::napi {

struct ExecutorSettings {
  size_t threads = 1;
  unsigned spin_us = 0;
};

class LoadJob : public JsJob {
 public:
  // Reads NativeSession.load's (model, config) arguments.
  explicit LoadJob(const Napi::CallbackInfo& info);
  void execute() noexcept override;
  // Resolves with a NativeSession made from this job (SessionWrap takes the session).
  void complete(Napi::Env env) override;

  std::shared_ptr<Session> take_session() { return std::move(session_); }
  const ExecutorSettings& executor() const { return executor_; }

 private:
  std::string path_;
  bool from_bytes_ = false;
  // The model's bytes, copied: the caller's buffer could be resized, transferred or written
  // while the loader thread parses it.
  std::vector<char> bytes_;
  SessionConfig config_;
  ExecutorSettings executor_;
  std::shared_ptr<Session> session_;
  Code code_ = Code::ModelLoad;
  std::string message_;
};

}  // namespace kiln::napi
