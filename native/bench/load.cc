#include "load.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include "error.h"
#include "executor.h"

namespace kiln::bench {

namespace {

using Clock = LoadGenerator::Clock;

// A schedule longer than this is a mistake (a rate or window far beyond what can be run).
constexpr size_t kMaxScheduled = 5'000'000;
// A send more than this after it was due counts as late (lib/bench/loadgen.ts LATE_SEND_US).
constexpr double kLateSendUs = 1000;

double micros(Clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count() / 1000.0; }

struct Usage {
  double cpu_us;
  int64_t peak_rss_bytes;
};

Usage usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& t) { return t.tv_sec * 1e6 + t.tv_usec; };
  return {us(ru.ru_utime) + us(ru.ru_stime), static_cast<int64_t>(ru.ru_maxrss) * 1024};  // ru_maxrss: KiB on Linux
}

void finish(WindowResult& w, const Usage& before) {
  const Usage after = usage();
  w.cpu_us = after.cpu_us - before.cpu_us;
  w.peak_rss_bytes = after.peak_rss_bytes;
}

// One open-loop request: runs on an executor thread, timed from its scheduled send.
struct Request : Job {
  const LoadGenerator* generator = nullptr;
  size_t session = 0;
  Clock::time_point end;
  std::string error;
  void execute() noexcept override {
    error = generator->request(session);
    end = Clock::now();
  }
};

}  // namespace

LoadGenerator::LoadGenerator(std::vector<std::shared_ptr<Session>> sessions, const Inputs& inputs, size_t open_loop_threads)
    : sessions_(std::move(sessions)), inputs_(inputs), open_loop_threads_(std::max<size_t>(1, open_loop_threads)) {
  for (size_t i = 0; i < sessions_.front()->outputs().size(); ++i) fetches_.push_back({i, nullptr});
}

void LoadGenerator::run_once(size_t index, std::vector<OwnedTensor>& out) const {
  sessions_[index % sessions_.size()]->run(inputs_.feeds.data(), inputs_.feeds.size(), fetches_.data(), fetches_.size(), out);
  out.clear();  // released at once, as a caller done with its outputs would
}

std::string LoadGenerator::request(size_t index) const {
  thread_local std::vector<OwnedTensor> out;  // each thread keeps its own outputs
  try {
    run_once(index, out);
    return "";
  } catch (const Error& e) {
    out.clear();
    return std::string(code_name(e.code())) + ": " + e.what();
  } catch (const std::exception& e) {
    out.clear();
    return std::string("E_ORT: ") + e.what();
  }
}

void LoadGenerator::warmup(int64_t requests) {
  std::vector<OwnedTensor> out;
  for (int64_t i = 0; i < requests; ++i) run_once(0, out);
}

WindowResult LoadGenerator::window(const Load& load, const WindowLimit& limit) {
  if ((limit.ms > 0) == (limit.requests > 0) || !std::isfinite(limit.ms) || limit.ms < 0 || limit.requests < 0) {
    throw Error(Code::InvalidArgument, "a window ends after ms > 0 or after requests > 0 (one of them)");
  }
  if (load.kind == Load::Kind::Concurrency) {
    if (load.concurrency < 1 || load.concurrency > 4096) {
      throw Error(Code::InvalidArgument, "concurrency must be 1 to 4096, received " + std::to_string(load.concurrency));
    }
    return closed(load.concurrency, limit);
  }
  if (!(load.rate > 0) || !std::isfinite(load.rate)) throw Error(Code::InvalidArgument, "rate must be a positive number of requests per second");
  return open(load, limit);
}

