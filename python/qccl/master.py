"""``python -m qccl.master`` and the ``qccl-master`` console script.

Both run the C++ master shipped inside the package (``qccl/bin/qccl-master``) by exec'ing
it with the same arguments, so the flags, output and exit codes are exactly those of the
binary (README.md, "The master"): ``--listen HOST:PORT``, ``--log-level LEVEL``,
``--heartbeat-ms N``, ``--peer-timeout-ms N``, ``--vote-timeout-ms N``, ``--probe-ms N``,
``--probe-max-age-s N``, ``--auth-token-file FILE``, ``--help``, ``--version``; exit 0 after
SIGINT/SIGTERM, 1 if it cannot listen, 2 for a bad command line. ``QCCL_MASTER_BIN``
overrides the binary's path.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

__all__ = ["binary_path", "main"]


def binary_path() -> str:
    """Path of the qccl-master executable this package runs."""
    override = os.environ.get("QCCL_MASTER_BIN")
    if override:
        return override
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "qccl-master")


def main(argv: Optional[List[str]] = None) -> int:
    """Replaces this process with the master (never returns unless the exec fails)."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = binary_path()
    if not os.access(path, os.X_OK):
        sys.stderr.write(f"qccl-master: the master executable is missing: {path}\n")
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(path, ["qccl-master"] + args)
    except OSError as e:
        sys.stderr.write(f"qccl-master: cannot run {path}: {e}\n")
        return 1
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
