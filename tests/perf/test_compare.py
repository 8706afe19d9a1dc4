#!/usr/bin/env python3
"""bench/compare.py on synthetic anx-bench JSON pairs built here from a seeded RNG.

Each case writes BASE and NEW, runs compare.py and checks the exit status (0 / 1 / 2), which
benchmark is named, and for bad input that stderr is exactly one line naming the culprit.
In the shifted cases NEW's samples are BASE's, permuted and multiplied by a factor, so the
medians differ by exactly that factor and only the spread of the samples decides p.
Exit 77 (skipped) when no python3 here can import scipy."""
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "..", "..", "bench", "compare.py")
SEED = int(os.environ.get("ANX_TEST_SEED", "20261130"))
NAMES = ["conv2d_fwd/conv2/avx2/batch:2/real_time", "relu_fwd/relu1/avx2/batch:2/real_time",
         "step/avx2/batch:2/real_time"]
failures = []


def have_scipy():
    for py in (sys.executable, "/usr/bin/python3"):
        if os.access(py, os.X_OK) and subprocess.run([py, "-c", "import scipy.stats"],
                                                     capture_output=True).returncode == 0:
            return True
    return False


def doc(samples, key="k-0123456789abcdef", anx=True, errors=None):
    """samples: {name: [ns, ...]} -> a Google Benchmark JSON document as anx-bench writes it."""
    ctx = {"date": "2026-11-30T00:00:00+00:00", "executable": "anx-bench", "num_cpus": 2}
    if anx:
        ctx.update({"anx_threads": "2", "anx_cpu_model": "Test CPU"})
        if key:
            ctx["anx_machine_key"] = key
    bench = []
    for name, ts in samples.items():
        for i, t in enumerate(ts):
            bench.append({"name": name, "run_name": name, "run_type": "iteration", "repetitions": len(ts),
                          "repetition_index": i, "iterations": 10, "real_time": t, "cpu_time": t,
                          "time_unit": "ns"})
    for name, msg in (errors or {}).items():
        bench.append({"name": name, "run_name": name, "run_type": "iteration", "error_occurred": True,
                      "error_message": msg})
    return {"context": ctx, "benchmarks": bench}


def draw(rng, spread, n):
    """n samples around 1 ms: tight (spread 0.01) or noisy (spread 0.6), one list per name."""
    return {nm: [1e6 * (1 + rng.uniform(-spread, spread)) for _ in range(n)] for nm in NAMES}


def shifted(rng, base, factor, names):
    """base's samples permuted; those of `names` multiplied by factor."""
    out = {}
    for nm, ts in base.items():
        ts = ts[:]
        rng.shuffle(ts)
        out[nm] = [t * factor for t in ts] if nm in names else ts
    return out


def run(tmp, label, base, new, *flags, raw_base=None, raw_new=None):
    bp, np_ = os.path.join(tmp, f"{label}-base.json"), os.path.join(tmp, f"{label}-new.json")
    for path, d, raw in ((bp, base, raw_base), (np_, new, raw_new)):
        if raw is not None:
            with open(path, "w") as f:
                f.write(raw)
        elif d is not None:
            with open(path, "w") as f:
                json.dump(d, f)
    r = subprocess.run([sys.executable, COMPARE, bp, np_, *flags], capture_output=True, text=True)
    return r, bp, np_


def expect(label, cond, r, why):
    if not cond:
        failures.append(label)
        print(f"FAIL {label}: {why}\n  exit {r.returncode}\n  stdout: {r.stdout.strip()}\n  stderr: {r.stderr.strip()}")
    else:
        print(f"ok   {label}")


def expect_bad(tmp, label, culprit_fn, base, new, *flags, **kw):
    r, bp, np_ = run(tmp, label, base, new, *flags, **kw)
    culprit = culprit_fn(bp, np_)
    lines = r.stderr.strip().splitlines()
    expect(label, r.returncode == 2 and len(lines) == 1 and culprit in lines[0] and not r.stdout, r,
           f"want exit 2 and one stderr line naming {culprit}")


