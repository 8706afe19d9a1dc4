#!/usr/bin/env python3
"""The per-layer benchmark report of anx: one command runs anx-bench with repetitions (and the
PyTorch baseline when /usr/bin/python3 has torch), takes the medians, and prints per layer and
direction each backend's time, GFLOP/s (or GB/s for the memory-bound layers), its share of the
machine's measured ceiling, and ratios to ref and to onednn from the same run.  Writes
OUT/report.json, OUT/report.md, OUT/report-batch<N>.png (gnuplot) and the raw Google Benchmark
JSON of each run (OUT/anx-bench.json, OUT/torch.json).

  bench/report.py --build build --out bench-report [--quick]       run and report
  bench/report.py --anx-json A.json [--torch-json T.json] --out D  report saved runs
  bench/report.py --compare OLD.json NEW.json                      compare two saved runs

Python 3 standard library only; PyTorch only inside bench/torch_baseline.py.
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_PY = "/usr/bin/python3"  # Debian's python3-torch lives there, not in a pyenv python3

# model order of anx's benchmark tags, with their op (include/anx/layer.h)
LAYERS = [("conv1", "conv2d"), ("relu1", "relu"), ("pool1", "maxpool"), ("conv2", "conv2d"),
          ("relu2", "relu"), ("pool2", "maxpool"), ("conv3", "conv2d"), ("relu3", "relu"),
          ("conv4", "conv2d"), ("relu4", "relu"), ("conv5", "conv2d"), ("relu5", "relu"),
          ("pool3", "maxpool"), ("fc6", "linear"), ("relu6", "relu"), ("drop6", "dropout"),
          ("fc7", "linear"), ("relu7", "relu"), ("drop7", "dropout"), ("fc8", "linear"), ("loss", "loss")]
DIRS = ["fwd", "bwd_data", "bwd_weights"]
COMPUTE_OPS = ("conv2d", "linear")  # judged by FLOP/s and peak%; the rest by bytes/s and bw%

MODES = {  # repetitions, min_time (s), fast batches, ref batches
    "quick": (3, 0.05, "2,32", "2"),
    "full": (5, 0.5, "2,32", "2"),
}

LAYER_RE = re.compile(r"^(?P<op>[a-z0-9]+)_(?P<dir>fwd|bwd_data|bwd_weights)/(?P<tag>[a-z0-9]+)/"
                      r"(?P<backend>[a-z0-9_-]+)/batch:(?P<batch>\d+)(/real_time)?$")
STEP_RE = re.compile(r"^step/(?P<backend>[a-z0-9_-]+)/batch:(?P<batch>\d+)(/real_time)?$")
ADAM_RE = re.compile(r"^adam/(?P<backend>[a-z0-9_-]+)(/real_time)?$")
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def die(msg):
    print(f"report.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- running


def run_anx(build, out_json, reps, min_time, batches, ref_batches, threads, flt):
    exe = os.path.join(build, "anx-bench")
    if not os.access(exe, os.X_OK):
        die(f"{exe}: not found (build first: cmake --build {build})")
    cmd = [exe, f"--batches={batches}", f"--ref_batches={ref_batches}",
           f"--benchmark_repetitions={reps}", "--benchmark_report_aggregates_only=true",
           f"--benchmark_min_time={min_time}", f"--benchmark_out={out_json}",
           "--benchmark_out_format=json"]
    if threads:
        cmd.append(f"--threads={threads}")
    if flt:
        cmd.append(f"--benchmark_filter={flt}")
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    # console progress to stderr: stdout is the report
    r = subprocess.run(cmd, stdout=sys.stderr)
    if r.returncode != 0:
        die(f"anx-bench exited with status {r.returncode}")
    return cmd


def torch_available():
    if not os.access(TORCH_PY, os.X_OK):
        return False
    return subprocess.run([TORCH_PY, "-c", "import torch"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def run_torch(out_json, reps, min_time, batches, threads, flt):
    cmd = [TORCH_PY, os.path.join(HERE, "torch_baseline.py"), "--out", out_json, "--batches", batches,
           "--repetitions", str(reps), "--min-time", str(min_time)]
    if threads:
        cmd += ["--threads", str(threads)]
    if flt:
        cmd += ["--filter", flt]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, stdout=sys.stderr)
    if r.returncode != 0:
        die(f"torch_baseline.py exited with status {r.returncode}")
    return cmd


# ---------------------------------------------------------------- reading


def load_runs(path):
    """Google Benchmark JSON -> (context, {run_name: result}).  A result holds the median (the
    'median' aggregate, or the median of the plain iterations when there are no aggregates):
    time_ms and the counters; or 'error' with the message of a skipped / failed benchmark."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        die(f"{path}: not a Google Benchmark JSON file (no 'benchmarks' list)")
    medians, plain, errors = {}, {}, {}
    for b in doc["benchmarks"]:
        rn = b.get("run_name", b.get("name"))
        if b.get("error_occurred"):
            errors[rn] = b.get("error_message", "error")
        elif b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[rn] = b
        else:
            plain.setdefault(rn, []).append(b)
    out = {}
    for rn in set(medians) | set(plain) | set(errors):
        b = medians.get(rn)
        if b is None and rn in plain:
            runs = sorted(plain[rn], key=lambda x: x["real_time"] * TO_MS[x.get("time_unit", "ns")])
            b = runs[len(runs) // 2]
        if b is None:
            out[rn] = {"error": errors[rn]}
            continue
        res = {"time_ms": b["real_time"] * TO_MS[b.get("time_unit", "ns")],
               "iterations": b.get("iterations"), "label": b.get("label", "")}
        for k in ("FLOP/s", "bytes/s", "peak%", "peak%_unpadded", "bw%", "images/s", "params/s", "loss",
                  "cycles/iter", "instructions/iter", "cache_misses/iter", "IPC"):
            if k in b:
                res[k] = b[k]
        out[rn] = res
    return doc.get("context", {}), out


def ceiling(ctx, key):
    """'80.1 (2 threads), 40.0 (1 thread)' -> 80.1e9 from anx-bench's context; None if absent."""
    m = re.match(r"\s*([0-9.]+)", str(ctx.get(key, "")))
    return float(m.group(1)) * 1e9 if m else None


def best_peak(ctx):
    peaks = [ceiling(ctx, k) for k in ctx if k.startswith("anx_fma_peak_")]
    peaks = [p for p in peaks if p]
    return max(peaks) if peaks else None


# ---------------------------------------------------------------- the table


def fmt_time(ms):
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1e3:.1f} us"


