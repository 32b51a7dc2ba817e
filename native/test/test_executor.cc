#include <atomic>
#include <set>
#include <thread>

#include "check.h"
#include "executor.h"

using namespace kiln;

namespace {

struct CountingJob : Job {
  std::atomic<int>* runs;
  std::thread::id ran_on;
  std::atomic<bool>* gate = nullptr;  // when set, execute() waits for it
  explicit CountingJob(std::atomic<int>* r) : runs(r) {}
  void execute() noexcept override {
    if (gate)
      while (!gate->load()) std::this_thread::yield();
    ran_on = std::this_thread::get_id();
    runs->fetch_add(1);
  }
};

void wait_for(CompletionQueue& q, size_t n, std::vector<Job*>& out) {
  while (out.size() < n) {
    q.drain(out);
    std::this_thread::yield();
  }
}

}  // namespace

TEST(jobs_run_on_executor_threads_and_complete_once) {
  std::atomic<int> notified{0};
  CompletionQueue done([&] { notified.fetch_add(1); });
  std::atomic<int> runs{0};
  std::vector<CountingJob> jobs(200, CountingJob(&runs));
  {
    Executor ex(3, done, 50);
    for (auto& j : jobs) CHECK(ex.submit(&j));
    std::vector<Job*> finished;
    wait_for(done, jobs.size(), finished);
    std::set<Job*> unique(finished.begin(), finished.end());
    CHECK(unique.size() == jobs.size());  // each job completed exactly once
  }
  CHECK(runs.load() == 200);
  for (auto& j : jobs) CHECK(j.ran_on != std::this_thread::get_id());
  CHECK(notified.load() >= 1);
}

TEST(one_signal_covers_many_completions) {
  std::atomic<int> notified{0};
  CompletionQueue done([&] { notified.fetch_add(1); });
  std::atomic<int> runs{0};
  std::vector<CountingJob> jobs(5, CountingJob(&runs));
  for (auto& j : jobs) done.push(&j);  // nobody drains between pushes
  CHECK(notified.load() == 1);
  std::vector<Job*> out;
  done.drain(out);
  CHECK(out.size() == 5);
  done.push(&jobs[0]);
  CHECK(notified.load() == 2);  // drained queue re-arms the signal
}

TEST(cancel_removes_a_queued_job_and_close_returns_unstarted) {
  CompletionQueue done(nullptr);
  std::atomic<int> runs{0};
  std::atomic<bool> gate{false};
  CountingJob blocker(&runs);
  blocker.gate = &gate;
  CountingJob a(&runs), b(&runs), c(&runs);
  Executor ex(1, done);
  CHECK(ex.submit(&blocker));
  while (ex.queued() != 0) std::this_thread::yield();  // blocker is running
  CHECK(ex.submit(&a));
  CHECK(ex.submit(&b));
  CHECK(ex.submit(&c));
  CHECK(ex.cancel(&b));
  CHECK(!ex.cancel(&b));
  CHECK(!ex.cancel(&blocker));  // already running
  std::vector<Job*> unstarted = ex.close();
  CHECK(unstarted.size() == 2 && unstarted[0] == &a && unstarted[1] == &c);
  CHECK(!ex.submit(&b));
  gate = true;
  ex.close_and_join();
  CHECK(runs.load() == 1);  // only the running job ran
  std::vector<Job*> out;
  done.drain(out);
  CHECK(out.size() == 1 && out[0] == &blocker);
}

TEST(an_executor_needs_one_to_max_threads) {
  CompletionQueue done([] {});
  CHECK_THROWS(Executor(0, done), Code::InvalidArgument, "an executor runs 1 to 1024 threads, not 0");
  CHECK_THROWS(Executor(static_cast<size_t>(-1), done), Code::InvalidArgument, "not -1");
  Executor one(1, done);
  CHECK(one.queued() == 0);
}
