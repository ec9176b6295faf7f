#!/usr/bin/env bash
# Installs what the comparison benchmark (benchmarks/compare.py) needs besides qccl itself:
# Open MPI over TCP (Debian's packages) and PyTorch's CPU build for the gloo backend.
# Idempotent: installs only what is missing, so it is cheap to run before every comparison.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Open MPI: mpirun (openmpi-bin) and mpicc with headers (libopenmpi-dev).
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    openmpi-bin libopenmpi-dev
fi

# PyTorch pinned: baselines must be comparable between runs, and an unpinned torch would pull
# a different (possibly CUDA) build.
PY="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
have_torch="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
PIP_FLAGS=()
# Debian's python3 is "externally managed" (PEP 668); outside a venv pip needs this flag.
if [ -z "${VIRTUAL_ENV:-}" ] && "$PY" -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
  PIP_FLAGS+=(--break-system-packages)
fi
if [ "$have_torch" != "$TORCH_VERSION" ]; then
  "$PY" -m pip install "${PIP_FLAGS[@]}" "torch==${TORCH_VERSION}"
fi
if ! "$PY" -c 'import numpy' >/dev/null 2>&1; then
  "$PY" -m pip install "${PIP_FLAGS[@]}" numpy
fi
echo "bench deps ok: $(mpirun --version | head -1); torch $("$PY" -c 'import torch; print(torch.__version__)')"
