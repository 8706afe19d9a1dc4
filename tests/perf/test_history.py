#!/usr/bin/env python3
"""bench/history.py: record, trend and fleet on synthetic report.json files built here (seeded
RNG), the two checked-in result folders imported as runs without fingerprint, two concurrent
writers that must both land, and corrupt or foreign files refused with one line and left
byte-for-byte untouched."""
import glob
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
HISTORY = os.path.join(ROOT, "bench", "history.py")
SEED = int(os.environ.get("ANX_TEST_SEED", "20261130"))
failures = []


def report_doc(rng, key, commit, images_per_s, peak_gflops=100.0, threads=2, date="2026-11-30T10:00:00+00:00"):
    """A report.json as bench/report.py writes it: a fingerprinted context and a few results."""
    ctx = {"anx_threads": str(threads), "anx_backends": "beta alpha", "date": date, "host_name": "h",
           "anx_fma_peak_avx2_gflops": f"{peak_gflops:.1f} ({threads} threads), {peak_gflops / 2:.1f} (1 thread)",
           "anx_triad_gbytes_per_s": f"20.00 ({threads} threads)", "anx_git_commit": commit, "anx_git_dirty": "no"}
    if key:
        ctx.update({"anx_machine_key": key, "anx_cpu_vendor": "V", "anx_cpu_model": f"CPU {key}",
                    "anx_cpu_fms": "family 1 model 2 stepping 3", "anx_isa_flags": "avx2 fma",
                    "anx_cpus_online": "2", "anx_caches": "L1d 32K", "anx_memory_gib": "8.0", "anx_kernel": "Linux"})
    res = {}
    for be, ips in images_per_s.items():
        step_ms = 32e3 / ips
        flops = 7e11 * 32 / (step_ms * 1e-3) / 32  # any positive number: peak% is derived from it
        res[f"step/{be}/batch:32/real_time"] = {"time_ms": step_ms, "images/s": ips, "FLOP/s": flops,
                                                "peak%": 100 * flops / (peak_gflops * 1e9)}
        res[f"conv2d_fwd/conv2/{be}/batch:32/real_time"] = {"time_ms": rng.uniform(900, 1100), "FLOP/s": 1e10}
    res["conv2d_bwd_data/conv1/beta/batch:32/real_time"] = {"error": "skipped: declines"}
    return {"context": ctx, "commands": [], "results": res}


def run(*args):
    return subprocess.run([sys.executable, HISTORY, *args], capture_output=True, text=True)


def expect(label, cond, r=None, why=""):
    if cond:
        print(f"ok   {label}")
        return
    failures.append(label)
    print(f"FAIL {label}: {why}")
    if r is not None:
        print(f"  exit {r.returncode}\n  stdout: {r.stdout.strip()}\n  stderr: {r.stderr.strip()}")


