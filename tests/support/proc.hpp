// Child processes of a test or of the chaos harness, each with pipes on its stdin, stdout and
// stderr. One poll() reads every open output pipe of every child, so no child ever blocks on a
// full pipe; output is split into lines and each line is passed to the caller's LineFn. What a
// caller keeps of the lines is its own business: ProcCluster (proc_cluster.hpp) queues them for
// a gtest test, the chaos driver checks them as they come and keeps only a short tail here.
//
// Every child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with its parent whatever happens, and
// inherits none of the parent's file descriptors beyond 0-2. Signals go to one pid at a time;
// kill_all() (also run by the destructor) SIGKILLs and reaps every child still running.
//
// Thread-safety: none; use from one thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace qccl::test {

class Procs {
 public:
  using Id = size_t;
  // (child, is_stdout, line without its '\n')
  using LineFn = std::function<void(Id, bool, const std::string&)>;

  // `tail_lines`: how many of each child's last lines tail() returns (0: none are kept).
  explicit Procs(size_t tail_lines = 60) : tail_lines_(tail_lines) {
    // A write to the stdin of a dead child must fail with EPIPE, not end the parent.
    std::signal(SIGPIPE, SIG_IGN);
  }
  ~Procs() { kill_all(); }
  Procs(const Procs&) = delete;
  Procs& operator=(const Procs&) = delete;

  // Starts argv (argv[0] an absolute path); `env` entries ("K=V") are added to (or override)
  // the parent's environment. nullopt (with a message in error()) if pipe or fork failed.
  std::optional<Id> spawn(const std::string& label, const std::vector<std::string>& argv_s,
                          const std::vector<std::string>& env = {}) {
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<std::string> args(argv_s);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('=')) + "=";
      if (std::none_of(env.begin(), env.end(),
                       [&](const std::string& x) { return x.compare(0, key.size(), key) == 0; })) {
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
      close_all_of(in, out, err);
      return std::nullopt;
    }
    const pid_t parent = ::getpid();
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigemptyset(&dfl.sa_mask);
    rlimit lim{};
    const int max_fd = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY
                           ? static_cast<int>(std::min<rlim_t>(lim.rlim_cur, 65536))
                           : 4096;
    const pid_t pid = ::fork();
    if (pid < 0) {
      error_ = std::string("fork: ") + std::strerror(errno);
      close_all_of(in, out, err);
      return std::nullopt;
    }
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      // Not one of the parent's sockets (a master's included) may live on in a child.
      if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        for (int fd = 3; fd < max_fd; ++fd) ::close(fd);
      }
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      // Default dispositions, as in any program the user starts: an ignored SIGINT or SIGTERM
      // (e.g. a test run in a background job) would otherwise stay ignored across exec.
      for (int sig : {SIGPIPE, SIGINT, SIGTERM}) ::sigaction(sig, &dfl, nullptr);
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
  size_t size() const { return children_.size(); }
  pid_t pid(Id id) const { return children_.at(id).pid; }
  const std::string& label(Id id) const { return children_.at(id).label; }
  bool running(Id id) const { return !children_.at(id).reaped; }
  int status(Id id) const { return children_.at(id).status; }
  bool stdout_open(Id id) const { return children_.at(id).out_fd >= 0; }
  bool stderr_open(Id id) const { return children_.at(id).err_fd >= 0; }
  bool any_output_open() const {
    return std::any_of(children_.begin(), children_.end(),
                       [](const Child& c) { return c.out_fd >= 0 || c.err_fd >= 0; });
  }

  void signal(Id id, int sig) {
    Child& c = children_.at(id);
    if (!c.reaped) ::kill(c.pid, sig);
  }

  // Writes one line to the child's stdin; false if it is gone.
  bool send_line(Id id, const std::string& line) {
    Child& c = children_.at(id);
    if (c.in_fd < 0) return false;
    const std::string s = line + "\n";
    const char* p = s.data();
    size_t left = s.size();
    while (left > 0) {
      ssize_t n = ::write(c.in_fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<size_t>(n);
    }
    return true;
  }

  void close_stdin(Id id) { close_fd(children_.at(id).in_fd); }

  // Waits up to timeout_ms for output of any child, reads all that is there and passes every
  // complete line to `fn`. Returns poll()'s result (-1 with errno set, 0 if nothing came); with
  // no output pipe open, just waits timeout_ms and returns 0.
  int poll_once(int timeout_ms, const LineFn& fn) {
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
      return 0;
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n <= 0) return n;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents != 0) read_some(who[k].first, who[k].second, fn);
    }
    return n;
  }

  // Reads everything already in the pipes of every child (without waiting).
  void drain(const LineFn& fn) {
    for (Id i = 0; i < children_.size(); ++i) {
      read_some(i, true, fn);
      read_some(i, false, fn);
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
      close_fd(c.in_fd);
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
    read_some(id, true, fn);
    read_some(id, false, fn);
    Child& c = children_.at(id);
    close_fd(c.out_fd);
    close_fd(c.err_fd);
  }

  // SIGKILLs the child (by pid) if it is still running and reaps it. Its output pipes stay
  // open, so what it printed can still be read.
  void kill_and_reap(Id id) {
    Child& c = children_.at(id);
    if (c.reaped) return;
    ::kill(c.pid, SIGKILL);
    int st = 0;
    while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
    }
    c.reaped = true;
    c.status = st;
    close_fd(c.in_fd);
  }

  // Kills and reaps every child still running and closes every pipe. Idempotent.
  void kill_all() {
    for (Id i = 0; i < children_.size(); ++i) kill_and_reap(i);
    for (auto& c : children_) {
      for (int* fd : {&c.in_fd, &c.out_fd, &c.err_fd}) close_fd(*fd);
    }
  }

  // The last lines the child printed (stdout and stderr, stderr marked "!"), indented.
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

  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  static void close_all_of(int (&a)[2], int (&b)[2], int (&c)[2]) {
    for (int* p : {a, b, c}) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
  }

  // Reads what is available on one output pipe; at EOF (or an error) closes it, and its last
  // partial line counts as a line.
  void read_some(Id id, bool is_out, const LineFn& fn) {
    char buf[65536];
    for (;;) {
      Child& c = children_[id];
      int& fd = is_out ? c.out_fd : c.err_fd;
      if (fd < 0) return;
      std::string& partial = is_out ? c.out_partial : c.err_partial;
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        close_fd(fd);
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
    if (tail_lines_ > 0) {
      auto& tail = children_[id].tail;
      tail.push_back(is_out ? line : "! " + line);
      if (tail.size() > tail_lines_) tail.pop_front();
    }
    fn(id, is_out, line);
  }

  size_t tail_lines_;
  std::deque<Child> children_;  // a deque: references stay valid when a callback spawns
  std::string error_;
};

}  // namespace qccl::test
