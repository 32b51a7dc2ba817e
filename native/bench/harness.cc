// The native floor: runs a model through Kiln's core with no Node in the process.
//
//   kiln-harness --model m.onnx [--batch B] [--dim name=V] [--shape name:d1,d2] [--intra T] [--spin]
//                [--library L] [--provider cpu|cuda|tensorrt] [--instances N] [--warmup W] ...
//
//   ... [--iters N] [--rotate-outputs N]       one measurement of back-to-back runs, a JSON line
//   ... --concurrency-range 1:16:x2 | --request-rate-range 100:800:x2 [--request-distribution
//       poisson|constant] [--measurement-interval MS | --measurement-request-count N]
//       [--stability-percentage P] [--max-trials K] [--percentile 99] [--max-threads T]
//       [--json out.json]                      a sweep, measured as `kiln bench` measures (a table
//                                              per step; with --json the steps as a TargetReport)
//   ... --serve                                reads commands on stdin, answers one JSON line each:
//       run N | throughput N                   back-to-back runs: latencies / inferences per second
//       warmup N                               N runs from one caller, timings discarded
//       window concurrency=C (ms=T | requests=R)
//       window rate=R arrival=poisson|constant (ms=T | requests=R)
//                                              one window, answered as a WindowResult
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "inputs.h"
#include "json.h"
#include "load.h"
#include "runtime.h"
#include "session.h"
#include "sweep.h"

using namespace kiln;
using namespace kiln::bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model;
  std::string library;
  InputShapes shapes;
  int intra = -1;  // -1: the runtime's global pool, as a Kiln session without intraOpThreads
  int iters = 3000;
  int warmup = 200;
  bool serve = false;
  bool spin = false;
  size_t rotate = 0;
  std::string provider = "cpu";  // cpu | cuda | tensorrt (GPU ones run with device IO)
  int instances = 1;
  int max_threads = 16;
  std::string concurrency_range, rate_range, json;
  bool poisson = false;  // constant arrivals unless --request-distribution poisson (perf_analyzer's and kiln bench's default)
  SweepSettings sweep;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "kiln-harness: %s\nusage: kiln-harness --model m.onnx [--batch B] [--dim name=V] [--shape name:d1,d2,...] "
               "[--intra T] [--spin] [--library L] [--provider cpu|cuda|tensorrt] [--instances N] [--warmup W]\n"
               "  [--iters N] [--rotate-outputs N]\n"
               "  | --concurrency-range S:E[:STEP|xF] | --request-rate-range S:E[:STEP|xF] [--request-distribution poisson|constant]\n"
               "    [--measurement-interval MS | --measurement-request-count N] [--stability-percentage P] [--max-trials K]\n"
               "    [--percentile Q] [--max-threads T] [--json FILE]\n"
               "  | --serve\n",
               why.c_str());
  std::exit(2);
}

// A whole number in [lo, hi] for `flag`, else usage.
long long whole(const std::string& flag, const std::string& text, long long lo, long long hi) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < lo || v > hi) {
    usage(flag + " takes a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", received \"" + text + "\"");
  }
  return v;
}

double positive(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(v > 0)) usage(flag + " takes a positive number, received \"" + text + "\"");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  const char* env_lib = std::getenv("KILN_ORT_LIBRARY");
  if (env_lib) o.library = env_lib;
  o.sweep.limit.ms = 5000;  // perf_analyzer's default measurement interval
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model" || a == "-m") o.model = next();
    else if (a == "--library") o.library = next();
    else if (a == "--batch") o.shapes.batch = whole(a, next(), 1, 1 << 30);
    else if (a == "--intra") o.intra = static_cast<int>(whole(a, next(), 0, 1024));
    else if (a == "--iters") o.iters = static_cast<int>(whole(a, next(), 1, 1 << 30));
    else if (a == "--warmup") o.warmup = static_cast<int>(whole(a, next(), 0, 1 << 30));
    else if (a == "--serve") o.serve = true;
    else if (a == "--spin") o.spin = true;
    else if (a == "--rotate-outputs") o.rotate = whole(a, next(), 0, 1 << 16);
    else if (a == "--provider") o.provider = next();
    else if (a == "--instances") o.instances = static_cast<int>(whole(a, next(), 1, 256));
    else if (a == "--max-threads") o.max_threads = static_cast<int>(whole(a, next(), 1, 1024));
    else if (a == "--concurrency-range") o.concurrency_range = next();
    else if (a == "--request-rate-range") o.rate_range = next();
    else if (a == "--measurement-interval") o.sweep.limit = WindowLimit{positive(a, next()), 0};
    else if (a == "--measurement-request-count") o.sweep.limit = WindowLimit{0, whole(a, next(), 1, 1 << 30)};
    else if (a == "--stability-percentage") o.sweep.rule.percentage = positive(a, next());
    else if (a == "--max-trials") o.sweep.max_windows = whole(a, next(), 1, 1000);
    else if (a == "--percentile") o.sweep.rule.percentile = static_cast<double>(whole(a, next(), 1, 100));
    else if (a == "--json") o.json = next();
    else if (a == "--request-distribution") {
      const std::string d = next();
      if (d != "poisson" && d != "constant") usage("--request-distribution takes poisson or constant, received \"" + d + "\"");
      o.poisson = d == "poisson";
    } else if (a == "--dim") {
      std::string kv = next();
      size_t eq = kv.find('=');
      if (eq == std::string::npos) usage("--dim takes name=value");
      o.shapes.dims[kv.substr(0, eq)] = whole("--dim " + kv.substr(0, eq), kv.substr(eq + 1), 0, 1LL << 40);
    } else if (a == "--shape") {
      o.shapes.shapes.insert(parse_shape(next()));
    } else {
      usage("unknown argument " + a);
    }
  }
  if (o.model.empty()) usage("--model is required");
  if (o.provider != "cpu" && o.provider != "cuda" && o.provider != "tensorrt") usage("--provider takes cpu, cuda or tensorrt");
  if (!o.concurrency_range.empty() && !o.rate_range.empty()) usage("give --concurrency-range or --request-rate-range, not both");
  return o;
}

