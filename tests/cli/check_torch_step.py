#!/usr/bin/python3
"""check_torch_step.py: one `anx step` against PyTorch's float64 computation of the same step.

Run by hand with Debian's torch (not by ctest: the build and the tests never need Python):

    /usr/bin/python3 tests/cli/check_torch_step.py --anx /work/build-io/anx [--backend ref]

It builds the tutorial's Alexnet(1, 10) (PyTorch default init, torch.manual_seed(--seed)),
writes its state_dict and a batch of 3 (input, target, both dropout masks) to safetensors with
its own tiny writer (json + struct: torch 1.13 has no safetensors package), runs

    anx step --backend B --in-dim 1 --classes 10 --batch 3 --weights W --input X --dump OUT

reads OUT with its own reader, and compares every tensor with the same step computed in
float64: the 20 layer outputs (ReLU out of place, dropout = the given mask applied by hand),
the loss, dLoss/d(output) of every layer, every parameter gradient, and torch.optim.Adam
(lr 1e-3) in float64 for the moments and the updated parameters.  The updated parameters
are also loaded into the tutorial's model with load_state_dict(strict=True).

Error measure per tensor: max |anx - ref| and that over max |ref| ("scaled").  Bounds:
float32 through this network's depth (5 convs, 3 linears, K up to 9216) gives scaled errors
around sqrt(K) * 2^-24 * depth ~ 1e-4 at worst; we fail above 1e-3 scaled.  The updated
parameter of Adam's first step is p - lr * g / (|g| + eps): where the float32 gradient is
within its own error of 0, its sign (and so the step of size lr) can legitimately flip, so
parameters are compared tightly against float64 Adam applied to anx's own float32 gradient
and, against the full float64 step, by the count of such flips.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class Alexnet(nn.Module):
    """The tutorial's model, layer for layer."""

    def __init__(self, in_dim, n_class):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels=in_dim, out_channels=96, kernel_size=11, stride=4, padding=0),
            nn.ReLU(True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, stride=1, padding=2),
            nn.ReLU(True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, stride=1, padding=1),
            nn.ReLU(True),
            nn.Conv2d(384, 384, 3, stride=1, padding=1),
            nn.ReLU(True),
            nn.Conv2d(384, 256, 3, stride=1, padding=1),
            nn.ReLU(True),
            nn.MaxPool2d(3, 2))
        self.fc = nn.Sequential(
            nn.Linear(9216, 4096),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(4096, n_class))

    def forward(self, x):
        x = self.conv(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


# torchsummary names of the 20 layers, in order
LAYERS = ["Conv2d-1", "ReLU-2", "MaxPool2d-3", "Conv2d-4", "ReLU-5", "MaxPool2d-6", "Conv2d-7", "ReLU-8",
          "Conv2d-9", "ReLU-10", "Conv2d-11", "ReLU-12", "MaxPool2d-13", "Linear-14", "ReLU-15", "Dropout-16",
          "Linear-17", "ReLU-18", "Dropout-19", "Linear-20"]

DTYPES = {"F32": ("<f4", 4), "F64": ("<f8", 8), "I64": ("<i8", 8)}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, numpy array float32/int64)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors:
        dt = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64"}[a.dtype]
        b = np.ascontiguousarray(a).astype(DTYPES[dt][0], copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """name -> numpy array, and the metadata; checks offsets cover the data without overlap."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode())
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {})
    out, spans = {}, []
    for name, h in header.items():
        b, e = h["data_offsets"]
        fmt, size = DTYPES[h["dtype"]]
        count = int(np.prod(h["shape"])) if h["shape"] else 1
        assert e - b == count * size and 0 <= b <= e <= len(data), name
        out[name] = np.frombuffer(data[b:e], dtype=fmt).reshape(h["shape"])
        spans.append((b, e))
    spans.sort()
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), "overlapping tensors"
    return out, meta


def reference_step(state, x, target, masks, in_dim, n_class, lr):
    """The step in float64: outputs, dLoss/d(outputs), loss, grads, Adam state and new params."""
    m = Alexnet(in_dim, n_class).double()
    m.load_state_dict({k: torch.from_numpy(v).double() for k, v in state.items()})
    mods = list(m.conv) + list(m.fc)
    h = torch.from_numpy(x).double()
    outs = []
    mask_iter = iter(masks)
    for i, mod in enumerate(mods):
        if i == 13:
            h = h.reshape(h.shape[0], -1)  # the flatten view before Linear-14
        if isinstance(mod, nn.ReLU):
            h = torch.relu(h)  # out of place: each layer's output stays as it was
        elif isinstance(mod, nn.Dropout):
            h = h * torch.from_numpy(next(mask_iter)).double()
        else:
            h = mod(h)
        h.retain_grad()
        outs.append(h)
    loss = F.cross_entropy(h, torch.from_numpy(target))
    loss.backward()
    ref = {"loss": loss.detach().numpy()}
    for name, o in zip(LAYERS, outs):
        ref["out." + name] = o.detach().numpy()
        ref["grad_out." + name] = o.grad.numpy()
    params = dict(m.named_parameters())
    for k, p in params.items():
        ref["grad." + k] = p.grad.detach().numpy().copy()
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    opt.step()
    for k, p in params.items():
        ref[k] = p.detach().numpy().copy()
        ref["adam.exp_avg." + k] = opt.state[p]["exp_avg"].numpy().copy()
        ref["adam.exp_avg_sq." + k] = opt.state[p]["exp_avg_sq"].numpy().copy()
    return ref


def adam_first_step(p0, g, lr):
    """PyTorch's Adam, t = 1, in float64 on a given gradient."""
    g = g.astype(np.float64)
    m, v = 0.1 * g, 0.001 * g * g
    return p0.astype(np.float64) - (lr / 0.1) * m / (np.sqrt(v) / np.sqrt(0.001) + 1e-8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anx", default=os.path.join(os.path.dirname(__file__), "../../build/anx"))
    ap.add_argument("--backend", default="ref")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--keep", help="directory to keep the files in")
    args = ap.parse_args()
    in_dim, n_class, B, lr = 1, 10, args.batch, 1e-3

    torch.manual_seed(args.seed)
    model = Alexnet(in_dim, n_class)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    x = torch.rand(B, in_dim, 227, 227).numpy()
    target = torch.randint(0, n_class, (B,)).numpy().astype(np.int64)
    masks = [((torch.rand(B, 4096) >= 0.5).float() * 2.0).numpy() for _ in range(2)]

    work = args.keep or tempfile.mkdtemp(prefix="anx_torch_step_")
    os.makedirs(work, exist_ok=True)
    wpath, xpath, dpath = (os.path.join(work, n) for n in ("weights.safetensors", "input.safetensors",
                                                           "out.safetensors"))
    write_safetensors(wpath, list(state.items()), {"writer": "check_torch_step.py"})
    write_safetensors(xpath, [("input", x), ("target", target), ("mask.Dropout-16", masks[0]),
                              ("mask.Dropout-19", masks[1])])
    cmd = [args.anx, "step", "--backend", args.backend, "--in-dim", str(in_dim), "--classes", str(n_class),
           "--batch", str(B), "--weights", wpath, "--input", xpath, "--dump", dpath]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)

    dump, meta = read_safetensors(dpath)
    print("metadata:", meta)
    ref = reference_step(state, x, target, masks, in_dim, n_class, lr)

    failures = []
    print("%-34s %12s %12s %10s" % ("tensor", "max|ref|", "max|err|", "scaled"))
    for name in ["input", "target", "mask.Dropout-16", "mask.Dropout-19"]:
        given = {"input": x, "target": target, "mask.Dropout-16": masks[0], "mask.Dropout-19": masks[1]}[name]
        same = np.array_equal(dump[name], given)
        print("%-34s %s" % (name, "identical to the input file" if same else "DIFFERS from the input file"))
        if not same:
            failures.append(name)
    for name, r in ref.items():
        if name not in dump:
            failures.append(name + " (missing)")
            print("%-34s MISSING" % name)
            continue
        a = dump[name].astype(np.float64)
        if a.shape != r.shape and not (a.size == 1 and r.size == 1):
            failures.append(name + " (shape)")
            print("%-34s shape %s, want %s" % (name, a.shape, r.shape))
            continue
        a, r = a.reshape(r.shape), r.astype(np.float64)
        err, mag = float(np.abs(a - r).max()), float(np.abs(r).max())
        scaled = err / mag if mag > 0 else err
        note = ""
        if name in state:  # updated parameter
            own = adam_first_step(state[name], dump["grad." + name], lr)
            own_err = float(np.abs(a - own).max())
            flips = int((np.abs(a - r) > lr).sum())
            note = "  vs Adam(anx grad) %.2e; %d sign flips of tiny grads" % (own_err, flips)
            # one float32 rounding of p plus a few of the update: 2^-24 (|p| + 8 lr) per element
            if own_err > 2.0 ** -24 * (np.abs(own).max() + 8 * lr) * 2:
                failures.append(name)
        elif scaled > 1e-3:
            failures.append(name)
        print("%-34s %12.4e %12.4e %10.2e%s" % (name, mag, err, scaled, note))

    sd = {k: torch.from_numpy(dump[k].copy()) for k in state}
    Alexnet(in_dim, n_class).load_state_dict(sd, strict=True)
    print("load_state_dict(strict=True) of the updated parameters into the tutorial's model: ok")
    if not args.keep:
        for p in (wpath, xpath, dpath):
            os.unlink(p)
        os.rmdir(work)
    if failures:
        print("FAILED:", ", ".join(failures))
        return 1
    print("PASSED: every tensor of the dump matches PyTorch's float64 step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