def fmt_ratio(x):
    return f"{x:.2f}x" if x is not None else ""


def cell(res, op):
    if res is None:
        return ""
    if "error" in res:
        return "FAILED" if not res["error"].startswith("skipped") else "skipped"
    parts = [fmt_time(res["time_ms"])]
    if op in COMPUTE_OPS or op == "step":
        if "FLOP/s" in res:
            parts.append(f"{res['FLOP/s'] * 1e-9:.1f} GF/s")
        if "peak%" in res:
            unpadded = f" ({res['peak%_unpadded']:.0f}% unpadded)" if "peak%_unpadded" in res else ""
            parts.append(f"{res['peak%']:.0f}%{unpadded}")
    else:
        if "bytes/s" in res:
            parts.append(f"{res['bytes/s'] * 1e-9:.1f} GB/s")
        if "bw%" in res:
            parts.append(f"{res['bw%']:.0f}% bw")
    return " · ".join(parts)


def speedup(base, res):
    """base time / this time: 2.00x means twice as fast as base."""
    if not base or not res or "time_ms" not in base or "time_ms" not in res:
        return None
    return base["time_ms"] / res["time_ms"] if res["time_ms"] > 0 else None


def backend_order(ctx, backends):
    """The backends in anx-bench's registry order (its context's anx_backends, "ref avx2(unavailable:
    ...) onednn"), then any other (torch) by name: no backend name is written into this script."""
    listed = re.findall(r"(?:^|\s)([a-z0-9_-]+)(?=\(|\s|$)", re.sub(r"\([^)]*\)", "", str(ctx.get("anx_backends", ""))))
    return [b for b in listed if b in backends] + sorted(backends - set(listed))


def collect(runs, ctx):
    """Sorts the runs into layers[(batch, tag, dir)][backend], steps[batch][backend], adam[backend]."""
    layers, steps, adam, backends, batches = {}, {}, {}, set(), set()
    for rn, res in runs.items():
        m = LAYER_RE.match(rn)
        if m:
            b, be = int(m["batch"]), m["backend"]
            layers.setdefault((b, m["tag"], m["dir"]), {})[be] = res
            backends.add(be), batches.add(b)
            continue
        m = STEP_RE.match(rn)
        if m:
            steps.setdefault(int(m["batch"]), {})[m["backend"]] = res
            backends.add(m["backend"]), batches.add(int(m["batch"]))
            continue
        m = ADAM_RE.match(rn)
        if m:
            adam[m["backend"]] = res
            backends.add(m["backend"])
    order = backend_order(ctx, backends)
    return layers, steps, adam, order, sorted(batches)


