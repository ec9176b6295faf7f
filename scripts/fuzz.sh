#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang in build-fuzz/ (Release, ASan+UBSan,
# -DQCCL_FUZZ=ON) and runs each for a bounded time on a copy of its seed corpus
# (fuzz/corpus/<target>/, which is never modified). Exits 1 if any target crashes, times out
# or fails its oracle, after printing the report and the path of the input that did it.
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs J] [--target NAME]... [--regenerate-corpus]
#   --seconds N            run each target for N seconds (default 20)
#   --jobs J               run J targets at a time (default 2; each is single-threaded)
#   --target NAME          run only fuzz_NAME (repeatable; NAME as in fuzz/NAME_fuzz.cpp)
#   --regenerate-corpus    rewrite fuzz/corpus/ from fuzz/make_corpus.cpp, then run
#
# A crash is reproduced with: build-fuzz/fuzz/fuzz_NAME CRASH_FILE  (then add the bytes to a
# regression test, docs/protocol.md §5).
#
# Environment:
#   QCCL_FUZZ_BUILD_DIR  build directory (default build-fuzz)
#   QCCL_BUILD_JOBS      parallel compile jobs (default: number of CPUs)
#   CC, CXX              the clang to use (default clang, clang++)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

seconds=20
jobs=2
regenerate=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a value}"; shift 2 ;;
    --target) targets+=("${2:?--target needs a value}"); shift 2 ;;
    --regenerate-corpus) regenerate=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ && "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: --seconds and --jobs take positive integers" >&2
  exit 2
fi

build_dir="${QCCL_FUZZ_BUILD_DIR:-build-fuzz}"
build_jobs="${QCCL_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
cc="${CC:-clang}"
cxx="${CXX:-clang++}"
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz.sh: $cxx not found (Debian 12: apt-get install clang libclang-rt-14-dev, which" \
       "scripts/install_deps.sh does)" >&2
  exit 2
fi

# Every target is fuzz/<name>_fuzz.cpp (fuzz/CMakeLists.txt builds it as fuzz_<name>).
if ((${#targets[@]} == 0)); then
  for f in fuzz/*_fuzz.cpp; do
    name="$(basename "$f" _fuzz.cpp)"
    targets+=("$name")
  done
fi
for t in "${targets[@]}"; do
  if [[ ! -f "fuzz/${t}_fuzz.cpp" ]]; then
    echo "fuzz.sh: no target '$t' (no fuzz/${t}_fuzz.cpp)" >&2
    exit 2
  fi
done

start=$SECONDS
step() { printf '\n=== %s\n' "$*"; }
elapsed() { printf '=== %s took %ds\n' "$1" "$((SECONDS - $2))"; }

step "fuzz: configure $build_dir ($cxx)"
t=$SECONDS
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DQCCL_FUZZ=ON \
  -DQCCL_BUILD_TESTS=OFF -DQCCL_BUILD_EXAMPLES=OFF -DQCCL_BUILD_BENCHMARKS=OFF \
  -DQCCL_BUILD_PYTHON=OFF -DQCCL_INSTALL=OFF -DQCCL_WERROR=OFF -DQCCL_SANITIZE= >/dev/null
elapsed "fuzz configure" "$t"

step "fuzz: build ($build_jobs jobs)"
t=$SECONDS
cmake --build "$build_dir" --parallel "$build_jobs" --target qccl_fuzz
elapsed "fuzz build" "$t"

if ((regenerate)); then
  step "fuzz: regenerate fuzz/corpus"
  "$build_dir/fuzz/fuzz_make_corpus" fuzz/corpus
fi

# Per run: a scratch corpus (the seeds plus what libFuzzer adds), the log, and the artifacts
# (crash-*, timeout-*, oom-* inputs), which are kept when a target fails.
work="$(mktemp -d "${TMPDIR:-/tmp}/qccl-fuzz.XXXXXX")"
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

run_target() {
  local name="$1" dir="$work/$1"
  rm -rf "$artifacts/$name"  # only this run's findings
  mkdir -p "$dir/corpus" "$artifacts/$name"
  if [[ -d "fuzz/corpus/$name" ]]; then cp -R "fuzz/corpus/$name/." "$dir/corpus/"; fi
  # -timeout: one input running 10 s is a hang; -rss_limit_mb: the default, made explicit.
  "$build_dir/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name/" "$dir/corpus" \
    >"$dir/log" 2>&1
}

summarize() {
  local name="$1" log="$work/$1/log" runs secs
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log")
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
  local cov corp
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  corp=$(grep -Eo 'corp: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  if [[ -n "$runs" && -n "$secs" && "$secs" -gt 0 ]]; then
    printf '  fuzz_%-14s %6ss %11s runs %9s exec/s  cov %-5s corpus %s\n' "$name" "$secs" \
      "$runs" "$((runs / secs))" "${cov:-?}" "${corp:-?}"
  else
    printf '  fuzz_%-14s %s runs (see %s)\n' "$name" "${runs:-?}" "$log"
  fi
}

step "fuzz: ${#targets[@]} targets, ${seconds}s each, $jobs at a time"
t=$SECONDS
failed=()
pids=()
names=()
wait_one() {
  # Waits for the oldest running target and records its outcome.
  local pid="${pids[0]}" name="${names[0]}"
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  if wait "$pid"; then
    summarize "$name"
  else
    failed+=("$name")
    printf '  fuzz_%-14s FAILED\n' "$name"
  fi
}
for name in "${targets[@]}"; do
  while ((${#pids[@]} >= jobs)); do wait_one; done
  run_target "$name" &
  pids+=("$!")
  names+=("$name")
done
while ((${#pids[@]} > 0)); do wait_one; done
elapsed "fuzz runs" "$t"

if ((${#failed[@]} > 0)); then
  for name in "${failed[@]}"; do
    log="$work/$name/log"
    keep="$artifacts/$name/fuzz.log"
    cp "$log" "$keep"
    step "fuzz_$name FAILED: the end of its report (whole log: $keep)"
    grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse|INITED|DONE)' "$log" | tail -n 40
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [[ -n "$input" ]]; then
      echo "crashing input: $input"
      echo "reproduce with: $build_dir/fuzz/fuzz_$name $input"
    else
      echo "no input was saved (the target failed to start?)"
    fi
  done
  step "fuzz: FAILED: ${failed[*]} ($((SECONDS - start))s)"
  exit 1
fi
step "fuzz: all ${#targets[@]} targets ran clean ($((SECONDS - start))s)"
