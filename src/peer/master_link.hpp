// MasterLink: a peer's control connection to the master.
//
// connect() dials the master (retrying refused connections until the deadline, so peers may
// start before the master; with a list of addresses, each in turn), exchanges preambles,
// registers (or resumes, after a lost master) and waits for M2CWelcome. Then a
// reader coroutine hands every message to the owner's handler, a heartbeat coroutine sends
// C2MHeartbeat every heartbeat interval, and a watchdog declares the master lost when nothing
// (not even its heartbeats) arrived for the peer timeout. Losing the master is reported once
// through on_lost.
//
// Thread-safety: loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "net/asio_common.hpp"
#include "net/auth.hpp"
#include "net/connection.hpp"
#include "wire/messages.hpp"

namespace qccl::peer {

class MasterLink : public std::enable_shared_from_this<MasterLink> {
 public:
  using MessageHandler = std::function<void(const wire::ControlMessage&, Epoch)>;
  using LostHandler = std::function<void(const Status&)>;

  // `masters`: the master's address, or several (an active one and standbys), tried in turn.
  // `secret`: the run's shared secret, if any (net/auth.hpp).
  MasterLink(asio::any_io_executor ex, std::vector<HostPort> masters, net::Secret secret,
             MessageHandler on_message, LostHandler on_lost);

  // How connect() treats an answer. Without `check` (a registration) the first master that
  // answers decides: its welcome, or its refusal (except "leads no run yet": a standby, or a
  // master in its resume grace; the next address is tried, and that one again later). With it (a resume) a master whose welcome
  // fails the check, that cannot take the resume (kWrongRun), times out (`bound` per attempt)
  // or is unreachable, is left for the next address until the deadline; a refusal for good
  // (kNotResumed: kKicked) ends the resume.
  struct Attempt {
    std::function<Status(const wire::M2CWelcome&)> check;
    std::chrono::steady_clock::duration bound = std::chrono::steady_clock::duration::max();
    size_t first = 0;  // the index of the address dialled first
  };
  // Connects, sends `hello` (C2MRegister or C2MResume) and returns the welcome. `deadline`
  // bounds the whole exchange (time_point::max() = no bound). kMasterUnreachable / kTimeout /
  // kAuthFailed / kKicked on failure.
  net::awaitable<Result<wire::M2CWelcome>> connect(const wire::ControlMessage& hello,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   Attempt attempt);
  // The master connect() reached, and its index in the list.
  const HostPort& address() const { return masters_[at_]; }
  size_t address_index() const { return at_; }

  // After a successful connect(): starts delivering messages and sending heartbeats.
  void start();
  // Queues a message (frame epoch = the caller's current global epoch).
  void send(const wire::ControlMessage& m, Epoch epoch);
  // Sends C2MLeave and closes once the master has closed its end (it has taken the leave),
  // or after kLeaveBound; `done` runs once the connection is closed.
  void leave(Epoch epoch, std::function<void()> done);
  static constexpr std::chrono::seconds kLeaveBound{2};
  void close();
  bool is_open() const { return conn_ && conn_->is_open(); }

 private:
  net::awaitable<Result<wire::M2CWelcome>> exchange(const wire::ControlMessage& hello,
                                                    std::chrono::steady_clock::time_point bound,
                                                    std::string where);
  std::string format_masters() const;
  net::awaitable<void> read_loop();
  net::awaitable<void> heartbeat_loop();
  void lost(const Status& why);

  asio::any_io_executor ex_;
  std::vector<HostPort> masters_;
  size_t at_ = 0;
  std::optional<wire::KickReason> refused_;  // the last attempt's M2CKicked, if any
  net::Secret secret_;
  MessageHandler on_message_;
  LostHandler on_lost_;
  std::shared_ptr<net::Connection> conn_;
  std::chrono::milliseconds heartbeat_{1000};
  std::chrono::milliseconds timeout_{10000};
  std::chrono::steady_clock::time_point last_heard_;
  bool lost_reported_ = false;
  bool closed_ = false;
  // Never expires: close() cancels it, which ends connect()'s dialling and back-off at once.
  asio::steady_timer cancel_;
};

}  // namespace qccl::peer
