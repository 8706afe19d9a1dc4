#!/usr/bin/env python3
"""anx-bench's fingerprint and hardware-counter status, from the real binary (argv[1]).

Runs one small layer benchmark of the first backend three times: plain, again (the
machine_key must not change), with one thread (it must change: threads are part of it), and
with ANX_BENCH_HW_COUNTERS=off (the skip path, forced).  Checks every fingerprint key is there
and agrees with /proc/cpuinfo and uname, that the key is the documented FNV-1a of the fields
(recomputed here), and that a run which says "skipped: ..." for the counters carries no
counter in any result, while a run that counts carries positive cycles per iteration.
On this project's VMs perf_event_open fails (ENOENT), so the plain run is a skip too."""
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

KEYS = ["anx_machine_key", "anx_cpu_vendor", "anx_cpu_model", "anx_cpu_fms", "anx_isa_flags", "anx_cpus_online",
        "anx_caches", "anx_memory_gib", "anx_kernel", "anx_compiler", "anx_cflags", "anx_libraries",
        "anx_onednn_version", "anx_benchmark_version", "anx_git_commit", "anx_git_dirty", "anx_hw_counters",
        "anx_backend_libraries"]
ISA = ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni",
       "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"]
failures = []


def expect(label, cond, why=""):
    print(("ok   " if cond else "FAIL ") + label + ("" if cond else f": {why}"))
    if not cond:
        failures.append(label)


def bench(exe, tmp, tag, env=None, threads=None):
    out = os.path.join(tmp, f"{tag}.json")
    cmd = [exe, "--batches=1", "--ref_batches=1", "--benchmark_filter=^relu_fwd/relu1/", "--benchmark_min_time=0",
           f"--benchmark_out={out}", "--benchmark_out_format=json"]
    if threads:
        cmd.append(f"--threads={threads}")
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if r.returncode != 0:
        print(r.stderr)
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}")
    with open(out) as f:
        return json.load(f)


def fnv1a(fields):
    h = 14695981039346656037
    for s in fields:
        for c in s.encode():
            h = ((h ^ c) * 1099511628211) % 2**64
        h = ((h ^ ord("|")) * 1099511628211) % 2**64
    return f"{h:016x}"


def cpuinfo():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
    return info


def check_counters(label, doc):
    status = doc["context"]["anx_hw_counters"]
    timed = [b for b in doc["benchmarks"] if not b.get("error_occurred")]
    with_counters = [b for b in timed if "cycles/iter" in b]
    if status.startswith("skipped: "):
        expect(f"{label}: counters skipped with a reason, and no result carries one",
               bool(timed) and not with_counters and len(status) > len("skipped: ") + 3, status)
    else:
        expect(f"{label}: counting, every timed result has cycles/iter > 0",
               bool(timed) and len(with_counters) == len(timed) and all(b["cycles/iter"] > 0 for b in timed), status)
    return status


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        a = bench(exe, tmp, "a")
        ctx = a["context"]
        missing = [k for k in KEYS if not str(ctx.get(k, "")).strip()]
        expect("every fingerprint key is present and non-empty", not missing, f"missing {missing}")
        if missing:
            return 1
        info = cpuinfo()
        if info.get("flags"):
            flags = set(info["flags"].split())
            want = " ".join(f for f in ISA if f in flags) or "none"
            expect("ISA flags agree with /proc/cpuinfo", ctx["anx_isa_flags"] == want, f"{ctx['anx_isa_flags']} vs {want}")
            expect("CPU model agrees with /proc/cpuinfo", ctx["anx_cpu_model"] == info.get("model name"),
                   ctx["anx_cpu_model"])
        expect("kernel agrees with uname", ctx["anx_kernel"] == f"{platform.system()} {platform.release()} "
               f"{platform.machine()}", ctx["anx_kernel"])
        key = fnv1a([ctx["anx_cpu_vendor"], ctx["anx_cpu_model"], ctx["anx_cpu_fms"], ctx["anx_isa_flags"],
                     ctx["anx_threads"]])
        expect("machine_key is FNV-1a of vendor, model, fms, ISA flags, threads",
               ctx["anx_machine_key"] == key, f"{ctx['anx_machine_key']} vs {key}")
        expect("libraries name Google Benchmark's shared object", "libbenchmark.so" in ctx["anx_libraries"],
               ctx["anx_libraries"])
        expect("git commit is 40 hex digits or 'unknown'",
               re.fullmatch(r"[0-9a-f]{40}|unknown", ctx["anx_git_commit"]) is not None, ctx["anx_git_commit"])
        check_counters("plain run", a)

        b = bench(exe, tmp, "b")
        expect("machine_key is stable across runs", b["context"]["anx_machine_key"] == ctx["anx_machine_key"])
        other = "1" if ctx["anx_threads"] != "1" else "2"
        c = bench(exe, tmp, "c", threads=other)
        expect(f"machine_key changes with --threads={other}", c["context"]["anx_machine_key"] != ctx["anx_machine_key"])

        off = bench(exe, tmp, "off", env={"ANX_BENCH_HW_COUNTERS": "off"})
        status = check_counters("ANX_BENCH_HW_COUNTERS=off", off)
        expect("the forced skip names its reason", status == "skipped: ANX_BENCH_HW_COUNTERS=off", status)
    print(f"{len(failures)} checks failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
