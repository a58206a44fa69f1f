# Runs a command and checks its exit code and output (stdout + stderr).
#   cmake -P cli_expect.cmake EXIT_CODE REGEX COMMAND [ARGS...]
# Fails (FATAL_ERROR) when the exit code differs or the output does not match.
include(${CMAKE_CURRENT_LIST_DIR}/script_args.cmake)
script_args(args "cli_expect\\.cmake$")
list(LENGTH args n)
if(n LESS 3)
  message(FATAL_ERROR "usage: cmake -P cli_expect.cmake EXIT_CODE REGEX COMMAND [ARGS...]")
endif()
list(POP_FRONT args expect_code expect_regex)
execute_process(COMMAND ${args}
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("exit code: ${code}\n--- stdout\n${out}--- stderr\n${err}---")
if(NOT code STREQUAL expect_code)
  message(FATAL_ERROR "expected exit code ${expect_code}, got ${code}")
endif()
if(NOT "${out}${err}" MATCHES "${expect_regex}")
  message(FATAL_ERROR "output does not match '${expect_regex}'")
endif()
