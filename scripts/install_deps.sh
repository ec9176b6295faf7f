#!/usr/bin/env bash
# Installs, from Debian 12's own packages, everything qccl's build, tests and demo need.
#
# Idempotent and quiet: when every package is already installed it runs no apt command at all;
# otherwise it installs only the missing ones (running `apt-get update` first only if the
# package lists are missing or the install fails without it). As root it runs apt-get itself;
# otherwise it uses sudo when available, and else prints the command to run and fails.
#
# Then makes sure the python3 on PATH has torch==2.13.0, numpy, pytest and pytest-timeout,
# and torchft==0.2.0 for the torchft tests (pip; nothing runs when they are importable).
#
# Usage: scripts/install_deps.sh            (no arguments; safe with no stdin, e.g. in CI)
set -euo pipefail

packages=(
  # toolchain
  g++ gcc make cmake ninja-build pkg-config binutils
  # libraries (headers; Debian 12's versions are the ones the build is tested with)
  libasio-dev libfmt-dev libspdlog-dev libgtest-dev libgmock-dev libcli11-dev libxxhash-dev libssl-dev
  # Python bindings and their tests (built when QCCL_BUILD_PYTHON=ON); the test modules
  # themselves come from pip, for the python3 on PATH (see the end of this script)
  python3 python3-dev python3-venv python3-pip pybind11-dev python3-numpy python3-pytest
  # process and network tools used by the demo and the multi-process tests
  iproute2 procps psmisc
  # the multi-host tests (tests/netns: deploy/qccl-firewall.nft, NAT) and docs/deployment.md
  nftables
  # the fuzz step of scripts/test.sh (scripts/fuzz.sh): clang and its libFuzzer/sanitizer
  # runtimes, which clang only recommends
  clang libclang-rt-14-dev
)

log() { printf 'install_deps: %s\n' "$*" >&2; }


# Python modules the Python tests need, for the `python3` on PATH (which may not be Debian's):
# module name -> pip requirement. torch is pinned EXACTLY: an unpinned torch pulls several GB
# of CUDA packages, while 2.13.0 resolves to the CPU build (a local wheel on our machines).
pip_modules=(torch numpy pytest pytest_timeout)
pip_requirements=(torch==2.13.0 numpy pytest pytest-timeout)
# torchft (python/tests/test_torchft.py, examples/python/torchft_ddp.py; never the library):
# installed with --no-deps, or pip would resolve its `torch>=2.7` to the newest (CUDA) torch
# and replace the pinned one; its other run-time dependencies (OpenTelemetry) are listed here,
# and `parameterized` is what torchft's own process_group_test.py (imported by our test) needs.
torchft_modules=(torchft opentelemetry.sdk opentelemetry.exporter.otlp.proto.http parameterized)
torchft_requirements=(torchft==0.2.0 "opentelemetry-sdk>=1.39.0"
                      "opentelemetry-exporter-otlp-proto-http>=1.39.0" parameterized)

install_pip_modules() {
  local py missing_reqs=() i
  py="$(command -v python3 || true)"
  [[ -n "$py" ]] || return 0
  # find_spec does not import: this check costs a few milliseconds, not torch's import time.
  mapfile -t absent < <("$py" - "${pip_modules[@]}" <<'PY'
import importlib.util, sys
for i, name in enumerate(sys.argv[1:]):
    if importlib.util.find_spec(name) is None:
        print(i)
PY
  )
  for i in "${absent[@]}"; do missing_reqs+=("${pip_requirements[$i]}"); done
  if ((${#missing_reqs[@]} > 0)); then
    log "pip installing for $py: ${missing_reqs[*]}"
    pip_install "$py" "${missing_reqs[@]}"
  fi
  # torchft after torch (so that pip sees torch installed); the same find_spec check.
  missing_reqs=()
  mapfile -t absent < <("$py" - "${torchft_modules[@]}" <<'PY'
import importlib.util, sys
for i, name in enumerate(sys.argv[1:]):
    try:
        found = importlib.util.find_spec(name) is not None
    except ImportError:  # a dotted name whose parent package is missing
        found = False
    if not found:
        print(i)
PY
  )
  for i in "${absent[@]}"; do missing_reqs+=("${torchft_requirements[$i]}"); done
  ((${#missing_reqs[@]} == 0)) && return 0
  log "pip installing for $py: ${missing_reqs[*]}"
  local deps=() nodeps=()
  for r in "${missing_reqs[@]}"; do
    if [[ "$r" == torchft==* ]]; then nodeps+=("$r"); else deps+=("$r"); fi
  done
  ((${#deps[@]} == 0)) || pip_install "$py" "${deps[@]}"
  ((${#nodeps[@]} == 0)) || pip_install "$py" --no-deps "${nodeps[@]}"
}

pip_install() {
  local py="$1"
  shift
  # PIP_BREAK_SYSTEM_PACKAGES: Debian's own python3 refuses pip installs otherwise (PEP 668).
  PIP_BREAK_SYSTEM_PACKAGES=1 "$py" -m pip install --quiet --disable-pip-version-check \
    --no-input "$@" </dev/null
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  log "not a Debian system: install the equivalents of these packages yourself:"
  log "  ${packages[*]}"
  install_pip_modules
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]]; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  install_pip_modules
  exit 0
fi
log "missing: ${missing[*]}"

# Decide how to become root.
as_root=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then as_root=(sudo); else as_root=(sudo -n); fi
  else
    log "not root and no sudo: as root, run"
    log "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -qq --no-install-recommends -o Dpkg::Use-Pty=0)

install_missing() {
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install "${apt_opts[@]}" "${missing[@]}" </dev/null >/dev/null
}

have_lists=0
if compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null 2>&1; then have_lists=1; fi

if ((have_lists)) && install_missing; then
  :
else
  log "running apt-get update"
  "${as_root[@]}" apt-get update -qq </dev/null >/dev/null
  install_missing
fi
log "installed: ${missing[*]}"
install_pip_modules
