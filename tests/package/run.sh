#!/usr/bin/env bash
# package.install_and_consume: installs the build tree into a temporary prefix,
# checks what was installed (public headers only, versioned soname, CMake
# package, pkg-config modules, CLI, man page), then builds and runs
# out-of-tree consumers: C and C++ with find_package(faultline) (shared and
# static), C with pkg-config (and the UMap API through both, when built).
# Usage: run.sh BUILD_DIR TEST_SRC_DIR CMAKE CC CXX
set -euo pipefail
build=$1 src=$2 cmake=$3 cc=$4 cxx=$5
tmp=$(mktemp -d /tmp/faultline-package-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "package test: $*" >&2; exit 1; }

"$cmake" --install "$build" --prefix "$prefix" >/dev/null
inc=$prefix/include
for h in faultline.h faultline.hpp backend.hpp engine.hpp file.hpp mapping.hpp guarded.hpp stats.hpp constants.hpp; do
  [[ -f $inc/faultline/$h ]] || fail "public header faultline/$h not installed"
done
for h in testing.hpp faulty_backend.hpp; do
  [[ ! -e $inc/faultline/$h ]] || fail "test-support header faultline/$h was installed"
done
lib=$(dirname "$(find "$prefix" -name 'libfaultline.so.*.*' | head -1)")
[[ -d $lib ]] || fail "no libfaultline.so.X.Y.Z installed"
[[ -f $lib/libfaultline.a ]] || fail "no static libfaultline.a"
[[ -L $lib/libfaultline.so ]] || fail "libfaultline.so is not a link to the versioned library"
soname=$(objdump -p "$lib/libfaultline.so" | awk '/SONAME/ {print $2}')
[[ $soname =~ ^libfaultline\.so\.[0-9]+$ ]] || fail "soname '$soname' is not versioned"
[[ -f $lib/cmake/faultline/faultlineConfig.cmake ]] || fail "no faultlineConfig.cmake"
[[ -f $lib/pkgconfig/faultline.pc ]] || fail "no faultline.pc"
[[ -x $prefix/bin/faultline ]] || fail "the CLI was not installed"
[[ -f $prefix/share/man/man1/faultline.1 ]] || fail "no man page"
"$prefix/bin/faultline" --help | grep -q bench || fail "installed CLI does not run"
umap=0
if [[ -f $lib/pkgconfig/faultline-umap.pc ]]; then
  umap=1
  [[ -f $inc/umap/umap.h ]] || fail "umap/umap.h not installed"
  [[ -e $lib/libumap.so && -e $lib/libumap.a ]] || fail "libumap (-lumap) not installed"
fi

echo "== find_package(faultline): C, C++ (shared and static)"
"$cmake" -S "$src/consumer" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release >/dev/null
"$cmake" --build "$tmp/b" -j2 >/dev/null
"$tmp/b/c_consumer"
"$tmp/b/cpp_consumer"
"$tmp/b/cpp_consumer_static"
if ((umap)); then "$tmp/b/umap_consumer"; fi

echo "== pkg-config faultline: C"
export PKG_CONFIG_PATH=$lib/pkgconfig
libdir=$(pkg-config --variable=libdir faultline)
# shellcheck disable=SC2046  # word splitting of the flags is intended
"$cc" -std=c99 -o "$tmp/pc_c" "$src/consumer/c_consumer.c" $(pkg-config --cflags --libs faultline) \
  -Wl,-rpath,"$libdir"
"$tmp/pc_c"
if ((umap)); then
  echo "== pkg-config faultline-umap, and plain -lumap: C"
  # shellcheck disable=SC2046
  "$cc" -std=c99 -o "$tmp/pc_umap" "$src/consumer/umap_consumer.c" $(pkg-config --cflags --libs faultline-umap) \
    -Wl,-rpath,"$libdir"
  "$tmp/pc_umap"
  "$cc" -std=c99 -o "$tmp/lumap" "$src/consumer/umap_consumer.c" -I"$inc" -L"$lib" -lumap -Wl,-rpath,"$lib"
  "$tmp/lumap"
fi
echo "package test: ok"
