#include "memory.h"

#include <cstdlib>
#include <new>

namespace kiln {
namespace {

size_t class_index(size_t capacity) {
  size_t i = 0;
  for (size_t c = HostBufferPool::kMinClass; c < capacity; c <<= 1) ++i;
  return i;
}

}  // namespace

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
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

void HostBuffer::reset() {
  if (data_ && pool_) pool_->give_back(data_, capacity_);
  pool_.reset();
  data_ = nullptr;
  capacity_ = 0;
}

std::shared_ptr<HostBufferPool> HostBufferPool::create(size_t max_free_per_class) {
  return std::shared_ptr<HostBufferPool>(new HostBufferPool(max_free_per_class));
}

HostBufferPool::~HostBufferPool() {
  for (auto& list : free_)
    for (void* p : list) std::free(p);
}

HostBuffer HostBufferPool::acquire(size_t bytes) {
  size_t capacity = kMinClass;
  while (capacity < bytes) capacity <<= 1;
  const size_t index = class_index(capacity);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (index < free_.size() && !free_[index].empty()) {
      void* p = free_[index].back();
      free_[index].pop_back();
      return HostBuffer(shared_from_this(), p, capacity);
    }
    ++allocations_;
  }
  void* p = std::aligned_alloc(kAlignment, capacity);
  if (!p) throw std::bad_alloc();
  return HostBuffer(shared_from_this(), p, capacity);
}

void HostBufferPool::give_back(void* data, size_t capacity) {
  const size_t index = class_index(capacity);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() <= index) free_.resize(index + 1);
    if (free_[index].size() < max_free_) {
      free_[index].push_back(data);
      return;
    }
  }
  std::free(data);
}

size_t HostBufferPool::allocations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return allocations_;
}

}  // namespace kiln