def add_torch_shares(runs, ctx):
    """peak% and bw% of the PyTorch rows, against the ceilings anx-bench measured in its run."""
    peak, triad = best_peak(ctx), ceiling(ctx, "anx_triad_gbytes_per_s")
    for rn, res in runs.items():
        if "/torch/" not in rn and not rn.startswith("adam/torch"):
            continue
        if peak and "FLOP/s" in res:
            res["peak%"] = 100.0 * res["FLOP/s"] / peak
        if triad and "bytes/s" in res:
            res["bw%"] = 100.0 * res["bytes/s"] / triad


def default_baselines(ctx, order):
    """The speedup baselines when --baselines is not given: from the run's anx_backend_roles
    ("ref:reference avx2:avx2 onednn:best"), the reference and then the backends judged against
    the best ISA (libraries that dispatch by CPU); a run without roles: its first backend."""
    roles = dict(r.split(":", 1) for r in str(ctx.get("anx_backend_roles", "")).split() if ":" in r)
    if not roles:
        return order[:1]
    return [b for b in order if roles.get(b) == "reference"] + [b for b in order if roles.get(b) == "best"]


def ratio_columns(order, baselines):
    """(backend, baseline) pairs: every backend against each baseline present, except the
    baselines before it in the list (ref vs onednn would repeat onednn vs ref); then each backend
    against its `<backend>_bare` rows (the library's own call alone: what the backend adds to it),
    which are compared with nothing else."""
    bare = [b for b in order if b.endswith("_bare") and b[:-len("_bare")] in order]
    cols = []
    for i, base in enumerate(baselines):
        if base in order:
            cols += [(b, base) for b in order if b != base and b not in baselines[:i] and b not in bare]
    return cols + [(b[:-len("_bare")], b) for b in bare]


# the fingerprint anx-bench writes into its context (bench/fingerprint.c), in header order
FINGERPRINT = [("machine", "{anx_cpu_vendor} {anx_cpu_model} ({anx_cpu_fms}), {anx_cpus_online} CPUs online, "
                "caches {anx_caches}, {anx_memory_gib} GiB; machine_key {anx_machine_key}"),
               ("ISA flags", "{anx_isa_flags}"),
               ("kernel", "{anx_kernel}"),
               ("build", "{anx_compiler}, {anx_cflags}; Google Benchmark {anx_benchmark_version}; "
                "oneDNN {anx_onednn_version}"),
               ("libraries loaded", "{anx_libraries}"),
               ("backend libraries", "{anx_backend_libraries}"),
               ("source", "anx commit {anx_git_commit} (uncommitted changes: {anx_git_dirty})"),
               ("hardware counters", "{anx_hw_counters}")]


def fingerprint_lines(ctx):
    if "anx_machine_key" not in ctx:
        return ["- fingerprint: none (a run from before anx-bench wrote one: not usable as a baseline)"]
    return [f"- {name}: " + fmt.format_map({k: ctx.get(k, "?") for k in re.findall(r"{(\w+)}", fmt)})
            for name, fmt in FINGERPRINT]


