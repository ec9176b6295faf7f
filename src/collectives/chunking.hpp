// Partition math of the ring all-reduce (pure; exhaustively unit-tested).
//
// A buffer of `count` elements is cut into `world` contiguous chunks whose sizes differ by at
// most one element (the first count % world chunks get the extra one), and each chunk into
// segments of at most `segment_elems` elements (the last one may be shorter). Every peer
// computes the same partition from (count, element size, world), so segment (c, j) means the
// same bytes everywhere.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qccl::collectives {

struct Range {
  size_t offset = 0;  // in elements
  size_t count = 0;
  bool operator==(const Range&) const = default;
};

// Chunk `index` of `count` elements split `world` ways. REQUIRES: world >= 1, index < world.
Range chunk_range(size_t count, uint32_t world, uint32_t index);

// Number of segments of a chunk with `chunk_count` elements (0 for an empty chunk).
// REQUIRES: segment_elems >= 1.
size_t num_segments(size_t chunk_count, size_t segment_elems);

// Segment `j` of `chunk` (absolute element range). REQUIRES: j < num_segments(chunk.count, ...).
Range segment_range(Range chunk, size_t segment_elems, size_t j);

// Segment size in elements for an operation: about 1/8 of a chunk, between 64 KiB and 512 KiB,
// so that even a 1 MiB operation flows as a pipeline and large ones keep per-frame overhead
// small. Depends only on values every peer shares (never on per-peer settings).
size_t choose_segment_elems(size_t count, size_t elem_size, uint32_t world);

}  // namespace qccl::collectives
