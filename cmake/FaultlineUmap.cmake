# UMap's API on faultline (include/umap/, src/umap/): libfaultline-umap, shared
# (faultline_umap_shared, over libfaultline.so) and static (faultline_umap,
# over libfaultline.a), plus links libumap.so / libumap.a so that `-lumap`
# works unchanged. Installed by cmake/FaultlinePackage.cmake. Tests (label
# umap): UMap-style C programs of our own.
add_library(faultline_umap STATIC ${PROJECT_SOURCE_DIR}/src/umap/umap.cpp)
target_link_libraries(faultline_umap PUBLIC faultline)
add_library(faultline_umap_shared SHARED ${PROJECT_SOURCE_DIR}/src/umap/umap.cpp)
target_link_libraries(faultline_umap_shared PUBLIC faultline_shared)
foreach(t faultline_umap faultline_umap_shared)
  target_link_libraries(${t} PRIVATE $<BUILD_INTERFACE:faultline_warnings>)
  target_include_directories(${t} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  set_target_properties(${t} PROPERTIES OUTPUT_NAME faultline-umap POSITION_INDEPENDENT_CODE ON)
endforeach()
set_target_properties(faultline_umap PROPERTIES EXPORT_NAME umap_static)
# INSTALL_RPATH $ORIGIN: finds libfaultline.so beside it in any prefix (a
# consumer's RUNPATH does not apply to the libraries it loads indirectly).
set_target_properties(faultline_umap_shared PROPERTIES EXPORT_NAME umap INSTALL_RPATH "$ORIGIN"
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
# -lumap: links to the faultline-umap libraries (installed beside them).
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/umap-links)
file(CREATE_LINK libfaultline-umap.so ${PROJECT_BINARY_DIR}/umap-links/libumap.so SYMBOLIC)
file(CREATE_LINK libfaultline-umap.a ${PROJECT_BINARY_DIR}/umap-links/libumap.a SYMBOLIC)
install(FILES ${PROJECT_BINARY_DIR}/umap-links/libumap.so ${PROJECT_BINARY_DIR}/umap-links/libumap.a
        DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/umap/umap.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/umap)
install(FILES ${PROJECT_SOURCE_DIR}/include/umap/store/Store.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/umap/store)

if(FAULTLINE_BUILD_TESTS)
  # umap_sort: a UMap program (map a file, sort it in place, flush, check) and
  # the API's bad input; run twice: default settings, and a buffer (memory
  # limit) smaller than the file with explicit UMap settings that
  # umapcfg_get_* must report.
  add_executable(faultline_umap_sort_test ${PROJECT_SOURCE_DIR}/tests/umap/umap_sort_test.c)
  set_target_properties(faultline_umap_sort_test PROPERTIES C_STANDARD 99 LINKER_LANGUAGE CXX)
  target_link_libraries(faultline_umap_sort_test PRIVATE $<BUILD_INTERFACE:faultline_warnings>)
  target_link_libraries(faultline_umap_sort_test PRIVATE faultline_umap)
  add_test(NAME umap.sort_default COMMAND faultline_umap_sort_test)
  add_test(NAME umap.sort_small_buffer COMMAND faultline_umap_sort_test --expect-env)
  set_tests_properties(umap.sort_small_buffer PROPERTIES ENVIRONMENT
    "UMAP_PAGESIZE=16384;UMAP_BUFSIZE=64;UMAP_PAGE_FILLERS=3;UMAP_PAGE_EVICTORS=2;UMAP_EVICT_HIGH_WATER_THRESHOLD=80;UMAP_EVICT_LOW_WATER_THRESHOLD=60;UMAP_READ_AHEAD=8")
  # umap_ex with a Store (C++).
  add_executable(faultline_umap_store_test ${PROJECT_SOURCE_DIR}/tests/umap/umap_store_test.cpp)
  target_link_libraries(faultline_umap_store_test PRIVATE $<BUILD_INTERFACE:faultline_warnings>)
  target_link_libraries(faultline_umap_store_test PRIVATE faultline_umap)
  add_test(NAME umap.store COMMAND faultline_umap_store_test)
  # The same sort, each faulting thread resolving its own faults.
  add_test(NAME umap.sort_faulting_thread COMMAND faultline_umap_sort_test)
  # (TSan: the fault path runs in a SIGBUS handler by design.)
  set_tests_properties(umap.sort_faulting_thread PROPERTIES ENVIRONMENT
    "FAULTLINE_FAULT_MODE=thread;TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0")
  set_tests_properties(umap.sort_default umap.sort_small_buffer umap.store
                       umap.sort_faulting_thread PROPERTIES LABELS umap TIMEOUT 120)
endif()
