# The C API (include/faultline/faultline.h, src/capi/): part of libfaultline,
# tested by a C program (tests/capi/capi_test.c, compiled as C99; label capi).
enable_language(C)
target_sources(faultline PRIVATE ${PROJECT_SOURCE_DIR}/src/capi/capi.cpp)
set_source_files_properties(${PROJECT_SOURCE_DIR}/src/capi/capi.cpp PROPERTIES
  COMPILE_DEFINITIONS FAULTLINE_VERSION_STRING="${PROJECT_VERSION}")

if(FAULTLINE_BUILD_TESTS)
  add_executable(faultline_capi_test ${PROJECT_SOURCE_DIR}/tests/capi/capi_test.c)
  set_target_properties(faultline_capi_test PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON
                                                       C_EXTENSIONS OFF LINKER_LANGUAGE CXX)
  target_link_libraries(faultline_capi_test PRIVATE $<BUILD_INTERFACE:faultline_warnings>)
  target_compile_options(faultline_capi_test PRIVATE -Werror=implicit-function-declaration)
  target_link_libraries(faultline_capi_test PRIVATE faultline)
  add_test(NAME capi.c_program COMMAND faultline_capi_test)
  # (FL_FAULT_FAULTING_THREAD runs the engine's fault path in a SIGBUS handler by
  # design: ThreadSanitizer's signal-unsafe report is off for this program.)
  set_tests_properties(capi.c_program PROPERTIES LABELS capi TIMEOUT 60
                       ENVIRONMENT "TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0")
endif()
