// StateSync: one peer's side of the shared-state syncs (docs/shared-state.md).
//
// prepare_sync() runs on the caller's thread: it checks the tensors, sorts them by name and
// hashes them (state_hash.hpp, on several threads). The rest runs on the communicator's loop:
//
//   start()      serve our content (StateServer) and send C2MSyncState to the master
//   on_plan()    rejected: done. Nothing to fetch: wait for the result while serving.
//                Otherwise download (StateFetch) from the donors, then send C2MSyncDone
//   on_result()  the round ended: stop serving, and complete once no transfer touches the
//                caller's memory any more
//
// A result that arrives during our download (another receiver failed), a fatal error or the
// communicator's destruction cancel the download; completion always waits for the transfers
// to drain. Donors that leave the ring (on_ring) are dropped from the download at once.
//
// All or nothing: before downloading, the tensors to be overwritten are copied aside, and a
// sync that fails restores them (so a receiver's memory holds twice the downloaded tensors
// for the duration of the sync). Without it, losing the master mid-transfer would leave torn
// tensors behind and no retry to complete them.
//
// Thread-safety: prepare_sync() anywhere; everything else on the loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/ids.hpp"
#include "common/status.hpp"
#include "core/state_tensor.hpp"
#include "peer/data_links.hpp"
#include "quant/dtype.hpp"
#include "state/state_fetch.hpp"
#include "state/state_server.hpp"
#include "wire/messages.hpp"

namespace qccl::core {

// A sync ready to start: the vote and the memory behind it, in sorted order.
struct SyncRequest {
  wire::C2MSyncState vote;
  std::vector<state::ServedEntry> served;
  std::vector<uint8_t*> writable;
};

struct SyncOutcome {
  uint64_t revision = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
};

// kInvalidArgument for an empty, duplicate or over-long name, NULL data with count > 0,
// a bad dtype or a size overflow.
Result<SyncRequest> prepare_sync(std::span<const StateTensor> tensors, uint64_t revision,
                                 wire::SyncStrategy strategy);

class StateSync : public std::enable_shared_from_this<StateSync> {
 public:
  using SendFn = std::function<void(const wire::ControlMessage&)>;
  using Promise = std::promise<Result<SyncOutcome>>;

  // `on_idle` runs whenever a sync completed (the owner may be waiting to shut down).
  StateSync(asio::any_io_executor ex, SendFn send, std::function<void()> on_idle);

  void set_identity(PeerId self, peer::LinkSettings settings, uint32_t connections);
  bool active() const { return active_.has_value(); }

  void start(SyncRequest request, std::shared_ptr<Promise> promise);
  void on_plan(const wire::M2CSyncPlan& plan);
  void on_result(const wire::M2CSyncResult& result);
  void on_ring(const std::vector<wire::RingMember>& ring);
  void fail(const Status& why);
  // The master was lost: fails the sync like fail(), unless its download is done (or it had
  // nothing to fetch) and it only waits for the result, which a new master gives.
  void on_master_lost(const Status& why);
  // That wait: its round and elected revision.
  struct Waiting {
    uint64_t round = 0;
    uint64_t revision = 0;
  };
  std::optional<Waiting> waiting_result() const;
  // The revision the group's last successful sync elected, as this peer saw it (a new master
  // after a lost one continues from it: C2MResume).
  std::optional<uint64_t> last_revision() const { return last_revision_; }

  // A kState connection accepted by the data listener.
  void adopt(std::shared_ptr<net::Connection> conn, const wire::Preamble& preamble);

 private:
  enum class Phase { kVoted, kFetching, kWaitResult };
  struct Active {
    SyncRequest request;
    std::shared_ptr<Promise> promise;
    Phase phase = Phase::kVoted;
    uint64_t round = 0;
    uint64_t revision = 0;
    uint64_t rx_bytes = 0;
    std::vector<PeerId> donors;
    std::shared_ptr<state::StateFetch> fetch;
    std::optional<Result<SyncOutcome>> pending_end;  // decided while the fetch drains
    // The downloaded entries' content before the download, restored if the sync fails.
    std::vector<std::pair<uint32_t, std::vector<uint8_t>>> backup;
  };

  void begin_fetch(const wire::M2CSyncPlan& plan);
  void fetch_finished(const Status& st);
  // Ends the sync with `outcome` once the server has drained.
  void finish(Result<SyncOutcome> outcome);

  asio::any_io_executor ex_;
  SendFn send_;
  std::function<void()> on_idle_;
  std::shared_ptr<state::StateServer> server_;
  PeerId self_ = kNoPeer;
  peer::LinkSettings settings_;
  uint32_t connections_ = 4;
  std::optional<Active> active_;
  bool finishing_ = false;
  std::optional<uint64_t> last_revision_;
};

}  // namespace qccl::core
