#include "tun.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qccl::netsim {

namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Closes an fd on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

int open_tun_in(const std::string& netns, const std::string& dev, std::string* error) {
  if (dev.empty() || dev.size() >= IFNAMSIZ) {
    *error =
        "device name '" + dev + "' must have 1 to " + std::to_string(IFNAMSIZ - 1) + " characters";
    return -1;
  }
  Fd home{::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)};
  if (home.fd < 0) {
    *error = errno_text("open /proc/thread-self/ns/net");
    return -1;
  }
  const std::string path = "/run/netns/" + netns;
  Fd target{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (target.fd < 0) {
    *error = errno_text("open " + path);
    return -1;
  }
  if (::setns(target.fd, CLONE_NEWNET) != 0) {
    *error = errno_text("setns " + path);
    return -1;
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *error = errno_text("open /dev/net/tun in " + netns);
  } else {
    ifreq ifr{};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    std::memcpy(ifr.ifr_name, dev.data(), dev.size());
    if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
      *error = errno_text("TUNSETIFF " + dev + " in " + netns);
      ::close(fd);
      fd = -1;
    }
  }
  if (::setns(home.fd, CLONE_NEWNET) != 0) {
    // Everything after this would happen in the wrong namespace.
    *error = errno_text("setns back to the original namespace");
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace qccl::netsim
