#!/usr/bin/env bash
# The performance gate: fails (exit 1) when this tree is really slower than a base commit.
# See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ci/perf-gate.sh [options] BASE_COMMIT [FILTER]
       ci/perf-gate.sh [options] --baseline FILE [FILTER]

Builds BASE_COMMIT (a git worktree under the output directory, its own build directory) and
the current tree side by side, then runs the two anx-bench binaries interleaved in this job:
ROUNDS rounds, each running both binaries (base first in odd rounds, new first in even ones),
REPS repetitions per binary per round with Google Benchmark's random interleaving.  The
repetitions of each binary are merged and bench/compare.py decides (Mann-Whitney U; a
regression is p < ALPHA and a median at least THRESHOLD slower).  Shared machines drift
1.4-1.7x within an hour, so only runs interleaved like this are compared by default.

--baseline FILE compares against a saved run instead (the new.json of an earlier gate run,
or any anx-bench JSON with >= 9 repetitions): only for a dedicated quiet machine; FILE must
carry the same machine_key as this machine's run.

FILTER is anx-bench's --benchmark_filter regex (default: every benchmark; narrow it in CI,
e.g. 'conv2d_.*/avx2/|step/').

options:
  --rounds N        rounds of alternation (default 4)
  --reps N          repetitions of each binary per round (default 3; ROUNDS x REPS >= 9)
  --min-time S      Google Benchmark minimum time per repetition (default 0.1)
  --batches LIST    anx-bench --batches and --ref_batches (default 2)
  --threads N       anx-bench --threads (default: anx-bench's, all cores)
  --alpha P         compare.py --alpha (default 0.05)
  --threshold F     compare.py --threshold (default 0.10)
  --out DIR         work directory (default build/perf-gate): base-src/, base/, new/, runs/,
                    base.json, new.json, compare.json
  -h, --help        this text

exit status: compare.py's: 0 no regression, 1 a regression (named on stderr), 2 bad input
(arguments, a commit that does not resolve, a baseline compare.py refuses, a failed build).
EOF
}

die() { echo "perf-gate.sh: $*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

rounds=4 reps=3 min_time=0.1 batches=2 threads="" alpha=0.05 threshold=0.10 out=build/perf-gate
baseline="" positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --rounds|--reps|--min-time|--batches|--threads|--alpha|--threshold|--out|--baseline)
      [ $# -ge 2 ] || die "$1: needs a value"
      case "$1" in
        --rounds) is_uint "$2" || die "--rounds: '$2' is not a positive integer"; rounds=$2 ;;
        --reps) is_uint "$2" || die "--reps: '$2' is not a positive integer"; reps=$2 ;;
        --min-time) [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--min-time: '$2' is not a number of seconds"; min_time=$2 ;;
        --batches) [[ $2 =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--batches: '$2' is not a comma list of batch sizes"; batches=$2 ;;
        --threads) is_uint "$2" || die "--threads: '$2' is not a positive integer"; threads=$2 ;;
        --alpha) alpha=$2 ;;
        --threshold) threshold=$2 ;;
        --out) out=$2 ;;
        --baseline) baseline=$2 ;;
      esac
      shift 2 ;;
    --) shift; positional+=("$@"); break ;;
    -*) die "$1: unknown option (see --help)" ;;
    *) positional+=("$1"); shift ;;
  esac
done

