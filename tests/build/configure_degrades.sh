#!/usr/bin/env bash
# A configure that degrades, never breaks (#13): with oneDNN's CMake config made to fail the way
# it fails on a fresh Debian 12 machine (CMAKE_DISABLE_FIND_PACKAGE_OpenCL: dnnl-config.cmake
# calls find_package(OpenCL REQUIRED)), configure must succeed, say why onednn is not built, and
# compile onednn in as a stub that `anx verify` lists SKIPPED with that reason and `anx step`
# refuses with one line and exit 2.
#   configure_degrades.sh SOURCE_DIR WORK_DIR
set -uo pipefail
src=$1 work=$2
fail() { echo "configure_degrades: FAILED: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" || fail "cannot make $work"
if ! find "/usr/lib" -path '*cmake/dnnl/dnnl-config.cmake' -print -quit 2>/dev/null | grep -q .; then
  echo "configure_degrades: skipped: oneDNN's CMake config is not installed (apt-get install libdnnl-dev)"
  exit 77
fi

cmake -S "$src" -B "$work" -DCMAKE_BUILD_TYPE=Release -DANX_WERROR=ON -DBUILD_TESTING=OFF \
      -DANX_WITH_BENCHMARK=OFF -DCMAKE_DISABLE_FIND_PACKAGE_OpenCL=TRUE >"$work/configure.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { tail -n 20 "$work/configure.log"; fail "configure stopped (exit $rc) instead of building without onednn"; }
line=$(grep -E '^-- anx: backend onednn: ' "$work/configure.log") || fail "no status line for the onednn backend"
echo "configure: ${line#-- }"
[[ "$line" == *"not built"*"OpenCL"* ]] || fail "the status line does not say why (OpenCL): $line"
[ "$(grep -c 'anx: backend onednn: ' "$work/configure.log")" -eq 1 ] || fail "more than one status line for onednn"

cmake --build "$work" --target anx_cli -j2 >"$work/build.log" 2>&1 ||
  { tail -n 20 "$work/build.log"; fail "the build without onednn failed"; }

golden=$src/data/golden/alexnet_in3_c5_b2_step1.safetensors
"$work/anx" verify --backend onednn --golden "$golden" >"$work/verify.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || { tail -n 5 "$work/verify.txt"; fail "anx verify --backend onednn exited $rc"; }
grep -E '^onednn .*SKIPPED +not built: .*OpenCL' "$work/verify.txt" ||
  { tail -n 5 "$work/verify.txt"; fail "verify does not list onednn SKIPPED with the reason"; }
grep -qE '^onednn .*PASSED' "$work/verify.txt" && fail "a stub backend has PASSED rows"

"$work/anx" step --backend onednn >"$work/step.out" 2>"$work/step.err"
rc=$?
[ $rc -eq 2 ] || fail "anx step --backend onednn exited $rc, not 2"
[ "$(wc -l <"$work/step.err")" -eq 1 ] || { cat "$work/step.err"; fail "anx step's error is not one line"; }
grep -q 'onednn.*OpenCL' "$work/step.err" || { cat "$work/step.err"; fail "anx step's error does not name onednn and the reason"; }
cat "$work/step.err"
rm -rf "$work"
echo "configure_degrades: passed"
