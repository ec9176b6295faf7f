#include "collectives/chunking.hpp"

#include <algorithm>

#include "wire/frame.hpp"

namespace qccl::collectives {

Range chunk_range(size_t count, uint32_t world, uint32_t index) {
  size_t base = count / world;
  size_t extra = count % world;
  size_t offset = index * base + std::min<size_t>(index, extra);
  return {offset, base + (index < extra ? 1 : 0)};
}

size_t num_segments(size_t chunk_count, size_t segment_elems) {
  return (chunk_count + segment_elems - 1) / segment_elems;
}

Range segment_range(Range chunk, size_t segment_elems, size_t j) {
  size_t offset = j * segment_elems;
  return {chunk.offset + offset, std::min(segment_elems, chunk.count - offset)};
}

size_t choose_segment_elems(size_t count, size_t elem_size, uint32_t world) {
  constexpr size_t kMin = 64 * 1024;
  constexpr size_t kMax = 512 * 1024;
  static_assert(kMax <= wire::kMaxSegmentBytes);
  size_t chunk_bytes = (count / std::max<uint32_t>(world, 1) + 1) * elem_size;
  size_t bytes = std::clamp(chunk_bytes / 8, kMin, kMax);
  return std::max<size_t>(1, bytes / elem_size);
}

}  // namespace qccl::collectives
