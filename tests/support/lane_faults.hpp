// LaneFaults: the faults the lane tests inject, as a net::FaultPolicy (the one seam,
// src/net/fault_policy.hpp), given to a peer with Communicator::set_fault_policy_for_testing.
// Each fault fires once; byte counts are totals over the peer's data lanes.
//
//   close_after_bytes       an outbound lane closes once this many bytes were written
//   stall_reads_after_bytes the inbound read that starts after this many bytes never
//                           completes (the peer stops reading that lane, as a hung process)
//   stall_lane_after_bytes  the first payload read after this many bytes takes half the
//                           payload, closes the receive window and then hangs: one lane
//                           stalled by loss or a cap while the others flow
#pragma once

#include <cstdint>
#include <memory>

#include "net/fault_policy.hpp"
#include "peer/data_frame.hpp"

namespace qccl::test_support {

struct LaneFaults {
  uint64_t close_after_bytes = 0;
  uint64_t stall_reads_after_bytes = 0;
  uint64_t stall_lane_after_bytes = 0;
};

class LaneFaultPolicy final : public net::FaultPolicy {
 public:
  explicit LaneFaultPolicy(LaneFaults faults) : faults_(faults) {}

  net::ReadFault before_read(size_t bytes) override {
    net::ReadFault fault;
    if (faults_.stall_reads_after_bytes != 0 && read_ >= faults_.stall_reads_after_bytes) {
      faults_.stall_reads_after_bytes = 0;
      fault.hang = true;
      return fault;
    }
    // A payload, not a frame head: the hang is mid-frame.
    if (faults_.stall_lane_after_bytes != 0 && read_ >= faults_.stall_lane_after_bytes &&
        bytes > peer::kDataHeadBytes) {
      faults_.stall_lane_after_bytes = 0;
      fault.hang = true;
      fault.bytes_first = bytes / 2;
      fault.close_window = true;
      return fault;
    }
    read_ += bytes;
    return fault;
  }

  bool close_after_write(size_t bytes) override {
    written_ += bytes;
    if (faults_.close_after_bytes == 0 || written_ < faults_.close_after_bytes) return false;
    faults_.close_after_bytes = 0;
    return true;
  }

 private:
  LaneFaults faults_;
  uint64_t read_ = 0;
  uint64_t written_ = 0;
};

inline std::shared_ptr<net::FaultPolicy> lane_faults(LaneFaults faults) {
  return std::make_shared<LaneFaultPolicy>(faults);
}

}  // namespace qccl::test_support
