#!/usr/bin/env bash
# Without a BLAS (CMAKE_DISABLE_FIND_PACKAGE_BLAS, as on a machine without libopenblas-dev) the
# configure still succeeds, says why cblas is not built, and compiles it in as a stub whose
# unavailable() gives that reason; `anx verify` lists it SKIPPED with it.
#   cblas_configure_stub.sh SOURCE_DIR WORK_DIR
set -uo pipefail
src=$1 work=$2
fail() { echo "cblas_configure_stub: FAILED: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" || fail "cannot make $work"
cmake -S "$src" -B "$work" -DCMAKE_BUILD_TYPE=Release -DANX_WERROR=ON -DBUILD_TESTING=OFF \
      -DANX_WITH_BENCHMARK=OFF -DCMAKE_DISABLE_FIND_PACKAGE_BLAS=TRUE >"$work/configure.log" 2>&1 ||
  { tail -n 20 "$work/configure.log"; fail "configure stopped instead of building without cblas"; }
line=$(grep -E '^-- anx: backend cblas: ' "$work/configure.log") || fail "no status line for cblas"
echo "configure: ${line#-- }"
[[ "$line" == *"not built: BLAS not found (apt-get install libopenblas-dev)" ]] || fail "the line does not say why: $line"
grep -q 'anx_cblas_unavailable(void) { return "not built: BLAS not found' "$work/generated/anx_backend_stubs.c" ||
  fail "cblas is not compiled in as a stub that says why"
cmake --build "$work" --target anx_cli -j2 >"$work/build.log" 2>&1 || { tail -n 20 "$work/build.log"; fail "build failed"; }
"$work/anx" verify --backend cblas --golden "$src/data/golden/alexnet_in3_c5_b2_step1.safetensors" >"$work/verify.txt" 2>&1 ||
  fail "anx verify --backend cblas exited $?"
grep -E '^cblas .*SKIPPED +not built: BLAS not found' "$work/verify.txt" || fail "verify does not list cblas SKIPPED with the reason"
echo "cblas_configure_stub: PASSED"