def render(ctx, runs, commands, baselines):
    layers, steps, adam, order, batches = collect(runs, ctx)
    rcols = ratio_columns(order, baselines if baselines is not None else default_baselines(ctx, order))
    L = []
    L.append("# anx per-layer benchmark report")
    L.append("")
    L.append(f"- date: {ctx.get('date', '?')}; host: {ctx.get('host_name', '?')}, "
             f"{ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz; "
             f"load average at start: {', '.join(f'{x:.2f}' for x in ctx.get('load_avg', [])) or '?'}")
    L.append(f"- threads: {ctx.get('anx_threads', '?')}; backends: {ctx.get('anx_backends', '?')}")
    L += fingerprint_lines(ctx)
    for k in sorted(ctx):
        if k.startswith("anx_fma_peak_"):
            v = str(ctx[k])
            L.append(f"- measured FMA peak ({k[len('anx_fma_peak_'):-len('_gflops')]}): "
                     + (f"{v} GFLOP/s" if v[:1].isdigit() else v))
    if "anx_triad_gbytes_per_s" in ctx:
        L.append(f"- measured triad bandwidth: {ctx['anx_triad_gbytes_per_s']} GB/s")
    if "torch_version" in ctx:
        L.append(f"- PyTorch {ctx['torch_version']} ({ctx.get('torch_cpu_capability', '?')}), "
                 f"{ctx.get('torch_threads', '?')} threads: bench/torch_baseline.py")
    for c in commands:
        L.append(f"- command: `{' '.join(c)}`")
    L.append("")
    L.append("Cells: median wall time per call · GFLOP/s and % of the measured FMA peak (conv2d, linear; "
             "for conv2d also without the zero padding's products, which the avx2 and oneDNN kernels skip) "
             "or GB/s and % of the measured triad bandwidth (the rest).  Ratios are speedups "
             "(base time / backend time) between runs of the same process, at the same batch.")
    skipped = {}
    for batch in batches:
        L.append("")
        L.append(f"## batch {batch}")
        L.append("")
        head = ["layer", "dir"] + order + [f"{a} vs {b}" for a, b in rcols]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
        for tag, op in LAYERS:
            for d in DIRS:
                row = layers.get((batch, tag, d))
                if not row:
                    continue
                cells = [tag, d] + [cell(row.get(be), op) for be in order]
                cells += [fmt_ratio(speedup(row.get(b), row.get(a))) for a, b in rcols]
                L.append("| " + " | ".join(cells) + " |")
                for be, res in row.items():
                    if "error" in res:
                        skipped.setdefault(res["error"], []).append(f"{op}_{d}/{tag}/{be}/batch:{batch}")
    if steps:
        L.append("")
        L.append("## whole training step (forward, loss, backward, Adam)")
        L.append("")
        head = ["batch"] + order + [f"{a} vs {b}" for a, b in rcols]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for batch in sorted(steps):
            row = steps[batch]
            cells = [str(batch)]
            for be in order:
                res = row.get(be)
                c = cell(res, "step")
                if res and "images/s" in res:
                    c += f" · {res['images/s']:.2f} img/s"
                cells.append(c)
            cells += [fmt_ratio(speedup(row.get(b), row.get(a))) for a, b in rcols]
            L.append("| " + " | ".join(cells) + " |")
            for be, res in row.items():
                if "error" in res:
                    skipped.setdefault(res["error"], []).append(f"step/{be}/batch:{batch}")
    if adam:
        L.append("")
        L.append("## Adam alone (62.4M parameters, 7 x 4 bytes moved per parameter)")
        L.append("")
        L.append("| " + " | ".join(order) + " |")
        L.append("|" + "|".join(["---:"] * len(order)) + "|")
        L.append("| " + " | ".join(cell(adam.get(be), "adam") for be in order) + " |")
        for be, res in adam.items():
            if "error" in res:
                skipped.setdefault(res["error"], []).append(f"adam/{be}")
    if skipped:
        L.append("")
        L.append("## not timed")
        L.append("")
        for msg, names in sorted(skipped.items()):
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            L.append(f"- {msg}: {shown}")
    return "\n".join(L) + "\n", layers, order, batches


# ---------------------------------------------------------------- roofline and counters


def roofs(ctx, res):
    """(FMA peak FLOP/s, triad bytes/s) a result sits under: the peak of the ISA its label names
    ("peak:avx2"), else the best the machine has (torch, the element-wise layers)."""
    m = re.search(r"\bpeak:(\w+)", str(res.get("label", "")))
    peak = ceiling(ctx, f"anx_fma_peak_{m.group(1)}_gflops") if m else None
    return peak or best_peak(ctx), ceiling(ctx, "anx_triad_gbytes_per_s")


def roofline(ctx, layers):
    """{(backend, batch): [point]} for every timed layer call with FLOP/s and bytes/s: its
    arithmetic intensity (FLOPs over the bytes the call must move, the same count as bytes/s),
    its FLOP/s, and the roof above it, min(peak, intensity x bandwidth)."""
    rank = {(tag, d): i for i, (tag, d) in enumerate((t, d) for t, _ in LAYERS for d in DIRS)}
    pts = {}
    for (batch, tag, d), row in layers.items():
        for be, res in row.items():
            f, b = res.get("FLOP/s"), res.get("bytes/s")
            peak, bw = roofs(ctx, res)
            if not f or not b or not peak or not bw:
                continue
            ai = f / b
            roof = min(peak, ai * bw)
            pts.setdefault((be, batch), []).append(
                {"layer": tag, "dir": d, "flop_per_byte": ai, "flop_per_s": f, "roof_flop_per_s": roof,
                 "peak_flop_per_s": peak, "bytes_per_s_roof": bw, "share_of_roof": f / roof,
                 "bound": "compute" if ai * bw >= peak else "memory"})
    for v in pts.values():
        v.sort(key=lambda p: rank.get((p["layer"], p["dir"]), 1e9))
    return pts


