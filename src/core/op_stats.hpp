// OpStats: where one communicator's operations spent their time, summed over the operations
// that ended (committed or failed), for qcclGetStats (docs/performance.md, "Where the time
// goes"). An op's life splits into three consecutive spans, measured on the loop thread:
//
//   wait_ring    made -> begun: waiting for the lanes of the op's group epoch
//   data         begun -> every frame received and written (the dataflow)
//   commit       frames done -> the master's verdict (the all-or-nothing round) or the end
//                of a failure
//
// frame_work is the part of `data` the loop spent taking frames in (reduction, decoding,
// bookkeeping, queueing what follows); the rest of `data` is socket I/O and waiting. Ops that
// run concurrently each count their own spans, so spans may sum to more than the wall time.
//
// Thread-safety: a value type; the engine updates its copy on the loop thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace qccl::core {

struct OpStats {
  uint64_t ops = 0;
  std::chrono::nanoseconds wait_ring{0};
  std::chrono::nanoseconds data{0};
  std::chrono::nanoseconds commit{0};
  std::chrono::nanoseconds frame_work{0};
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  // CPU time (user + system) of the communicator's loop thread since it started; filled in
  // when the stats are read.
  std::chrono::nanoseconds thread_cpu{0};
};

}  // namespace qccl::core
