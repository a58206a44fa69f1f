add_executable(fill_paths_bench fill_paths.cpp)
target_link_libraries(fill_paths_bench PRIVATE benchmark::benchmark)
