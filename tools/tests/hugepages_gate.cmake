# Runs a command only when the 2 MiB huge page pool is big enough.
#   cmake -DNEED_HUGEPAGES=N -P hugepages_gate.cmake COMMAND [ARGS...]
# Pool too small (HugePages_Free - HugePages_Rsvd < N): with the environment's
# FAULTLINE_REQUIRE_HUGEPAGES=1 it fails; otherwise it prints
# "FAULTLINE-SKIP: ..." (the test's SKIP_REGULAR_EXPRESSION) and says how to
# reserve a pool. Else the command's exit code decides (non-zero: failure).
include(${CMAKE_CURRENT_LIST_DIR}/script_args.cmake)
script_args(args "hugepages_gate\\.cmake$")
if(NOT DEFINED NEED_HUGEPAGES OR NOT args)
  message(FATAL_ERROR "usage: cmake -DNEED_HUGEPAGES=N -P hugepages_gate.cmake COMMAND [ARGS...]")
endif()
# Free unreserved pages plus the overcommit headroom (nr_overcommit_hugepages -
# surplus pages in use: allocated on demand), as faultline/hugepages.hpp counts.
set(free 0)
set(rsvd 0)
set(surp 0)
set(over 0)
if(EXISTS /proc/meminfo)
  file(STRINGS /proc/meminfo lines REGEX "^HugePages_(Free|Rsvd|Surp):")
  foreach(l IN LISTS lines)
    if(l MATCHES "^HugePages_Free: *([0-9]+)")
      set(free ${CMAKE_MATCH_1})
    elseif(l MATCHES "^HugePages_Rsvd: *([0-9]+)")
      set(rsvd ${CMAKE_MATCH_1})
    elseif(l MATCHES "^HugePages_Surp: *([0-9]+)")
      set(surp ${CMAKE_MATCH_1})
    endif()
  endforeach()
endif()
if(EXISTS /proc/sys/vm/nr_overcommit_hugepages)
  file(STRINGS /proc/sys/vm/nr_overcommit_hugepages over)
endif()
math(EXPR avail "${free} - ${rsvd}")
if(over GREATER surp)
  math(EXPR avail "${avail} + ${over} - ${surp}")
endif()
if(avail LESS NEED_HUGEPAGES)
  set(why "${avail} free 2 MiB huge pages, this test needs ${NEED_HUGEPAGES}")
  if("$ENV{FAULTLINE_REQUIRE_HUGEPAGES}" STREQUAL "1")
    message(FATAL_ERROR "FAULTLINE_REQUIRE_HUGEPAGES=1 but only ${why}")
  endif()
  message("FAULTLINE-SKIP: ${why}: reserve a pool as root with `scripts/setup.sh --hugepages "
          "${NEED_HUGEPAGES}` (vm.nr_hugepages); set FAULTLINE_REQUIRE_HUGEPAGES=1 to make this "
          "a failure")
  return()
endif()
execute_process(COMMAND ${args} RESULT_VARIABLE code)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "exit code ${code}")
endif()
