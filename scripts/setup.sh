#!/usr/bin/env bash
# Installs every Debian package the build and tests need. Idempotent: packages that are
# already installed are skipped, so a second run costs one dpkg query.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config git
  libinsighttoolkit5-dev   # image I/O: NIfTI, NRRD, MHA, DICOM (GDCM)
  libgdcm-tools            # GDCM's CMake targets reference its tools
  libyaml-cpp-dev          # configs
  nlohmann-json3-dev       # safetensors headers, JSON outputs
  libcli11-dev             # command-line parsing
  libopenblas-openmp-dev   # CPU GEMM for conv3d (im2col), OpenMP build (shares our thread pool)
  libpng-dev               # preview pictures
  libopenmpi-dev openmpi-bin  # distributed training: MPI between CPU ranks, NCCL bootstrap
  libgtest-dev libgmock-dev libbenchmark-dev
  python3
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
