# Per-target settings: warnings, optional -Werror, sanitizers. Nothing global.

function(qccl_set_warnings tgt)
  target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wno-unused-parameter)
  if(QCCL_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
endfunction()

function(qccl_enable_sanitizers tgt)
  if(QCCL_SANITIZE)
    # -fno-sanitize-recover: a UBSan finding fails the test instead of scrolling past.
    target_compile_options(${tgt} PRIVATE -fsanitize=${QCCL_SANITIZE} -fno-omit-frame-pointer
                                          -fno-sanitize-recover=all)
    target_link_options(${tgt} PUBLIC -fsanitize=${QCCL_SANITIZE})
  endif()
endfunction()

# qccl_module(name src...): an internal static library (PIC, hidden) of one src/ module.
function(qccl_module name)
  add_library(qccl_${name} STATIC ${ARGN})
  add_library(qccl::${name} ALIAS qccl_${name})
  target_include_directories(qccl_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_features(qccl_${name} PUBLIC cxx_std_20)
  qccl_set_warnings(qccl_${name})
  qccl_enable_sanitizers(qccl_${name})
endfunction()

# qccl_add_test(name src... [LIBS lib...] [TIMEOUT s] [LABELS l...]): a GoogleTest binary
# registered with ctest under a deadline.
function(qccl_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} qccl_test_support GTest::gtest GTest::gtest_main)
  qccl_set_warnings(${name})
  qccl_enable_sanitizers(${name})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()
