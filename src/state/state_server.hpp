// StateServer: the donor side of a shared-state transfer.
//
// While a sync is in progress the communicator calls serve() with its tensors (before it
// votes, so no receiver can arrive too early) and stop() when the round ended. Receivers dial
// the peer's data listener with a kState preamble; DataLinks hands such connections here.
// Each connection carries requests (entry, piece, elected entry hash) and gets one piece frame
// per request, in order, written straight from the caller's memory. A request for content this
// peer does not hold (another hash, no sync in progress) is answered "not served", never with
// wrong bytes.
//
// stop() closes every connection and reports through its callback once no write from the
// caller's memory is in flight, so the caller may then return to the user.
//
// Thread-safety: loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "net/connection.hpp"
#include "common/ids.hpp"
#include "common/logging.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

namespace qccl::state {

struct ServedEntry {
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  uint64_t hash = 0;                  // the tensor hash (state_hash.hpp)
  std::vector<uint64_t> piece_hashes;
  bool servable = true;               // false for allow_inequality entries
};

class StateServer : public std::enable_shared_from_this<StateServer> {
 public:
  explicit StateServer(asio::any_io_executor ex);

  // Starts serving; the counters restart from 0. REQUIRES: not serving.
  void serve(std::vector<ServedEntry> entries);
  // Ends serving; `drained` runs (on the loop) once no write is in flight. At most one stop
  // at a time; serve() may follow once drained ran.
  void stop(std::function<void()> drained);
  bool serving() const { return serving_; }

  // An accepted connection whose kState preamble was read; answers it and serves it.
  void adopt(std::shared_ptr<net::Connection> conn, const wire::Preamble& preamble);

  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t pieces_sent() const { return pieces_sent_; }
  // Tests: called after every piece written (with the running count).

 private:
  net::awaitable<void> serve_connection(std::shared_ptr<net::Connection> conn, PeerId receiver);
  net::awaitable<Status> answer(net::Connection& conn, const wire::P2PStateRequest& q,
                                PeerId receiver);
  void check_drained();

  asio::any_io_executor ex_;
  std::shared_ptr<spdlog::logger> log_;
  bool serving_ = false;
  std::vector<ServedEntry> entries_;
  std::set<std::shared_ptr<net::Connection>> conns_;
  size_t writes_in_flight_ = 0;
  std::function<void()> drained_;
  uint64_t bytes_sent_ = 0;
  uint64_t pieces_sent_ = 0;
};

}  // namespace qccl::state
