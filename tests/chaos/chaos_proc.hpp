// Child processes of the chaos harness: the master and the peers, each with pipes on stdin,
// stdout and stderr, read with one poll() over all of them (so no child ever blocks on a full
// pipe) and split into lines. The same idea as tests/support/proc_cluster.hpp, without gtest
// and with bounded memory for runs of hours: only a short tail of each child's output is kept.
//
// Every child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with the harness whatever happens;
// signals go to one pid at a time; kill_all() SIGKILLs and reaps every child still running.
//
// Thread-safety: none; the driver's one thread uses it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace qccl::chaos {

class Procs {
 public:
  using Id = size_t;
  // (child, is_stdout, line)
  using LineFn = std::function<void(Id, bool, const std::string&)>;

  static constexpr size_t kTailLines = 60;

  Procs() { ::signal(SIGPIPE, SIG_IGN); }  // writing to a dead child's stdin must not kill us
  ~Procs() { kill_all(); }
  Procs(const Procs&) = delete;
  Procs& operator=(const Procs&) = delete;

  // Starts argv (argv[0] an absolute path) with `env` ("K=V") added to ours (replacing ours
  // for the same K). nullopt (and error()) if pipe or fork failed.
  std::optional<Id> spawn(const std::string& label, const std::vector<std::string>& argv_s,
                          const std::vector<std::string>& env = {}) {
    std::vector<std::string> args(argv_s);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('=') + 1);
      if (std::none_of(env.begin(), env.end(),
                       [&](const std::string& x) { return x.rfind(key, 0) == 0; })) {
        env_s.push_back(kv);
      }
    }
    env_s.insert(env_s.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);

    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      error_ = std::string("pipe: ") + std::strerror(errno);
      for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) {
        if (fd >= 0) ::close(fd);
      }
      return std::nullopt;
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      error_ = std::string("fork: ") + std::strerror(errno);
      for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
      return std::nullopt;
    }
    if (pid == 0) {  // async-signal-safe calls only
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::syscall(SYS_close_range, 3U, ~0U, 0U);
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    Child c;
    c.label = label;
    c.pid = pid;
    c.in_fd = in[1];
    c.out_fd = out[0];
    c.err_fd = err[0];
    for (int fd : {c.out_fd, c.err_fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    children_.push_back(std::move(c));
    return children_.size() - 1;
  }

  const std::string& error() const { return error_; }
  pid_t pid(Id id) const { return children_.at(id).pid; }
  const std::string& label(Id id) const { return children_.at(id).label; }
  bool running(Id id) const { return !children_.at(id).reaped; }
  int status(Id id) const { return children_.at(id).status; }

  void signal(Id id, int sig) {
    Child& c = children_.at(id);
    if (!c.reaped) ::kill(c.pid, sig);
  }

  // Writes one line to the child's stdin; false if it is gone.
  bool send_line(Id id, const std::string& line) {
    Child& c = children_.at(id);
    if (c.in_fd < 0) return false;
    std::string s = line + "\n";
    return ::write(c.in_fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  }

  void close_stdin(Id id) {
    Child& c = children_.at(id);
    if (c.in_fd >= 0) ::close(c.in_fd);
    c.in_fd = -1;
  }

  // Waits up to timeout_ms for output of any child, reads all that is there and passes every
  // complete line to `fn`.
  void poll_once(int timeout_ms, const LineFn& fn) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Id, bool>> who;
    for (Id i = 0; i < children_.size(); ++i) {
      if (children_[i].out_fd >= 0) {
        fds.push_back({children_[i].out_fd, POLLIN, 0});
        who.emplace_back(i, true);
      }
      if (children_[i].err_fd >= 0) {
        fds.push_back({children_[i].err_fd, POLLIN, 0});
        who.emplace_back(i, false);
      }
    }
    if (fds.empty()) {
      ::poll(nullptr, 0, timeout_ms);
      return;
    }
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n <= 0) return;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents != 0) read_some(who[k].first, who[k].second, fn);
    }
  }

  // Reaps the child if it exited; true once it has (status() then holds its wait status).
  bool try_reap(Id id) {
    Child& c = children_.at(id);
    if (c.reaped) return true;
    int st = 0;
    if (::waitpid(c.pid, &st, WNOHANG) == c.pid) {
      c.reaped = true;
      c.status = st;
      close_stdin(id);
    }
    return c.reaped;
  }

  // True when the child was reaped and both its output pipes reached EOF.
  bool finished(Id id) const {
    const Child& c = children_.at(id);
    return c.reaped && c.out_fd < 0 && c.err_fd < 0;
  }

  // Drops the pipes of a reaped child after reading what is left in them.
  void release(Id id, const LineFn& fn) {
    Child& c = children_.at(id);
    if (c.out_fd >= 0) read_some(id, true, fn);
    if (c.err_fd >= 0) read_some(id, false, fn);
    for (int* fd : {&c.out_fd, &c.err_fd}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  void kill_and_reap(Id id) {
    Child& c = children_.at(id);
    if (c.reaped) return;
    ::kill(c.pid, SIGKILL);
    int st = 0;
    while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
    }
    c.reaped = true;
    c.status = st;
    close_stdin(id);
  }

  void kill_all() {
    for (Id i = 0; i < children_.size(); ++i) kill_and_reap(i);
    for (auto& c : children_) {
      for (int* fd : {&c.in_fd, &c.out_fd, &c.err_fd}) {
        if (*fd >= 0) ::close(*fd);
        *fd = -1;
      }
    }
  }

  // The last lines the child printed (stdout and stderr, stderr marked "!").
  std::string tail(Id id) const {
    std::string s;
    for (const auto& l : children_.at(id).tail) s += "    " + l + "\n";
    return s;
  }

 private:
  struct Child {
    std::string label;
    pid_t pid = -1;
    int in_fd = -1, out_fd = -1, err_fd = -1;
    std::string out_partial, err_partial;
    std::deque<std::string> tail;
    bool reaped = false;
    int status = 0;
  };

  void read_some(Id id, bool is_out, const LineFn& fn) {
    char buf[65536];
    for (;;) {
      Child& c = children_[id];
      int& fd = is_out ? c.out_fd : c.err_fd;
      if (fd < 0) return;
      std::string& partial = is_out ? c.out_partial : c.err_partial;
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {  // EOF or error: the last partial line counts as a line
        ::close(fd);
        fd = -1;
        if (!partial.empty()) deliver(id, is_out, std::exchange(partial, std::string()), fn);
        return;
      }
      partial.append(buf, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        deliver(id, is_out, partial.substr(start, nl - start), fn);
      }
      partial.erase(0, start);
      if (partial.size() > (1u << 20)) partial.clear();  // a runaway line: drop it
    }
  }

  void deliver(Id id, bool is_out, std::string line, const LineFn& fn) {
    auto& tail = children_[id].tail;
    tail.push_back(is_out ? line : "! " + line);
    if (tail.size() > kTailLines) tail.pop_front();
    fn(id, is_out, line);
  }

  std::deque<Child> children_;  // a deque: references stay valid when a callback spawns
  std::string error_;
};

}  // namespace qccl::chaos
