#!/usr/bin/env bash
# Build XIR (the library that reads .xmodel files) and its logging library unilog, with the pybind11
# `xir` Python module, from the Vitis AI 3.5 sources; install the module into flm's venv via a .pth file.
#
#   scripts/build_xir.sh                         # sources: ../shared/vendor/vitis-ai-3.5/{xir,unilog}-src.tar.gz
#   VITIS_AI_SRC=~/Vitis-AI scripts/build_xir.sh # a Vitis AI checkout (src/vai_runtime/{xir,unilog}),
#                                                # or a folder holding xir-src.tar.gz + unilog-src.tar.gz
#   scripts/build_xir.sh --check                 # only check the build dependencies (exit 1 if missing)
#   scripts/build_xir.sh --apt-packages          # print the Debian/Ubuntu packages it needs
# Environment: XIR_PYTHON (default .venv/bin/python: the module is built for it and the .pth goes into
# its site-packages), JOBS (default 2), FLM_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/flm).
#
# The build is cached in $FLM_CACHE/xir-<hash>/ (hash of the sources, the recipe version, the
# compiler/protoc/cmake versions and the Python ABI), so a second run only rewrites the .pth file.
# Nothing is written in the source tree or the checkout except that .pth file. Debian/Ubuntu packages
# needed: APT_PACKAGES below (a missing one is named).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${XIR_PYTHON:-$HERE/.venv/bin/python}"
JOBS="${JOBS:-2}"
CACHE="${FLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flm}"
VENDOR="$(cd "$HERE/.." && pwd)/shared/vendor/vitis-ai-3.5"
SRC="${VITIS_AI_SRC:-$VENDOR}"
APT_PACKAGES="cmake g++ make pkg-config python3-dev pybind11-dev libgoogle-glog-dev libprotobuf-dev \
protobuf-compiler libboost-dev libboost-filesystem-dev libboost-system-dev"
MODE="${1:-build}"
case "$MODE" in
  --apt-packages) echo "$APT_PACKAGES"; exit 0 ;;
  --check|build) ;;
  *) echo "usage: $0 [--check|--apt-packages]" >&2; exit 2 ;;
esac

die() { echo "build_xir: $*" >&2; exit 1; }
fail_log() { # the first compiler errors of a log, lines cut (Boost template errors run to kilobytes)
  { grep -E -m8 "error|Error|CMake Error|Could NOT find|not found" "$1" || tail -20 "$1"; } | cut -c1-400 >&2
  cp "$1" "$CACHE/$(basename "$1")" && echo "build_xir: full log: $CACHE/$(basename "$1")" >&2
}
log() { echo "build_xir: $*" >&2; }

