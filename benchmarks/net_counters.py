#!/usr/bin/env python3
"""What a command cost the machine's network stack: TCP segments and bytes, ACKs, CPU time.

    python3 benchmarks/net_counters.py -- COMMAND [ARGS...]

Runs COMMAND (its output discarded) and prints the change of the kernel's system-wide counters
over the run: TCP segments sent and their mean size (IpExt OutOctets / Tcp OutSegs), pure ACKs
received, retransmitted segments (/proc/net/snmp, /proc/net/netstat), and the busy and softirq
CPU seconds of all CPUs (/proc/stat: softirq time, where loopback TCP's receive side runs, is
in no process's CPU time). System-wide: run it on an otherwise idle machine, and compare two
commands that do the same work (docs/performance.md, "Where the time goes").
"""
import os
import subprocess
import sys


def counters():
    out = {}
    for path, prefixes in (("/proc/net/snmp", ("Tcp:",)), ("/proc/net/netstat", ("IpExt:", "TcpExt:"))):
        with open(path) as f:
            lines = [line.split() for line in f]
        for prefix in prefixes:
            rows = [line for line in lines if line and line[0] == prefix]
            out.update(zip(rows[0][1:], map(int, rows[1][1:])))
    with open("/proc/stat") as f:
        cpu = list(map(int, f.readline().split()[1:]))
    hz = os.sysconf("SC_CLK_TCK")  # /proc/stat's unit (USER_HZ)
    out["busy_s"] = (sum(cpu) - cpu[3] - cpu[4]) / hz
    out["softirq_s"] = cpu[6] / hz
    return out


def main():
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    before = counters()
    rc = subprocess.run(args, stdout=subprocess.DEVNULL).returncode
    d = {k: v - before[k] for k, v in counters().items()}
    segs = max(d["OutSegs"], 1)
    print(f"TCP segments sent {d['OutSegs']}, {d['OutOctets'] / 1e6:.0f} MB at IP level, "
          f"mean {d['OutOctets'] / segs:.0f} B; pure ACKs received {d['TCPPureAcks']}; "
          f"retransmitted {d['RetransSegs']}; CPU busy {d['busy_s']:.2f} s, softirq "
          f"{d['softirq_s']:.2f} s (all CPUs); exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
