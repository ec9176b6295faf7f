# cmake -DPREFIX=... -DLIBDIR=lib -DVERSION=x.y.z -DSOVERSION=x -DREADELF=readelf
#       -P check_layout.cmake
# Checks the install layout of API.md §1 under PREFIX:
#   include/qccl/qccl.h, self-contained (only standard C headers and installed qccl/ headers)
#   LIBDIR/libqccl.so -> libqccl.so.SOVERSION -> libqccl.so.VERSION, with that SONAME
#   bin/qccl-master (runs: --version exits 0)
#   LIBDIR/cmake/qccl/qcclConfig.cmake (+ ConfigVersion and Targets)
# and that no internal static library or header was installed.
foreach(var PREFIX LIBDIR VERSION SOVERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_layout.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT READELF)
  find_program(READELF readelf REQUIRED)
endif()

set(errors "")
macro(fail msg)
  string(APPEND errors "  ${msg}\n")
endmacro()
macro(require_file rel)
  if(NOT EXISTS "${PREFIX}/${rel}" OR IS_DIRECTORY "${PREFIX}/${rel}")
    fail("missing ${rel}")
  endif()
endmacro()

# Headers.
require_file(include/qccl/qccl.h)
set(standard_c_headers assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h
    limits.h locale.h math.h setjmp.h signal.h stdarg.h stdbool.h stddef.h stdint.h stdio.h
    stdlib.h string.h tgmath.h time.h wchar.h wctype.h)
file(GLOB installed_headers RELATIVE "${PREFIX}/include" "${PREFIX}/include/*"
     "${PREFIX}/include/qccl/*")
foreach(h IN LISTS installed_headers)
  if(IS_DIRECTORY "${PREFIX}/include/${h}")
    if(NOT h STREQUAL "qccl")
      fail("unexpected include directory include/${h}")
    endif()
    continue()
  endif()
  if(NOT h MATCHES "^qccl/[a-z_]+\\.h$")
    fail("unexpected installed header include/${h}")
    continue()
  endif()
  file(STRINGS "${PREFIX}/include/${h}" includes REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS includes)
    if(line MATCHES "<([^>]+)>")
      if(NOT CMAKE_MATCH_1 IN_LIST standard_c_headers)
        fail("include/${h} includes <${CMAKE_MATCH_1}>, not a standard C header")
      endif()
    elseif(line MATCHES "\"([^\"]+)\"")
      if(NOT EXISTS "${PREFIX}/include/${CMAKE_MATCH_1}")
        fail("include/${h} includes \"${CMAKE_MATCH_1}\", which is not installed")
      endif()
    else()
      fail("include/${h}: cannot parse '${line}'")
    endif()
  endforeach()
endforeach()

# The shared library, its symlink chain and SONAME.
set(lib "${PREFIX}/${LIBDIR}")
require_file(${LIBDIR}/libqccl.so)
require_file(${LIBDIR}/libqccl.so.${SOVERSION})
require_file(${LIBDIR}/libqccl.so.${VERSION})
if(NOT IS_SYMLINK "${lib}/libqccl.so")
  fail("${LIBDIR}/libqccl.so is not a symlink to the versioned library")
endif()
if(EXISTS "${lib}/libqccl.so.${VERSION}")
  execute_process(COMMAND "${READELF}" -d "${lib}/libqccl.so.${VERSION}"
                  OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    fail("readelf -d libqccl.so.${VERSION} failed")
  elseif(NOT dynamic MATCHES "\\(SONAME\\)[^\n]*\\[libqccl\\.so\\.${SOVERSION}\\]")
    fail("libqccl.so.${VERSION} has no SONAME libqccl.so.${SOVERSION}:\n${dynamic}")
  endif()
endif()
file(GLOB_RECURSE archives RELATIVE "${PREFIX}" "${PREFIX}/*.a")
if(archives)
  fail("static archives installed: ${archives}")
endif()

# The master binary.
require_file(bin/qccl-master)
if(EXISTS "${PREFIX}/bin/qccl-master")
  execute_process(COMMAND "${PREFIX}/bin/qccl-master" --version
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 20)
  if(NOT rc EQUAL 0)
    fail("bin/qccl-master --version: ${rc} ${out}${err}")
  endif()
endif()

# The CMake package.
foreach(f qcclConfig.cmake qcclConfigVersion.cmake qcclTargets.cmake)
  require_file(${LIBDIR}/cmake/qccl/${f})
endforeach()

if(errors)
  file(GLOB_RECURSE all RELATIVE "${PREFIX}" LIST_DIRECTORIES false "${PREFIX}/*")
  list(JOIN all "\n  " all)
  message(FATAL_ERROR "install layout under ${PREFIX} is wrong:\n${errors}installed:\n  ${all}")
endif()
message(STATUS "install layout under ${PREFIX}: ok")