# paths given on the command line are the caller's; the script works from the source root
[ -z "$baseline" ] || [[ $baseline == /* ]] || baseline="$PWD/$baseline"
[ -z "$out" ] || [[ $out == /* ]] || out_given=1
[ "${out_given:-0}" = 1 ] && [ "$out" != build/perf-gate ] && out="$PWD/$out"
cd "$(dirname "$0")/.."
root=$(pwd)
compare=(python3 "$root/bench/compare.py" --alpha "$alpha" --threshold "$threshold")
[ $((rounds * reps)) -ge 9 ] || die "--rounds $rounds x --reps $reps = $((rounds * reps)) repetitions; the U test needs at least 9"
[[ $alpha =~ ^0?\.[0-9]+$ ]] || die "--alpha: '$alpha' is not a fraction in (0, 1)"
[[ $threshold =~ ^0?\.[0-9]+$ ]] || die "--threshold: '$threshold' is not a fraction in (0, 1)"

base_commit="" filter=""
if [ -n "$baseline" ]; then
  [ ${#positional[@]} -le 1 ] || die "'${positional[1]}': with --baseline, only FILTER may follow"
  filter=${positional[0]:-}
  [ -r "$baseline" ] || die "--baseline: $baseline: cannot read"
  # compare.py checks the file exactly as the final compare will (anx JSON, repetitions, a key)
  msg=$("${compare[@]}" "$baseline" "$baseline" 2>&1 >/dev/null) || { [ $? -eq 1 ] || die "--baseline: ${msg#compare.py: }"; }
else
  [ ${#positional[@]} -ge 1 ] || die "BASE_COMMIT or --baseline FILE is required (see --help)"
  [ ${#positional[@]} -le 2 ] || die "'${positional[2]}': unexpected argument (BASE_COMMIT [FILTER])"
  filter=${positional[1]:-}
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$root: not a git checkout (BASE_COMMIT needs one)"
  base_commit=$(git rev-parse --verify --quiet "${positional[0]}^{commit}") \
    || die "BASE_COMMIT: '${positional[0]}' is not a commit of this repository"
fi

mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
rm -f "$out"/runs/*.json "$out"/runs/*.log "$out"/base.json "$out"/new.json "$out"/compare.json

build() { # build SRC DIR LABEL: anx-bench of SRC in DIR, quietly; the log stays in DIR
  echo "perf-gate.sh: building $3 in $2" >&2
  { cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      && cmake --build "$2" -j"$(nproc)" --target anx-bench; } >"$2.log" 2>&1 \
    || die "building $3 failed (log: $2.log)"
  [ -x "$2/anx-bench" ] || die "building $3 made no $2/anx-bench (Google Benchmark missing?)"
}

build "$root" "$out/new" "the current tree"
if [ -n "$base_commit" ]; then
  if [ -d "$out/base-src" ]; then
    git -C "$out/base-src" checkout --quiet --detach "$base_commit" || die "$out/base-src: cannot check out $base_commit"
  else
    git worktree add --quiet --detach "$out/base-src" "$base_commit" || die "git worktree add $out/base-src failed"
  fi
  build "$out/base-src" "$out/base" "base $base_commit"
fi

args=(--batches="$batches" --ref_batches="$batches" --benchmark_repetitions="$reps"
      --benchmark_enable_random_interleaving=true --benchmark_min_time="$min_time"
      --benchmark_out_format=json)
[ -n "$threads" ] && args+=(--threads="$threads")
[ -n "$filter" ] && args+=(--benchmark_filter="$filter")

run() { # run WHICH ROUND
  echo "perf-gate.sh: round $2/$rounds: $1" >&2
  "$out/$1/anx-bench" "${args[@]}" --benchmark_out="$out/runs/$1-$2.json" >/dev/null 2>"$out/runs/$1-$2.log" \
    || die "$1/anx-bench exited with status $? in round $2 (log: $out/runs/$1-$2.log)"
}

for r in $(seq 1 "$rounds"); do
  if [ -z "$base_commit" ]; then
    run new "$r"
  elif [ $((r % 2)) -eq 1 ]; then
    run base "$r"; run new "$r"
  else
    run new "$r"; run base "$r"
  fi
done

"${compare[@]}" --merge "$out/new.json" "$out"/runs/new-*.json || exit 2
if [ -n "$base_commit" ]; then
  "${compare[@]}" --merge "$out/base.json" "$out"/runs/base-*.json || exit 2
  # Both binaries ran here, interleaved, with the same flags: the same machine by construction
  # (a base older than the fingerprint has no machine_key to check).
  set +e
  "${compare[@]}" --allow-other-machine --json "$out/compare.json" "$out/base.json" "$out/new.json"
  status=$?
else
  set +e
  "${compare[@]}" --json "$out/compare.json" "$baseline" "$out/new.json"
  status=$?
fi
echo "perf-gate.sh: exit $status (runs and the comparison in $out)" >&2
exit $status
