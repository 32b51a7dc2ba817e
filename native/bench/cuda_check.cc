// Checks and measures the CUDA device Kiln finds, with no Node in the process:
//
//   kiln-cuda-check [--quick] [--json FILE] [--model FILE] [--device N]
//
// Steps, each reported PASS, FAIL or SKIP:
//   devices      the driver and its devices (none: the reason, exit status 2)
//   pinned pool  page-locked buffers are reused, not reallocated, and aligned
//   streams      two non-blocking streams each copy a patterned buffer pinned -> device ->
//                device -> pinned at once; the bytes come back intact; events time them
//   bandwidth    host -> device and device -> host, pinned against pageable memory; pinned
//                must reach 90% of the best copy measured in each direction (--quick only
//                reports: it is what runs against the fake driver)
//   ort cuda     with KILN_ORT_LIBRARY naming a library that has the CUDA provider and a model
//                (--model, or $KILN_TEST_MODELS/mlp.onnx): a CUDA session and a CPU session
//                give the same outputs for one random batch; both are timed
//
// --quick keeps every step under a second: small copies, few repetitions. --json FILE also
// writes the results as JSON. Exit status: 0 when nothing failed, 1 when a step failed, 2
// when there is nothing to check (no driver, no device, bad arguments).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "cuda.h"
#include "error.h"
#include "memory.h"
#include "runtime.h"
#include "session.h"

using namespace kiln;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMiB = size_t(1) << 20;

struct Options {
  bool quick = false;
  std::string json;
  std::string model;
  int device = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "kiln-cuda-check: %s\nusage: kiln-cuda-check [--quick] [--json FILE] [--model FILE] [--device N]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  const char* models = std::getenv("KILN_TEST_MODELS");
  if (models && *models) o.model = std::string(models) + "/mlp.onnx";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") o.quick = true;
    else if (a == "--json") o.json = next();
    else if (a == "--model") o.model = next();
    else if (a == "--device") {
      std::string v = next();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 0 || n > 1024) usage("--device takes a device number");
      o.device = static_cast<int>(n);
    } else if (a == "--help" || a == "-h") usage("checks and measures the CUDA device");
    else usage("unknown argument " + a);
  }
  return o;
}

// ---- JSON, written by hand: values are built as text and nested as text.

std::string jstr(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string jint(uint64_t v) { return std::to_string(v); }
std::string jbool(bool v) { return v ? "true" : "false"; }

using Fields = std::vector<std::pair<std::string, std::string>>;

std::string jobject(const Fields& fields) {
  std::string out = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ",";
    out += jstr(fields[i].first) + ":" + fields[i].second;
  }
  return out + "}";
}

std::string jarray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]";
}

// ---- Steps and their report.

enum class Status { Pass, Fail, Skip };

const char* status_name(Status s) {
  switch (s) {
    case Status::Pass: return "PASS";
    case Status::Fail: return "FAIL";
    case Status::Skip: return "SKIP";
  }
  return "FAIL";
}

struct Step {
  explicit Step(std::string n, Status s = Status::Pass, std::string d = {})
      : name(std::move(n)), status(s), detail(std::move(d)) {}
  std::string name;
  Status status;
  std::string detail;
  Fields data;  // step-specific JSON
};

struct Report {
  std::vector<Step> steps;
  Fields header;  // driver, devices, ORT: JSON

  void add(Step step) {
    std::printf("%s  %-12s %s\n", status_name(step.status), step.name.c_str(), step.detail.c_str());
    std::fflush(stdout);
    steps.push_back(std::move(step));
  }

  bool failed() const {
    return std::any_of(steps.begin(), steps.end(), [](const Step& s) { return s.status == Status::Fail; });
  }

