#include "executor.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KILN_CPU_RELAX() _mm_pause()
#else
#define KILN_CPU_RELAX() std::this_thread::yield()
#endif

namespace kiln {

void CompletionQueue::push(Job* job) {
  bool notify;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(job);
    notify = !signalled_ && !polled_;
    signalled_ = signalled_ || notify;
  }
  if (notify && notify_) notify_();
}

void CompletionQueue::drain(std::vector<Job*>& out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out.insert(out.end(), jobs_.begin(), jobs_.end());
  jobs_.clear();
  signalled_ = false;
}

void CompletionQueue::set_polled(bool polled) {
  std::lock_guard<std::mutex> lock(mutex_);
  polled_ = polled;
}

Executor::Executor(size_t threads, CompletionQueue& done, unsigned spin_us) : done_(done), spin_us_(spin_us) {
  if (threads == 0 || threads > kMaxThreads) {
    throw Error(Code::InvalidArgument, "an executor runs 1 to " + std::to_string(kMaxThreads) + " threads, not " +
                                           std::to_string(static_cast<long long>(threads)));
  }
  threads_.reserve(threads);
  try {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  } catch (...) {
    close_and_join();  // the threads started so far (the destructor will not run)
    throw;
  }
}

Executor::~Executor() {
  // Unstarted jobs belong to whoever closed the executor; by now it must have.
  close_and_join();
}

bool Executor::submit(Job* job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return false;
  queue_.push_back(job);
  pending_.fetch_add(1, std::memory_order_release);
  // A spinning worker takes the job without a wake-up; waking a sleeper as well would move
  // work to a cold thread (its core's caches lack the model's weights) and cost a futex call.
  if (sleepers_ && pending_.load(std::memory_order_relaxed) > spinners_.load(std::memory_order_acquire)) {
    wake_.notify_one();
  }
  return true;
}

bool Executor::cancel(Job* job) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find(queue_.begin(), queue_.end(), job);
  if (it == queue_.end()) return false;
  queue_.erase(it);
  pending_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

std::vector<Job*> Executor::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  std::vector<Job*> unstarted(queue_.begin(), queue_.end());
  queue_.clear();
  pending_.store(0, std::memory_order_relaxed);
  wake_.notify_all();
  return unstarted;
}

std::vector<Job*> Executor::close_and_join() {
  std::vector<Job*> unstarted = close();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  return unstarted;
}

size_t Executor::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void Executor::work() {
  for (;;) {
    if (spin_us_) {
      spinners_.fetch_add(1, std::memory_order_acq_rel);
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
      while (pending_.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < until) {
        KILN_CPU_RELAX();
      }
      // Leaves the count before taking the lock: a job submitted from here on wakes a sleeper
      // if this worker is not enough for it, and this worker checks the queue under the lock.
      spinners_.fetch_sub(1, std::memory_order_acq_rel);
    }
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++sleepers_;
      wake_.wait(lock, [this] { return closed_ || !queue_.empty(); });
      --sleepers_;
      if (queue_.empty()) return;  // closed
      job = queue_.front();
      queue_.pop_front();
      pending_.fetch_sub(1, std::memory_order_relaxed);
    }
    job->execute();
    done_.push(job);
  }
}

}  // namespace kiln