def main():
    if not have_scipy():
        print("skipped: no python3 here can import scipy (apt-get install python3-scipy)")
        return 77
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    slow = NAMES[0]
    with tempfile.TemporaryDirectory() as tmp:
        tight = draw(rng, 0.01, 12)
        noisy = draw(rng, 0.6, 9)

        r, _, _ = run(tmp, "tight15", doc(tight), doc(shifted(rng, tight, 1.15, [slow])))
        names = [ln for ln in r.stderr.splitlines() if "REGRESSION" in ln]
        expect("15% slower, tight samples -> 1 naming it", r.returncode == 1 and len(names) == 1
               and slow in names[0] and r.stdout.splitlines()[4].startswith(f"| REGRESSION | {slow} |"), r,
               "want exit 1, the one regression named on stderr and first in the table")

        r, _, _ = run(tmp, "identical", doc(tight), doc(shifted(rng, tight, 1.0, [])))
        expect("identical -> 0", r.returncode == 0 and "REGRESSION" not in r.stdout, r, "want exit 0")

        r, _, _ = run(tmp, "noisy15", doc(noisy), doc(shifted(rng, noisy, 1.15, [slow])))
        expect("15% slower, noisy samples -> 0", r.returncode == 0 and f"| unchanged | {slow} | " in r.stdout
               and "| 1.150 |" in r.stdout, r, "want exit 0 with the 1.15 ratio shown as unchanged")

        r, _, _ = run(tmp, "faster", doc(tight), doc(shifted(rng, tight, 1 / 1.15, [slow])))
        expect("15% faster, tight -> 0, IMPROVEMENT", r.returncode == 0
               and f"| IMPROVEMENT | {slow} |" in r.stdout, r, "want exit 0 and an improvement")

        r, _, _ = run(tmp, "slow5", doc(tight), doc(shifted(rng, tight, 1.05, [slow])))
        expect("5% slower, tight -> 0 (under the 10% threshold)", r.returncode == 0, r, "want exit 0")
        r, _, _ = run(tmp, "slow5t", doc(tight), doc(shifted(rng, tight, 1.05, [slow])), "--threshold", "0.03")
        expect("5% slower, tight, --threshold 0.03 -> 1", r.returncode == 1 and slow in r.stderr, r, "want exit 1")
        r, _, _ = run(tmp, "slow15a", doc(tight), doc(shifted(rng, tight, 1.15, [slow])), "--alpha", "1e-9")
        expect("15% slower, tight, --alpha 1e-9 -> 0 (p cannot go that low with 12 samples)",
               r.returncode == 0, r, "want exit 0")

        r, _, np_ = run(tmp, "json", doc(tight), doc(shifted(rng, tight, 1.15, [slow])), "--json", "-")
        try:
            res = json.loads(r.stdout)
            ok = r.returncode == 1 and res["rows"][0]["name"] == slow and res["rows"][0]["verdict"] == "REGRESSION" \
                and abs(res["rows"][0]["ratio"] - 1.15) < 1e-9 and res["rows"][0]["p"] < 0.05
        except (ValueError, KeyError, IndexError):
            ok = False
        expect("--json - : the regression first, ratio 1.15, p < 0.05", ok, r, "bad JSON result")

        failed = shifted(rng, tight, 1.0, [])
        del failed[slow]
        r, _, _ = run(tmp, "failed", doc(tight), doc(failed, errors={slow: "failed: left NaN in dst"}))
        expect("a benchmark failing in NEW -> 1 naming it", r.returncode == 1 and "FAILED" in r.stderr
               and slow in r.stderr, r, "want exit 1")
        skipped = doc(failed, errors={slow: "skipped: CPU lacks avx512"})
        r, _, _ = run(tmp, "skipped", doc(tight), skipped)
        expect("a benchmark skipped in NEW -> 0", r.returncode == 0, r, "want exit 0")

        r, _, _ = run(tmp, "other-allowed", doc(tight), doc(shifted(rng, tight, 1.0, []), key="k-other"),
                      "--allow-other-machine")
        expect("other machine with --allow-other-machine -> 0", r.returncode == 0, r, "want exit 0")

        # the merge perf-gate.sh uses: two runs of 5 repetitions make one of 10
        halves = [os.path.join(tmp, f"half{i}.json") for i in range(2)]
        for i, h in enumerate(halves):
            with open(h, "w") as f:
                json.dump(doc({nm: ts[6 * i:6 * i + 6] for nm, ts in tight.items()}), f)
        merged = os.path.join(tmp, "merged.json")
        m = subprocess.run([sys.executable, COMPARE, "--merge", merged, *halves], capture_output=True, text=True)
        r, _, _ = run(tmp, "merged", None, doc(shifted(rng, tight, 1.15, [slow])), raw_base=open(merged).read()
                      if m.returncode == 0 else "")
        expect("--merge of 2 x 6 repetitions compares like 12 -> 1", m.returncode == 0 and r.returncode == 1
               and slow in r.stderr, r, "merge or compare failed: " + m.stderr)

        # bad input: exit 2, one line naming the culprit
        good = doc(tight)
        base_name, new_name = (lambda b, n: b), (lambda b, n: n)
        expect_bad(tmp, "unreadable NEW", new_name, good, None)
        expect_bad(tmp, "NEW not JSON", new_name, good, None, raw_new="{ not json")
        expect_bad(tmp, "BASE not Google Benchmark JSON", base_name, {"results": {}}, good)
        expect_bad(tmp, "BASE not anx-bench JSON", base_name, doc(tight, anx=False), good)
        expect_bad(tmp, "no common benchmarks", new_name, good,
                   doc({"other/x/real_time": tight[slow]}))
        expect_bad(tmp, "8 repetitions in NEW", new_name, good, doc({nm: ts[:8] for nm, ts in tight.items()}))
        expect_bad(tmp, "different machine_key", new_name, good, doc(tight, key="k-other"))
        expect_bad(tmp, "BASE without machine_key", base_name, doc(tight, key=None), good)
        expect_bad(tmp, "neither file has a machine_key", base_name, doc(tight, key=None), doc(tight, key=None))
        agg = doc(tight)
        agg["benchmarks"] = [dict(b, run_type="aggregate", aggregate_name="median") for b in agg["benchmarks"]]
        expect_bad(tmp, "aggregates only (0 repetitions) in BASE", base_name, agg, good)
    print(f"{len(failures)} of the cases failed" if failures else "all cases passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