  void write_json(const std::string& path, const Options& o, const std::string& result) const {
    if (path.empty()) return;
    std::vector<std::string> items;
    for (const Step& s : steps) {
      Fields f{{"name", jstr(s.name)}, {"status", jstr(status_name(s.status))}, {"detail", jstr(s.detail)}};
      f.insert(f.end(), s.data.begin(), s.data.end());
      items.push_back(jobject(f));
    }
    Fields top{{"tool", jstr("kiln-cuda-check")}, {"quick", jbool(o.quick)}, {"device", jint(o.device)}};
    top.insert(top.end(), header.begin(), header.end());
    top.emplace_back("steps", jarray(items));
    top.emplace_back("result", jstr(result));
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << jobject(top) << "\n";
    if (!f) std::fprintf(stderr, "kiln-cuda-check: cannot write %s\n", path.c_str());
  }
};

std::string format(const char* fmt, double a) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, a);
  return buf;
}

std::string mib(size_t bytes) { return std::to_string(bytes / kMiB) + " MiB"; }

double gib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

// The largest power of two (up to 4096) dividing an address: what the memory is aligned to.
size_t alignment_of(uintptr_t p) {
  size_t a = 1;
  while (a < 4096 && p % (a * 2) == 0) a *= 2;
  return a;
}

// Fills `data` with a pattern that differs per `seed` and per word, so that a copy landing at
// the wrong offset or from the wrong stream shows.
void fill_pattern(void* data, size_t bytes, uint32_t seed) {
  uint32_t* w = static_cast<uint32_t*>(data);
  for (size_t i = 0; i < bytes / 4; ++i) w[i] = static_cast<uint32_t>(i * 2654435761u) ^ (seed * 0x9e3779b9u);
}

