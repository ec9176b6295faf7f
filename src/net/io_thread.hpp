// IoThread: one asio io_context run by one std::thread (tensorpipe's "loop").
//
// Every socket and timer of a communicator or master lives on exactly one IoThread and is
// touched only from it; other threads post() work to it. run_sync() posts and waits for the
// result, for calls made from user threads.
//
// Thread-safety: post/run_sync/in_loop/stop are safe from any thread; context() is for code
// running on the loop (and for constructing objects bound to it).
#pragma once

#include <functional>
#include <future>
#include <string>
#include <thread>
#include <type_traits>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

namespace qccl::net {

class IoThread {
 public:
  explicit IoThread(std::string name);
  ~IoThread();  // stop() and join
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  asio::io_context& context() { return ctx_; }
  bool in_loop() const { return std::this_thread::get_id() == thread_.get_id(); }
  void post(std::function<void()> fn) { asio::post(ctx_, std::move(fn)); }

  // Runs fn on the loop and returns its result. REQUIRES: !in_loop(), loop running.
  template <typename F>
  auto run_sync(F&& fn) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    std::packaged_task<R()> task(std::forward<F>(fn));
    auto fut = task.get_future();
    asio::post(ctx_, [&task] { task(); });
    return fut.get();
  }

  // Ends the loop; pending handlers are dropped. Idempotent; does not join.
  void stop();
  void join();

 private:
  std::string name_;
  asio::io_context ctx_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace qccl::net
