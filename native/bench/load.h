// The harness's load generator: closed and open loop windows of requests against Kiln's core.
//
// Threads. Session::run is safe to call from several threads at once (ORT allows concurrent
// runs; the session's IoBinding pool, shape memory and buffer pools are locked), which is how
// Kiln itself runs a CPU model with several executor threads. So every caller shares one of
// the `sessions` (caller i uses session i mod n: more than one mirrors a GPU instance group,
// a session and a CUDA stream per instance) and keeps only its outputs to itself; the inputs
// are read-only and shared. Closed loop: one thread per caller, each calling the session
// directly. Open loop: the core's own Executor runs the requests on `open_loop_threads`
// workers, so the sending thread never waits for an answer and falls behind only when the
// machine does (counted in lateSends).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "inputs.h"
#include "session.h"
#include "stats.h"

namespace kiln::bench {

class LoadGenerator {
 public:
  using Clock = std::chrono::steady_clock;

  // `inputs` must outlive the generator.
  LoadGenerator(std::vector<std::shared_ptr<Session>> sessions, const Inputs& inputs, size_t open_loop_threads);

  // `requests` runs from one caller, timings discarded; throws the first failure.
  void warmup(int64_t requests);
  // One window; failed requests count in its errors. kiln::Error(InvalidArgument) for a
  // load or limit out of range.
  WindowResult window(const Load& load, const WindowLimit& limit);

  // One request on session `index` (mod their count); returns "" or the failure as "E_CODE: message".
  std::string request(size_t index) const;

 private:
  void run_once(size_t index, std::vector<OwnedTensor>& out) const;
  WindowResult closed(int concurrency, const WindowLimit& limit);
  WindowResult open(const Load& load, const WindowLimit& limit);
  // Scheduled send times from the window's start: every 1/rate s, or exponential gaps.
  std::vector<Clock::duration> schedule(const Load& load, const WindowLimit& limit);

  std::vector<std::shared_ptr<Session>> sessions_;
  const Inputs& inputs_;
  std::vector<Fetch> fetches_;
  size_t open_loop_threads_;
  uint64_t windows_ = 0;  // seeds each Poisson window differently, reproducibly
};

}  // namespace kiln::bench
