# The installable package: shared (versioned soname) and static libraries,
# the public headers (include/faultline/; test support lives in src/testing/
# and is never installed), the CMake
# package (find_package(faultline) -> faultline::faultline [shared],
# faultline::faultline_static, faultline::umap, faultline::rados when built),
# pkg-config modules faultline and faultline-umap, the CLI (tools/) and its
# man page. Test: package.install_and_consume (label package).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The static library's objects also make the shared one (no second compile).
set_target_properties(faultline PROPERTIES POSITION_INDEPENDENT_CODE ON)
add_library(faultline_shared SHARED ${PROJECT_SOURCE_DIR}/src/capi/shared_entry.c)
target_link_libraries(faultline_shared PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,faultline>"
                                       PUBLIC Threads::Threads)
target_include_directories(faultline_shared PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(faultline_shared PROPERTIES
  OUTPUT_NAME faultline EXPORT_NAME faultline LINKER_LANGUAGE CXX
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
set_target_properties(faultline PROPERTIES EXPORT_NAME faultline_static)

set(faultline_export_targets faultline_shared faultline)

# RADOS: a shared build of the same sources against the shared library
# (linking the static faultline_rados would carry a second copy of the engine).
if(FAULTLINE_HAVE_RADOS)
  get_target_property(rados_srcs faultline_rados SOURCES)
  add_library(faultline_rados_shared SHARED ${rados_srcs})
  target_include_directories(faultline_rados_shared PRIVATE ${RADOS_INCLUDE_DIR} ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(faultline_rados_shared PRIVATE $<BUILD_INTERFACE:faultline_warnings>)
  target_link_libraries(faultline_rados_shared PUBLIC faultline_shared PRIVATE ${RADOS_LIBRARY})
  set_target_properties(faultline_rados_shared PROPERTIES
    OUTPUT_NAME faultline_rados EXPORT_NAME rados INSTALL_RPATH "$ORIGIN"
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
  list(APPEND faultline_export_targets faultline_rados_shared)
endif()
if(TARGET faultline_umap_shared)
  list(APPEND faultline_export_targets faultline_umap_shared faultline_umap)
endif()

install(TARGETS ${faultline_export_targets} EXPORT faultlineTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
set(faultline_public_headers
  backend.hpp cgroup.hpp constants.hpp engine.hpp faultline.h faultline.hpp file.hpp
  forwarding_backend.hpp guarded.hpp
  hugepages.hpp mapping.hpp stats.hpp)
if(FAULTLINE_HAVE_RADOS)
  list(APPEND faultline_public_headers rados_backend.hpp)
endif()
list(TRANSFORM faultline_public_headers PREPEND ${PROJECT_SOURCE_DIR}/include/faultline/)
install(FILES ${faultline_public_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/faultline)

set(faultline_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/faultline)
install(EXPORT faultlineTargets NAMESPACE faultline:: DESTINATION ${faultline_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/faultlineConfig.cmake.in
  ${PROJECT_BINARY_DIR}/faultlineConfig.cmake INSTALL_DESTINATION ${faultline_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/faultlineConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/faultlineConfig.cmake
              ${PROJECT_BINARY_DIR}/faultlineConfigVersion.cmake
        DESTINATION ${faultline_cmake_dir})

# pkg-config: relocatable (paths relative to the .pc file's directory).
file(RELATIVE_PATH faultline_pc_to_prefix "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
set(faultline_pc_modules faultline)
if(TARGET faultline_umap_shared)
  list(APPEND faultline_pc_modules faultline-umap)
endif()
foreach(pc IN LISTS faultline_pc_modules)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

install(FILES ${PROJECT_SOURCE_DIR}/doc/faultline.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

# The test: install into a temporary prefix, build and run out-of-tree
# consumers (C and C++ with find_package, C with pkg-config). Not in the
# sanitizer builds: a consumer built without the sanitizer cannot load an
# instrumented shared library, and the install itself is the same there.
if(FAULTLINE_BUILD_TESTS AND FAULTLINE_SANITIZE STREQUAL "")
  add_test(NAME package.install_and_consume
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/package/run.sh ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR}/tests/package ${CMAKE_COMMAND} ${CMAKE_C_COMPILER}
                   ${CMAKE_CXX_COMPILER})
  set_tests_properties(package.install_and_consume PROPERTIES LABELS package TIMEOUT 300)
endif()
