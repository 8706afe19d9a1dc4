#!/usr/bin/env bash
# Installs what anx needs from Debian's archive; does nothing when everything is there.
# Build: cmake, gcc, libcjson-dev, libpng-dev; optional: libdnnl-dev (onednn backend),
# libbenchmark-dev (anx-bench); for the main job's report: python3, gnuplot-nox.
# PyTorch (python3-torch, python3-torchvision) is only for regenerating golden data and
# fixtures and for the PyTorch baseline: install it with ANX_WITH_TORCH=1.
set -euo pipefail
pkgs=(cmake gcc g++ make libcjson-dev libpng-dev libdnnl-dev libbenchmark-dev python3 gnuplot-nox)
if [ "${ANX_WITH_TORCH:-0}" = 1 ]; then pkgs+=(python3-torch python3-torchvision python3-numpy); fi
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
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
