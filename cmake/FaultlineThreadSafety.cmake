# The locking contract checked by the compiler (issue 13): Clang's
# -Wthread-safety over the library's sources (src/mm/thread_annotations.hpp).
# GCC builds the project; clang++ (Debian: clang) only checks, -fsyntax-only.
#   cmake --build build --target thread_safety   (by hand)
#   ctest -L lint                                 (test lint.thread_safety)
# The test skips, saying so, only when clang++ is missing.
find_program(FAULTLINE_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14
             DOC "clang++ for the thread-safety check (lint.thread_safety)")
get_target_property(_fl_tsa_srcs faultline SOURCES)
# The race harness exists only in test builds (the check is of production code).
list(FILTER _fl_tsa_srcs EXCLUDE REGEX "src/testing/")
list(TRANSFORM _fl_tsa_srcs PREPEND "${PROJECT_SOURCE_DIR}/")
set(_fl_tsa_cxx none)  # the script skips, saying clang++ is missing
if(FAULTLINE_CLANGXX)
  set(_fl_tsa_cxx ${FAULTLINE_CLANGXX})
endif()
set(_fl_tsa_cmd sh ${PROJECT_SOURCE_DIR}/scripts/check_thread_safety.sh ${_fl_tsa_cxx}
    ${PROJECT_SOURCE_DIR} ${_fl_tsa_srcs})
add_custom_target(thread_safety COMMAND ${_fl_tsa_cmd} VERBATIM
                  COMMENT "Clang thread-safety analysis of the library")
# Once per configuration: the sanitizer builds compile the same sources.
if(FAULTLINE_BUILD_TESTS AND FAULTLINE_SANITIZE STREQUAL "")
  add_test(NAME lint.thread_safety COMMAND ${_fl_tsa_cmd})
  set_tests_properties(lint.thread_safety PROPERTIES LABELS "lint" SKIP_RETURN_CODE 77 TIMEOUT 300)
endif()