// Offset of the first differing byte, or -1.
long long first_difference(const void* a, const void* b, size_t bytes) {
  if (std::memcmp(a, b, bytes) == 0) return -1;
  const unsigned char* x = static_cast<const unsigned char*>(a);
  const unsigned char* y = static_cast<const unsigned char*>(b);
  for (size_t i = 0; i < bytes; ++i)
    if (x[i] != y[i]) return static_cast<long long>(i);
  return -1;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- a. devices

// Prints the driver and its devices. False when there is nothing to check.
bool check_devices(Report& report, const Options& o, cuda::DeviceList& list) {
  list = cuda::devices();
  std::printf("driver       %s", list.library.c_str());
  if (list.driver_version) std::printf(", CUDA %s", cuda::version_string(list.driver_version).c_str());
  std::printf("\n");
  std::vector<std::string> devices;
  for (const cuda::DeviceInfo& d : list.devices) {
    std::printf("device %-5d %s, %.1f GiB, compute %d.%d, %d SMs, PCI %s\n", d.id, d.name.c_str(), gib(d.total_memory),
                d.major, d.minor, d.multiprocessors, d.pci_bus_id.c_str());
    devices.push_back(jobject({{"id", jint(d.id)},
                               {"name", jstr(d.name)},
                               {"total_memory", jint(d.total_memory)},
                               {"compute_capability", jstr(std::to_string(d.major) + "." + std::to_string(d.minor))},
                               {"multiprocessors", jint(d.multiprocessors)},
                               {"pci_bus_id", jstr(d.pci_bus_id)}}));
  }
  report.header.emplace_back("driver", jobject({{"library", jstr(list.library)},
                                                {"version", jint(list.driver_version)},
                                                {"cuda", jstr(list.driver_version ? cuda::version_string(list.driver_version) : "")},
                                                {"problem", jstr(list.problem)}}));
  report.header.emplace_back("devices", jarray(devices));

  Step step{"devices"};
  if (!list.problem.empty()) {
    step.status = Status::Skip;
    step.detail = "nothing to check: " + list.problem;
    report.add(step);
    return false;
  }
  if (o.device >= static_cast<int>(list.devices.size())) {
    step.status = Status::Skip;
    step.detail = "nothing to check: device " + std::to_string(o.device) + " does not exist (this machine has " +
                  std::to_string(list.devices.size()) + ")";
    report.add(step);
    return false;
  }
  step.detail = std::to_string(list.devices.size()) + (list.devices.size() == 1 ? " device" : " devices") +
                "; checking device " + std::to_string(o.device) + " (" + list.devices[o.device].name + ")";
  report.add(step);
  return true;
}

// ---- b. pinned pool

Step check_pinned_pool(const std::shared_ptr<cuda::Device>& device) {
  Step step{"pinned pool"};
  std::vector<std::string> problems;
  const size_t rounds = 100;
  size_t min_alignment = 4096;

  auto pool = cuda::pinned_pool(device);
  void* first = nullptr;
  size_t moved = 0;  // rounds that got another buffer than the first
  for (size_t i = 0; i < rounds; ++i) {
    Buffer b = pool->acquire(kMiB);
    if (!b.data()) {
      problems.push_back("acquire returned no memory");
      break;
    }
    if (b.capacity() < kMiB) problems.push_back("capacity " + std::to_string(b.capacity()) + " < 1 MiB");
    min_alignment = std::min(min_alignment, alignment_of(reinterpret_cast<uintptr_t>(b.data())));
    // Page-locked memory is ordinary host memory to the CPU: touch both ends.
    static_cast<char*>(b.data())[0] = static_cast<char>(i);
    static_cast<char*>(b.data())[b.capacity() - 1] = static_cast<char>(i);
    if (!first) first = b.data();
    else if (b.data() != first) ++moved;
  }
  if (pool->allocations() != 1) {
    problems.push_back(std::to_string(rounds) + " acquire/release rounds made " + std::to_string(pool->allocations()) +
                       " allocations, not 1");
  }
  if (moved) problems.push_back(std::to_string(moved) + " rounds got another buffer than the first");
  const size_t allocations = pool->allocations();

  // Two buffers held at once are distinct; a small request gets the smallest class.
  {
    Buffer a = pool->acquire(kMiB);
    Buffer b = pool->acquire(kMiB);
    Buffer c = pool->acquire(100);
    if (a.data() == b.data()) problems.push_back("two live buffers share memory");
    if (pool->allocations() != 2 + 1) {
      problems.push_back("two live 1 MiB buffers and a small one: " + std::to_string(pool->allocations()) +
                         " allocations, not 3");
    }
    if (c.capacity() != BufferPool::kMinClass) problems.push_back("a 100-byte request got " + std::to_string(c.capacity()));
    for (const Buffer* x : {&a, &b, &c})
      min_alignment = std::min(min_alignment, alignment_of(reinterpret_cast<uintptr_t>(x->data())));
  }
  if (pool->live() != 3) problems.push_back(std::to_string(pool->live()) + " buffers live after release, not 3 (kept for reuse)");
  if (min_alignment < BufferPool::kAlignment) {
    problems.push_back("pointers aligned to " + std::to_string(min_alignment) + " bytes, less than " +
                       std::to_string(BufferPool::kAlignment));
  }

  // The device pool reuses the same way.
  auto dpool = cuda::device_pool(device);
  for (size_t i = 0; i < 10; ++i) Buffer d = dpool->acquire(kMiB);
  if (dpool->allocations() != 1) {
    problems.push_back("device pool: 10 rounds made " + std::to_string(dpool->allocations()) + " allocations, not 1");
  }

  step.data = {{"rounds", jint(rounds)},
               {"allocations", jint(allocations)},
               {"min_alignment", jint(min_alignment)},
               {"problems", jarray([&] {
                  std::vector<std::string> v;
                  for (const auto& p : problems) v.push_back(jstr(p));
                  return v;
                }())}};
  if (problems.empty()) {
    step.detail = std::to_string(rounds) + " acquire/release rounds, 1 allocation; pointers aligned to " +
                  std::to_string(min_alignment) + " bytes; device pool reuses too";
  } else {
    step.status = Status::Fail;
    for (const auto& p : problems) step.detail += (step.detail.empty() ? "" : "; ") + p;
  }
  return step;
}

// ---- c. streams, async copies, events

Step check_streams(const std::shared_ptr<cuda::Device>& device, bool quick) {
  Step step{"streams"};
  const size_t bytes = quick ? kMiB : 64 * kMiB;
  auto pinned = cuda::pinned_pool(device);
  auto dev = cuda::device_pool(device);

  struct Lane {
    std::unique_ptr<cuda::Stream> stream;
    std::unique_ptr<cuda::Event> start, end;
    Buffer src, a, b, dst;
  };
  Lane lanes[2];
  for (uint32_t i = 0; i < 2; ++i) {
    Lane& l = lanes[i];
    l.stream = std::make_unique<cuda::Stream>(device);
    l.start = std::make_unique<cuda::Event>(device);
    l.end = std::make_unique<cuda::Event>(device);
    l.src = pinned->acquire(bytes);
    l.dst = pinned->acquire(bytes);
    l.a = dev->acquire(bytes);
    l.b = dev->acquire(bytes);
    fill_pattern(l.src.data(), bytes, i + 1);
    std::memset(l.dst.data(), 0, bytes);
  }
  if (lanes[0].stream->handle() == lanes[1].stream->handle()) {
    step.status = Status::Fail;
    step.detail = "two streams share one handle";
    return step;
  }
  // Everything is queued on both streams before either is waited for, so the two round trips
  // can run at once. Nothing is read back until the stream is synchronised.
  for (Lane& l : lanes) {
    l.start->record(*l.stream);
    l.stream->copy_to_device(cuda::device_ptr(l.a), l.src.data(), bytes);
    l.stream->copy_device(cuda::device_ptr(l.b), cuda::device_ptr(l.a), bytes);
    l.stream->copy_to_host(l.dst.data(), cuda::device_ptr(l.b), bytes);
    l.end->record(*l.stream);
  }
  std::vector<std::string> problems, lanes_json;
  std::string timings;
  for (size_t i = 0; i < 2; ++i) {
    Lane& l = lanes[i];
    l.stream->synchronize();
    l.end->synchronize();
    float ms = cuda::Event::elapsed_ms(*l.start, *l.end);
    long long diff = first_difference(l.src.data(), l.dst.data(), bytes);
    if (diff >= 0) problems.push_back("stream " + std::to_string(i) + ": byte " + std::to_string(diff) + " differs after the round trip");
    if (ms < 0) problems.push_back("stream " + std::to_string(i) + ": events report " + format("%.3f", ms) + " ms");
    timings += (i ? ", " : "") + format("%.3f ms", ms);
    lanes_json.push_back(jobject({{"ms", jnum(ms)}, {"intact", jbool(diff < 0)}}));
  }
  step.data = {{"bytes", jint(bytes)}, {"streams", jarray(lanes_json)}};
  if (problems.empty()) {
    step.detail = "2 streams, " + mib(bytes) + " pinned->device->device->pinned each, bytes intact; " + timings;
  } else {
    step.status = Status::Fail;
    for (const auto& p : problems) step.detail += (step.detail.empty() ? "" : "; ") + p;
  }
  return step;
}

// ---- d. bandwidth

struct Measurement {
  std::string direction;  // "h2d", "d2h"
  std::string memory;     // "pinned", "pageable"
  size_t bytes = 0;
  int copies = 0;         // per timed repetition
  int reps = 0;
  double best = 0;        // GB/s (1e9 bytes per second)
  double median = 0;
  bool timed = true;      // false when the events measured no time (a fake driver)
};

// Host memory that is not page-locked, faulted in before it is timed.
struct Pageable {
  void* data = nullptr;
  explicit Pageable(size_t bytes) {
    data = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    if (!data) throw std::bad_alloc();
    std::memset(data, 0x5a, bytes);
  }
  ~Pageable() { std::free(data); }
  Pageable(const Pageable&) = delete;
  Pageable& operator=(const Pageable&) = delete;
};

Measurement measure_copies(cuda::Stream& stream, cuda::Event& start, cuda::Event& end, bool to_device, void* host,
                           cuda::DevicePtr dptr, size_t bytes, int reps) {
  Measurement m;
  m.direction = to_device ? "h2d" : "d2h";
  m.bytes = bytes;
  m.reps = reps;
  // Enough copies per repetition that each times about 256 MiB, so that launch and event
  // overheads vanish for small sizes.
  m.copies = static_cast<int>(std::max<size_t>(1, std::min<size_t>(32, 256 * kMiB / bytes)));
  auto copy = [&] {
    if (to_device) stream.copy_to_device(dptr, host, bytes);
    else stream.copy_to_host(host, dptr, bytes);
  };
  copy();  // warm-up: first-touch costs of the driver's staging buffers
  stream.synchronize();
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    start.record(stream);
    for (int c = 0; c < m.copies; ++c) copy();
    end.record(stream);
    end.synchronize();
    double ms = cuda::Event::elapsed_ms(start, end);
    if (ms <= 0) {
      m.timed = false;
      rates.push_back(0);
      continue;
    }
    rates.push_back(static_cast<double>(bytes) * m.copies / (ms * 1e6));
  }
  m.best = *std::max_element(rates.begin(), rates.end());
  m.median = median(rates);
  return m;
}

