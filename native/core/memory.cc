#include "memory.h"

#include <cstdlib>
#include <limits>
#include <new>

namespace kiln {
namespace {

size_t class_index(size_t capacity) {
  size_t i = 0;
  for (size_t c = BufferPool::kMinClass; c < capacity; c <<= 1) ++i;
  return i;
}

}  // namespace

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::move(other.pool_);
    data_ = other.data_;
    capacity_ = other.capacity_;
    other.data_ = nullptr;
    other.capacity_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (data_ && pool_) pool_->give_back(data_, capacity_);
  pool_.reset();
  data_ = nullptr;
  capacity_ = 0;
}

std::shared_ptr<BufferPool> BufferPool::create(size_t max_free_per_class) {
  return create(Allocator{[](size_t bytes) { return std::aligned_alloc(kAlignment, bytes); }, [](void* p) { std::free(p); }},
                max_free_per_class);
}

std::shared_ptr<BufferPool> BufferPool::create(Allocator allocator, size_t max_free_per_class) {
  return std::shared_ptr<BufferPool>(new BufferPool(std::move(allocator), max_free_per_class));
}

BufferPool::~BufferPool() {
  for (auto& list : free_)
    for (void* p : list) allocator_.release(p);
}

Buffer BufferPool::acquire(size_t bytes) {
  if (bytes > (std::numeric_limits<size_t>::max() >> 1) + 1) throw std::bad_alloc();  // no class holds it
  size_t capacity = kMinClass;
  while (capacity < bytes) capacity <<= 1;
  const size_t index = class_index(capacity);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (index < free_.size() && !free_[index].empty()) {
      void* p = free_[index].back();
      free_[index].pop_back();
      return Buffer(shared_from_this(), p, capacity);
    }
  }
  void* p = allocator_.allocate(capacity);
  if (!p) throw std::bad_alloc();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++allocations_;
    ++live_;
  }
  return Buffer(shared_from_this(), p, capacity);
}

void BufferPool::give_back(void* data, size_t capacity) {
  const size_t index = class_index(capacity);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() <= index) free_.resize(index + 1);
    if (free_[index].size() < max_free_) {
      free_[index].push_back(data);
      return;
    }
    --live_;
  }
  allocator_.release(data);
}

size_t BufferPool::allocations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return allocations_;
}

size_t BufferPool::live() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_;
}

}  // namespace kiln
