// MasterServer: the asio shell around the master's pure state machine (membership.hpp).
//
// Owns one io_context and one thread. Accepts control connections, decodes frames, feeds
// events to Membership, sends the messages it returns, and drives its deadlines with a timer.
// It only does I/O; every decision is made by Membership.
//
// Thread-safety: start/port/stop/wait may be called from any thread; stop() only posts and
// returns, so it may be called from a signal-handling thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.hpp"

namespace qccl::master {

struct MasterOptions {
  std::string listen_address = "0.0.0.0:0";
  uint32_t heartbeat_interval_ms = 1000;
  uint32_t peer_timeout_ms = 10000;
  uint32_t vote_timeout_ms = 60000;
  uint32_t probe_ms = 250;              // measured transfer per probed link, <= kMaxProbeMs
  uint32_t probe_max_age_ms = 600000;   // older link measurements are probed again
  std::optional<std::string> auth_token;
  bool standby = false;  // starts no run; takes over one whose master was lost (reliability.md §8)
  // For this long after start no run is started (registrations wait) so that the peers of a
  // run whose master this one replaces on the same address resume it first.
  uint32_t resume_grace_ms = 0;
  bool encrypt = true;  // with an auth_token: encrypted connections (docs/security.md)
};

inline constexpr uint32_t kMaxProbeMs = 60000;

class MasterServer {
 public:
  explicit MasterServer(MasterOptions options);
  ~MasterServer();  // stops and joins
  MasterServer(const MasterServer&) = delete;
  MasterServer& operator=(const MasterServer&) = delete;

  // Binds the listen address and starts serving on a background thread.
  // kInvalidUsage if already started; kInvalidArgument if the address is malformed or cannot
  // be bound (the message says why, e.g. "address already in use").
  Status start();
  // The bound port; 0 before start().
  uint16_t port() const;
  // Asks the server to stop (closes every connection); returns at once. Idempotent.
  void stop();
  // Blocks until the server thread has ended (returns at once if never started).
  void wait();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qccl::master