def roofline_md(pts, order, batches):
    """Per batch: each layer and direction's intensity, and per backend its share of the roof
    above it (C: under the compute roof, M: under the bandwidth roof)."""
    L = []
    for batch in batches:
        bes = [be for be in order if (be, batch) in pts]
        if not bes:
            continue
        rows = {}
        for be in bes:
            for p in pts[(be, batch)]:
                rows.setdefault((p["layer"], p["dir"]), {"ai": p["flop_per_byte"]})[be] = p
        L += ["", f"## roofline, batch {batch}", "",
              "Share of the roof above each call: min(FMA peak, FLOP/byte x triad bandwidth); "
              "C = under the compute roof, M = under the bandwidth roof.", "",
              "| layer | dir | FLOP/byte | " + " | ".join(bes) + " |", "|---|---|---:|" + "---:|" * len(bes)]
        for (tag, d), row in rows.items():
            cells = [f"{100 * row[be]['share_of_roof']:.0f}% {row[be]['bound'][0].upper()}" if be in row else ""
                     for be in bes]
            L.append(f"| {tag} | {d} | {row['ai']:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(L) + "\n" if L else ""


def counters_md(layers, order, batches):
    """Hardware counters per layer call, where anx-bench could count them (hw_counters.c)."""
    L = []
    for batch in batches:
        rows = [(tag, d, be, res) for tag, _ in LAYERS for d in DIRS
                for be, res in layers.get((batch, tag, d), {}).items() if "cycles/iter" in res]
        rows.sort(key=lambda r: order.index(r[2]) if r[2] in order else len(order))
        if not rows:
            continue
        L += ["", f"## hardware counters per call, batch {batch}", "",
              "| backend | layer | dir | cycles | instructions | IPC | cache misses |", "|---|---|---|---:|---:|---:|---:|"]
        for tag, d, be, res in rows:
            L.append(f"| {be} | {tag} | {d} | {res['cycles/iter']:.3g} | {res.get('instructions/iter', 0):.3g} | "
                     f"{res.get('IPC', 0):.2f} | {res.get('cache_misses/iter', 0):.3g} |")
    return "\n".join(L) + "\n" if L else ""


def write_rooflines(out_dir, pts):
    """One log-log chart per backend and batch: the two roofs and a labelled point per call."""
    gp = shutil.which("gnuplot")
    if not gp or not pts:
        return []
    pngs = []
    for (be, batch), ps in sorted(pts.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        base = os.path.join(out_dir, f"roofline-{be}-batch{batch}")
        peak, bw = ps[0]["peak_flop_per_s"] * 1e-9, ps[0]["bytes_per_s_roof"] * 1e-9
        with open(base + ".dat", "w") as f:
            for p in ps:
                f.write(f"{p['flop_per_byte']:.6g} {p['flop_per_s'] * 1e-9:.6g} \"{p['layer']} {p['dir']}\"\n")
        xs = [p["flop_per_byte"] for p in ps]
        lo, hi = min(xs + [peak / bw]) / 4, max(xs + [peak / bw]) * 4
        script = "\n".join([
            "set terminal pngcairo size 1000,700 noenhanced font ',9'" if _has_cairo(gp)
            else "set terminal png size 1000,700 noenhanced",
            f"set output '{base}.png.tmp'",
            f"set title 'roofline: {be}, batch {batch} (peak {peak:.0f} GFLOP/s, triad {bw:.1f} GB/s)'",
            "set logscale xy", f"set xrange [{lo:.6g}:{hi:.6g}]", "set xlabel 'FLOP per byte moved'",
            "set ylabel 'GFLOP/s'", "set grid", "set key bottom right", "set samples 400",
            f"roof(x) = x * {bw:.6g} < {peak:.6g} ? x * {bw:.6g} : {peak:.6g}",
            f"plot roof(x) with lines lw 2 title 'min(FMA peak, FLOP/byte x triad)', "
            f"'{base}.dat' using 1:2 with points pt 7 title 'layer x direction', "
            f"'' using 1:2:3 with labels offset 0.5,0.5 left font ',7' notitle", ""])
        r = subprocess.run([gp], input=script, text=True, capture_output=True)
        os.remove(base + ".dat")
        if r.returncode != 0 or not os.path.exists(base + ".png.tmp"):
            print(f"report.py: gnuplot failed for the roofline of {be} batch {batch}: {r.stderr.strip()}",
                  file=sys.stderr)
            continue
        os.replace(base + ".png.tmp", base + ".png")
        pngs.append(base + ".png")
    return pngs


# ---------------------------------------------------------------- the chart


def write_charts(out_dir, layers, order, batches):
    """One clustered bar chart per batch: time per layer x direction, one bar per backend."""
    gp = shutil.which("gnuplot")
    if not gp:
        print("report.py: gnuplot not found (apt-get install gnuplot-nox): no PNG", file=sys.stderr)
        return []
    pngs = []
    for batch in batches:
        rows = []
        for tag, op in LAYERS:
            for d in DIRS:
                row = layers.get((batch, tag, d))
                if row:
                    t = [row.get(be, {}).get("time_ms") for be in order]
                    rows.append((f"{tag} {d}", t))
        present = [i for i, be in enumerate(order) if any(t[i] for _, t in rows)]
        if not rows or not present:
            continue
        dat = os.path.join(out_dir, f"report-batch{batch}.dat")
        with open(dat, "w") as f:
            f.write("layer " + " ".join(order[i] for i in present) + "\n")
            for name, t in rows:
                f.write(f"\"{name}\" " + " ".join(f"{t[i]:.6g}" if t[i] else "?" for i in present) + "\n")
        png = os.path.join(out_dir, f"report-batch{batch}.png")
        plots = ", ".join(f"'{dat}' using {k + 2}:xtic(1) title '{order[i]}'" for k, i in enumerate(present))
        script = "\n".join([
            "set terminal pngcairo size 1600,700 noenhanced font ',10'" if _has_cairo(gp)
            else "set terminal png size 1600,700 noenhanced",
            f"set output '{png}.tmp'",
            f"set title 'anx per-layer time, batch {batch} (median, log scale; lower is faster)'",
            "set datafile missing '?'", "set style data histograms", "set style histogram clustered gap 1",
            "set style fill solid 0.9 border -1", "set logscale y", "set ylabel 'ms per call'",
            "set xtics rotate by 60 right", "set grid ytics", "set key top right",
            "set bmargin 9", f"plot {plots}", ""])
        r = subprocess.run([gp], input=script, text=True, capture_output=True)
        if r.returncode != 0 or not os.path.exists(png + ".tmp"):
            print(f"report.py: gnuplot failed for batch {batch}: {r.stderr.strip()}", file=sys.stderr)
            continue
        os.replace(png + ".tmp", png)
        pngs.append(png)
    return pngs


def _has_cairo(gp):
    r = subprocess.run([gp, "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (r.stdout + r.stderr)


# ---------------------------------------------------------------- compare


def compare(old_path, new_path):
    """compare.py's 'benchmarks' mode without scipy: per benchmark in both, old and new median
    time and new/old (below 1 is faster)."""
    _, old = load_runs(old_path)
    _, new = load_runs(new_path)
    common = [rn for rn in old if rn in new and "time_ms" in old[rn] and "time_ms" in new[rn]]
    if not common:
        die(f"{old_path} and {new_path} have no timed benchmark in common")
    L = [f"# {new_path} against {old_path}", "",
         "| benchmark | old | new | new/old time | old/new (speedup) |", "|---|---:|---:|---:|---:|"]
    ratios = []
    for rn in sorted(common, key=lambda r: list(old).index(r) if r in old else 0):
        o, n = old[rn]["time_ms"], new[rn]["time_ms"]
        ratios.append(n / o)
        L.append(f"| {rn} | {fmt_time(o)} | {fmt_time(n)} | {n / o:.3f} | {o / n:.2f}x |")
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    L.append("")
    L.append(f"geometric mean of new/old over {len(ratios)} benchmarks: {gm:.3f}")
    only = sorted(set(old) ^ set(new))
    if only:
        L.append(f"in one run only: {len(only)} benchmarks")
    print("\n".join(L))
    return 0


# ---------------------------------------------------------------- main


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--build", help="build directory holding anx-bench")
    ap.add_argument("--out", help="directory for report.json, report.md, PNGs and raw JSON")
    ap.add_argument("--quick", action="store_true",
                    help="3 repetitions, 0.05 s minimum time (the README's main job; default: 5 x 0.5 s)")
    ap.add_argument("--repetitions", type=int)
    ap.add_argument("--min-time", type=float)
    ap.add_argument("--batches", help="batches of the fast backends and torch (default 2,32)")
    ap.add_argument("--ref-batches", help="batches of ref (default 2)")
    ap.add_argument("--threads", type=int, help="threads (default: anx-bench's, all cores)")
    ap.add_argument("--filter", help="regex passed to --benchmark_filter and to the torch baseline")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    ap.add_argument("--baselines", help="comma list of backends the speedup columns divide by (default: the "
                    "run's reference backend, then those judged against the best ISA, from anx_backend_roles)")
    ap.add_argument("--anx-json", help="report this saved anx-bench JSON instead of running")
    ap.add_argument("--torch-json", help="with --anx-json: a saved torch_baseline.py JSON")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two saved runs")
    a = ap.parse_args()

    if a.compare:
        return compare(*a.compare)
    if not a.out:
        die("--out: required (the directory to write the report to)")
    reps, min_time, batches, ref_batches = MODES["quick" if a.quick else "full"]
    reps = a.repetitions or reps
    min_time = a.min_time if a.min_time is not None else min_time
    batches = a.batches or batches
    ref_batches = a.ref_batches or ref_batches
    for name, v in (("--batches", batches), ("--ref-batches", ref_batches)):
        if not re.fullmatch(r"[1-9][0-9]*(,[1-9][0-9]*)*", v):
            die(f"{name}: '{v}' is not a comma list of batch sizes")
    if reps < 1 or min_time < 0 or (a.threads is not None and a.threads < 1):
        die("--repetitions and --threads must be >= 1, --min-time >= 0")
    os.makedirs(a.out, exist_ok=True)

    commands = []
    t0 = time.time()
    if a.anx_json:
        anx_json, torch_json = a.anx_json, a.torch_json
    else:
        if not a.build:
            die("--build: required unless --anx-json is given")
        anx_json = os.path.join(a.out, "anx-bench.json")
        commands.append(run_anx(a.build, anx_json, reps, min_time, batches, ref_batches, a.threads, a.filter))
        torch_json = None
        if a.no_torch:
            pass
        elif torch_available():
            torch_json = os.path.join(a.out, "torch.json")
            commands.append(run_torch(torch_json, reps, min_time, batches, a.threads, a.filter))
        else:
            print(f"report.py: {TORCH_PY} cannot import torch: no PyTorch column", file=sys.stderr)
    ctx, runs = load_runs(anx_json)
    if torch_json:
        tctx, truns = load_runs(torch_json)
        add_torch_shares(truns, ctx)
        runs.update(truns)
        ctx.update({k: v for k, v in tctx.items() if k.startswith("torch_")})
    md, layers, order, bl = render(ctx, runs, commands,
                                   [b for b in a.baselines.split(",") if b] if a.baselines is not None else None)
    pts = roofline(ctx, layers)
    md += roofline_md(pts, order, bl) + counters_md(layers, order, bl)
    pngs = write_charts(a.out, layers, order, bl) + write_rooflines(a.out, pts)
    if pngs:
        md += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pngs) + "\n"
    if commands:
        md += f"\nwall time of the whole report: {time.time() - t0:.0f} s\n"
    write_atomic(os.path.join(a.out, "report.md"), md)
    write_atomic(os.path.join(a.out, "report.json"),
                 json.dumps({"context": ctx, "commands": commands, "results": runs,
                             "roofline": [dict(p, backend=be, batch=batch) for (be, batch), ps in sorted(pts.items())
                                          for p in ps]}, indent=1, sort_keys=True))
    print(md)
    print(f"report.py: wrote {a.out}/report.md, report.json" + "".join(f", {os.path.basename(p)}" for p in pngs),
          file=sys.stderr)
    failed = sorted(rn for rn, res in runs.items() if "error" in res and not res["error"].startswith("skipped"))
    for rn in failed:
        print(f"report.py: {rn}: {runs[rn]['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
