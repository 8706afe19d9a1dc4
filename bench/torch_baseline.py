#!/usr/bin/python3
"""The PyTorch baseline of anx-bench: the same Alexnet(3, 1000), the same layers, directions,
batches, whole step and Adam, timed the same way (wall clock, iterations sized to a minimum time,
the median of several repetitions), written as Google Benchmark JSON with backend "torch", so
bench/report.py puts PyTorch next to anx's backends.

Each (layer, direction) calls the ATen op autograd itself calls for it in PyTorch 1.13:
convolution_backward with output_mask (input) / (weight, bias) for conv bwd_data / bwd_weights,
mm for Linear, threshold_backward for ReLU, max_pool2d_with_indices(_backward) for MaxPool,
a multiply by a fixed mask for Dropout (anx's masks are given, not drawn), log_softmax + nll_loss
and their backward ops for the loss.

Needs Debian's python3-torch (run it with /usr/bin/python3).
  torch_baseline.py --out torch.json [--batches 2,32] [--threads N] [--repetitions 3]
                    [--min-time 0.05] [--filter REGEX]
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Alexnet(nn.Module):
    """The tutorial's model (DESIGN.md section 1), module for module."""

    def __init__(self, in_dim, n_class):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_dim, 96, 11, 4, 0), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, 1, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(3, 2))
        self.fc = nn.Sequential(
            nn.Linear(9216, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, n_class))

    def forward(self, x):
        x = self.conv(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


# anx's benchmark tags in model order (include/anx/layer.h: tag)
TAGS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4",
        "conv5", "relu5", "pool3", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
OPS = {nn.Conv2d: "conv2d", nn.ReLU: "relu", nn.MaxPool2d: "maxpool", nn.Linear: "linear",
       nn.Dropout: "dropout"}


def flops(op, x, y, mod):
    """FLOPs of one call, counted as anx_desc_flops counts them (DESIGN.md section 6)."""
    if op == "conv2d":
        oc, ic, kh, kw = mod.weight.shape
        return 2.0 * y.numel() * ic * kh * kw
    if op == "linear":
        return 2.0 * y.numel() * mod.in_features
    if op == "maxpool":
        return float(y.numel() * mod.kernel_size * mod.kernel_size)
    return float(y.numel())


def nbytes(op, d, x, y, w_numel, b_numel):
    """Bytes of the plain tensors one call reads and writes once (bench_layers.c: layer_bytes)."""
    src, dst = x.numel(), y.numel()
    if d == "fwd":
        f = src + w_numel + b_numel + dst + (dst if op == "dropout" else 0)
    elif d == "bwd_data":
        f = dst + src + (w_numel if op in ("conv2d", "linear") else dst if op == "dropout" else src)
    else:
        f = src + dst + w_numel + b_numel
    return 4.0 * f


def time_fn(fn, min_time, reps):
    """Google Benchmark's way: grow the iteration count until one run lasts min_time, then time
    `reps` runs of that many iterations; returns (median seconds per iteration, iterations)."""
    fn()  # warm-up: allocations, oneDNN primitive creation
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time or n >= 1 << 30:
            break
        n = max(n + 1, min(n * 10, int(n * 1.4 * min_time / max(t, 1e-9))))
    times = [t / n]
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times), n