# ---------------------------------------------------------------- prerequisites (named by apt package)
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2 (no \`$1\` on PATH)"); }
need_file() { # pkg, glob...
  local pkg="$1"; shift
  local f
  for f in "$@"; do compgen -G "$f" >/dev/null && return 0; done
  missing+=("$pkg (no $1)")
}
need_cmd cmake cmake
need_cmd g++ g++
need_cmd make make
need_cmd pkg-config pkg-config
need_cmd protoc protobuf-compiler
need_file libprotobuf-dev /usr/include/google/protobuf/message.h
need_file libgoogle-glog-dev /usr/include/glog/logging.h
need_file pybind11-dev /usr/include/pybind11/pybind11.h /usr/lib/cmake/pybind11/pybind11Config.cmake
need_file libboost-dev /usr/include/boost/version.hpp
need_file libboost-filesystem-dev "/usr/lib/*/libboost_filesystem.so" /usr/lib/libboost_filesystem.so
need_file libboost-system-dev "/usr/lib/*/libboost_system.so" /usr/lib/libboost_system.so
if [ "$MODE" = --check ] && [ ! -x "$PYTHON" ]; then PYTHON="$(command -v python3 || true)"; fi
[ -n "$PYTHON" ] && [ -x "$PYTHON" ] || die "no Python at ${PYTHON:-?}: run \`make venv\` first, or set XIR_PYTHON"
PYINC="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
PYTAG="$("$PYTHON" -c 'import sys, sysconfig; print(sys.implementation.cache_tag, sysconfig.get_platform())')"
[ -f "$PYINC/Python.h" ] || missing+=("python3-dev (no Python.h in $PYINC for $PYTHON)")
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'build_xir: missing build dependencies:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  die "install them with: sudo apt-get install -y $APT_PACKAGES"
fi
[ "$MODE" = --check ] && { log "build dependencies present"; exit 0; }

# ---------------------------------------------------------------- sources and their hash
if [ -d "$SRC/src/vai_runtime/xir" ] && [ -d "$SRC/src/vai_runtime/unilog" ]; then
  kind=checkout
  hash_src() { (cd "$SRC/src/vai_runtime" && find xir unilog -type f -not -path '*/.git/*' -print0 \
                 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-64; }
elif [ -f "$SRC/xir-src.tar.gz" ] && [ -f "$SRC/unilog-src.tar.gz" ]; then
  kind=tarballs
  hash_src() { cat "$SRC/xir-src.tar.gz" "$SRC/unilog-src.tar.gz" | sha256sum | cut -c1-64; }
else
  die "no XIR sources at $SRC: expected a Vitis AI checkout (src/vai_runtime/xir and src/vai_runtime/unilog, \
e.g. git clone -b v3.5 https://github.com/Xilinx/Vitis-AI) or a folder with xir-src.tar.gz and \
unilog-src.tar.gz (the vendored ../shared/vendor/vitis-ai-3.5). Set VITIS_AI_SRC=..."
fi
# Bump RECIPE when the build steps below change; the toolchain versions are part of the key too.
RECIPE="xir-recipe-2: unilog+xir Release, shared, no -Werror, \$ORIGIN rpaths, RTLD_DEEPBIND loader"
TOOLS="$(g++ -dumpfullversion 2>/dev/null) $(protoc --version 2>/dev/null) $(cmake --version | head -1)"
HASH="$( { hash_src; echo "$RECIPE"; echo "$TOOLS"; echo "$PYTAG"; } | sha256sum | cut -c1-16)"
DEST="$CACHE/xir-$HASH"
PYDIR="$DEST/lib/flm-python"

write_pth() {
  local site
  site="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$PYDIR" > "$site/flm-xir.pth"
  "$PYTHON" -c 'import xir, sys; g = xir.Graph("probe"); print("build_xir: import xir ok (%s) for %s" % (xir.__file__, sys.executable))' >&2 \
    || die "the module in $PYDIR does not import with $PYTHON"
  log "xir CLI: $DEST/bin/xir; .pth: $site/flm-xir.pth -> $PYDIR"
}

if [ -f "$DEST/.complete" ]; then
  log "cached build $DEST ($kind sources $SRC)"
  write_pth
  exit 0
fi

# ---------------------------------------------------------------- build (in a temporary dir, then moved)
mkdir -p "$CACHE"
exec 9>"$CACHE/xir.lock"
flock 9
[ -f "$DEST/.complete" ] && { log "built meanwhile by another process"; write_pth; exit 0; }
WORK="$(mktemp -d "$CACHE/xir-$HASH.tmp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)
log "building from $kind sources $SRC into $DEST (python $PYTAG, -j$JOBS)"
mkdir -p "$WORK/src/xir" "$WORK/src/unilog"
if [ "$kind" = checkout ]; then
  cp -a "$SRC/src/vai_runtime/xir/." "$WORK/src/xir/"
  cp -a "$SRC/src/vai_runtime/unilog/." "$WORK/src/unilog/"
  commit="$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)"
else
  tar xzf "$SRC/xir-src.tar.gz" -C "$WORK/src/xir"
  tar xzf "$SRC/unilog-src.tar.gz" -C "$WORK/src/unilog"
  commit="vendored-$HASH"
fi
# A copy that is not a git checkout: `git rev-parse` yields nothing, and `#cmakedefine` of an empty value
# would leave PROJECT_GIT_* undefined (tool_function.cpp uses it). Define them (on the copy only).
sed -i -e 's/^#cmakedefine PROJECT_GIT_BRANCH_NAME .*/#define PROJECT_GIT_BRANCH_NAME "v3.5"/' \
       -e "s/^#cmakedefine PROJECT_GIT_COMMIT_ID .*/#define PROJECT_GIT_COMMIT_ID \"$commit\"/" \
       "$WORK/src/xir/src/xir/config/config.hpp.in"
# -Werror: GCC 12 warns (-Wmaybe-uninitialized) inside Boost.Graph headers that XIR includes; keep the
# warnings, drop the promotion to errors (both projects set it in cmake/VitisCommon.cmake).
sed -i 's/ -Werror//g' "$WORK/src/xir/cmake/VitisCommon.cmake" "$WORK/src/unilog/cmake/VitisCommon.cmake"

PREFIX="$WORK/prefix"
# $ORIGIN rpaths: the cache directory stays relocatable (lib/ for libxir, lib/python for the module, bin/)
RPATH='$ORIGIN:$ORIGIN/..:$ORIGIN/../lib'
common=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX="$PREFIX"
        -DCMAKE_INSTALL_RPATH="$RPATH" -DCMAKE_BUILD_WITH_INSTALL_RPATH=OFF)