// Back-to-back runs on one thread for the `run` and `throughput` commands.
struct Runner {
  std::shared_ptr<Session> session;
  const Inputs* inputs = nullptr;
  std::vector<Fetch> fetches;
  std::vector<OwnedTensor> out;
  // --rotate-outputs N: outputs go to N preallocated buffer sets in turn, as when every
  // caller keeps its own output for a while, instead of one arena block that stays cached.
  std::vector<std::vector<std::vector<char>>> ring;
  std::vector<std::vector<TensorView>> ring_views;
  std::vector<TensorView> out_shapes;
  size_t next = 0;

  void once() {
    if (!ring.empty()) {
      std::vector<TensorView>& views = ring_views[next++ % ring.size()];
      for (size_t i = 0; i < fetches.size(); ++i) fetches[i].preallocated = &views[i];
    }
    session->run(inputs->feeds.data(), inputs->feeds.size(), fetches.data(), fetches.size(), out);
    if (out_shapes.empty()) {
      for (const OwnedTensor& t : out) out_shapes.push_back(TensorView{t.type, t.shape, nullptr, t.bytes, nullptr});
    }
    out.clear();  // a caller that is done with its outputs releases them
  }

  void rotate(size_t sets) {
    once();  // learn the output shapes
    for (size_t r = 0; r < sets; ++r) {
      ring.emplace_back();
      ring_views.emplace_back();
      for (size_t i = 0; i < fetches.size(); ++i) {
        ring.back().emplace_back(out_shapes[i].bytes, 0);
        TensorView v = out_shapes[i];
        v.data = ring.back().back().data();
        ring_views.back().push_back(v);
      }
    }
  }
};

// Per-call latencies in microseconds, as JSON: summary plus every sample.
std::string measure(Runner& r, int iters) {
  std::vector<double> us(iters);
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    r.once();
    us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  const LatencySummary s = summarize(us, 99);
  std::string out = "{\"iters\":" + std::to_string(iters) + ",\"median_us\":" + json_number(s.p50) + ",\"p99_us\":" + json_number(s.p99) +
                    ",\"mean_us\":" + json_number(s.mean) + ",\"samples_us\":[";
  for (int i = 0; i < iters; ++i) out += (i ? "," : "") + json_number(us[i]);
  return out + "]}";
}

// Back-to-back runs for `iters` calls: inferences per second at this batch size.
std::string throughput(Runner& r, int iters, int64_t batch) {
  auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) r.once();
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return "{\"iters\":" + std::to_string(iters) + ",\"batch\":" + std::to_string(batch) + ",\"seconds\":" + json_number(s) +
         ",\"inferences_per_s\":" + json_number(iters * batch / s) + "}";
}

