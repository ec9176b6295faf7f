// Creating the emulator's TUN devices inside network namespaces.
//
// A TUN device belongs to the network namespace of the process that opened /dev/net/tun, so
// open_tun_in() enters the namespace (/run/netns/NAME) for the open and the TUNSETIFF, then
// returns to the caller's namespace: the device never exists in the root namespace, and the
// fd keeps working from anywhere. The device is not persistent, so it disappears when the fd
// is closed (the forwarder exits or dies). Address, link state and routes are the caller's
// business (netsim.sh sets them with `ip -n NAME ...`).
//
// Thread-safety: setns() switches the calling thread only; call from a single-threaded
// process or a thread that opens no sockets meanwhile.
#pragma once

#include <string>

namespace qccl::netsim {

// Opens an IFF_TUN | IFF_NO_PI device named `dev` in namespace `netns`, non-blocking and
// close-on-exec. Returns the fd, or -1 with the reason in *error.
int open_tun_in(const std::string& netns, const std::string& dev, std::string* error);

}  // namespace qccl::netsim
