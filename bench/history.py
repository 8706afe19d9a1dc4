#!/usr/bin/env python3
"""The benchmark history of anx: every report recorded into one SQLite file, across commits and
machines.

  bench/history.py record DB REPORT.json...            append runs (report.py's report.json)
  bench/history.py trend DB --bench REGEX [--machine KEY] --out trend.png
                                                       median time per commit, one line per benchmark
  bench/history.py fleet DB                            machines x backends: step img/s, % of peak

Tables: machines (one row per machine_key: CPU, ISA flags, caches, memory), runs (one per
recorded report: date, commit, dirty, threads, measured ceilings, the whole context), results
(one per benchmark of a run: name, op, direction, layer, backend, batch, median ms, FLOP/s,
bytes/s, peak%, img/s, or the error).  A report without a fingerprint (the runs checked in
under bench/results/, from before anx-bench wrote one) is recorded with no machine (shown as
"none"): it says what was measured, but it cannot be a baseline.

Each record is one transaction (BEGIN IMMEDIATE, waiting up to --timeout seconds for another
writer), so concurrent writers all land.  A file that is not SQLite, or an SQLite database that
is not an anx history, is refused with one line (exit 2) and left untouched.  Recording the
same report file twice is noticed (by its SHA-256) and does nothing.

Python 3 standard library (sqlite3); gnuplot for the trend chart.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402  (the benchmark-name patterns, one definition)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE anx_history (schema_version INTEGER NOT NULL);
CREATE TABLE machines (
  machine_key TEXT PRIMARY KEY, vendor TEXT, model TEXT, fms TEXT, isa_flags TEXT,
  cpus_online INTEGER, caches TEXT, memory_gib REAL, kernel TEXT, first_seen TEXT, last_seen TEXT);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY, machine_key TEXT REFERENCES machines(machine_key),
  date TEXT, git_commit TEXT, git_dirty TEXT, threads INTEGER, host TEXT,
  fma_peak_gflops REAL, triad_gbytes_per_s REAL, source TEXT, sha256 TEXT UNIQUE,
  context TEXT, recorded_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE TABLE results (
  run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, op TEXT, dir TEXT, layer TEXT,
  backend TEXT, batch INTEGER, time_ms REAL, flops_per_s REAL, bytes_per_s REAL, peak_pct REAL,
  images_per_s REAL, error TEXT, PRIMARY KEY (run_id, name));
CREATE INDEX results_by_name ON results(name);
"""


class BadInput(Exception):
    """One line for stderr; exit status 2."""


# ---------------------------------------------------------------- the database


def open_db(path, create):
    """Connects; refuses (BadInput) a file that is not an anx history without writing to it.
    With create, a missing or empty file becomes a new history (inside the caller's
    transaction: see begin())."""
    if not create and not os.path.exists(path):
        raise BadInput(f"{path}: no such history database (record a report first)")
    if os.path.isdir(path):
        raise BadInput(f"{path}: is a directory")
    try:
        uri = "file:" + os.path.abspath(path) + ("?mode=rwc" if create else "?mode=ro")
        db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as e:
        raise BadInput(f"{path}: cannot open: {e}")
    return db


def check_ours(db, path):
    """0 tables: a new file; ours: fine; anything else: refuse."""
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise BadInput(f"{path}: not an SQLite database ({e}); left untouched")
    if not tables:
        return False
    if "anx_history" not in tables:
        raise BadInput(f"{path}: an SQLite database but not an anx history (tables: "
                       f"{', '.join(sorted(tables)[:5])}); left untouched")
    v = db.execute("SELECT schema_version FROM anx_history").fetchone()
    if not v or v[0] != SCHEMA_VERSION:
        raise BadInput(f"{path}: anx history schema {v[0] if v else '?'}, this script reads {SCHEMA_VERSION}")
    return True


