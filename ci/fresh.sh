#!/usr/bin/env bash
# The clean-room check: the README's set-up on an empty Debian 12 root.
#
#   ci/fresh.sh [--ref REF] [--keep]
#
# Makes a minimal Debian 12 root with mmdebstrap (--variant=apt, from this machine's apt sources,
# so it reaches only the Debian archive), clones this repository's REF (default HEAD: what is
# committed, not the work tree) into it, and inside a chroot with /proc and /dev mounted runs,
# as a newcomer would:
#   1. ci/install.sh                  the install script
#   2. ci/main.sh --golden <one file> --no-bench --mode isolated   configure, build, anx verify
#                                     --backend all in isolated mode (the release tier runs both)
#   3. ci/test.sh release -L quick    the quick tests
# Nothing is cached between runs (a new root every time).  A failing step is named on the last
# line; the mounts are taken down on every exit path, and the root is deleted unless --keep.
# Needs root (chroot, mount) and about 3 GB under ${ANX_FRESH_DIR:-/var/tmp}.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
ref=HEAD keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ref) [ $# -ge 2 ] || { echo "ci/fresh.sh: --ref needs a value" >&2; exit 2; }; ref=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ci/fresh.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "ci/fresh.sh: needs root (mmdebstrap, chroot and mount)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse --verify --quiet "$ref^{commit}") ||
  { echo "ci/fresh.sh: '$ref' is not a commit of $repo" >&2; exit 2; }
bash "$repo/ci/install.sh" fresh

work=$(mktemp -d "${ANX_FRESH_DIR:-/var/tmp}/anx-fresh.XXXXXX")
root=$work/root
step="setting up"
start=$(date +%s)
times=()

mounted_under_root() { awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts; }
cleanup() {
  local rc=$?
  # Deepest first; lazily if a process still holds one (a test that outlived its step).
  for m in $(mounted_under_root | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  if [ -n "$(mounted_under_root)" ]; then
    echo "ci/fresh.sh: could not unmount everything under $root; left it in place" >&2
  elif [ "$keep" = 1 ]; then
    echo "ci/fresh.sh: kept the root in $root"
  else
    rm -rf --one-file-system "$work"
  fi
  if [ $rc -ne 0 ]; then
    echo "ci/fresh.sh: FAILED at step '$step' (exit $rc) after $(( $(date +%s) - start )) s"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run STEP CMD...: one named, timed step.
run() {
  step=$1; shift
  local t0=$(date +%s)
  echo "=== ci/fresh.sh: $step"
  "$@"
  times+=("$step: $(( $(date +%s) - t0 )) s")
}
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb CI=true bash -c "cd /work/anx && $1"
}

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
run "make an empty Debian 12 root (mmdebstrap --variant=apt)" \
  mmdebstrap --variant=apt --quiet bookworm "$root" "$sources"
run "clone $commit" bash -c "git clone -q --no-hardlinks '$repo' '$root/work/anx' && git -C '$root/work/anx' checkout -q --detach $commit"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
run "install script (ci/install.sh)" in_root "bash ci/install.sh"
# The main job on the one-step RGB golden file, without the benchmark table: the clean room proves
# the set-up (install, configure, build, every backend run and judged); the release tier verifies
# the golden data on every submission (all files x all 7 backends take ~20 minutes), and the
# table (~15 minutes with 7 backends) is what anx-bench's own tests and the perf gate cover.
run "main job (ci/main.sh --golden <one-step RGB file> --no-bench --mode isolated: configure, build, verify --backend all)" \
  in_root "bash ci/main.sh --golden data/golden/alexnet_in3_c5_b2_step1.safetensors --no-bench --mode isolated"
run "quick tests (ci/test.sh release -L quick)" in_root "bash ci/test.sh release -L quick"
step="done"
echo "=== ci/fresh.sh: passed on an empty Debian 12 root in $(( $(date +%s) - start )) s"
printf '  %s\n' "${times[@]}"