log "unilog: configure + build"
cmake -S "$WORK/src/unilog" -B "$WORK/build/unilog" "${common[@]}" > "$WORK/unilog-cmake.log" 2>&1 \
  || { fail_log "$WORK/unilog-cmake.log"; die "cmake (unilog) failed"; }
cmake --build "$WORK/build/unilog" -j"$JOBS" > "$WORK/unilog-build.log" 2>&1 \
  || { fail_log "$WORK/unilog-build.log"; die "unilog build failed"; }
cmake --install "$WORK/build/unilog" > /dev/null
log "xir: configure + build (library, python module, xir CLI)"

cmake -S "$WORK/src/xir" -B "$WORK/build/xir" "${common[@]}" -Dunilog_DIR="$PREFIX/share/cmake/unilog" \
      -DBUILD_PYTHON=ON -DINSTALL_HOME=ON -DPYTHON_EXECUTABLE="$PYTHON" -DPython_EXECUTABLE="$PYTHON" \
      > "$WORK/xir-cmake.log" 2>&1 || { fail_log "$WORK/xir-cmake.log"; die "cmake (xir) failed"; }
cmake --build "$WORK/build/xir" -j"$JOBS" > "$WORK/xir-build.log" 2>&1 \
  || { fail_log "$WORK/xir-build.log"; die "xir build failed"; }
cmake --install "$WORK/build/xir" > /dev/null
ls "$PREFIX"/lib/python/xir*.so > /dev/null 2>&1 || die "the build installed no lib/python/xir*.so"
# The module the venv imports is this loader, which loads lib/python/xir*.so with RTLD_DEEPBIND: a process
# that imported TensorFlow first (its own protobuf, loaded RTLD_GLOBAL) would otherwise bind libxir to
# TensorFlow's protobuf, and xir.Graph.deserialize fails ("basic_string::_M_create") or crashes. (Linking
# Debian's static libprotobuf.a into libxir is no way out: its TLS relocations are for executables only.)
mkdir -p "$PREFIX/lib/flm-python/xir"
cat > "$PREFIX/lib/flm-python/xir/__init__.py" <<'PY'
"""Loads XIR's pybind11 module (built by flm's scripts/build_xir.sh) with RTLD_DEEPBIND, so libxir uses the
protobuf it was built against even after TensorFlow has loaded its own with RTLD_GLOBAL. `import xir`
then gives the compiled module itself (this package replaces itself in sys.modules)."""
import glob
import importlib.util
import os
import sys

_found = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python",
                                       "xir*.so")))
if not _found:
    raise ImportError("flm's xir build is incomplete: no xir*.so next to %s (run `make xir`)" % __file__)
_flags = sys.getdlopenflags()
sys.setdlopenflags(_flags | getattr(os, "RTLD_DEEPBIND", 0))
try:
    _spec = importlib.util.spec_from_file_location("xir", os.path.realpath(_found[0]))
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
finally:
    sys.setdlopenflags(_flags)
sys.modules["xir"] = _module
PY
# keep the prefix (libraries, headers, module, xir CLI) and the logs, drop the sources and objects
mkdir -p "$PREFIX/share/flm-xir"
cp "$WORK"/*.log "$PREFIX/share/flm-xir/"
printf 'source %s (%s)\ncommit %s\npython %s\nseconds %s\n' "$SRC" "$kind" "$commit" "$PYTAG" \
  "$(( $(date +%s) - started ))" > "$PREFIX/share/flm-xir/build.txt"
touch "$PREFIX/.complete"
rm -rf "$DEST"
mv "$PREFIX" "$DEST"
log "built in $(( $(date +%s) - started )) s: $DEST"
write_pth
