"""One peer process of test_multiprocess.py (not a test).

    python peer_helper.py MASTER_ADDRESS INDEX WORLD

Connects, helps admit peers until WORLD peers are accepted, then obeys commands read from
stdin, one per line, and reports on stdout, one line each:

    reduce N   all-reduce a float32 torch tensor of N elements filled with 2**INDEX;
               prints "entering" right before the call, then
               "result SUM WORLD PEERLOST" (retrying after each PeerLostError) or
               "error NAME MESSAGE"
    quit       closes the communicator and exits 0

Dies with its parent (PR_SET_PDEATHSIG), so a failed test leaves no process behind.
"""

from __future__ import annotations

import ctypes
import signal
import sys


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def say(*words: object) -> None:
    print(*words, flush=True)


def main() -> int:
    die_with_parent()
    address, index, world = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import torch  # noqa: F401 (the point: torch tensors across processes)

    import qccl

    comm = qccl.Communicator(address)
    comm.connect(timeout=60)
    say("connected", comm.world_size)
    # Every peer, first or late, waits (admitting the others) until the group is complete.
    comm.wait_for_world(world, timeout=60)
    say("ready", comm.world_size)

    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "reduce":
            n = int(cmd[1])
            t = torch.full((n,), float(2**index), dtype=torch.float32)
            lost = 0
            say("entering")
            while True:
                try:
                    info = comm.all_reduce(t)
                    break
                except qccl.PeerLostError:
                    lost += 1  # the ring was rebuilt without the lost peer: retry at once
                except qccl.QcclError as e:
                    say("error", type(e).__name__, str(e).replace("\n", " "))
                    t = None
                    break
            if t is not None:
                values = set(t.tolist())
                say("result", values.pop() if len(values) == 1 else "inconsistent",
                    info.world_size, lost)
            continue
        say("error", "UnknownCommand", line.strip())
    comm.close()
    say("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
