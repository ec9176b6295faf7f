#include "net/io_thread.hpp"

#include <pthread.h>

#include "common/logging.hpp"

namespace qccl::net {

IoThread::IoThread(std::string name)
    : name_(std::move(name)), work_(asio::make_work_guard(ctx_)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
    // Handlers never throw (errors are values), but a bug must not end the process.
    for (;;) {
      try {
        ctx_.run();
        return;
      } catch (const std::exception& e) {
        log::get("net")->error("{}: unexpected exception in the I/O loop: {}", name_, e.what());
      }
    }
  });
}

IoThread::~IoThread() {
  stop();
  join();
}

void IoThread::stop() {
  work_.reset();
  ctx_.stop();
}

void IoThread::join() {
  if (thread_.joinable() && !in_loop()) thread_.join();
}

}  // namespace qccl::net