Step check_bandwidth(const std::shared_ptr<cuda::Device>& device, bool quick) {
  Step step{"bandwidth"};
  const std::vector<size_t> sizes =
      quick ? std::vector<size_t>{1 * kMiB, 4 * kMiB} : std::vector<size_t>{1 * kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB, 256 * kMiB};
  const int reps = quick ? 2 : 7;
  const size_t largest = sizes.back();

  cuda::Stream stream(device);
  cuda::Event start(device), end(device);
  auto pinned_pool = cuda::pinned_pool(device, 1);
  auto dev_pool = cuda::device_pool(device, 1);
  Buffer pinned = pinned_pool->acquire(largest);
  Buffer dev = dev_pool->acquire(largest);
  Pageable pageable(largest);
  std::memset(pinned.data(), 0xa5, largest);

  std::vector<Measurement> all;
  for (size_t bytes : sizes) {
    for (bool to_device : {true, false}) {
      for (bool is_pinned : {true, false}) {
        void* host = is_pinned ? pinned.data() : pageable.data;
        Measurement m = measure_copies(stream, start, end, to_device, host, cuda::device_ptr(dev), bytes, reps);
        m.memory = is_pinned ? "pinned" : "pageable";
        all.push_back(m);
      }
    }
  }

  // The table: one row per size, best / median GB/s per direction and memory kind.
  std::printf("      %-9s %-21s %-21s %-21s %-21s\n", "size", "h2d pinned", "h2d pageable", "d2h pinned", "d2h pageable");
  std::printf("      %-9s %-21s %-21s %-21s %-21s\n", "", "best / median GB/s", "best / median GB/s", "best / median GB/s",
              "best / median GB/s");
  bool timed = true;
  for (size_t bytes : sizes) {
    std::printf("      %-9s", mib(bytes).c_str());
    for (const char* dir : {"h2d", "d2h"}) {
      for (const char* mem : {"pinned", "pageable"}) {
        for (const Measurement& m : all) {
          if (m.bytes != bytes || m.direction != dir || m.memory != mem) continue;
          timed = timed && m.timed;
          char cell[32];
          if (m.timed) std::snprintf(cell, sizeof(cell), "%7.2f / %7.2f", m.best, m.median);
          else std::snprintf(cell, sizeof(cell), "%17s", "not timed");
          std::printf(" %-21s", cell);
        }
      }
    }
    std::printf("\n");
  }

  // The verdict: pinned copies should be (nearly) the fastest copies in each direction.
  auto best_of = [&](const std::string& dir, const char* mem) {
    double best = 0;
    for (const Measurement& m : all)
      if (m.direction == dir && (!mem || m.memory == mem)) best = std::max(best, m.best);
    return best;
  };
  std::vector<std::string> problems, summary;
  Fields verdict;
  for (const std::string dir : {"h2d", "d2h"}) {
    double pinned_best = best_of(dir, "pinned"), any_best = best_of(dir, nullptr);
    double ratio = any_best > 0 ? pinned_best / any_best : 0;
    summary.push_back(dir + " pinned " + format("%.2f", pinned_best) + " GB/s (pageable " +
                      format("%.2f", best_of(dir, "pageable")) + ")");
    if (timed && ratio < 0.9) {
      problems.push_back(dir + ": best pinned " + format("%.2f", pinned_best) + " GB/s is " +
                         format("%.0f", ratio * 100) + "% of the best copy (" + format("%.2f", any_best) + " GB/s)");
    }
    verdict.emplace_back(dir, jobject({{"pinned_best_gbps", jnum(pinned_best)},
                                       {"best_gbps", jnum(any_best)},
                                       {"pinned_ratio", jnum(ratio)}}));
  }

  std::vector<std::string> rows;
  for (const Measurement& m : all) {
    rows.push_back(jobject({{"direction", jstr(m.direction)},
                            {"memory", jstr(m.memory)},
                            {"bytes", jint(m.bytes)},
                            {"copies", jint(m.copies)},
                            {"reps", jint(m.reps)},
                            {"best_gbps", m.timed ? jnum(m.best) : "null"},
                            {"median_gbps", m.timed ? jnum(m.median) : "null"}}));
  }
  step.data = {{"measurements", jarray(rows)}, {"summary", jobject(verdict)}, {"timed", jbool(timed)}};

  step.detail = summary[0] + "; " + summary[1];
  if (!timed) {
    step.detail = "the events measured no time (a fake driver?): copies ran, bandwidth not measured";
  } else if (!problems.empty()) {
    if (quick) {
      step.detail += "; below target, not judged in --quick mode: " + problems[0] + (problems.size() > 1 ? "; " + problems[1] : "");
    } else {
      step.status = Status::Fail;
      step.detail = problems[0] + (problems.size() > 1 ? "; " + problems[1] : "");
    }
  } else if (quick) {
    step.detail += " (--quick: reported, not judged)";
  }
  return step;
}

