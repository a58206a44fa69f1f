// faultline CLI — opening path arguments: a directory, FIFO, socket, device,
// dangling link or /proc and /sys pseudo-file gets a clear error naming what
// it is, never a hang (an open of a FIFO blocks until the other end opens) or
// a wrong result (a pseudo-file's size does not tell its length).
#pragma once
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "common/unique_fd.hpp"

namespace faultline::cli {

/// What kind of file `mode` describes: "a directory", "a FIFO", ...
const char* file_kind(mode_t mode);

/// Opens `path` (flags: O_RDONLY or O_RDWR) as a regular file whose size is
/// its length. Throws std::system_error / std::runtime_error "<path>: <why>"
/// for anything else. The descriptor is blocking (O_NONBLOCK is used only for
/// the open itself).
UniqueFd open_regular_file(const std::string& path, int flags);

/// Opens `path` to write a log to (created if missing, truncated): a regular
/// file, a character device (/dev/null, a terminal) or a FIFO that has a
/// reader. A FIFO with no reader, a directory, a socket or a /proc or /sys
/// file is refused with a clear error (never a hang, never a write into a
/// kernel setting). The caller fcloses the result.
std::FILE* open_log_file(const std::string& path);

}  // namespace faultline::cli
