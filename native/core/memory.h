// Buffers for batch assembly and device IO: size-classed, reused across batches so that
// steady-state batching allocates nothing. The memory comes from an allocator: aligned host
// memory by default; pinned host memory or device memory on a GPU (cuda.h).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace kiln {

class BufferPool;

// A buffer from a pool; returns itself to the pool when destroyed.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  // The memory: a host pointer, or a device address for a device pool.
  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }
  void reset();

 private:
  friend class BufferPool;
  Buffer(std::shared_ptr<BufferPool> pool, void* data, size_t capacity)
      : pool_(std::move(pool)), data_(data), capacity_(capacity) {}

  std::shared_ptr<BufferPool> pool_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Where a pool's memory comes from. `allocate` returns null or throws on failure; `release`
// must not throw.
struct Allocator {
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void* data)> release;
};

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kMinClass = 4096;

  // Host memory aligned to kAlignment. `max_free_per_class`: buffers kept for reuse per size
  // class; more are freed.
  static std::shared_ptr<BufferPool> create(size_t max_free_per_class = 8);
  static std::shared_ptr<BufferPool> create(Allocator allocator, size_t max_free_per_class = 8);
  ~BufferPool();

  // A buffer of at least `bytes` (rounded up to a power-of-two class); std::bad_alloc when
  // the allocator has no memory.
  Buffer acquire(size_t bytes);

  size_t allocations() const;  // buffers ever allocated (not reused)
  size_t live() const;         // buffers allocated and not yet released to the allocator

 private:
  BufferPool(Allocator allocator, size_t max_free) : allocator_(std::move(allocator)), max_free_(max_free) {}
  friend class Buffer;
  void give_back(void* data, size_t capacity);

  const Allocator allocator_;
  const size_t max_free_;
  mutable std::mutex mutex_;
  std::vector<std::vector<void*>> free_;  // per class index
  size_t allocations_ = 0;
  size_t live_ = 0;
};

}  // namespace kiln
