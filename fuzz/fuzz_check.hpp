// FUZZ_CHECK: the oracle assertion of the fuzz targets in this directory.
//
// A failed check prints the condition and its location and aborts, which libFuzzer reports as
// a crash and saves the input (crash-<sha1>) for reproduction. Unlike QCCL_CHECK it is never
// compiled out: the fuzz build is a Release build, and the checks are the point of it.
//
// Thread-safety: stateless.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (false)
