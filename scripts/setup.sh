#!/usr/bin/env bash
# Installs every Debian package the build and tests need, then the cudnn-frontend headers.
# Idempotent: packages that are already installed are skipped, so a second run costs one dpkg
# query; the headers are fetched only when the pinned version is not already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(
  build-essential cmake pkg-config git
  libinsighttoolkit5-dev   # image I/O: NIfTI, NRRD, MHA, DICOM (GDCM)
  libgdcm-tools            # GDCM's CMake targets reference its tools
  libyaml-cpp-dev          # configs
  nlohmann-json3-dev       # safetensors headers, JSON outputs, cudnn-frontend's JSON dependency
  libcli11-dev             # command-line parsing
  libopenblas-openmp-dev   # CPU GEMM for conv3d (im2col), OpenMP build (shares our thread pool)
  libpng-dev               # preview pictures
  libopenmpi-dev openmpi-bin  # distributed training: MPI between CPU ranks, NCCL bootstrap
  libgif-dev               # animated slice-by-slice previews (giflib)
  libdcmtk-dev             # DICOM SEG output (DCMTK dcmseg)
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev libomp-14-dev   # sanitizer + libFuzzer build (scripts/sanitize.sh)
  python3
  python3-pip              # fetches the pinned cudnn-frontend wheel below (headers only)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[setup] all Debian packages present"
fi

# cudnn-frontend: NVIDIA's header-only C++ API over cuDNN's graph (backend) API, which the bf16
# channels-last path uses (engine/cuda/cudnn_graph.cpp). Not packaged by Debian; its headers
# ship in the folder include/ of the `nvidia-cudnn-frontend` wheel on PyPI. We fetch ONE pinned
# wheel (the CPython 3.11 x86-64 build, whatever the local Python: the headers are the same in
# every build), check its SHA-256, and extract include/ (minus the bundled copy of nlohmann/json:
# CMake points it at the system nlohmann-json above) and the licence files into the
# git-ignored .deps/cudnn_frontend/. The GPU check kit carries .deps/ to the GPU machine.
# Licence: Apache-2.0 (and MIT for older files), see .deps/cudnn_frontend/licenses/.
# Without network the step warns and the build goes on without the graph path (bf16 then runs
# on the legacy fp32 convolutions; CMake says so).
FE_VERSION=1.32.0
FE_WHEEL=nvidia_cudnn_frontend-${FE_VERSION}-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
FE_SHA256=c6006556017a4d1c914c52a556c71b1267f2d6a0500f742e7b4edef539878df0
fe_dir=.deps/cudnn_frontend
if [ "$(cat "$fe_dir/VERSION" 2>/dev/null)" = "$FE_VERSION" ] && [ -f "$fe_dir/include/cudnn_frontend.h" ]; then
  echo "[setup] cudnn-frontend $FE_VERSION headers present ($fe_dir/include)"
else
  echo "[setup] fetching cudnn-frontend $FE_VERSION headers (PyPI wheel nvidia-cudnn-frontend)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
       --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
       "nvidia-cudnn-frontend==$FE_VERSION" -d "$tmp" >"$tmp/pip.log" 2>&1 &&
     [ -f "$tmp/$FE_WHEEL" ]; then
    got=$(sha256sum "$tmp/$FE_WHEEL" | cut -d' ' -f1)
    if [ "$got" != "$FE_SHA256" ]; then
      echo "[setup] ERROR: $FE_WHEEL has SHA-256 $got, expected $FE_SHA256" >&2
      exit 1
    fi
    rm -rf "$fe_dir"
    mkdir -p "$fe_dir"
    python3 - "$tmp/$FE_WHEEL" "$fe_dir" <<'PY'
import os, sys, zipfile
wheel, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith("/"):
            continue
        if name.startswith("include/") and "/thirdparty/" not in name:
            out = os.path.join(dst, name)
        elif ".dist-info/licenses/" in name:
            out = os.path.join(dst, "licenses", os.path.basename(name))
        else:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(name) as src, open(out, "wb") as f:
            f.write(src.read())
PY
    echo "$FE_VERSION" >"$fe_dir/VERSION"
    echo "[setup] cudnn-frontend $FE_VERSION headers in $fe_dir/include"
  else
    echo "[setup] WARNING: could not fetch nvidia-cudnn-frontend==$FE_VERSION (no network or no pip?):" \
         "the bf16 cuDNN graph path will not be built" >&2
    tail -3 "$tmp/pip.log" >&2 || true
  fi
fi