// ---- e. ORT through the CUDA provider

struct Timing {
  double median_us = 0;
  double mean_us = 0;
};

Timing time_runs(const Session& s, const std::vector<Feed>& feeds, const std::vector<Fetch>& fetches, int runs) {
  std::vector<OwnedTensor> out;
  std::vector<double> us;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    s.run(feeds.data(), feeds.size(), fetches.data(), fetches.size(), out);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    out.clear();
  }
  Timing t;
  t.median_us = median(us);
  for (double x : us) t.mean_us += x;
  if (!us.empty()) t.mean_us /= us.size();
  return t;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Step check_ort(const Options& o, Report& report) {
  Step step{"ort cuda"};
  const char* lib = std::getenv("KILN_ORT_LIBRARY");
  if (!lib || !*lib) {
    step.status = Status::Skip;
    step.detail = "KILN_ORT_LIBRARY is not set";
    return step;
  }
  Runtime* rt = nullptr;
  try {
    RuntimeConfig rc;
    rc.library_path = lib;
    rt = &Runtime::init(rc);
  } catch (const Error& e) {
    // The user named a library: one that does not load is a broken set-up, not a skip.
    step.status = Status::Fail;
    step.detail = std::string("KILN_ORT_LIBRARY does not load: ") + e.what();
    return step;
  }
  std::vector<std::string> providers;
  for (const auto& p : rt->available_providers()) providers.push_back(jstr(p));
  report.header.emplace_back("ort", jobject({{"library", jstr(rt->library().path)},
                                             {"version", jstr(rt->library().version)},
                                             {"providers", jarray(providers)}}));
  std::printf("ort          %s (%s)\n", rt->library().path.c_str(), rt->library().version.c_str());
  if (!rt->has_provider("CUDAExecutionProvider")) {
    step.status = Status::Skip;
    step.detail = "the ONNX Runtime library has no CUDAExecutionProvider";
    return step;
  }
  if (o.model.empty()) {
    step.status = Status::Skip;
    step.detail = "no model: pass --model or set KILN_TEST_MODELS";
    return step;
  }
  if (!file_exists(o.model)) {
    step.status = Status::Skip;
    step.detail = "no model at " + o.model;
    return step;
  }

  SessionConfig cpu_config;
  cpu_config.providers = {ProviderSpec{"cpu", {}}};
  SessionConfig cuda_config;
  cuda_config.providers = {ProviderSpec{"cuda", {}}};
  // Only a device other than ORT's default is named: any option makes ORT load the provider's
  // library while options are set, where a failure reads as a bad option.
  if (o.device != 0) cuda_config.providers[0].options.emplace_back("device_id", std::to_string(o.device));
  std::shared_ptr<Session> cpu, gpu;
  try {
    gpu = Session::load_file(o.model, cuda_config);
  } catch (const Error& e) {
    // The CPU build of ONNX Runtime lists the CUDA provider without shipping its library; a
    // machine may lack cuDNN. Neither is a fault of what this tool checks.
    step.status = e.code() == Code::ProviderUnavailable ? Status::Skip : Status::Fail;
    step.detail = std::string("no CUDA session: ") + code_name(e.code()) + ": " + e.what();
    return step;
  }
  if (std::find(gpu->providers().begin(), gpu->providers().end(), "CUDAExecutionProvider") == gpu->providers().end()) {
    step.status = Status::Skip;
    step.detail = "the session did not get the CUDA provider";
    return step;
  }
  cpu = Session::load_file(o.model, cpu_config);

  // One random batch of 8: the first dynamic dim of each input is the batch, others are 1.
  const int64_t batch = 8;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<std::vector<float>> data(cpu->inputs().size());
  std::vector<Feed> feeds;
  for (size_t i = 0; i < cpu->inputs().size(); ++i) {
    const ValueInfo& v = cpu->inputs()[i];
    if (v.kind != "tensor" || v.type != DType::Float32) {
      step.status = Status::Skip;
      step.detail = "input \"" + v.name + "\" is not a float32 tensor; this step feeds float32 only";
      return step;
    }
    Feed f;
    f.input = i;
    f.view.type = DType::Float32;
    bool batched = false;
    for (int64_t d : v.shape) {
      if (d < 0) d = batched ? 1 : batch, batched = true;
      f.view.shape.push_back(d);
    }
    size_t n = element_count(f.view.shape.data(), f.view.shape.size(), Label{"input", v.name});
    data[i].resize(n);
    for (float& x : data[i]) x = uni(rng);
    f.view.data = data[i].data();
    f.view.bytes = n * sizeof(float);
    feeds.push_back(std::move(f));
  }
  std::vector<Fetch> fetches;
  for (size_t i = 0; i < cpu->outputs().size(); ++i) fetches.push_back(Fetch{i, nullptr, false});

  std::vector<OwnedTensor> a, b;
  cpu->run(feeds.data(), feeds.size(), fetches.data(), fetches.size(), a);
  gpu->run(feeds.data(), feeds.size(), fetches.data(), fetches.size(), b);
  double max_diff = 0;
  std::vector<std::string> problems;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const std::string& name = cpu->outputs()[i].name;
    if (a[i].type != b[i].type || a[i].shape != b[i].shape || a[i].bytes != b[i].bytes) {
      problems.push_back("output \"" + name + "\": CPU gives " + format_shape(a[i].shape.data(), a[i].shape.size()) +
                         ", CUDA gives " + format_shape(b[i].shape.data(), b[i].shape.size()));
      continue;
    }
    if (a[i].type == DType::Float32) {
      const float* x = static_cast<const float*>(a[i].data);
      const float* y = static_cast<const float*>(b[i].data);
      for (size_t k = 0; k < a[i].bytes / sizeof(float); ++k) {
        double d = std::fabs(static_cast<double>(x[k]) - y[k]);
        if (!(d <= max_diff)) max_diff = std::isnan(d) ? INFINITY : d;
      }
    } else if (a[i].type != DType::String && std::memcmp(a[i].data, b[i].data, a[i].bytes) != 0) {
      problems.push_back("output \"" + name + "\" differs");
    }
  }
  if (a.size() != b.size()) problems.push_back("CPU and CUDA give different output counts");
  if (max_diff > 1e-3) problems.push_back("max abs difference " + format("%.3g", max_diff) + " > 1e-3");

  const int runs = o.quick ? 10 : 100;
  const int warmup = o.quick ? 1 : 10;
  time_runs(*cpu, feeds, fetches, warmup);
  time_runs(*gpu, feeds, fetches, warmup);
  Timing tc = time_runs(*cpu, feeds, fetches, runs);
  Timing tg = time_runs(*gpu, feeds, fetches, runs);

  std::string used;
  for (const auto& p : gpu->providers()) used += (used.empty() ? "" : ", ") + p;
  step.data = {{"model", jstr(o.model)},
               {"batch", jint(batch)},
               {"providers", jstr(used)},
               {"max_abs_diff", jnum(max_diff)},
               {"runs", jint(runs)},
               {"cpu", jobject({{"median_us", jnum(tc.median_us)}, {"mean_us", jnum(tc.mean_us)}})},
               {"cuda", jobject({{"median_us", jnum(tg.median_us)}, {"mean_us", jnum(tg.mean_us)}})}};
  std::string timing = std::to_string(runs) + " runs: CPU median " + format("%.1f", tc.median_us) + " us, CUDA median " +
                       format("%.1f", tg.median_us) + " us";
  if (problems.empty()) {
    step.detail = "batch " + std::to_string(batch) + " through " + used + " matches CPU (max abs diff " +
                  format("%.2g", max_diff) + "); " + timing;
  } else {
    step.status = Status::Fail;
    for (const auto& p : problems) step.detail += (step.detail.empty() ? "" : "; ") + p;
    step.detail += "; " + timing;
  }
  return step;
}