WindowResult LoadGenerator::closed(int concurrency, const WindowLimit& limit) {
  std::vector<WindowResult> parts(concurrency);
  std::vector<Clock::time_point> last(concurrency);
  std::atomic<bool> go{false};
  std::atomic<bool> abandon{false};
  std::atomic<int64_t> tickets{limit.requests};
  Clock::time_point start, deadline;
  std::vector<std::thread> callers;
  try {
    for (int c = 0; c < concurrency; ++c) {
      callers.emplace_back([&, c] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        if (abandon.load(std::memory_order_acquire)) return;
        WindowResult& mine = parts[c];
        last[c] = start;
        for (;;) {
          // By count: exactly `requests` sends among all callers. By time: none after the deadline.
          if (limit.requests > 0 ? tickets.fetch_sub(1) <= 0 : Clock::now() >= deadline) break;
          const Clock::time_point t0 = Clock::now();
          const std::string error = request(static_cast<size_t>(c));
          const Clock::time_point t1 = Clock::now();
          if (error.empty()) mine.latencies_us.push_back(micros(t1 - t0));
          else mine.add_error(error);
          last[c] = t1;
        }
      });
    }
  } catch (const std::system_error& e) {
    // The system would not start another thread: release the ones started, then say so.
    abandon.store(true, std::memory_order_release);
    go.store(true, std::memory_order_release);
    for (std::thread& t : callers) t.join();
    throw Error(Code::InvalidArgument, "could not start " + std::to_string(concurrency) + " caller threads (" + std::to_string(callers.size()) +
                                           " started): " + e.what() + "; lower the concurrency");
  }
  const Usage before = usage();
  start = Clock::now();
  deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(limit.ms));
  go.store(true, std::memory_order_release);
  for (std::thread& t : callers) t.join();
  WindowResult w;
  for (WindowResult& p : parts) w.merge(std::move(p));
  w.duration_us = micros(*std::max_element(last.begin(), last.end()) - start);
  finish(w, before);
  return w;
}

std::vector<Clock::duration> LoadGenerator::schedule(const Load& load, const WindowLimit& limit) {
  const double gap_ns = 1e9 / load.rate;
  std::mt19937_64 rng(0x6b696c6e + windows_++);
  std::exponential_distribution<double> exponential(1.0);
  const double end_ns = limit.ms * 1e6;
  std::vector<Clock::duration> at;
  double t = 0;
  for (int64_t k = 0; limit.requests > 0 ? k < limit.requests : t < end_ns; ++k) {
    if (at.size() == kMaxScheduled) {
      throw Error(Code::InvalidArgument, "a window of more than " + std::to_string(kMaxScheduled) + " scheduled requests; lower the rate or the window");
    }
    at.push_back(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(static_cast<int64_t>(std::llround(t)))));
    t += load.poisson ? gap_ns * exponential(rng) : gap_ns;
  }
  return at;
}

WindowResult LoadGenerator::open(const Load& load, const WindowLimit& limit) {
  const std::vector<Clock::duration> at = schedule(load, limit);
  std::vector<Request> requests(at.size());
  std::mutex mutex;
  std::condition_variable wake;
  bool signalled = false;
  CompletionQueue done([&] {
    std::lock_guard<std::mutex> lock(mutex);
    signalled = true;
    wake.notify_one();
  });
  Executor executor(open_loop_threads_, done);
  WindowResult w;
  w.open_loop = true;
  const Usage before = usage();
  // A moment's lead, so that the first send is not late by the time it takes to get there.
  const Clock::time_point start = Clock::now() + std::chrono::milliseconds(1);
  for (size_t k = 0; k < at.size(); ++k) {
    Request& r = requests[k];
    r.generator = this;
    r.session = k;
    const Clock::time_point due = start + at[k];
    if (Clock::now() < due) std::this_thread::sleep_until(due);
    const double lag_us = micros(Clock::now() - due);
    // Late as lib/bench/loadgen.ts counts it: sent more than a millisecond after it was due.
    if (lag_us > kLateSendUs) ++w.late_sends;
    w.max_send_lag_us = std::max(w.max_send_lag_us, lag_us);
    executor.submit(&r);
  }
  std::vector<Job*> finished;
  while (finished.size() < requests.size()) {
    std::unique_lock<std::mutex> lock(mutex);
    wake.wait(lock, [&] { return signalled; });
    signalled = false;
    lock.unlock();
    done.drain(finished);
  }
  Clock::time_point last = start;
  for (size_t k = 0; k < requests.size(); ++k) {
    const Request& r = requests[k];
    if (r.error.empty()) w.latencies_us.push_back(micros(r.end - (start + at[k])));
    else w.add_error(r.error);
    last = std::max(last, r.end);
  }
  // A timed window spans its whole schedule even when the last answer comes before its end.
  w.duration_us = std::max(micros(last - start), limit.ms * 1000);
  finish(w, before);
  return w;
}

}  // namespace kiln::bench
