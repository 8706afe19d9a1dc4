#!/usr/bin/env python3
"""bench/report.py --anx-json on a synthetic anx-bench run built here: the fingerprint in the
header, the backend columns in the order of the run's anx_backends (names the script has never
seen), the roofline section and report.json's roofline points (each recomputed here from the
counters and ceilings), the hardware-counter table when results carry counters, and none when
the run says the counters were skipped, and the ratio of a backend to its `<backend>_bare` rows."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "..", "..", "bench", "report.py")
failures = []
PEAK, BW = 200.0, 25.0  # GFLOP/s of the "zz9" ISA, GB/s of the triad


def expect(label, cond, why=""):
    print(("ok   " if cond else "FAIL ") + label + ("" if cond else f": {why}"))
    if not cond:
        failures.append(label)


def run_doc(counters, roles=None, bare=False):
    ctx = {"anx_threads": "2", "anx_backends": "zeta alpha(unavailable: not built) beta", "anx_batches": "4",
           "anx_fma_peak_zz9_gflops": f"{PEAK} (2 threads), {PEAK / 2} (1 thread)",
           "anx_fma_peak_small_gflops": "50.0 (2 threads), 25.0 (1 thread)",
           "anx_triad_gbytes_per_s": f"{BW} (2 threads)", "anx_machine_key": "00112233aabbccdd",
           "anx_cpu_vendor": "V", "anx_cpu_model": "Model X", "anx_cpu_fms": "family 1 model 2 stepping 3",
           "anx_isa_flags": "avx2 fma", "anx_cpus_online": "2", "anx_caches": "L1d 32K", "anx_memory_gib": "8.0",
           "anx_kernel": "Linux", "anx_compiler": "gcc 12", "anx_cflags": "Release: -O3", "anx_libraries": "libx.so.1",
           "anx_onednn_version": "not loaded", "anx_benchmark_version": "1.7.1", "anx_git_commit": "c" * 40,
           "anx_git_dirty": "no",
           "anx_hw_counters": "cycles instructions cache_misses" if counters else "skipped: perf_event_open(cycles): ENOENT"}
    if roles:
        ctx["anx_backend_roles"] = roles
    # (name, ms, FLOP per call, bytes per call): conv2 is compute-bound, relu1 memory-bound
    calls = [("conv2d_fwd/conv2/{be}/batch:4/real_time", 10.0, 1.0e9, 4.0e6),
             ("relu_fwd/relu1/{be}/batch:4/real_time", 0.5, 1.0e6, 8.0e6)]
    bench = []
    for be, speed in (("zeta", 1.0), ("beta", 2.0)) + ((("beta_bare", 2.5),) if bare else ()):
        for pattern, ms, flop, byte in calls:
            t = ms / speed
            b = {"name": pattern.format(be=be) + "_median", "run_name": pattern.format(be=be),
                 "run_type": "aggregate", "aggregate_name": "median", "real_time": t, "time_unit": "ms",
                 "iterations": 3, "label": f"impl peak:{'zz9' if be == 'zeta' else 'small'} threads:2",
                 "FLOP/s": flop / (t * 1e-3), "bytes/s": byte / (t * 1e-3)}
            if counters:
                b.update({"cycles/iter": 2.0e7, "instructions/iter": 3.0e7, "IPC": 1.5, "cache_misses/iter": 1000.0})
            bench.append(b)
    return {"context": ctx, "benchmarks": bench}


def report(tmp, tag, doc):
    src = os.path.join(tmp, f"{tag}.json")
    with open(src, "w") as f:
        json.dump(doc, f)
    out = os.path.join(tmp, tag)
    r = subprocess.run([sys.executable, REPORT, "--anx-json", src, "--out", out], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
        raise SystemExit(f"report.py exited {r.returncode}")
    with open(os.path.join(out, "report.json")) as f:
        return r.stdout, json.load(f), out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        md, rj, out = report(tmp, "skip", run_doc(counters=False))
        expect("header: machine line with the machine_key", re.search(r"^- machine: V Model X .*machine_key "
                                                                      r"00112233aabbccdd$", md, re.M) is not None)
        expect("header: source commit and the counters' skip reason",
               f"anx commit {'c' * 40}" in md and "- hardware counters: skipped: perf_event_open(cycles): ENOENT" in md)
        expect("backend columns in the run's order (zeta before beta; alpha not built)",
               "| layer | dir | zeta | beta |" in md and "| alpha" not in md.split("## batch 4")[1].split("\n")[2])
        # the roofline, recomputed: AI = FLOP/byte; roof = min(peak of the label's ISA, AI x triad)
        want = {}
        for be, speed, peak in (("zeta", 1.0, PEAK), ("beta", 2.0, 50.0)):
            for layer, ms, flop, byte in (("conv2", 10.0, 1.0e9, 4.0e6), ("relu1", 0.5, 1.0e6, 8.0e6)):
                ai = flop / byte
                gf = flop / (ms / speed * 1e-3) * 1e-9
                roof = min(peak, ai * BW)
                want[(be, layer)] = (ai, gf / roof, "compute" if ai * BW >= peak else "memory")
        got = {(p["backend"], p["layer"]): (p["flop_per_byte"], p["share_of_roof"], p["bound"]) for p in rj["roofline"]}
        expect("report.json: one roofline point per backend and call", set(got) == set(want), sorted(got))
        expect("report.json: intensity, share of roof and bound as recomputed",
               all(abs(got[k][0] - want[k][0]) < 1e-9 * want[k][0] and abs(got[k][1] - want[k][1]) < 1e-9
                   and got[k][2] == want[k][2] for k in want if k in got), f"{got} vs {want}")
        rows = {ln.split("|")[1].strip(): ln for ln in md.split("## roofline, batch 4")[-1].splitlines()
                if ln.startswith("| conv2") or ln.startswith("| relu1")}
        conv = want[("zeta", "conv2")], want[("beta", "conv2")]
        expect("roofline table: conv2 row with FLOP/byte and each backend's share and C",
               "conv2" in rows and f"| {conv[0][0]:.3g} | {100 * conv[0][1]:.0f}% C | {100 * conv[1][1]:.0f}% C |"
               in rows["conv2"], rows.get("conv2"))
        relu = want[("zeta", "relu1")], want[("beta", "relu1")]
        expect("roofline table: relu1 under the bandwidth roof (M)",
               "relu1" in rows and f"| {100 * relu[0][1]:.0f}% M | {100 * relu[1][1]:.0f}% M |" in rows["relu1"],
               rows.get("relu1"))
        expect("no counter table when the counters were skipped", "## hardware counters" not in md)
        if shutil.which("gnuplot"):
            expect("a roofline PNG per backend and batch", all(os.path.getsize(os.path.join(out, f"roofline-{be}-batch4.png"))
                                                                > 1000 for be in ("zeta", "beta")))

        expect("no roles in the run: speedups against its first backend", "| beta vs zeta |" in md
               and "zeta vs beta" not in md)
        md_roles, _, _ = report(tmp, "roles", run_doc(counters=False, roles="zeta:avx2 alpha:best beta:reference"))
        expect("roles in the run: speedups against its reference", "| zeta vs beta |" in md_roles
               and "beta vs zeta" not in md_roles)
        md_bare, _, _ = report(tmp, "bare", run_doc(counters=False, bare=True))
        conv_row = next((ln for ln in md_bare.splitlines() if ln.startswith("| conv2 | fwd |")), "")
        expect("<backend>_bare rows: the backend against them (bare time / its time), and nothing else",
               "| beta vs beta_bare |" in md_bare and conv_row.endswith("| 0.80x |")
               and "beta_bare vs" not in md_bare and "vs beta_bare" in md_bare.split("## batch 4")[1].split("\n")[2],
               conv_row)
        hyphen = json.loads(json.dumps(run_doc(counters=False)).replace("zeta", "ze-ta"))
        md_hy, _, _ = report(tmp, "hyphen", hyphen)
        expect("a backend name with a hyphen (onednn-wino) keeps its rows and its step",
               "| layer | dir | ze-ta | beta |" in md_hy and "| beta vs ze-ta |" in md_hy
               and any(ln.startswith("| conv2 | fwd |") for ln in md_hy.split("## batch 4")[1].splitlines()),
               md_hy[:600])
        md, _, _ = report(tmp, "count", run_doc(counters=True))
        table = md.split("## hardware counters per call, batch 4")[-1]
        expect("counter table when results carry counters: zeta rows first, IPC shown",
               "## hardware counters per call, batch 4" in md
               and "| zeta | conv2 | fwd | 2e+07 | 3e+07 | 1.50 | 1e+03 |" in table
               and table.index("| zeta |") < table.index("| beta |"), table[:400])
    print(f"{len(failures)} checks failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
