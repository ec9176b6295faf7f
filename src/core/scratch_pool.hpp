// ScratchPool: large scratch buffers that operations borrow and give back, so that an op's
// scratch (a reduce-scatter's partial sums, as large as its whole input; the copy of an
// in-place all-reduce's input or of a broadcast's output kept for all or nothing) costs no
// fresh allocation, page faults and zeroing each time: at 64 MiB those were a quarter of a
// reduce-scatter's time. The pool keeps up to kMaxCached buffers after their ops ended; a
// buffer's contents are unspecified when borrowed.
//
// Thread-safety: every function may be called from any thread (the loops of several
// communicators share the pool).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace qccl::core {

class ScratchPool {
 public:
  static constexpr size_t kMaxCached = 4;

  // A borrowed buffer; gives it back to the pool when destroyed.
  class Buffer {
   public:
    Buffer() = default;
    Buffer(Buffer&&) noexcept = default;
    Buffer& operator=(Buffer&& other) noexcept;
    ~Buffer();
    uint8_t* data() { return data_.get(); }
    size_t capacity() const { return capacity_; }

   private:
    friend class ScratchPool;
    Buffer(std::unique_ptr<uint8_t[]> data, size_t capacity)
        : data_(std::move(data)), capacity_(capacity) {}
    std::unique_ptr<uint8_t[]> data_;
    size_t capacity_ = 0;
  };

  // At least `bytes` bytes (a cached buffer if one is large enough, else a new one).
  static Buffer borrow(size_t bytes);

 private:
  static void give_back(std::unique_ptr<uint8_t[]> data, size_t capacity);
};

}  // namespace qccl::core
