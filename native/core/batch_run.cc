#include "batch_run.h"

#include <chrono>

#include "error.h"

namespace kiln {
namespace {

double micros_since(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point end) {
  return std::chrono::duration<double, std::micro>(end - start).count();
}

}  // namespace

void BatchRun::reset(std::shared_ptr<const Session> session, size_t requests, bool batched) {
  if (requests == 0 || (!batched && requests != 1)) {
    throw Error(Code::InvalidArgument, "a run needs one request, a batch at least one");
  }
  session_ = std::move(session);
  requests_ = requests;
  batched_ = batched;
  const size_t inputs = session_->inputs().size();
  feeds_.resize(inputs);
  for (size_t i = 0; i < inputs; ++i) feeds_[i].input = i;
  strings_.resize(inputs * requests);
  held_.clear();
  fetches_.clear();
  has_buffer_.clear();
  outputs_.clear();
  timings_ = RunTimings{};
  if (!batched) return;
  parts_.assign(inputs, std::vector<TensorView>(requests));
  padding_.assign(inputs, std::nullopt);
  storage_.resize(inputs);
  gathered_.resize(inputs);
}

void BatchRun::clear() {
  session_.reset();
  held_.clear();
  outputs_.clear();
  for (Buffer& b : storage_) b.reset();
}

TensorView& BatchRun::part(size_t input, size_t request) {
  const ValueInfo& info = session_->inputs().at(input);
  if (info.kind != "tensor") throw Error(Code::InvalidArgument, "input \"" + info.name + "\" is not a tensor");
  TensorView& view = batched_ ? parts_[input].at(request) : feeds_[input].view;
  view.device = -1;
  return view;
}

std::vector<std::string>& BatchRun::strings(size_t input, size_t request) {
  return strings_.at(request * feeds_.size() + input);
}

void BatchRun::device_part(size_t input, size_t request, std::shared_ptr<const OwnedTensor> tensor) {
  const ValueInfo& info = session_->inputs().at(input);
  const Label label{"input", info.name};
  TensorView& view = part(input, request);
  if (batched_) throw Error(Code::InvalidArgument, label.str() + ": a device tensor cannot join a batch; run it with session.run()");
  if (tensor->type != info.type) {
    throw Error(Code::DtypeMismatch, label.str() + ": expected " + dtype_name(info.type) + ", received a " +
                                         dtype_name(tensor->type) + " device tensor");
  }
  if (tensor->shape != view.shape) {
    throw Error(Code::ShapeMismatch, label.str() + ": the device tensor has dims " +
                                         format_shape(tensor->shape.data(), tensor->shape.size()) + ", the feed says " +
                                         format_shape(view.shape.data(), view.shape.size()));
  }
  view.type = tensor->type;
  view.data = tensor->data;
  view.bytes = tensor->bytes;
  view.device = tensor->device;
  held_.push_back(std::move(tensor));
}

void BatchRun::pad(size_t input, Padding padding) {
  if (!batched_) throw Error(Code::InvalidArgument, "only a batch's inputs are padded");
  padding_.at(input) = std::move(padding);
}

void BatchRun::shape_feeds() {
  if (!batched_) return;
  std::vector<const TensorView*> parts(requests_);
  for (size_t i = 0; i < feeds_.size(); ++i) {
    const ValueInfo& info = session_->inputs()[i];
    TensorView& feed = feeds_[i].view;
    feed.type = info.type;
    for (size_t r = 0; r < requests_; ++r) parts[r] = &parts_[i][r];
    if (const std::optional<Padding>& padding = padding_[i]) {
      int64_t rows = 0;
      for (const TensorView* v : parts) rows += v->shape.empty() ? 0 : v->shape[0];
      feed.shape = {rows};
      feed.shape.insert(feed.shape.end(), padding->target.begin(), padding->target.end());
    } else {
      feed.shape = batch_shape(parts, info.name);
    }
  }
}

void BatchRun::fetch_all() {
  const std::vector<ValueInfo>& outputs = session_->outputs();
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (outputs[o].kind == "tensor" && outputs[o].type != DType::Undefined) fetch(o);
  }
}

void BatchRun::fetch(size_t output) {
  const std::vector<ValueInfo>& outputs = session_->outputs();
  if (output >= outputs.size() || outputs[output].kind != "tensor") throw Error(Code::InvalidArgument, "invalid output index");
  fetches_.push_back(Fetch{output, nullptr, false});
  has_buffer_.push_back(false);
  if (buffers_.size() < fetches_.size()) buffers_.resize(fetches_.size());
  TensorView& buffer = buffers_[fetches_.size() - 1];
  buffer.shape.clear();  // keeps its capacity for the next run
  buffer.data = nullptr;
  buffer.bytes = 0;
}

void BatchRun::keep_on_device(size_t i) { fetches_.at(i).on_device = true; }

TensorView& BatchRun::caller_buffer(size_t i) {
  const ValueInfo& info = session_->outputs()[fetches_.at(i).output];
  if (info.type == DType::String) {
    throw Error(Code::InvalidArgument, Label{"output", info.name}.str() + ": string outputs cannot be preallocated");
  }
  has_buffer_[i] = true;
  return buffers_[i];
}

size_t BatchRun::expected_bytes(size_t i) {
  const size_t output = fetches_.at(i).output;
  const ValueInfo& info = session_->outputs()[output];
  TensorView& view = buffers_[i];
  if (session_->device() >= 0 || info.type == DType::String ||
      !session_->expected_shape(output, feeds_.data(), feeds_.size(), view.shape)) {
    return 0;
  }
  view.type = info.type;
  view.bytes = byte_size(info.type, view.shape.data(), view.shape.size(), Label{"output", info.name});
  view.strings = nullptr;
  return view.bytes;
}

void BatchRun::write_expected(size_t i, void* data) {
  buffers_.at(i).data = data;
  has_buffer_[i] = true;
  fetches_[i].expected = true;
}

void BatchRun::gather_inputs() {
  const std::shared_ptr<BufferPool> pool = session_->batch_pool();
  std::vector<const TensorView*> parts(requests_);
  for (size_t i = 0; i < feeds_.size(); ++i) {
    for (size_t r = 0; r < requests_; ++r) parts[r] = &parts_[i][r];
    const std::string& name = session_->inputs()[i].name;
    if (const std::optional<Padding>& padding = padding_[i]) {
      gather_padded(parts, name, *padding, *pool, storage_[i], feeds_[i].view);
    } else {
      gather(parts, name, *pool, storage_[i], gathered_[i], feeds_[i].view);
    }
  }
}

void BatchRun::execute(OrtRunOptions* options) {
  const auto start = std::chrono::steady_clock::now();
  if (batched_) gather_inputs();
  const auto gathered = std::chrono::steady_clock::now();
  timings_.input_us = micros_since(start, gathered);
  for (size_t i = 0; i < fetches_.size(); ++i) fetches_[i].preallocated = has_buffer_[i] ? &buffers_[i] : nullptr;
  outputs_.clear();
  session_->run(feeds_.data(), feeds_.size(), fetches_.data(), fetches_.size(), outputs_, options);
  timings_.compute_us = micros_since(gathered, std::chrono::steady_clock::now());
  for (Buffer& b : storage_) b.reset();  // the batch's inputs are no longer needed
}

}  // namespace kiln
