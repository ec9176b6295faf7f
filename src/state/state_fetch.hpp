// StateFetch: the receiver side of a shared-state transfer.
//
// Downloads the pieces (state_hash.hpp) of every target tensor from a set of donors that all
// hold the elected content. `connections_per_donor` connections are dialled to every donor;
// the pieces wait in one shared queue and each connection takes the next one as soon as it has
// room (two requests in flight per connection, one when pieces are few), so faster donors and
// links serve more, and the download uses the aggregate bandwidth of all donors.
//
// Bytes are read straight into the target memory. Each piece is checked on arrival against the
// hash its donor sent; at the end every tensor's hash, combined from its verified piece
// hashes, must equal the elected hash. A connection that fails, stalls out (TCP liveness), sends
// a bad piece or is refused gives its outstanding pieces back to the queue; a donor that is
// dropped (drop_donor) or refuses content loses all its connections. The download fails with
// kPeerLost only when no connection is left and pieces remain.
//
// run() returns only when no read into the targets is in flight, so the caller may hand the
// memory back to the user at once.
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.hpp"
#include "net/auth.hpp"
#include "net/connection.hpp"
#include "net/signal.hpp"

namespace qccl::state {

struct FetchTarget {
  uint32_t entry = 0;   // index into the sorted entries (what requests name)
  uint8_t* data = nullptr;
  size_t bytes = 0;
  uint64_t hash = 0;    // the elected hash
};

struct FetchDonor {
  PeerId id = kNoPeer;
  std::string host;
  uint16_t port = 0;
};

struct FetchSettings {
  PeerId self = kNoPeer;
  uint32_t connections_per_donor = 4;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds timeout{10000};  // dial + handshake bound, TCP liveness
  net::Secret secret;                        // the run's shared secret, if any
};

class StateFetch : public std::enable_shared_from_this<StateFetch> {
 public:
  StateFetch(asio::any_io_executor ex, FetchSettings settings, std::vector<FetchTarget> targets,
             std::vector<FetchDonor> donors);

  net::awaitable<Status> run();
  // The donor is gone (e.g. the master expelled it): stop using it.
  void drop_donor(PeerId id);
  // Ends the download with `why` (run() returns it once reads have drained).
  void cancel(Status why);

  uint64_t rx_bytes() const { return rx_bytes_; }
  const std::map<PeerId, uint64_t>& rx_by_donor() const { return rx_by_donor_; }

 private:
  struct Piece {
    size_t target;
    uint32_t index;
  };
  struct Donor {
    FetchDonor info;
    bool dropped = false;
    std::vector<std::shared_ptr<net::Connection>> conns;
  };

  net::awaitable<void> worker(PeerId donor, uint16_t lane);
  net::awaitable<Status> handshake(net::Connection& conn, uint16_t lane);
  // Reads one piece answer into its target; false = this connection is done for.
  net::awaitable<Status> receive_piece(net::Connection& conn, Donor& donor, const Piece& want);
  Status verify_targets() const;
  void disable_donor(Donor& d);

  asio::any_io_executor ex_;
  FetchSettings settings_;
  std::vector<FetchTarget> targets_;
  std::vector<std::vector<uint64_t>> piece_hashes_;
  std::map<PeerId, Donor> donors_;
  std::vector<Piece> pieces_;
  std::deque<size_t> queue_;  // indices into pieces_
  size_t remaining_ = 0;
  std::string last_failure_ = "none";  // the last donor connection that failed, and why
  size_t in_flight_ = 1;  // requests per connection (run() decides)
  size_t workers_ = 0;
  std::optional<Status> cancelled_;
  net::Signal changed_;
  uint64_t rx_bytes_ = 0;
  std::map<PeerId, uint64_t> rx_by_donor_;
};

}  // namespace qccl::state
