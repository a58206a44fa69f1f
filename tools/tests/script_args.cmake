# script_args(OUT SCRIPT_REGEX): the arguments after the script's own path on
# a `cmake [-D...] -P SCRIPT ARGS...` command line (the script: the argument
# matching SCRIPT_REGEX), into OUT. Included by cli_expect.cmake and
# hugepages_gate.cmake.
function(script_args out script_regex)
  set(args "")
  set(found_script FALSE)
  foreach(i RANGE 1 ${CMAKE_ARGC})
    if(i EQUAL CMAKE_ARGC)
      break()
    endif()
    if(found_script)
      list(APPEND args "${CMAKE_ARGV${i}}")
    elseif(CMAKE_ARGV${i} MATCHES "${script_regex}")
      set(found_script TRUE)
    endif()
  endforeach()
  set(${out} "${args}" PARENT_SCOPE)
endfunction()
