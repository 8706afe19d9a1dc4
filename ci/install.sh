#!/usr/bin/env bash
# Installs what anx needs from Debian's archive; does nothing when everything is there.
#   ci/install.sh            what the build, the tests and the main job need (below)
#   ci/install.sh fuzz       and clang with its sanitizer runtime (ci/fuzz.sh)
#   ci/install.sh fresh      and mmdebstrap (ci/fresh.sh)
#   ci/install.sh torch      and PyTorch (python3-torch, -torchvision, numpy): only for regenerating
#                            golden data and fixtures and for the PyTorch baseline (or ANX_WITH_TORCH=1)
# Every package is named: nothing relies on Debian's "Recommends" (apt runs with
# --no-install-recommends).  ci/fresh.sh proves the list on an empty Debian 12 root.
set -euo pipefail

# The build: compilers, CMake, the two required libraries.
pkgs=(cmake make gcc g++ libc6-dev libcjson-dev libpng-dev)
# The onednn backend: libdnnl-dev's CMake config also calls find_package(OpenCL REQUIRED), and
# the OpenCL headers and loader are only a recommendation of libdnnl-dev.
pkgs+=(libdnnl-dev ocl-icd-opencl-dev)
# The cblas backend (im2col + GEMM): OpenBLAS by default, BLIS through the BLAS alternatives.
pkgs+=(libopenblas-dev libblis-dev)
# The libxsmm backend: LIBXSMM 1.17's DNN layers (static libraries and headers only).
pkgs+=(libxsmm-dev)
# Data-parallel training under mpirun (ANX_WITH_MPI, docs/mpi.md).
pkgs+=(libopenmpi-dev openmpi-bin)
# anx-bench and its tools; the report, its charts, the perf gate's statistics and git commit.
pkgs+=(libbenchmark-dev libbenchmark-tools python3 python3-scipy gnuplot-nox git ca-certificates)

if [ "${ANX_WITH_TORCH:-0}" = 1 ]; then set -- "$@" torch; fi
for group in "$@"; do
  case "$group" in
    fuzz)  pkgs+=(clang libclang-rt-14-dev) ;;
    fresh) pkgs+=(mmdebstrap debian-archive-keyring) ;;
    torch) pkgs+=(python3-torch python3-torchvision python3-numpy) ;;
    *) echo "ci/install.sh: unknown group '$group' (fuzz, fresh, torch)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "ci/install.sh: all packages present"
  exit 0
fi
echo "ci/install.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "ci/install.sh: not root and no sudo: install as root: ${missing[*]}" >&2; exit 2; }
  SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
