#include "core/admission.hpp"

#include <thread>

namespace qccl::core {

Result<bool> admit_pending(Communicator& comm) {
  auto pending = comm.are_peers_pending();
  if (!pending.is_ok() || !*pending) return pending;
  Status st = comm.update_topology();
  if (!st.is_ok()) return st;
  return true;
}

Status wait_for_world(Communicator& comm, int64_t min_size, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds poll) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  for (;;) {
    auto size = comm.attribute(Attribute::kGroupWorldSize);
    if (!size.is_ok()) return size.status();
    if (*size >= min_size) return Status::ok();
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (timeout.count() > 0 && waited >= timeout) {
      return make_status(StatusCode::kTimeout,
                         "qcclWaitForWorld: the group has {} of the {} peers after {} ms", *size,
                         min_size, waited.count());
    }
    auto admitted = admit_pending(comm);
    if (!admitted.is_ok()) return admitted.status();
    // Nobody was pending: ask again a little later rather than spin on the master. Every
    // peer of the group makes the same calls, so their polls meet in each vote.
    if (!*admitted) std::this_thread::sleep_for(poll);
  }
}

}  // namespace qccl::core
