// Host memory for batch assembly: size-classed, 64-byte aligned, reused across batches so
// that steady-state batching allocates nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace kiln {

class HostBufferPool;

// A buffer from the pool; returns itself to the pool when destroyed.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(HostBuffer&& other) noexcept { *this = std::move(other); }
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  ~HostBuffer() { reset(); }

  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }
  void reset();

 private:
  friend class HostBufferPool;
  HostBuffer(std::shared_ptr<HostBufferPool> pool, void* data, size_t capacity)
      : pool_(std::move(pool)), data_(data), capacity_(capacity) {}

  std::shared_ptr<HostBufferPool> pool_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

class HostBufferPool : public std::enable_shared_from_this<HostBufferPool> {
 public:
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kMinClass = 4096;

  // `max_free_per_class`: buffers kept for reuse per size class; more are freed.
  static std::shared_ptr<HostBufferPool> create(size_t max_free_per_class = 8);
  ~HostBufferPool();

  // A buffer of at least `bytes` (rounded up to a power-of-two class).
  HostBuffer acquire(size_t bytes);

  size_t allocations() const;  // buffers ever allocated (not reused)

 private:
  explicit HostBufferPool(size_t max_free) : max_free_(max_free) {}
  friend class HostBuffer;
  void give_back(void* data, size_t capacity);

  const size_t max_free_;
  mutable std::mutex mutex_;
  std::vector<std::vector<void*>> free_;  // per class index
  size_t allocations_ = 0;
};

}  // namespace kiln
