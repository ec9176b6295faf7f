#include "core/scratch_pool.hpp"

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

namespace qccl::core {
namespace {

struct Cached {
  std::unique_ptr<uint8_t[]> data;
  size_t capacity = 0;
};

std::mutex& pool_mutex() {
  static std::mutex mu;
  return mu;
}

std::vector<Cached>& pool() {
  static std::vector<Cached> cached;
  return cached;
}

}  // namespace

ScratchPool::Buffer& ScratchPool::Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (data_) give_back(std::move(data_), capacity_);
    data_ = std::move(other.data_);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

ScratchPool::Buffer::~Buffer() {
  if (data_) give_back(std::move(data_), capacity_);
}

ScratchPool::Buffer ScratchPool::borrow(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(pool_mutex());
    auto& cached = pool();
    // The smallest cached buffer that is large enough.
    auto best = cached.end();
    for (auto it = cached.begin(); it != cached.end(); ++it) {
      if (it->capacity >= bytes && (best == cached.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best != cached.end()) {
      Buffer b(std::move(best->data), best->capacity);
      cached.erase(best);
      return b;
    }
  }
  return Buffer(std::make_unique_for_overwrite<uint8_t[]>(std::max<size_t>(bytes, 1)), bytes);
}

void ScratchPool::give_back(std::unique_ptr<uint8_t[]> data, size_t capacity) {
  std::lock_guard<std::mutex> lock(pool_mutex());
  auto& cached = pool();
  cached.push_back(Cached{std::move(data), capacity});
  if (cached.size() > kMaxCached) {
    // Keep the largest ones: they serve every smaller request too.
    auto smallest = std::min_element(cached.begin(), cached.end(), [](const auto& a,
                                                                      const auto& b) {
      return a.capacity < b.capacity;
    });
    cached.erase(smallest);
  }
}

}  // namespace qccl::core
