// One run as an executor performs it: the requests' tensors per input (a batch gathered
// into pooled buffers, or one request's tensors borrowed as they are), the outputs to fetch
// and where each goes, and what the run measured. The N-API glue fills one from JS values
// and reads the outputs back; everything between is here.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "batch.h"
#include "session.h"

namespace kiln {

struct RunTimings {
  double input_us = 0;    // gathering the batch's inputs
  double compute_us = 0;  // the session's run (ORT), retry included
};

class BatchRun {
 public:
  // Starts a run of `session` with `requests` requests (at least one). `batched`: each
  // input's requests are gathered into one buffer of the session's batch pool before the
  // run; otherwise there is one request and its tensors are the feeds themselves. Vectors
  // keep their capacity from earlier runs.
  void reset(std::shared_ptr<const Session> session, size_t requests, bool batched);
  // Drops the session, the outputs and the held tensors (capacity is kept).
  void clear();

  // Request `request`'s tensor for model input `input`, for the caller to fill;
  // kiln::Error(InvalidArgument) when the input is not a tensor.
  TensorView& part(size_t input, size_t request);
  // Storage for the strings of part(input, request).
  std::vector<std::string>& strings(size_t input, size_t request);
  // Part (input, request) is `tensor`, which lives on a CUDA device: checked against the
  // input and against the dims part() was given, and held until the run is cleared.
  void device_part(size_t input, size_t request, std::shared_ptr<const OwnedTensor> tensor);
  // Pads every request of `input` to `padding.target` (a batched run only).
  void pad(size_t input, Padding padding);
  // Sets each feed's shape once the parts are filled: a batch's shape is known before its
  // data is gathered, and the expected output shapes depend on it.
  void shape_feeds();

  // Fetches every output Kiln can return (tensors of a known element type), in model order.
  void fetch_all();
  // Fetches output `output`; kiln::Error(InvalidArgument) when it is not a tensor output.
  void fetch(size_t output);
  size_t fetch_count() const { return fetches_.size(); }
  // Fetch `i` stays on the session's CUDA device.
  void keep_on_device(size_t i);
  // The caller's buffer for fetch `i`, to fill before the run (valid until the next fetch);
  // kiln::Error(InvalidArgument) for a string output.
  TensorView& caller_buffer(size_t i);
  // The bytes of a buffer to hand ORT for fetch `i`, sized from the shape the output is
  // expected to have (Session::expected_shape); 0 when ORT should allocate the output: a
  // device session (which binds pooled device buffers itself), a string output, a shape not
  // known before the run, or an empty one.
  size_t expected_bytes(size_t i);
  // Fetch `i` is written into `data` (expected_bytes(i) bytes). If the run fails, it runs
  // again with ORT allocating this output: its shape may depend on the data.
  void write_expected(size_t i, void* data);

  // Gathers a batch's inputs, runs, and fills outputs() and timings(); throws kiln::Error.
  void execute(OrtRunOptions* options = nullptr);

  const Session& session() const { return *session_; }
  const std::vector<Feed>& feeds() const { return feeds_; }
  const std::vector<Fetch>& fetches() const { return fetches_; }
  // One per fetch, in order.
  std::vector<OwnedTensor>& outputs() { return outputs_; }
  const RunTimings& timings() const { return timings_; }
  // Whether fetch `i` was written into the caller's own buffer.
  bool wrote_caller_buffer(size_t i) const { return outputs_[i].preallocated && !fetches_[i].expected; }

 private:
  void gather_inputs();

  std::shared_ptr<const Session> session_;
  size_t requests_ = 0;
  bool batched_ = false;
  std::vector<Feed> feeds_;
  std::vector<std::vector<TensorView>> parts_;     // batched: per input, per request
  std::vector<std::vector<std::string>> strings_;  // per request, per input
  std::vector<std::optional<Padding>> padding_;    // batched: per input
  std::vector<Buffer> storage_;                    // batched: each input's gathered bytes
  std::vector<std::vector<std::string>> gathered_;  // batched: each input's gathered strings
  std::vector<std::shared_ptr<const OwnedTensor>> held_;
  std::vector<Fetch> fetches_;
  std::vector<TensorView> buffers_;  // per fetch (and spares): where it is written, when has_buffer_
  std::vector<bool> has_buffer_;
  std::vector<OwnedTensor> outputs_;
  RunTimings timings_;
};

}  // namespace kiln