// Runs one step, turning an exception into its FAIL.
template <typename F>
void run_step(Report& report, const char* name, F&& fn) {
  try {
    report.add(fn());
  } catch (const Error& e) {
    report.add(Step(name, Status::Fail, std::string(code_name(e.code())) + ": " + e.what()));
  } catch (const std::bad_alloc&) {
    report.add(Step(name, Status::Fail, "out of memory"));
  } catch (const std::exception& e) {
    report.add(Step(name, Status::Fail, e.what()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  Report report;
  std::printf("kiln-cuda-check%s\n", o.quick ? " (--quick)" : "");

  cuda::DeviceList list;
  if (!check_devices(report, o, list)) {
    std::printf("\nresult: nothing to check\n");
    report.write_json(o.json, o, "UNAVAILABLE");
    return 2;
  }

  std::shared_ptr<cuda::Device> device;
  try {
    device = std::make_shared<cuda::Device>(o.device);
  } catch (const Error& e) {
    std::printf("\nresult: nothing to check: %s\n", e.what());
    report.write_json(o.json, o, "UNAVAILABLE");
    return 2;
  }
  {
    // The device's context stays current on this thread for every CUDA step, so that no
    // driver call depends on which calls switch contexts themselves.
    cuda::ContextScope scope(*device);
    uint64_t free_bytes = 0, total_bytes = 0;
    try {
      cuda::memory_info(*device, free_bytes, total_bytes);
      std::printf("memory       %.1f GiB free of %.1f GiB\n", gib(free_bytes), gib(total_bytes));
      report.header.emplace_back("memory", jobject({{"free", jint(free_bytes)}, {"total", jint(total_bytes)}}));
    } catch (const Error& e) {
      std::printf("memory       unknown: %s\n", e.what());
    }
    run_step(report, "pinned pool", [&] { return check_pinned_pool(device); });
    run_step(report, "streams", [&] { return check_streams(device, o.quick); });
    run_step(report, "bandwidth", [&] { return check_bandwidth(device, o.quick); });
  }
  run_step(report, "ort cuda", [&] { return check_ort(o, report); });

  size_t counts[3] = {0, 0, 0};
  for (const Step& s : report.steps) ++counts[static_cast<int>(s.status)];
  const bool failed = report.failed();
  std::printf("\nresult: %s (%zu passed, %zu failed, %zu skipped)\n", failed ? "FAIL" : "PASS", counts[0], counts[1],
              counts[2]);
  report.write_json(o.json, o, failed ? "FAIL" : "PASS");
  return failed ? 1 : 0;
}