def write(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def one_line_2(r, culprit):
    lines = r.stderr.strip().splitlines()
    return r.returncode == 2 and len(lines) == 1 and culprit in lines[0]


def main():
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "h.db")
        a1 = write(os.path.join(tmp, "a1.json"), report_doc(rng, "key-a", "aaaa1111", {"alpha": 1.50, "beta": 1.25},
                                                          date="2026-11-29T10:00:00+00:00"))
        a2 = write(os.path.join(tmp, "a2.json"), report_doc(rng, "key-a", "aaaa2222", {"alpha": 1.75, "beta": 1.25}))
        b1 = write(os.path.join(tmp, "b1.json"), report_doc(rng, "key-b", "bbbb1111", {"alpha": 0.50},
                                                          peak_gflops=50.0))
        r = run("record", db, a1, a2, b1)
        expect("record three reports", r.returncode == 0 and r.stdout.count(": run ") == 3, r, "want exit 0")
        r = run("record", db, a2)
        expect("the same report again is noticed", r.returncode == 0 and "already recorded as run 2" in r.stdout, r)
        con = sqlite3.connect(db)
        nruns = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        nres = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        skipped = con.execute("SELECT error FROM results WHERE name LIKE 'conv2d_bwd_data/conv1/beta/%' AND run_id = 1"
                              ).fetchone()
        con.close()
        expect("3 runs, 5+5+3 results, a skip kept with its reason",
               nruns == 3 and nres == 13 and skipped == ("skipped: declines",), why=f"{nruns} runs, {nres} results")

        r = run("fleet", db)
        lines = r.stdout.splitlines()
        row_a = [ln for ln in lines if ln.startswith("| key-a |")]
        row_b = [ln for ln in lines if ln.startswith("| key-b |")]
        # key-a's newest run is a2 (alpha 1.75 img/s); peak% = FLOP/s / peak as built above
        pct_a = 100 * (7e11 / (32e3 / 1.75 * 1e-3)) / 100e9
        expect("fleet: one row per machine, the newest run, img/s and % of that machine's peak",
               r.returncode == 0 and len(row_a) == 1 and len(row_b) == 1 and "aaaa2222" in row_a[0]
               and f"1.75 img/s · {pct_a:.0f}%" in row_a[0] and "0.50 img/s" in row_b[0]
               and lines[2].endswith("| beta | alpha |"), r, "bad fleet table")

        png = os.path.join(tmp, "trend.png")
        r = run("trend", db, "--bench", "^step/alpha/", "--machine", "key-a", "--out", png)
        rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| aaaa")]
        want_png = subprocess.run(["sh", "-c", "command -v gnuplot"], capture_output=True).returncode == 0
        expect("trend: one row per commit, oldest first, and the PNG",
               r.returncode == 0 and len(rows) == 2 and rows[0].startswith("| aaaa1111")
               and f"{32e3 / 1.75:.4g}" in rows[1] and (os.path.getsize(png) > 1000 if want_png else True), r)
        r = run("trend", db, "--bench", "^step/alpha/", "--out", png)
        expect("trend over two machines without --machine -> 2", one_line_2(r, "--machine"), r)
        r = run("trend", db, "--bench", "^nothing", "--out", png)
        expect("trend matching nothing -> 2", one_line_2(r, "^nothing"), r)

        # the checked-in runs: recorded without fingerprint
        old = sorted(glob.glob(os.path.join(ROOT, "bench", "results", "*", "report.json")))
        r = run("record", db, *old)
        con = sqlite3.connect(db)
        n_none = con.execute("SELECT COUNT(*) FROM runs WHERE machine_key IS NULL").fetchone()[0]
        con.close()
        expect("the checked-in results import as runs without fingerprint", r.returncode == 0 and old
               and n_none == len(old) and r.stdout.count("no fingerprint") == len(old), r)
        r = run("fleet", db)
        expect("fleet shows them as machine none", r.returncode == 0 and "| none | (no fingerprint)" in r.stdout, r)

        # two writers at once, ten reports each: all twenty land
        cdb = os.path.join(tmp, "concurrent.db")
        groups = []
        for w in range(2):
            paths = [write(os.path.join(tmp, f"w{w}-{i}.json"),
                           report_doc(rng, f"key-{w}", f"{w}{i:07d}", {"alpha": 1 + i / 10})) for i in range(10)]
            groups.append(paths)
        procs = [subprocess.Popen([sys.executable, HISTORY, "record", cdb, *g], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for g in groups]
        outs = [p.communicate() for p in procs]
        con = sqlite3.connect(cdb)
        n = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        con.close()
        expect("two concurrent writers: all 20 runs land", all(p.returncode == 0 for p in procs) and n == 20,
               why=f"{n} runs; stderr: {[o[1].strip() for o in outs]}")

        # refusals: exit 2, one line, the file untouched
        corrupt = os.path.join(tmp, "corrupt.db")
        with open(corrupt, "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(4096)))
        foreign = os.path.join(tmp, "foreign.db")
        con = sqlite3.connect(foreign)
        con.execute("CREATE TABLE users (name TEXT)")
        con.execute("INSERT INTO users VALUES ('x')")
        con.commit()
        con.close()
        for label, path in (("a corrupt file", corrupt), ("a foreign SQLite database", foreign)):
            before = open(path, "rb").read()
            st = os.stat(path)
            for cmd in (["record", path, a1], ["fleet", path], ["trend", path, "--bench", ".", "--out", png]):
                r = run(*cmd)
                after = open(path, "rb").read()
                expect(f"{cmd[0]} into {label} -> 2, one line, untouched",
                       one_line_2(r, path) and after == before and os.stat(path).st_mtime_ns == st.st_mtime_ns
                       and not os.path.exists(path + "-journal"), r)
        r = run("record", db, os.path.join(tmp, "none.json"))
        expect("an unreadable report -> 2", one_line_2(r, "none.json"), r)
        r = run("record", db, write(os.path.join(tmp, "nr.json"), {"benchmarks": []}))
        expect("a JSON that is not a report -> 2", one_line_2(r, "nr.json"), r)
        r = run("fleet", os.path.join(tmp, "missing.db"))
        expect("fleet of a missing database -> 2, not created", one_line_2(r, "missing.db")
               and not os.path.exists(os.path.join(tmp, "missing.db")), r)
    print(f"{len(failures)} of the cases failed" if failures else "all cases passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
