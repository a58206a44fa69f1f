# The Ceph RADOS backend (src/backends/rados/) as the library faultline_rados.
# Built when librados (Debian: librados-dev) is found; FAULTLINE_REQUIRE_RADOS=ON
# turns a missing librados into a configure error (CI).
option(FAULTLINE_REQUIRE_RADOS "Fail the configure step when librados is missing" OFF)

find_path(RADOS_INCLUDE_DIR rados/librados.h)
find_library(RADOS_LIBRARY rados)
if(RADOS_INCLUDE_DIR AND RADOS_LIBRARY)
  set(FAULTLINE_HAVE_RADOS ON)
  message(STATUS "faultline: RADOS backend enabled (${RADOS_LIBRARY})")
  add_library(faultline_rados
    ${CMAKE_CURRENT_LIST_DIR}/../src/backends/rados/rados_uri.cpp
    ${CMAKE_CURRENT_LIST_DIR}/../src/backends/rados/rados_format.cpp
    ${CMAKE_CURRENT_LIST_DIR}/../src/backends/rados/rados_backend.cpp
    ${CMAKE_CURRENT_LIST_DIR}/../src/backends/rados/rados_coherence.cpp
  )
  target_include_directories(faultline_rados PRIVATE ${RADOS_INCLUDE_DIR} ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(faultline_rados PRIVATE $<BUILD_INTERFACE:faultline_warnings>)
  target_link_libraries(faultline_rados PUBLIC faultline PRIVATE ${RADOS_LIBRARY})
  install(TARGETS faultline_rados)
else()
  set(FAULTLINE_HAVE_RADOS OFF)
  if(FAULTLINE_REQUIRE_RADOS)
    message(FATAL_ERROR "faultline: FAULTLINE_REQUIRE_RADOS=ON but librados was not found "
                        "(rados/librados.h: ${RADOS_INCLUDE_DIR}, librados: ${RADOS_LIBRARY}); "
                        "run scripts/setup-rados.sh")
  endif()
  message(STATUS "faultline: librados not found, RADOS backend not built")
endif()
