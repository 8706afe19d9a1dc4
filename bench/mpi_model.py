#!/usr/bin/env python3
"""The alpha-beta model of docs/mpi.md: data-parallel AlexNet's scaling efficiency on P nodes.

Measured compute (anx-bench JSON: the layer rows and the step row of one backend and batch, the
batch per node) + a ring allreduce over a link of alpha latency and beta bytes/s:

    T_ar(n bytes, P) = 2 (P-1) alpha + 2 (P-1)/P n / beta

Each layer's bucket (weight + bias) is ready when its bwd_weights ends (the backward pass runs
the layers in reverse, bwd_weights then bwd_data, as core/net.c does) and the buckets go over the
link one after the other.  Two progress cases bound what Open MPI does:
  background  the exchange runs beside the backward pass (a progress thread, or RDMA);
  calls       Open MPI 4.1.4 progresses a non-blocking allreduce only inside MPI calls, and anx
              makes one (MPI_Testall) after every layer: each in-flight bucket moves at most one
              of its 2 (P-1) ring rounds per call; what is left runs in the final MPI_Waitall.
Exposed = what runs after the backward pass; efficiency (weak scaling: the batch per node fixed)
= T_step / (T_step + exposed).

    python3 bench/mpi_model.py REPORT.json --backend avx2 --batch 32 [--speedup 32]
REPORT.json: anx-bench --benchmark_out (Google Benchmark JSON) or bench/results/*/report.json.
"""
import argparse
import json
import sys

# core/model.c's AlexNet(3, 1000): the layers with weights and their bucket sizes (floats),
# and the backward pass's order of (tag, direction) as core/net.c runs it.
BUCKETS = {"conv1": 34944, "conv2": 614656, "conv3": 885120, "conv4": 1327488, "conv5": 884992,
           "fc6": 37752832, "fc7": 16781312, "fc8": 4097000}
BACKWARD = [("loss", "loss_bwd_data"), ("fc8", "linear_bwd_weights"), ("fc8", "linear_bwd_data"),
            ("drop7", "dropout_bwd_data"), ("relu7", "relu_bwd_data"), ("fc7", "linear_bwd_weights"),
            ("fc7", "linear_bwd_data"), ("drop6", "dropout_bwd_data"), ("relu6", "relu_bwd_data"),
            ("fc6", "linear_bwd_weights"), ("fc6", "linear_bwd_data"), ("pool3", "maxpool_bwd_data"),
            ("relu5", "relu_bwd_data"), ("conv5", "conv2d_bwd_weights"), ("conv5", "conv2d_bwd_data"),
            ("relu4", "relu_bwd_data"), ("conv4", "conv2d_bwd_weights"), ("conv4", "conv2d_bwd_data"),
            ("relu3", "relu_bwd_data"), ("conv3", "conv2d_bwd_weights"), ("conv3", "conv2d_bwd_data"),
            ("pool2", "maxpool_bwd_data"), ("relu2", "relu_bwd_data"), ("conv2", "conv2d_bwd_weights"),
            ("conv2", "conv2d_bwd_data"), ("pool1", "maxpool_bwd_data"), ("relu1", "relu_bwd_data"),
            ("conv1", "conv2d_bwd_weights")]
LINKS = {"10 Gb/s": (25e-6, 10e9 / 8), "100 Gb/s": (2e-6, 100e9 / 8)}  # alpha (s), beta (bytes/s)


def load_times(path):
    """{benchmark name without /real_time: seconds} of a Google Benchmark or report JSON."""
    d = json.load(open(path))
    out = {}
    if "benchmarks" in d:
        for b in d["benchmarks"]:
            if b.get("error_occurred") or (b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median"):
                continue
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
            out[b.get("run_name", b["name"]).replace("/real_time", "")] = b["real_time"] * scale
    else:
        for name, v in d["results"].items():
            if "time_ms" in v:
                out[name.replace("/real_time", "")] = v["time_ms"] * 1e-3
    return out


def backward_timeline(times, backend, batch):
    """[(seconds into the backward pass at which the layer ends, tag, kind)]."""
    t, line = 0.0, []
    for tag, kind in BACKWARD:
        name = "%s/%s/%s/batch:%d" % (kind, tag, backend, batch)
        if name not in times:
            sys.exit("mpi_model.py: %s has no row %s" % (args.report, name))
        t += times[name]
        line.append((t, tag, kind))
    return line


def exposed(line, P, alpha, beta, progress):
    """Seconds of the exchange left after the backward pass."""
    ready = [(t, BUCKETS[tag] * 4.0) for t, tag, kind in line if kind.endswith("bwd_weights")]
    end = line[-1][0]
    if progress == "background":
        free = 0.0
        for t, n in ready:
            free = max(free, t) + 2 * (P - 1) * alpha + 2.0 * (P - 1) / P * n / beta
        return max(0.0, free - end)
    rounds = 2 * (P - 1)
    left = [rounds] * len(ready)       # rounds still to run per bucket
    busy = [0.0] * len(ready)          # when its running round ends
    for t, _, _ in line:               # one MPI call after every layer
        for k, (tr, n) in enumerate(ready):
            if tr <= t and left[k] and busy[k] <= t:
                busy[k] = max(t, busy[k]) + alpha + n / P / beta
                left[k] -= 1
    tail = max([0.0] + [b - end for b in busy])
    return tail + sum(left[k] * (alpha + n / P / beta) for k, (_, n) in enumerate(ready))


def main():
    global args
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report")
    ap.add_argument("--backend", required=True, help="the backend whose step and backward rows the report holds")
    ap.add_argument("--batch", type=int, default=32, help="images per node")
    ap.add_argument("--speedup", type=float, default=1.0,
                    help="a node computes this many times faster than the measured one (e.g. its cores / the threads measured)")
    args = ap.parse_args()
    times = {k: v / args.speedup for k, v in load_times(args.report).items()}
    step = times.get("step/%s/batch:%d" % (args.backend, args.batch))
    if step is None:
        sys.exit("mpi_model.py: %s has no row step/%s/batch:%d" % (args.report, args.backend, args.batch))
    line = backward_timeline(times, args.backend, args.batch)
    total = sum(BUCKETS.values()) * 4.0
    print("%s, %d images per node, compute / %g: step %.3f s, backward %.3f s, gradients %.1f MB"
          % (args.backend, args.batch, args.speedup, step, line[-1][0], total / 1e6))
    print("| nodes | link | allreduce s | exposed s (background) | eff. | exposed s (MPI calls) | eff. |")
    print("|---|---|---|---|---|---|---|")
    for P in (2, 4, 8, 16, 32, 64):
        for link, (alpha, beta) in LINKS.items():
            ar = sum(2 * (P - 1) * alpha + 2.0 * (P - 1) / P * n * 4.0 / beta for n in BUCKETS.values())
            eb = exposed(line, P, alpha, beta, "background")
            ec = exposed(line, P, alpha, beta, "calls")
            print("| %d | %s | %.3f | %.3f | %.0f%% | %.3f | %.0f%% |"
                  % (P, link, ar, eb, 100 * step / (step + eb), ec, 100 * step / (step + ec)))


if __name__ == "__main__":
    main()
