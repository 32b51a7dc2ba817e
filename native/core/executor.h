// Kiln's own worker threads. A job runs on an executor thread, then goes to a completion
// queue that wakes its consumer (the JS thread) once for however many jobs finished.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

class Job {
 public:
  virtual ~Job() = default;
  // Runs on an executor thread; must not throw (failures are recorded in the job).
  virtual void execute() noexcept = 0;
};

class CompletionQueue {
 public:
  // `notify` is called (from the pushing thread) when a push finds the queue not yet
  // signalled; the consumer drains everything in one go.
  explicit CompletionQueue(std::function<void()> notify) : notify_(std::move(notify)) {}
  void push(Job* job);
  // Moves every finished job into `out` (appending) and re-arms the signal.
  void drain(std::vector<Job*>& out);
  // While the consumer polls (drains on its own schedule), pushes do not notify. Switching
  // polling off re-arms the signal for jobs that arrive later; the caller drains after it,
  // so none is left behind.
  void set_polled(bool polled);

 private:
  std::function<void()> notify_;
  mutable std::mutex mutex_;
  std::vector<Job*> jobs_;
  bool signalled_ = false;
  bool polled_ = false;
};

class Executor {
 public:
  static constexpr size_t kMaxThreads = 1024;

  // `threads`: 1 to kMaxThreads, else kiln::Error(InvalidArgument). `spin_us`: how long an
  // idle worker polls for new work before it sleeps; trades a little CPU for not paying a
  // futex wake-up on every request of a busy caller.
  Executor(size_t threads, CompletionQueue& done, unsigned spin_us = 0);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `job`; false when the executor is closed (the job was not taken).
  bool submit(Job* job);
  // Removes `job` if it has not started; true when removed (the caller owns it again).
  bool cancel(Job* job);
  // Stops taking work and returns the jobs that never started; running jobs finish and go
  // to the completion queue. Idempotent.
  std::vector<Job*> close();
  // close(), then waits for the workers to exit.
  std::vector<Job*> close_and_join();
  size_t queued() const;

 private:
  void work();

  CompletionQueue& done_;
  const unsigned spin_us_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job*> queue_;
  std::atomic<size_t> pending_{0};
  // Workers polling for work right now; submit() wakes a sleeper only for jobs beyond them.
  std::atomic<size_t> spinners_{0};
  size_t sleepers_ = 0;
  bool closed_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace kiln
