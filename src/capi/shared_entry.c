/* libfaultline.so is made of libfaultline.a's objects (whole archive, see
 * cmake/FaultlinePackage.cmake); CMake wants one source of its own. */
typedef int faultline_shared_library_unit;