def layer_cases(model, batch, gen):
    """(name, fn, flops, bytes) for every layer x direction, with shapes from a real forward."""
    x = torch.rand(batch, 3, 227, 227, generator=gen)
    acts = []
    mods = list(model.conv) + list(model.fc)
    h = x
    with torch.no_grad():
        for i, m in enumerate(mods):
            if i == len(model.conv):
                h = h.reshape(batch, -1)
            inp = h.clone()
            if isinstance(m, nn.Dropout):
                out = inp.clone()  # the mask is applied below
            else:
                out = m(inp.clone()) if isinstance(m, nn.ReLU) else m(inp)
            acts.append((inp, out))
            h = out
    cases = []
    for tag, m, (xin, yout) in zip(TAGS, mods, acts):
        op = OPS[type(m)]
        gy = torch.rand(yout.shape, generator=gen) * 2 - 1
        name = lambda d: f"{op}_{d}/{tag}/torch/batch:{batch}/real_time"  # noqa: E731
        w_numel = m.weight.numel() if hasattr(m, "weight") else 0
        b_numel = m.bias.numel() if hasattr(m, "bias") else 0
        fl = flops(op, xin, yout, m)
        dirs = []
        if op == "conv2d":
            w, b = m.weight.detach(), m.bias.detach()
            st, pd = list(m.stride), list(m.padding)
            cb = torch.ops.aten.convolution_backward
            dirs = [("fwd", lambda x=xin, w=w, b=b, st=st, pd=pd: F.conv2d(x, w, b, st, pd)),
                    ("bwd_data", lambda gy=gy, x=xin, w=w, b=b, st=st, pd=pd: cb(
                        gy, x, w, [b.numel()], st, pd, [1, 1], False, [0, 0], 1, [True, False, False])),
                    ("bwd_weights", lambda gy=gy, x=xin, w=w, b=b, st=st, pd=pd: cb(
                        gy, x, w, [b.numel()], st, pd, [1, 1], False, [0, 0], 1, [False, True, True]))]
        elif op == "linear":
            w, b = m.weight.detach(), m.bias.detach()
            dirs = [("fwd", lambda x=xin, w=w, b=b: F.linear(x, w, b)),
                    ("bwd_data", lambda gy=gy, w=w: torch.mm(gy, w)),
                    ("bwd_weights", lambda gy=gy, x=xin: (torch.mm(gy.t(), x), gy.sum(0)))]
        elif op == "relu":
            xr = xin.clone()  # the tutorial's ReLU(inplace=True): in place on a scratch copy
            dirs = [("fwd", lambda x=xr: torch.relu_(x)),
                    ("bwd_data", lambda gy=gy, y=yout: torch.ops.aten.threshold_backward(gy, y, 0))]
        elif op == "maxpool":
            k, s = [m.kernel_size] * 2, [m.stride] * 2
            _, idx = torch.ops.aten.max_pool2d_with_indices(xin, k, s, [0, 0], [1, 1], False)
            dirs = [("fwd", lambda x=xin, k=k, s=s: torch.ops.aten.max_pool2d_with_indices(
                        x, k, s, [0, 0], [1, 1], False)),
                    ("bwd_data", lambda gy=gy, x=xin, k=k, s=s, idx=idx:
                        torch.ops.aten.max_pool2d_with_indices_backward(gy, x, k, s, [0, 0], [1, 1], False, idx))]
        elif op == "dropout":
            mask = (torch.rand(yout.shape, generator=gen) >= m.p).float() / (1 - m.p)
            dirs = [("fwd", lambda x=xin, mask=mask: x * mask),
                    ("bwd_data", lambda gy=gy, mask=mask: gy * mask)]
        for d, fn in dirs:
            cases.append((name(d), fn, fl, nbytes(op, d, xin, yout, w_numel, b_numel)))
    # the loss on [n, 1000] logits
    logits = acts[-1][1]
    target = torch.randint(0, logits.shape[1], (batch,), generator=gen)
    lsm = torch.log_softmax(logits, 1)
    one = torch.ones(())

    def loss_bwd(lsm=lsm, target=target):
        g = torch.ops.aten.nll_loss_backward(one, lsm, target, None, 1, -100, torch.tensor(float(batch)))
        return torch.ops.aten._log_softmax_backward_data(g, lsm, 1, torch.float32)

    n_logits = float(logits.numel())
    cases.append((f"loss_fwd/loss/torch/batch:{batch}/real_time",
                  lambda l=logits, t=target: F.nll_loss(torch.log_softmax(l, 1), t), n_logits,
                  4.0 * n_logits + 8.0 * batch))
    cases.append((f"loss_bwd_data/loss/torch/batch:{batch}/real_time", loss_bwd, n_logits,
                  8.0 * n_logits + 8.0 * batch))
    return cases, x, target