def begin(db, path):
    """BEGIN IMMEDIATE (the write lock, waiting for other writers), then the ownership check;
    creates the schema in a new file inside the same transaction."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise BadInput(f"{path}: not an SQLite database ({e}); left untouched")
        raise BadInput(f"{path}: another writer held it locked for 30 s; nothing recorded")
    except sqlite3.DatabaseError as e:
        raise BadInput(f"{path}: not an SQLite database ({e}); left untouched")
    try:
        if not check_ours(db, path):
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT INTO anx_history VALUES (?)", (SCHEMA_VERSION,))
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# ---------------------------------------------------------------- record


def first_number(s):
    m = re.match(r"\s*([0-9.]+)", str(s or ""))
    return float(m.group(1)) if m else None


def parse_name(name):
    """A benchmark name -> (op, dir, layer, backend, batch), fields None where they do not apply."""
    m = report.LAYER_RE.match(name)
    if m:
        return m["op"], m["dir"], m["tag"], m["backend"], int(m["batch"])
    m = report.STEP_RE.match(name)
    if m:
        return "step", None, None, m["backend"], int(m["batch"])
    m = report.ADAM_RE.match(name)
    if m:
        return "adam", None, None, m["backend"], None
    return None, None, None, None, None


def load_report(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        doc = json.loads(raw)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    except ValueError as e:
        raise BadInput(f"{path}: not JSON: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("context"), dict) \
            or not isinstance(doc.get("results"), dict):
        raise BadInput(f"{path}: not a report.json of bench/report.py (no 'context' and 'results' objects)")
    if "anx_threads" not in doc["context"]:
        raise BadInput(f"{path}: not an anx report (its context has no anx_threads)")
    return doc, hashlib.sha256(raw).hexdigest()


def record_one(db, dbpath, path):
    doc, digest = load_report(path)
    ctx, results = doc["context"], doc["results"]
    begin(db, dbpath)
    try:
        old = db.execute("SELECT id FROM runs WHERE sha256 = ?", (digest,)).fetchone()
        if old:
            db.execute("ROLLBACK")
            print(f"history.py: {path}: already recorded as run {old[0]}")
            return
        key = ctx.get("anx_machine_key")
        date = ctx.get("date")
        if key:
            db.execute("INSERT OR IGNORE INTO machines (machine_key, first_seen) VALUES (?, ?)", (key, date))
            db.execute("UPDATE machines SET vendor = ?, model = ?, fms = ?, isa_flags = ?, cpus_online = ?, "
                       "caches = ?, memory_gib = ?, kernel = ?, last_seen = ? WHERE machine_key = ?",
                       (ctx.get("anx_cpu_vendor"), ctx.get("anx_cpu_model"), ctx.get("anx_cpu_fms"),
                        ctx.get("anx_isa_flags"), first_number(ctx.get("anx_cpus_online")),
                        ctx.get("anx_caches"), first_number(ctx.get("anx_memory_gib")), ctx.get("anx_kernel"),
                        date, key))
        peak = report.best_peak(ctx)
        cur = db.execute(
            "INSERT INTO runs (machine_key, date, git_commit, git_dirty, threads, host, fma_peak_gflops, "
            "triad_gbytes_per_s, source, sha256, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, date, ctx.get("anx_git_commit"), ctx.get("anx_git_dirty"), first_number(ctx.get("anx_threads")),
             ctx.get("host_name"), peak * 1e-9 if peak else None, first_number(ctx.get("anx_triad_gbytes_per_s")),
             os.path.abspath(path), digest, json.dumps(ctx, sort_keys=True)))
        run_id = cur.lastrowid
        for name, res in sorted(results.items()):
            op, d, layer, backend, batch = parse_name(name)
            db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, name, op, d, layer, backend, batch, res.get("time_ms"), res.get("FLOP/s"),
                        res.get("bytes/s"), res.get("peak%"), res.get("images/s"), res.get("error")))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    what = f"machine {key}" if key else "no fingerprint: not usable as a baseline"
    print(f"history.py: {path}: run {run_id} ({len(results)} results, {what})")


def cmd_record(a):
    db = open_db(a.db, create=True)
    for path in a.reports:
        record_one(db, a.db, path)
    return 0


# ---------------------------------------------------------------- trend


def cmd_trend(a):
    try:
        rx = re.compile(a.bench)
    except re.error as e:
        raise BadInput(f"--bench: '{a.bench}' is not a regex: {e}")
    db = open_db(a.db, create=False)
    check_ours(db, a.db)
    rows = db.execute("SELECT r.id, r.date, r.git_commit, COALESCE(r.machine_key, 'none'), s.name, s.time_ms "
                      "FROM results s JOIN runs r ON r.id = s.run_id WHERE s.time_ms IS NOT NULL "
                      "ORDER BY r.date, r.id").fetchall()
    rows = [r for r in rows if rx.search(r[4]) and (not a.machine or r[3] == a.machine)]
    if not rows:
        raise BadInput(f"--bench '{a.bench}'" + (f" --machine {a.machine}" if a.machine else "")
                       + f": no timed result in {a.db}")
    machines = sorted({r[3] for r in rows})
    if len(machines) > 1:
        raise BadInput(f"--bench '{a.bench}' matches runs of {len(machines)} machines ({', '.join(machines)}): "
                       "times of different machines do not compare; pick one with --machine")
    names = sorted({r[4] for r in rows})
    if len(names) > a.max_lines:
        raise BadInput(f"--bench '{a.bench}' matches {len(names)} benchmarks; at most --max-lines "
                       f"{a.max_lines} fit one chart")
    runs = []  # (run id, label) in date order
    for r in rows:
        if not runs or runs[-1][0] != r[0]:
            commit = (r[2] or "")[:8] or "?"
            runs.append((r[0], f"{commit} {(r[1] or '?')[:10]}"))
    t = {(r[0], r[4]): r[5] for r in rows}
    print(f"# median ms per call on machine {machines[0]}, oldest run first")
    print("| run | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for rid, label in runs:
        print(f"| {label} | " + " | ".join(f"{t[(rid, n)]:.4g}" if (rid, n) in t else "" for n in names) + " |")
    draw_trend(a.out, runs, names, t, machines[0])
    return 0


def draw_trend(out, runs, names, t, machine):
    gp = shutil.which("gnuplot")
    if not gp:
        print("history.py: gnuplot not found (apt-get install gnuplot-nox): no PNG", file=sys.stderr)
        return
    dat = out + ".dat"
    with open(dat, "w") as f:
        for i, (rid, label) in enumerate(runs):
            f.write(f"{i} \"{label}\" " + " ".join(f"{t[(rid, n)]:.6g}" if (rid, n) in t else "?" for n in names)
                    + "\n")
    plots = ", ".join(f"'{dat}' using 1:{k + 3}:xtic(2) with linespoints title '{n}'" for k, n in enumerate(names))
    script = "\n".join([
        "set terminal pngcairo size 1200,600 noenhanced font ',10'" if report._has_cairo(gp)
        else "set terminal png size 1200,600 noenhanced",
        f"set output '{out}.tmp'", f"set title 'anx benchmark history, machine {machine} (median ms per call)'",
        "set datafile missing '?'", "set logscale y", "set ylabel 'ms per call'", "set xtics rotate by 45 right",
        "set grid", "set key outside right", "set bmargin 8", f"plot {plots}", ""])
    r = subprocess.run([gp], input=script, text=True, capture_output=True)
    os.remove(dat)
    if r.returncode != 0 or not os.path.exists(out + ".tmp"):
        raise BadInput(f"{out}: gnuplot failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else '?'}")
    os.replace(out + ".tmp", out)
    print(f"history.py: wrote {out}", file=sys.stderr)


# ---------------------------------------------------------------- fleet


def cmd_fleet(a):
    db = open_db(a.db, create=False)
    if not check_ours(db, a.db):
        raise BadInput(f"{a.db}: an empty database, not an anx history")
    # each machine's newest run that has a step result (runs without fingerprint: machine 'none')
    rows = db.execute("""
        SELECT COALESCE(r.machine_key, 'none'), m.model, m.isa_flags, r.host, r.threads, r.fma_peak_gflops,
               r.git_commit, r.date, s.backend, s.batch, s.images_per_s, s.peak_pct, s.error
        FROM runs r LEFT JOIN machines m ON m.machine_key = r.machine_key
        JOIN results s ON s.run_id = r.id AND s.op = 'step'
        WHERE r.id = (SELECT r2.id FROM runs r2 JOIN results s2 ON s2.run_id = r2.id AND s2.op = 'step'
                      WHERE COALESCE(r2.machine_key, 'none') = COALESCE(r.machine_key, 'none')
                        AND r2.threads IS r.threads
                      ORDER BY r2.date DESC, r2.id DESC LIMIT 1)
        ORDER BY 1, s.batch""").fetchall()
    if not rows:
        raise BadInput(f"{a.db}: no run with a whole-step benchmark recorded")
    # columns in the registry order of the newest run (its anx_backends), then the rest by name
    newest = db.execute("SELECT context FROM runs ORDER BY date DESC, id DESC LIMIT 1").fetchone()
    backends = report.backend_order(json.loads(newest[0]) if newest and newest[0] else {}, {r[8] for r in rows})
    table = {}
    for key, model, isa, host, threads, peak, commit, date, be, batch, ips, pct, err in rows:
        who = (key, threads, batch)
        table.setdefault(who, {"desc": (model or f"(no fingerprint) host {host}", isa, peak, commit, date)})
        table[who][be] = "skipped" if err and err.startswith("skipped") else "FAILED" if err else \
            f"{ips:.2f} img/s · {pct:.0f}%" if ips is not None and pct is not None else "?"
    print("# fleet: each machine's newest run; cells: step images/s · % of that machine's measured FMA peak")
    print("")
    print("| machine | CPU | threads | peak GF/s | run | batch | " + " | ".join(backends) + " |")
    print("|---|---|---:|---:|---|---:|" + "---:|" * len(backends))
    for (key, threads, batch), row in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2] or 0)):
        model, isa, peak, commit, date = row["desc"]
        peak_s = f"{peak:.0f}" if peak else "?"
        print(f"| {key} | {model} | {threads or 0:.0f} | {peak_s} | {(commit or '?')[:8]} {(date or '?')[:10]} | "
              f"{batch} | " + " | ".join(row.get(be, "") for be in backends) + " |")
    return 0


# ---------------------------------------------------------------- main


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        print(f"history.py: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def main():
    ap = Parser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    p = sub.add_parser("record", help="append report.json runs to DB (created when missing)")
    p.add_argument("db", metavar="DB")
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p = sub.add_parser("trend", help="time per commit of the benchmarks matching --bench")
    p.add_argument("db", metavar="DB")
    p.add_argument("--bench", required=True, help="regex over benchmark names")
    p.add_argument("--machine", help="machine_key ('none': the runs without fingerprint)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--max-lines", type=int, default=12, help="most benchmarks on one chart (default 12)")
    p = sub.add_parser("fleet", help="machines x backends: step img/s and %% of peak")
    p.add_argument("db", metavar="DB")
    a = ap.parse_args()
    try:
        return {"record": cmd_record, "trend": cmd_trend, "fleet": cmd_fleet}[a.cmd](a)
    except BadInput as e:
        print(f"history.py: {e}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as e:
        print(f"history.py: {a.db}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
