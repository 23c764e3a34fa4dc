#!/usr/bin/env bash
# GPU check kit, step 1 (run HERE, on a development machine with network): gathers what the
# GPU machine's build needs and lacks into the git-ignored folder .kit/ (< 60 MiB). Sources
# and headers only, no Debian binaries (the GPU machine's OS may differ):
#   googletest/       GoogleTest 1.12 source, from /usr/src/googletest   (BSD-3-Clause)
#   benchmark/        Google Benchmark upstream source (Debian source package 'benchmark',
#                     orig tarball)                                        (Apache-2.0)
#   include/nlohmann  nlohmann/json headers (nlohmann-json3-dev)           (MIT)
#   include/CLI       CLI11 headers (libcli11-dev), for bench/engine_bench (BSD-3-Clause)
#   cmake/nlohmann_json/  a small package config exposing nlohmann_json::nlohmann_json
#   yaml-cpp/ libpng/ zlib/  upstream sources (Debian source packages)  (MIT / libpng / zlib)
# ITK is not carried: the device build uses -DCUSEG_WITH_ITK=OFF and no apps.
# OpenBLAS is not carried either: scripts/device/refblas (tracked) builds a reference
# cblas_sgemm there when the GPU machine has no OpenBLAS.
# Usage: scripts/device/pack.sh            (from anywhere; writes <repo>/.kit)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
kit=$repo/.kit
rm -rf "$kit"
mkdir -p "$kit/include" "$kit/cmake/nlohmann_json"

# GoogleTest
test -f /usr/src/googletest/CMakeLists.txt || { echo "pack: /usr/src/googletest missing (apt-get install googletest)"; exit 1; }
cp -r /usr/src/googletest "$kit/googletest"

# Google Benchmark: Debian source package, fetched with apt through a private source list
# (no change to the system's apt configuration).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial"
. /etc/os-release
echo "deb-src http://deb.debian.org/debian ${VERSION_CODENAME:-bookworm} main" >"$tmp/src.list"
apt_o=(-o "Dir::Etc::SourceList=$tmp/src.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$tmp/lists")
apt-get "${apt_o[@]}" update >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; exit 1; }
(cd "$tmp" && apt-get "${apt_o[@]}" source --download-only benchmark >>"$tmp/apt.log" 2>&1) || { cat "$tmp/apt.log"; exit 1; }
orig=$(ls "$tmp"/benchmark_*.orig.tar.* | head -1)
mkdir -p "$kit/benchmark"
tar -xf "$orig" -C "$kit/benchmark" --strip-components=1
rm -rf "$kit/benchmark/test" "$kit/benchmark/docs" "$kit/benchmark/bindings" "$kit/benchmark/.github"
# yaml-cpp (run configs; MIT), libpng (preview pictures; libpng licence) and zlib (zlib
# licence), all required by the top-level CMakeLists: upstream sources from Debian.
for pkg in yaml-cpp:yaml-cpp libpng1.6:libpng zlib:zlib; do
  src=${pkg%%:*}; dst=${pkg#*:}
  (cd "$tmp" && apt-get "${apt_o[@]}" source --download-only "$src" >>"$tmp/apt.log" 2>&1) || { cat "$tmp/apt.log"; exit 1; }
  o=$(ls "$tmp"/${src}_*.orig.tar.* | head -1)
  mkdir -p "$kit/$dst"
  tar -xf "$o" -C "$kit/$dst" --strip-components=1
  rm -rf "$kit/$dst/docs" "$kit/$dst/contrib" "$kit/$dst/projects"
  # zlib's CMakeLists names win32/zlib1.rc for every non-MinGW build; Debian's dfsg tarball
  # drops win32/. An empty file satisfies CMake (no resource compiler is used on Linux).
  if [ "$dst" = zlib ]; then mkdir -p "$kit/zlib/win32"; : >"$kit/zlib/win32/zlib1.rc"; fi
  echo "$dst $(basename "$o")" >>"$tmp/sources.txt"
done

# Header-only libraries
cp -r /usr/include/nlohmann "$kit/include/"
cp -r /usr/include/CLI "$kit/include/"
njv=$(sed -n 's/^#define NLOHMANN_JSON_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' \
      /usr/include/nlohmann/detail/abi_macros.hpp /usr/include/nlohmann/json.hpp 2>/dev/null | head -3 | paste -sd.)
[ -n "$njv" ] || njv=3.11.2
cat >"$kit/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" <<CFG
# nlohmann_json $njv headers carried by the GPU check kit (scripts/device/pack.sh).
if(NOT TARGET nlohmann_json::nlohmann_json)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "\${CMAKE_CURRENT_LIST_DIR}/../../include")
endif()
CFG
cat >"$kit/cmake/nlohmann_json/nlohmann_jsonConfigVersion.cmake" <<CFG
set(PACKAGE_VERSION "$njv")
if(PACKAGE_FIND_VERSION_MAJOR STREQUAL "" OR PACKAGE_FIND_VERSION_MAJOR EQUAL 3)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CFG

cat >"$kit/MANIFEST.txt" <<MAN
cuseg GPU check kit, packed $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname) from commit $(git -C "$repo" rev-parse --short HEAD)
googletest   $(dpkg-query -W -f='${Version}' googletest 2>/dev/null || echo '?')  BSD-3-Clause  /usr/src/googletest
benchmark    $(basename "$orig")  Apache-2.0  Debian source package
nlohmann     $njv  MIT  /usr/include/nlohmann
$(sed 's/^/source       /' "$tmp/sources.txt")
CLI11        $(dpkg-query -W -f='${Version}' libcli11-dev 2>/dev/null || echo '?')  BSD-3-Clause  /usr/include/CLI
MAN
size=$(du -sm "$kit" | cut -f1)
echo "pack: $kit is ${size} MiB"
[ "$size" -lt 60 ] || { echo "pack: kit over 60 MiB"; exit 1; }
