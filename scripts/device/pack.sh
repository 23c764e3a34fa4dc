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
# OpenBLAS is not carried either: when the GPU machine has no usable OpenBLAS (library and
# cblas.h), the kit's configure (-DCUSEG_REFBLAS_FALLBACK=ON, cmake/CusegBlas.cmake) builds
# the reference cblas_sgemm of scripts/device/refblas (tracked) into cuseg.
# .deps/ (headers that scripts/setup.sh fetches, e.g. cudnn-frontend) is not copied: the
# device call carries it beside .kit (scripts/device/README.md).
# Usage: scripts/device/pack.sh            (from anywhere; writes <repo>/.kit)
# Environment: CUSEG_KIT_DIR   where to write the kit (default <repo>/.kit; the dry-run test
#                              packs into its build folder)
#              CUSEG_KIT_CACHE downloaded Debian source tarballs, reused by later packs
#                              (default ${XDG_CACHE_HOME:-~/.cache}/cuseg-kit)
# Exit 3 when the Debian source archive cannot be reached (no network) and the cache lacks
# a tarball: the dry-run test reports itself skipped then.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
kit=${CUSEG_KIT_DIR:-$repo/.kit}
cache=${CUSEG_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cuseg-kit}
rm -rf "$kit"
mkdir -p "$kit/include" "$kit/cmake/nlohmann_json" "$cache"

# GoogleTest
test -f /usr/src/googletest/CMakeLists.txt || { echo "pack: /usr/src/googletest missing (apt-get install googletest)"; exit 1; }
cp -r /usr/src/googletest "$kit/googletest"

# Debian source packages, fetched with apt through a private source list (no change to the
# system's apt configuration) into the cache; a package whose orig tarball is cached is not
# fetched again.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial"
. /etc/os-release
echo "deb-src http://deb.debian.org/debian ${VERSION_CODENAME:-bookworm} main" >"$tmp/src.list"
apt_o=(-o "Dir::Etc::SourceList=$tmp/src.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$tmp/lists")
# orig_tarball SOURCE_PACKAGE: prints the cached orig tarball, fetching it first if needed.
orig_tarball() {
  local o
  o=$(ls "$cache"/"$1"_*.orig.tar.* 2>/dev/null | head -1 || true)
  if [ -z "$o" ]; then
    if [ ! -f "$tmp/updated" ]; then  # (a file: this runs in a command substitution)
      apt-get "${apt_o[@]}" update >>"$tmp/apt.log" 2>&1 \
        || { cat "$tmp/apt.log" >&2; echo "pack: Debian source archive unreachable" >&2; exit 3; }
      : >"$tmp/updated"
    fi
    (cd "$cache" && apt-get "${apt_o[@]}" source --download-only "$1" >>"$tmp/apt.log" 2>&1) \
      || { cat "$tmp/apt.log" >&2; echo "pack: could not fetch the source of $1" >&2; exit 3; }
    o=$(ls "$cache"/"$1"_*.orig.tar.* | head -1)
  fi
  echo "$o"
}

# Google Benchmark
orig=$(orig_tarball benchmark)
mkdir -p "$kit/benchmark"
tar -xf "$orig" -C "$kit/benchmark" --strip-components=1
rm -rf "$kit/benchmark/test" "$kit/benchmark/docs" "$kit/benchmark/bindings" "$kit/benchmark/.github"
# yaml-cpp (run configs; MIT), libpng (preview pictures; libpng licence) and zlib (zlib
# licence), all required by the top-level CMakeLists: upstream sources from Debian.
for pkg in yaml-cpp:yaml-cpp libpng1.6:libpng zlib:zlib; do
  src=${pkg%%:*}; dst=${pkg#*:}
  o=$(orig_tarball "$src")
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
cuseg GPU check kit, packed $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname) from commit $(git -C "$repo" rev-parse --short HEAD)$( [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ] && echo ' + uncommitted changes'), source hash $(bash "$repo/scripts/device/tree_hash.sh" "$repo")
googletest   $(dpkg-query -W -f='${Version}' googletest 2>/dev/null || echo '?')  BSD-3-Clause  /usr/src/googletest
benchmark    $(basename "$orig")  Apache-2.0  Debian source package
nlohmann     $njv  MIT  /usr/include/nlohmann
$(sed 's/^/source       /' "$tmp/sources.txt")
CLI11        $(dpkg-query -W -f='${Version}' libcli11-dev 2>/dev/null || echo '?')  BSD-3-Clause  /usr/include/CLI
MAN
size=$(du -sm "$kit" | cut -f1)
echo "pack: $kit is ${size} MiB"
# What travels to the GPU machine (at most 64 MiB in all): the tracked and untracked
# not-ignored files, plus the carried .kit and .deps.
tree=$(cd "$repo" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
deps=0
[ -d "$repo/.deps" ] && deps=$(du -sb "$repo/.deps" | cut -f1)
kitb=$(du -sb "$kit" | cut -f1)
total=$(( (tree + deps + kitb) / 1048576 ))
echo "pack: working tree $((tree / 1048576)) MiB + .deps $((deps / 1048576)) MiB + kit $((kitb / 1048576)) MiB = ${total} MiB travel (limit 64)"
[ "$total" -lt 60 ] || { echo "pack: over 60 MiB would travel; the device tool takes 64 at most"; exit 1; }