def step_flops(cases):
    """FLOPs of one training step: as bench_step.c counts them (no bwd_data of the first layer)."""
    return sum(f for name, _, f, _ in cases if not name.startswith("conv2d_bwd_data/conv1/"))


def record(name, sec, iters, reps, counters):
    row = {"name": name + ("_median" if reps > 1 else ""), "run_name": name,
           "run_type": "aggregate" if reps > 1 else "iteration", "repetitions": reps,
           "threads": 1, "iterations": iters, "real_time": sec * 1e3, "cpu_time": sec * 1e3,
           "time_unit": "ms"}
    if reps > 1:
        row["aggregate_name"] = "median"
    row.update({k: v / sec for k, v in counters.items()})
    return row


def cpu_capability():
    """The vector ISA ATen dispatches to ("AVX2"), from torch's build report."""
    m = re.search(r"CPU capability usage:\s*(\S+)", torch.__config__.show())
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write (Google Benchmark format)")
    ap.add_argument("--batches", default="2,32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--filter", default=".", help="regex on benchmark names")
    args = ap.parse_args()
    try:
        batches = [int(b) for b in args.batches.split(",")]
        if any(b < 1 for b in batches):
            raise ValueError
    except ValueError:
        print(f"torch_baseline.py: --batches: '{args.batches}' is not a comma list of batch sizes",
              file=sys.stderr)
        return 2
    if args.threads < 1 or args.repetitions < 1 or args.min_time < 0:
        print("torch_baseline.py: --threads and --repetitions must be >= 1, --min-time >= 0", file=sys.stderr)
        return 2
    flt = re.compile(args.filter)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1)
    model = Alexnet(3, 1000)
    rows = []

    def run(name, fn, counters):
        if not flt.search(name):
            return
        with torch.no_grad():
            sec, iters = time_fn(fn, args.min_time, args.repetitions)
        rows.append(record(name, sec, iters, args.repetitions, counters))
        print(f"{name:55s} {sec * 1e3:10.3f} ms", file=sys.stderr, flush=True)

    for batch in batches:
        cases, x, target = layer_cases(model, batch, gen)
        for name, fn, fl, by in cases:
            run(name, fn, {"FLOP/s": fl, "bytes/s": by})
        # the whole step, as anx_net_train_step: forward (train), loss, backward, Adam
        name = f"step/torch/batch:{batch}/real_time"
        if flt.search(name):
            net = Alexnet(3, 1000).train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

            def step(net=net, opt=opt, x=x, target=target):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(x), target)
                loss.backward()
                opt.step()

            sec, iters = time_fn(step, args.min_time, args.repetitions)
            rows.append(record(name, sec, iters, args.repetitions,
                               {"FLOP/s": step_flops(cases), "images/s": float(batch)}))
            print(f"{name:55s} {sec * 1e3:10.3f} ms", file=sys.stderr, flush=True)
            del net, opt
    # Adam alone over the 62.4M parameters
    name = "adam/torch/real_time"
    params = [p.detach().clone() for p in model.parameters()]
    for p in params:
        p.grad = torch.rand(p.shape, generator=gen) * 0.02 - 0.01
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    n = sum(p.numel() for p in params)
    run(name, opt.step, {"bytes/s": 7.0 * 4 * n, "params/s": float(n)})

    out = {"context": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "executable": "bench/torch_baseline.py",
                       "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
                       "torch_mkldnn": torch.backends.mkldnn.is_available(),
                       "torch_cpu_capability": cpu_capability(),
                       "library_build_type": "release"},
           "benchmarks": rows}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
