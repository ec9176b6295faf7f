# cmake -DPREFIX=... -DLIBDIR=lib -DSOURCE=main.c -DOUTPUT=<exe> [-DCC=cc] [-DSANITIZE=...]
#       -P plain_cc.cmake
# Builds a C99 program against the installed library exactly as API.md §1 says users can:
#   cc -std=c99 prog.c -IP/include -LP/lib -lqccl
# and runs it with LD_LIBRARY_PATH=P/lib. In sanitizer builds the program must link the same
# sanitizer runtimes as the library, so -fsanitize=SANITIZE is added then.
foreach(var PREFIX LIBDIR SOURCE OUTPUT)
  if(NOT ${var})
    message(FATAL_ERROR "plain_cc.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CC)
  find_program(CC cc REQUIRED)
endif()
set(extra "")
if(SANITIZE)
  set(extra "-fsanitize=${SANITIZE}")
endif()

set(cmd "${CC}" -std=c99 "${SOURCE}" "-I${PREFIX}/include" "-L${PREFIX}/${LIBDIR}" -lqccl
    -o "${OUTPUT}" ${extra})
list(JOIN cmd " " cmd_text)
message(STATUS "${cmd_text}")
file(REMOVE "${OUTPUT}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compile failed (${rc}):\n${out}${err}")
endif()

execute_process(COMMAND "${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${PREFIX}/${LIBDIR}"
                        "${OUTPUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 30)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${OUTPUT} failed (${rc}):\n${out}${err}")
endif()
message(STATUS "${out}")
