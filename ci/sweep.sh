#!/usr/bin/env bash
# The sweep tier: long sweeps (every layer x tensor x backend x mode, thread counts beyond 2...),
# ctest label `sweep`, left out of the release and asan presets.
#
#   ci/sweep.sh                  every sweep test (the whole tier; hours as the tier grows)
#   ci/sweep.sh --sample N       N sweep tests drawn at random (CI runs a sample)
#   ci/sweep.sh --seed S         the draw's seed (default: from the clock); printed either way,
#                                so `ci/sweep.sh --sample N --seed S` reruns the same sample
# Each test also gets ANX_SWEEP_SEED=S in its environment, for sweeps that sample inside.
# Builds the release preset first (installs what is missing, like ci/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
sample=0 seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sample) [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "ci/sweep.sh: --sample needs a count" >&2; exit 2; }; sample=$2; shift 2 ;;
    --seed) [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "ci/sweep.sh: --seed needs a number" >&2; exit 2; }; seed=$2; shift 2 ;;
    --all) sample=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ci/sweep.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
seed=${seed:-$(( $(date +%s) % 1000000 ))}

bash ci/install.sh
cmake --preset release >/dev/null
cmake --build --preset release
mapfile -t all < <(ctest --preset sweep -N | sed -n 's/^ *Test *#[0-9]*: *//p')
if [ ${#all[@]} -eq 0 ]; then
  echo "ci/sweep.sh: this build has no sweep tests"
  exit 0
fi
chosen=("${all[@]}")
if [ "$sample" -gt 0 ] && [ "$sample" -lt ${#all[@]} ]; then
  # A seeded shuffle (awk's srand/rand), the same on every machine for the same seed and list.
  mapfile -t chosen < <(printf '%s\n' "${all[@]}" |
    awk -v s="$seed" 'BEGIN{srand(s)} {printf "%.12f\t%s\n", rand(), $0}' | sort -k1,1 | cut -f2 | head -n "$sample")
fi
echo "ci/sweep.sh: seed $seed: ${#chosen[@]} of ${#all[@]} sweep tests: ${chosen[*]}"
echo "ci/sweep.sh: rerun this sample with: ci/sweep.sh --sample ${#chosen[@]} --seed $seed"
regex="^($(IFS='|'; echo "${chosen[*]}"))\$"
ANX_SWEEP_SEED=$seed ctest --preset sweep -R "$regex"
