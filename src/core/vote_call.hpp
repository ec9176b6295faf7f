// VoteCall: the one vote a communicator may have in progress (qcclUpdateTopology,
// qcclArePeersPending, qcclOptimizeTopology; docs/call-order.md).
//
//   start()       C2MVote went to the master
//   on_result()   the master's M2CVoteResult: a refusal or a peers-pending answer ends the call;
//                 otherwise it waits, bounded, for the ring lanes of the epoch the vote led to
//   ring_up()     those lanes are up: the call ends with the result
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string_view>

#include "common/status.hpp"
#include "net/asio_common.hpp"
#include "wire/messages.hpp"

namespace qccl::core {

class VoteCall {
 public:
  using Promise = std::promise<Result<bool>>;
  explicit VoteCall(asio::any_io_executor ex) : ex_(std::move(ex)) {}

  static std::string_view call_name(wire::VoteKind kind);

  bool active() const { return vote_.has_value(); }
  std::optional<wire::VoteKind> kind() const;
  // The kind of the vote in progress if it still waits for the master's result (a vote whose
  // result came only waits for the lanes).
  std::optional<wire::VoteKind> waiting_result() const;
  void start(wire::VoteKind kind, std::shared_ptr<Promise> promise);
  // `ring_up`: the current epoch's lanes are up. `late` builds the error if they are not
  // within `bound`.
  void on_result(const wire::M2CVoteResult& r, bool ring_up, std::chrono::milliseconds bound,
                 std::function<Status()> late);
  void ring_up();
  void finish(Result<bool> result);

 private:
  struct Wait {
    wire::VoteKind kind;
    std::shared_ptr<Promise> promise;
    bool result_in = false;
    bool pending = false;
  };
  asio::any_io_executor ex_;
  std::optional<Wait> vote_;
  std::optional<asio::steady_timer> deadline_;
};

}  // namespace qccl::core
