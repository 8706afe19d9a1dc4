#!/usr/bin/env python3
"""Compares two anx-bench runs and exits 1 on a real slowdown: the performance gate.

  bench/compare.py BASE.json NEW.json [--alpha 0.05] [--threshold 0.10] [--json OUT]
  bench/compare.py --merge OUT.json IN.json...     one file from several runs of one binary

Per benchmark timed in both files: the median wall time of each, new/base, and the two-sided
Mann-Whitney U p-value of the repetitions (scipy.stats.mannwhitneyu).  A benchmark is a
REGRESSION when p < alpha and the new median is slower by at least the threshold (new >=
base * (1 + threshold)), an IMPROVEMENT when p < alpha and base >= new * (1 + threshold);
anything else is unchanged (a difference the samples cannot tell from noise, or too small to
matter).  A benchmark timed in BASE that fails in NEW (an error that is not "skipped: ...") is
FAILED and counts as a regression.

The files are Google Benchmark JSON written by anx-bench (--benchmark_out=FILE
--benchmark_out_format=json) with per-repetition rows: --benchmark_repetitions=9 or more,
without --benchmark_report_aggregates_only.  Runs meant for comparison should also use
--benchmark_enable_random_interleaving=true, so slow drift spreads over every benchmark.

Exit status: 0 no regression; 1 at least one regression (named on stderr); 2 bad input, with
one line naming the culprit: a file that cannot be read or is not anx-bench JSON, no benchmark
in common, fewer than --min-repetitions samples of a benchmark in either file, or machine_keys
that differ (or are missing) without --allow-other-machine.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

DEBIAN_PY = "/usr/bin/python3"  # where Debian's python3-scipy is importable
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class BadInput(Exception):
    """One line for stderr; exit status 2."""


def import_mannwhitneyu():
    """scipy's U test; re-runs this script under Debian's python3 when the running interpreter
    (a pyenv, a venv) lacks scipy but /usr/bin/python3 has it."""
    try:
        from scipy.stats import mannwhitneyu
        return mannwhitneyu
    except ImportError:
        pass
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PY) and os.access(DEBIAN_PY, os.X_OK) \
            and not os.environ.get("ANX_COMPARE_REEXEC"):
        os.environ["ANX_COMPARE_REEXEC"] = "1"
        os.execv(DEBIAN_PY, [DEBIAN_PY] + sys.argv)
    raise BadInput("scipy is missing (apt-get install python3-scipy): no Mann-Whitney U test")


# ---------------------------------------------------------------- reading


def load(path):
    """anx-bench JSON -> (context, samples, errors): samples[name] = [wall ns per iteration, one
    per repetition], errors[name] = message of a benchmark that ended with an error."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    except ValueError as e:
        raise BadInput(f"{path}: not JSON: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list) \
            or not isinstance(doc.get("context"), dict):
        raise BadInput(f"{path}: not Google Benchmark JSON (no 'context' object and 'benchmarks' list)")
    ctx = doc["context"]
    if "anx_threads" not in ctx:
        raise BadInput(f"{path}: not an anx-bench run (its context has no anx_threads)")
    samples, errors = {}, {}
    for b in doc["benchmarks"]:
        if not isinstance(b, dict) or not isinstance(b.get("name"), str):
            raise BadInput(f"{path}: a benchmark entry without a name")
        name = b.get("run_name", b["name"])
        if b.get("error_occurred"):
            errors[name] = str(b.get("error_message", "error"))
            continue
        if b.get("run_type", "iteration") != "iteration":
            samples.setdefault(name, [])  # an aggregate: counts as 0 repetitions unless rows follow
            continue  # (mean/median/stddev/cv: the test uses the repetitions themselves)
        t, unit = b.get("real_time"), b.get("time_unit", "ns")
        if not isinstance(t, (int, float)) or unit not in TO_NS or not math.isfinite(t) or t <= 0:
            raise BadInput(f"{path}: {name}: real_time {t!r} {unit!r} is not a positive time")
        samples.setdefault(name, []).append(t * TO_NS[unit])
    return ctx, samples, errors


def check_machines(base_path, bctx, new_path, nctx, allow_other):
    bk, nk = bctx.get("anx_machine_key"), nctx.get("anx_machine_key")
    if allow_other or (bk and bk == nk):
        return
    for path, k in ((base_path, bk), (new_path, nk)):
        if not k:
            raise BadInput(f"{path}: no anx_machine_key (a run without fingerprint); "
                           "--allow-other-machine to compare anyway")
    raise BadInput(f"{new_path}: machine_key {nk} differs from {base_path}'s {bk} "
                   f"({nctx.get('anx_cpu_model', '?')} vs {bctx.get('anx_cpu_model', '?')}); "
                   "--allow-other-machine to compare anyway")


# ---------------------------------------------------------------- the test


def classify(base, new, alpha, threshold, mannwhitneyu):
    """Two lists of times -> (verdict, base median, new median, new/base, p)."""
    mb, mn = statistics.median(base), statistics.median(new)
    p = float(mannwhitneyu(base, new, alternative="two-sided").pvalue)
    ratio = mn / mb
    if p < alpha and mn >= mb * (1 + threshold):
        verdict = "REGRESSION"
    elif p < alpha and mb >= mn * (1 + threshold):
        verdict = "IMPROVEMENT"
    else:
        verdict = "unchanged"
    return verdict, mb, mn, ratio, p


ORDER = {"REGRESSION": 0, "FAILED": 0, "IMPROVEMENT": 1, "unchanged": 2}


def compare(a):
    bctx, bs, berr = load(a.base)
    nctx, ns, nerr = load(a.new)
    check_machines(a.base, bctx, a.new, nctx, a.allow_other_machine)
    flt = re.compile(a.filter) if a.filter else None
    common = [n for n in bs if n in ns and (not flt or flt.search(n))]
    failed = [n for n in bs if n in nerr and not nerr[n].startswith("skipped")
              and (not flt or flt.search(n))]
    if not common and not failed:
        raise BadInput(f"{a.new}: no timed benchmark in common with {a.base}"
                       + (f" matching --filter {a.filter}" if flt else ""))
    for path, s in ((a.base, bs), (a.new, ns)):
        for n in common:
            if len(s[n]) < a.min_repetitions:
                raise BadInput(f"{path}: {n}: {len(s[n])} repetitions, the U test needs at least "
                               f"{a.min_repetitions} (--benchmark_repetitions={a.min_repetitions}, "
                               "without --benchmark_report_aggregates_only)")
    mannwhitneyu = import_mannwhitneyu()  # after the input checks: scipy takes a second to import
    rows = []
    for n in common:
        verdict, mb, mn, ratio, p = classify(bs[n], ns[n], a.alpha, a.threshold, mannwhitneyu)
        rows.append({"name": n, "verdict": verdict, "base_median_ns": mb, "new_median_ns": mn,
                     "ratio": ratio, "p": p, "n_base": len(bs[n]), "n_new": len(ns[n])})
    for n in failed:
        rows.append({"name": n, "verdict": "FAILED", "base_median_ns": statistics.median(bs[n]),
                     "new_median_ns": None, "ratio": None, "p": None, "n_base": len(bs[n]), "n_new": 0,
                     "error": nerr[n]})
    rows.sort(key=lambda r: (ORDER[r["verdict"]], -(r["ratio"] or math.inf) if r["verdict"] != "IMPROVEMENT"
                             else r["ratio"], r["name"]))
    only_base = sorted(n for n in bs if n not in ns and n not in failed)
    only_new = sorted(n for n in ns if n not in bs)
    return {"base": a.base, "new": a.new, "alpha": a.alpha, "threshold": a.threshold,
            "base_machine_key": bctx.get("anx_machine_key"), "new_machine_key": nctx.get("anx_machine_key"),
            "rows": rows, "only_in_base": only_base, "only_in_new": only_new}


def fmt_ns(ns):
    if ns is None:
        return "-"
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= div:
            return f"{ns / div:.4g} {unit}"
    return f"{ns:.4g} ns"


def table(res):
    L = [f"# {res['new']} against {res['base']}: p < {res['alpha']:g} and a median >= "
         f"{100 * res['threshold']:g}% apart (Mann-Whitney U, two-sided)", "",
         "| verdict | benchmark | base median | new median | new/base | p | reps base/new |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        p = f"{r['p']:.2g}" if r["p"] is not None else r.get("error", "-")
        L.append(f"| {r['verdict']} | {r['name']} | {fmt_ns(r['base_median_ns'])} | "
                 f"{fmt_ns(r['new_median_ns'])} | {ratio} | {p} | {r['n_base']}/{r['n_new']} |")
    if res["only_in_base"] or res["only_in_new"]:
        L.append("")
        L.append(f"not compared: {len(res['only_in_base'])} only in base, {len(res['only_in_new'])} only in new")
    return "\n".join(L)


# ---------------------------------------------------------------- merging runs


def merge(out, inputs):
    """Several anx-bench JSON files of one binary -> one, repetitions concatenated (perf-gate.sh
    runs each binary a few repetitions at a time, alternating with the other)."""
    docs = []
    for path in inputs:
        load(path)  # the same checks as a compare
        with open(path) as f:
            docs.append(json.load(f))
    keys = {d["context"].get("anx_machine_key") for d in docs}
    if len(keys) > 1:
        raise BadInput(f"{inputs[-1]}: machine_keys differ between the runs to merge: {sorted(map(str, keys))}")
    merged = {"context": docs[0]["context"], "benchmarks": [b for d in docs for b in d["benchmarks"]]}
    tmp = out + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(merged, f, indent=1)
        os.replace(tmp, out)
    except OSError as e:
        raise BadInput(f"{out}: cannot write: {e.strerror}")
    return 0


# ---------------------------------------------------------------- main


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        print(f"compare.py: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def fraction(s):
    v = float(s)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"'{s}' is not in (0, 1)")
    return v


def main():
    ap = Parser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", nargs="?", metavar="BASE.json")
    ap.add_argument("new", nargs="?", metavar="NEW.json")
    ap.add_argument("--alpha", type=fraction, default=0.05, help="significance level (default 0.05)")
    ap.add_argument("--threshold", type=fraction, default=0.10,
                    help="smallest slowdown that counts, as a fraction (default 0.10: 10%%)")
    ap.add_argument("--min-repetitions", type=int, default=9, help="fewest samples per benchmark (default 9)")
    ap.add_argument("--filter", help="compare only the benchmarks whose name matches this regex")
    ap.add_argument("--allow-other-machine", action="store_true",
                    help="compare runs of different (or unknown) machine_keys")
    ap.add_argument("--json", metavar="OUT", help="also write the result as JSON ('-' for stdout, table then on stderr)")
    ap.add_argument("--merge", nargs="+", metavar=("OUT", "IN"), help="merge IN files into OUT and exit")
    a = ap.parse_args()
    try:
        if a.merge:
            if len(a.merge) < 2 or a.base:
                raise BadInput("--merge: OUT.json and at least one IN.json, and nothing else")
            return merge(a.merge[0], a.merge[1:])
        if not a.base or not a.new:
            raise BadInput("two files are needed: BASE.json NEW.json (see --help)")
        if a.min_repetitions < 2:
            raise BadInput(f"--min-repetitions: {a.min_repetitions} is below 2")
        if a.filter:
            try:
                re.compile(a.filter)
            except re.error as e:
                raise BadInput(f"--filter: '{a.filter}' is not a regex: {e}")
        res = compare(a)
    except BadInput as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    text = table(res)
    if a.json == "-":
        print(text, file=sys.stderr)
        print(json.dumps(res, indent=1))
    else:
        print(text)
        if a.json:
            tmp = a.json + ".tmp"
            try:
                with open(tmp, "w") as f:
                    json.dump(res, f, indent=1)
                os.replace(tmp, a.json)
            except OSError as e:
                print(f"compare.py: {a.json}: cannot write: {e.strerror}", file=sys.stderr)
                return 2
    bad = [r for r in res["rows"] if r["verdict"] in ("REGRESSION", "FAILED")]
    for r in bad:
        what = f"{r['ratio']:.3f}x the base time, p={r['p']:.2g}" if r["ratio"] else r.get("error", "")
        print(f"compare.py: {r['verdict']}: {r['name']}: {what}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
