// FaultPolicy: the one seam through which tests inject faults into connections.
//
// A connection given a policy (Connection::set_fault_policy; the data lanes get the one passed
// to Communicator::set_fault_policy_for_testing) asks it before every read and after every
// write. Production code never sets one, and nothing else in the library branches on tests.
// Ready-made policies (close a lane after N bytes, stall reads, stall one lane mid-frame) are
// in tests/support/lane_faults.hpp.
//
// Thread-safety: called on the loop thread of the connections that share it.
#pragma once

#include <cstddef>

namespace qccl::net {

// What a read does instead of reading normally.
struct ReadFault {
  // Read at most `bytes_first` bytes (those already received), then nothing until the
  // connection closes.
  bool hang = false;
  size_t bytes_first = 0;
  bool close_window = false;  // shrink the receive buffer first, so the sender's data stays unacked
};

class FaultPolicy {
 public:
  virtual ~FaultPolicy() = default;
  // Before a read of `bytes` bytes: normal (hang = false), or a hang.
  virtual ReadFault before_read(size_t bytes) = 0;
  // After `bytes` bytes were written: true closes the connection (the write itself succeeded).
  virtual bool close_after_write(size_t bytes) = 0;
};

}  // namespace qccl::net
