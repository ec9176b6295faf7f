#!/usr/bin/env bash
# The test command: installs the Debian dependencies, configures build/ (Ninja,
# RelWithDebInfo, tests on, warnings are errors), builds everything and runs every ctest.
# Optionally does the same with ASan+UBSan in build-asan/. Exits non-zero on any failure.
#
# Environment:
#   QCCL_TEST_SANITIZE   1: also run the suite in an ASan+UBSan build (build-asan/)
#                        0: do not
#                        auto: if the budget below allows
#                        unset: auto with CI=true, else 0
#   QCCL_CI_BUDGET_SECONDS  CI's time budget for this script (default 1200). With
#                        QCCL_TEST_SANITIZE=auto, the sanitizer pass runs only if the time
#                        spent so far plus 3 times the plain build+test time fits in it;
#                        otherwise it is skipped with a notice. (Measured on the 2-core
#                        machine: the sanitized build costs about 3 times the CPU time of
#                        the plain one, more in wall time when other jobs compete.)
#   QCCL_BUILD_DIR       build directory (default build)
#   QCCL_ASAN_BUILD_DIR  sanitizer build directory (default build-asan)
#   QCCL_BUILD_JOBS      parallel compile jobs (default: number of CPUs)
#   QCCL_TEST_JOBS       parallel tests (default 2: the multi-process fault tests have
#                        deadlines and several processes each, so more oversubscribes)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

build_dir="${QCCL_BUILD_DIR:-build}"
asan_dir="${QCCL_ASAN_BUILD_DIR:-build-asan}"
build_jobs="${QCCL_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
test_jobs="${QCCL_TEST_JOBS:-2}"
budget="${QCCL_CI_BUDGET_SECONDS:-1200}"
case "${QCCL_TEST_SANITIZE:-}" in
  1 | true | yes | on) QCCL_TEST_SANITIZE=1 ;;
  0 | false | no | off) QCCL_TEST_SANITIZE=0 ;;
  auto) ;;
  "") if [[ "${CI:-}" == true ]]; then QCCL_TEST_SANITIZE=auto; else QCCL_TEST_SANITIZE=0; fi ;;
  *)
    echo "test.sh: QCCL_TEST_SANITIZE must be 1, 0 or auto, not '$QCCL_TEST_SANITIZE'" >&2
    exit 2
    ;;
esac

start_all=$SECONDS
step() { printf '\n=== %s\n' "$*"; }
elapsed() { printf '=== %s took %ds\n' "$1" "$((SECONDS - $2))"; }

# A build directory made by another generator cannot be reused with Ninja: say so plainly.
check_generator() {
  local dir="$1"
  if [[ -f "$dir/CMakeCache.txt" ]] &&
     ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$dir/CMakeCache.txt"; then
    echo "test.sh: $dir/ was configured with another generator; remove it or set" \
         "QCCL_BUILD_DIR" >&2
    exit 1
  fi
}

# configure_build_test DIR LABEL CMAKE_ARGS...
configure_build_test() {
  local dir="$1" label="$2"
  shift 2
  local t
  check_generator "$dir"

  step "$label: configure $dir"
  t=$SECONDS
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQCCL_BUILD_TESTS=ON "$@"
  elapsed "$label configure" "$t"

  step "$label: build ($build_jobs jobs)"
  t=$SECONDS
  cmake --build "$dir" --parallel "$build_jobs"
  elapsed "$label build" "$t"

  step "$label: ctest ($test_jobs jobs)"
  t=$SECONDS
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$test_jobs"
  elapsed "$label ctest" "$t"
}

step "dependencies"
"$repo/scripts/install_deps.sh"

release_start=$SECONDS
configure_build_test "$build_dir" "release" -DQCCL_WERROR=ON -DQCCL_SANITIZE=
release_time=$((SECONDS - release_start))

if [[ "$QCCL_TEST_SANITIZE" == auto ]]; then
  projected=$(((SECONDS - start_all) + release_time * 3))
  if ((projected <= budget)); then
    QCCL_TEST_SANITIZE=1
  else
    QCCL_TEST_SANITIZE=0
    step "NOTICE: skipping the ASan+UBSan pass: projected ${projected}s > budget ${budget}s" \
         "(set QCCL_TEST_SANITIZE=1 to force it)"
  fi
fi

if [[ "$QCCL_TEST_SANITIZE" == 1 ]]; then
  # Warnings are checked by the build above (GCC warns differently under sanitizers);
  # examples and benchmarks add compile time but no sanitizer coverage the tests lack.
  # LeakSanitizer stays on; UBSan findings end the test (-fno-sanitize-recover in CMake).
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  configure_build_test "$asan_dir" "asan+ubsan" -DQCCL_SANITIZE=address,undefined \
    -DQCCL_WERROR=OFF -DQCCL_BUILD_EXAMPLES=OFF -DQCCL_BUILD_BENCHMARKS=OFF
fi

step "all tests passed ($((SECONDS - start_all))s)"
