# `faultline verify`'s CTest tests (issue 6; label "verify"). Included from
# tools/tests/CMakeLists.txt.
set(verify_expect ${CMAKE_COMMAND} -P ${CMAKE_CURRENT_LIST_DIR}/cli_expect.cmake)
set(verify_bin $<TARGET_FILE:faultline-cli>)
# name | args
set(verify_runs
  "file|--ops 20000 --seed 1 --backend file"
  "memory|--ops 20000 --seed 1 --backend memory"
  "threads2_file|--ops 20000 --seed 2 --threads 2 --backend file"
  "threads2_memory|--ops 20000 --seed 3 --threads 2 --backend memory"
  "inject_read|--ops 20000 --seed 4 --backend file --inject read:eio:0.02"
  "inject_write|--ops 20000 --seed 5 --backend memory --inject write:eio:0.05,write:enospc:0.02,sync:eio:0.02"
  "inject_mkwrite|--ops 20000 --seed 6 --backend file --inject mkwrite:eio:0.02,mkwrite:enospc:0.01"
  "threads4_memory|--ops 20000 --seed 8 --threads 4 --backend memory"
  "threads4_file_inject|--ops 20000 --seed 9 --threads 4 --backend file --inject read:eio:0.01,write:eio:0.02,mkwrite:enospc:0.01"
  "inject_short_read|--ops 20000 --seed 12 --backend file --inject read:short:0.02"
  "strict_poison|--ops 20000 --seed 1 --backend memory --inject mkwrite:eio:0.02 --strict-poison"
  "inject_all_threads2|--ops 20000 --seed 7 --threads 2 --backend memory --inject read:eio:0.01,write:eio:0.02,mkwrite:enospc:0.01"
  "close_reopen_file|--ops 5000 --seed 13 --backend file --w-reopen 15 --w-punch 6 --w-sync 6"
  "teardown_threads4_file|--ops 20000 --seed 14 --threads 4 --backend file --w-teardown 10 --w-invalidate 6 --w-sync 6"
)
foreach(run IN LISTS verify_runs)
  string(REPLACE "|" ";" parts "${run}")
  list(GET parts 0 name)
  list(GET parts 1 argstr)
  separate_arguments(args UNIX_COMMAND "${argstr}")
  add_test(NAME verify.${name} COMMAND ${verify_expect} 0 "verify: OK" ${verify_bin} verify ${args})
  set_tests_properties(verify.${name} PROPERTIES LABELS "verify" TIMEOUT 120)
endforeach()
# A deliberately wrong model must be caught: exit 1 and a replay line.
add_test(NAME verify.self_test_corrupt
         COMMAND ${verify_expect} 1 "MISMATCH.*replay: faultline verify --seed 11 --ops"
                 ${verify_bin} verify --ops 2000 --seed 11 --backend memory --self-test-corrupt)
# Bad input: exit 2 with the usage line.
add_test(NAME verify.bad_inject
         COMMAND ${verify_expect} 2 "bad --inject spec.*Usage"
                 ${verify_bin} verify --ops 10 --inject read:bogus:0.1)
add_test(NAME verify.bad_size
         COMMAND ${verify_expect} 2 "not a multiple of the page size.*Usage"
                 ${verify_bin} verify --ops 10 --size 5000)
set_tests_properties(verify.self_test_corrupt verify.bad_inject verify.bad_size
                     PROPERTIES LABELS "verify" TIMEOUT 60)
# 2 MiB frames (issue 7): needs a huge page pool (the File's largest size in
# 2 MiB pages, --size 16M: 8); skipped without one, a failure with
# FAULTLINE_REQUIRE_HUGEPAGES=1 (tools/tests/hugepages_gate.cmake).
set(verify_2m_runs
  "frames2m_file|--ops 4000 --seed 21 --frames 2M --size 16M --backend file"
  "frames2m_memory|--ops 4000 --seed 22 --frames 2M --size 16M --backend memory"
  "frames2m_threads2|--ops 4000 --seed 23 --frames 2M --size 16M --threads 2 --backend file"
  "frames2m_inject|--ops 4000 --seed 24 --frames 2M --size 16M --backend memory --inject read:eio:0.01,write:eio:0.02,mkwrite:eio:0.01"
)
foreach(run IN LISTS verify_2m_runs)
  string(REPLACE "|" ";" parts "${run}")
  list(GET parts 0 name)
  list(GET parts 1 argstr)
  separate_arguments(args UNIX_COMMAND "${argstr}")
  add_test(NAME verify.${name}
           COMMAND ${CMAKE_COMMAND} -DNEED_HUGEPAGES=8 -P ${CMAKE_CURRENT_LIST_DIR}/hugepages_gate.cmake
                   ${verify_expect} 0 "verify: OK" ${verify_bin} verify ${args})
  set_tests_properties(verify.${name} PROPERTIES LABELS "verify;frames2m" TIMEOUT 300
                       SKIP_REGULAR_EXPRESSION "FAULTLINE-SKIP:")
endforeach()
add_test(NAME verify.frames2m_bad_size
         COMMAND ${verify_expect} 2 "not a multiple of the page size.*Usage"
                 ${verify_bin} verify --ops 10 --frames 2M --size 3M)
set_tests_properties(verify.frames2m_bad_size PROPERTIES LABELS "verify" TIMEOUT 60)