// "window concurrency=4 ms=200" / "window rate=500 arrival=constant requests=100".
std::pair<Load, WindowLimit> parse_window(std::istringstream& words) {
  Load load;
  WindowLimit limit;
  bool has_kind = false;
  std::string word;
  while (words >> word) {
    const size_t eq = word.find('=');
    const std::string key = word.substr(0, eq), value = eq == std::string::npos ? "" : word.substr(eq + 1);
    size_t used = 0;
    double number = 0;
    try {
      number = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    const bool numeric = used > 0 && used == value.size() && std::isfinite(number);
    // Counts are whole numbers within what the window accepts, so the conversions are exact.
    const bool whole = numeric && number == std::floor(number) && number >= 0 && number <= 1e12;
    if (key == "concurrency" && whole && number <= 4096) load.kind = Load::Kind::Concurrency, load.concurrency = static_cast<int>(number), has_kind = true;
    else if (key == "rate" && numeric) load.kind = Load::Kind::Rate, load.rate = number, has_kind = true;
    else if (key == "arrival" && (value == "poisson" || value == "constant")) load.poisson = value == "poisson";
    else if (key == "ms" && numeric && number >= 0 && number <= 86'400'000) limit.ms = number;
    else if (key == "requests" && whole) limit.requests = static_cast<int64_t>(number);
    else throw Error(Code::InvalidArgument, "window: cannot read \"" + word + "\"");
  }
  if (!has_kind) throw Error(Code::InvalidArgument, "window: give concurrency=C or rate=R");
  return {load, limit};
}

std::string error_json(const char* code, const std::string& message) {
  return std::string("{\"error\":") + json_string(message) + ",\"code\":\"" + code + "\"}";
}

// One command line of --serve mode, answered with one JSON line.
std::string answer(const std::string& line, Runner& runner, LoadGenerator& generator, int64_t batch) {
  std::istringstream words(line);
  std::string cmd;
  words >> cmd;
  auto count = [&]() {
    long long n = 0;
    if (!(words >> n) || n < 0) throw Error(Code::InvalidArgument, cmd + " takes a count");
    return n;
  };
  if (cmd == "run") return measure(runner, static_cast<int>(count()));
  if (cmd == "throughput") return throughput(runner, static_cast<int>(count()), batch);
  if (cmd == "warmup") {
    const long long n = count();
    generator.warmup(n);
    return "{\"warmup\":" + std::to_string(n) + "}";
  }
  if (cmd == "window") {
    const auto [load, limit] = parse_window(words);
    return to_json(generator.window(load, limit));
  }
  throw Error(Code::InvalidArgument, "unknown command " + cmd);
}

std::vector<Load> sweep_loads(const Options& o) {
  std::vector<Load> loads;
  if (!o.concurrency_range.empty()) {
    for (double c : parse_range(o.concurrency_range, "--concurrency-range")) {
      Load l;
      l.concurrency = static_cast<int>(std::lround(c));
      loads.push_back(l);
    }
  }
  for (double r : o.rate_range.empty() ? std::vector<double>{} : parse_range(o.rate_range, "--request-rate-range")) {
    Load l;
    l.kind = Load::Kind::Rate;
    l.rate = r;
    l.poisson = o.poisson;
    loads.push_back(l);
  }
  return loads;
}

int serve(Runner& runner, LoadGenerator& generator, const Session& session, int64_t batch) {
  std::string ready = "{\"ready\":true,\"providers\":[";
  for (size_t i = 0; i < session.providers().size(); ++i) ready += (i ? "," : "") + json_string(session.providers()[i]);
  std::printf("%s]}\n", ready.c_str());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::string reply;
    try {
      reply = answer(line, runner, generator, batch);
    } catch (const Error& e) {
      reply = error_json(code_name(e.code()), e.what());
    } catch (const std::exception& e) {
      reply = error_json("E_ORT", e.what());
    }
    std::printf("%s\n", reply.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    o.sweep.loads = sweep_loads(o);
    RuntimeConfig rc;
    rc.library_path = o.library;
    Runtime::init(rc);
    SessionConfig sc;
    sc.intra_op_threads = o.intra;
    sc.inter_op_threads = o.intra < 0 ? -1 : 1;
    sc.spinning = o.spin;
    if (o.provider != "cpu") sc.providers.push_back(ProviderSpec{o.provider, {}});
    std::vector<std::shared_ptr<Session>> sessions;
    for (int i = 0; i < o.instances; ++i) sessions.push_back(Session::load_file(o.model, sc));
    Inputs inputs;
    make_inputs(*sessions.front(), o.shapes, inputs);
    Runner r;
    r.session = sessions.front();
    r.inputs = &inputs;
    for (size_t i = 0; i < r.session->outputs().size(); ++i) r.fetches.push_back({i, nullptr});
    if (o.rotate) r.rotate(o.rotate);
    for (int i = 0; i < o.warmup; ++i) r.once();
    LoadGenerator generator(sessions, inputs, static_cast<size_t>(o.max_threads));
    if (o.serve) return serve(r, generator, *r.session, o.shapes.batch);
    if (o.sweep.loads.empty()) {
      std::printf("%s\n", measure(r, o.iters).c_str());
      return 0;
    }
    const std::vector<StepResult> steps = run_sweep(generator, o.sweep, stdout);
    if (!o.json.empty()) {
      const std::string description = o.model + " on " + r.session->providers().front() + " (Kiln's core, no Node)";
      std::FILE* f = std::fopen(o.json.c_str(), "w");
      if (!f) throw Error(Code::InvalidArgument, "cannot write " + o.json);
      const std::string text = target_report_json(description, steps);
      const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
      if (std::fclose(f) != 0 || !written) throw Error(Code::InvalidArgument, "cannot write " + o.json);
    }
  } catch (const Error& e) {
    // --serve: the reason goes to the driver as a reply too, with its code.
    if (o.serve) std::printf("%s\n", error_json(code_name(e.code()), e.what()).c_str());
    std::fprintf(stderr, "kiln-harness: %s: %s\n", code_name(e.code()), e.what());
    return 1;
  }
  return 0;
}
