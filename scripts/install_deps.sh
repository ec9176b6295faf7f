#!/usr/bin/env bash
# Installs, from Debian 12's own packages, everything qccl's build, tests and demo need.
#
# Idempotent and quiet: when every package is already installed it runs no apt command at all;
# otherwise it installs only the missing ones (running `apt-get update` first only if the
# package lists are missing or the install fails without it). As root it runs apt-get itself;
# otherwise it uses sudo when available, and else prints the command to run and fails.
#
# Usage: scripts/install_deps.sh            (no arguments; safe with no stdin, e.g. in CI)
set -euo pipefail

packages=(
  # toolchain
  g++ gcc make cmake ninja-build pkg-config binutils
  # libraries (headers; Debian 12 versions are the ones STYLE.md names)
  libasio-dev libfmt-dev libspdlog-dev libgtest-dev libgmock-dev libcli11-dev libxxhash-dev
  # Python bindings and their tests (built when QCCL_BUILD_PYTHON=ON)
  python3 python3-dev pybind11-dev python3-numpy python3-pytest
  # process and network tools used by the demo and the multi-process tests
  iproute2 procps psmisc
)

log() { printf 'install_deps: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
  log "not a Debian system: install the equivalents of these packages yourself:"
  log "  ${packages[*]}"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]]; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
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
