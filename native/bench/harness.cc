// The native floor: runs a model through Kiln's core with no Node in the process.
//
//   kiln-harness --model m.onnx [--batch B] [--dim name=V] [--intra T] [--spin] [--library L]
//                [--iters N] [--warmup W] [--rotate-outputs N] [--provider cpu|cuda|tensorrt]
//                                                   one measurement, a JSON line on stdout
//   kiln-harness ... --serve                        reads "run N" / "throughput N" lines on
//                                                   stdin, answers one JSON line each, so a
//                                                   Node benchmark can interleave rounds
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime.h"
#include "session.h"

using namespace kiln;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model;
  std::string library;
  int64_t batch = 1;
  int intra = 1;
  int iters = 3000;
  int warmup = 200;
  bool serve = false;
  bool spin = false;
  size_t rotate = 0;
  std::string provider = "cpu";  // cpu | cuda | tensorrt (GPU ones run with device IO)
  std::map<std::string, int64_t> dims;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "kiln-harness: %s\nusage: kiln-harness --model m.onnx [--batch B] [--dim name=V] [--intra T] "
               "[--spin] [--library L] [--iters N] [--warmup W] [--rotate-outputs N] [--serve] [--provider cpu|cuda|tensorrt]\n", why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  const char* env_lib = std::getenv("KILN_ORT_LIBRARY");
  if (env_lib) o.library = env_lib;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--library") o.library = next();
    else if (a == "--batch") o.batch = std::stoll(next());
    else if (a == "--intra") o.intra = std::stoi(next());
    else if (a == "--iters") o.iters = std::stoi(next());
    else if (a == "--warmup") o.warmup = std::stoi(next());
    else if (a == "--serve") o.serve = true;
    else if (a == "--spin") o.spin = true;
    else if (a == "--rotate-outputs") o.rotate = std::stoul(next());
    else if (a == "--provider") o.provider = next();
    else if (a == "--dim") {
      std::string kv = next();
      size_t eq = kv.find('=');
      if (eq == std::string::npos) usage("--dim takes name=value");
      o.dims[kv.substr(0, eq)] = std::stoll(kv.substr(eq + 1));
    } else usage("unknown argument " + a);
  }
  if (o.model.empty()) usage("--model is required");
  return o;
}

// Inputs shaped from the model's metadata: the first dynamic dim is the batch, named dims
// come from --dim, other dynamic dims are 1. Floats are seeded random; other types zero.
struct Inputs {
  std::vector<std::vector<char>> buffers;
  std::vector<std::vector<std::string>> strings;
  std::vector<Feed> feeds;
};

Inputs make_inputs(const Session& s, const Options& o) {
  Inputs in;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  in.buffers.resize(s.inputs().size());
  in.strings.resize(s.inputs().size());
  for (size_t i = 0; i < s.inputs().size(); ++i) {
    const ValueInfo& v = s.inputs()[i];
    Feed f;
    f.input = i;
    f.view.type = v.type;
    bool batch_used = false;
    for (size_t d = 0; d < v.shape.size(); ++d) {
      int64_t dim = v.shape[d];
      if (dim < 0) {
        auto it = o.dims.find(v.symbolic[d]);
        if (it != o.dims.end()) dim = it->second;
        else if (!batch_used) dim = o.batch, batch_used = true;
        else dim = 1;
      }
      f.view.shape.push_back(dim);
    }
    const Label label{"input", v.name};
    if (v.type == DType::String) {
      in.strings[i].assign(element_count(f.view.shape.data(), f.view.shape.size(), label), "kiln");
      f.view.strings = &in.strings[i];
    } else {
      size_t bytes = byte_size(v.type, f.view.shape.data(), f.view.shape.size(), label);
      in.buffers[i].assign(bytes, 0);
      if (v.type == DType::Float32) {
        float* p = reinterpret_cast<float*>(in.buffers[i].data());
        for (size_t k = 0; k < bytes / 4; ++k) p[k] = uni(rng);
      }
      f.view.data = in.buffers[i].data();
      f.view.bytes = bytes;
    }
    in.feeds.push_back(std::move(f));
  }
  return in;
}

struct Runner {
  std::shared_ptr<Session> session;
  Inputs inputs;
  std::vector<Fetch> fetches;
  std::vector<OwnedTensor> out;
  // --rotate-outputs N: outputs go to N preallocated buffer sets in turn, as when every
  // caller keeps its own output for a while, instead of one arena block that stays cached.
  std::vector<std::vector<std::vector<char>>> ring;
  std::vector<std::vector<TensorView>> ring_views;
  size_t next = 0;

  void once() {
    if (!ring.empty()) {
      std::vector<TensorView>& views = ring_views[next++ % ring.size()];
      for (size_t i = 0; i < fetches.size(); ++i) fetches[i].preallocated = &views[i];
    }
    session->run(inputs.feeds.data(), inputs.feeds.size(), fetches.data(), fetches.size(), out);
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

  std::vector<TensorView> out_shapes;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

// Per-call latencies in microseconds, as JSON: summary plus every sample.
void measure(Runner& r, int iters) {
  std::vector<double> us(iters);
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    r.once();
    us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  std::vector<double> sorted = us;
  double mean = 0;
  for (double x : us) mean += x;
  mean /= iters;
  double p50 = percentile(sorted, 0.5), p99 = percentile(sorted, 0.99);
  std::printf("{\"iters\":%d,\"median_us\":%.3f,\"p99_us\":%.3f,\"mean_us\":%.3f,\"samples_us\":[", iters, p50, p99, mean);
  for (int i = 0; i < iters; ++i) std::printf(i ? ",%.3f" : "%.3f", us[i]);
  std::printf("]}\n");
  std::fflush(stdout);
}

// Back-to-back runs for `iters` calls: inferences per second at this batch size.
void throughput(Runner& r, int iters, int64_t batch) {
  auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) r.once();
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("{\"iters\":%d,\"batch\":%lld,\"seconds\":%.6f,\"inferences_per_s\":%.1f}\n", iters,
              static_cast<long long>(batch), s, iters * batch / s);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    RuntimeConfig rc;
    rc.library_path = o.library;
    Runtime::init(rc);
    SessionConfig sc;
    sc.intra_op_threads = o.intra;
    sc.inter_op_threads = 1;
    sc.spinning = o.spin;
    if (o.provider != "cpu") sc.providers.push_back(ProviderSpec{o.provider, {}});
    Runner r;
    r.session = Session::load_file(o.model, sc);
    r.inputs = make_inputs(*r.session, o);
    for (size_t i = 0; i < r.session->outputs().size(); ++i) r.fetches.push_back({i, nullptr});
    if (o.rotate) r.rotate(o.rotate);
    for (int i = 0; i < o.warmup; ++i) r.once();
    if (!o.serve) {
      measure(r, o.iters);
      return 0;
    }
    std::printf("{\"ready\":true}\n");
    std::fflush(stdout);
    std::string cmd;
    int n = 0;
    while (std::cin >> cmd >> n) {
      if (cmd == "run") measure(r, n);
      else if (cmd == "throughput") throughput(r, n, o.batch);
      else std::printf("{\"error\":\"unknown command %s\"}\n", cmd.c_str());
      std::fflush(stdout);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "kiln-harness: %s: %s\n", code_name(e.code()), e.what());
    return 1;
  }
  return 0;
}
