#!/usr/bin/python3
"""gen_golden.py -- golden data for `anx verify`, computed by PyTorch in float64.

Run with Debian's python3-torch (torch 1.13) and python3-numpy, nothing else:

    /usr/bin/python3 data/golden/gen_golden.py data/golden
    (cd data/golden && sha256sum -c SHA256SUMS)

Why float64: PyTorch's float32 CPU convolution *is* oneDNN, so a float32 golden would not be
independent of the onednn backend.  The model is evaluated in float64 from float32 starting
values (weights, input) and every stored tensor is the float64 result rounded once to float32.

Randomness is the counter-based RNG of include/anx/rng.h, reimplemented below with wrapping
uint64 arithmetic, so core/ regenerates the same init, input, targets and dropout masks from the
seed; the metadata holds an FNV-1a-64 of every parameter's float32 init bytes and a few raw RNG
values so that `anx verify` can prove the regeneration before trusting anything else.

Storage (DESIGN.md section 3; data/ <= 40 MB): a tensor is stored whole when it is small
(<= 65536 elements) or listed in the configuration's `whole` set because a layer-isolated check
feeds it to a kernel; otherwise it is stored as
    sample_index.<key>  I64 [S]  sorted, unique flat indices (stream "sample.<key>", S = 4096)
    sample.<key>        F32 [S]  the float32 values there
Every float tensor (whole or sampled, the loss included) also gets
    digest.<key>        F64 [8]  digest of the float64 values, before any rounding to float32
                                 (see digest() below), so that the float64 reference of `anx
                                 verify` (ref64) is held to float64 tolerances on the whole tensor
A parameter's grad, value, exp_avg and exp_avg_sq share the indices of stream "sample.<param>".
The file is byte-for-byte reproducible (1 thread, deterministic algorithms, sorted JSON keys).
"""
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

GENERATOR_VERSION = "2"
FORMAT = "anx-golden-2"  # 2: float64 digests of every float tensor, with sign projections
M64 = (1 << 64) - 1
SMALL = 65536  # elements: stored whole at or below this
S = 4096       # sampled elements of a large tensor

LAYERS = [  # (torchsummary name, kind, state_dict prefix)
    ("Conv2d-1", "conv", "conv.0"), ("ReLU-2", "relu", ""), ("MaxPool2d-3", "pool", ""),
    ("Conv2d-4", "conv", "conv.3"), ("ReLU-5", "relu", ""), ("MaxPool2d-6", "pool", ""),
    ("Conv2d-7", "conv", "conv.6"), ("ReLU-8", "relu", ""),
    ("Conv2d-9", "conv", "conv.8"), ("ReLU-10", "relu", ""),
    ("Conv2d-11", "conv", "conv.10"), ("ReLU-12", "relu", ""), ("MaxPool2d-13", "pool", ""),
    ("Linear-14", "linear", "fc.0"), ("ReLU-15", "relu", ""), ("Dropout-16", "dropout", ""),
    ("Linear-17", "linear", "fc.3"), ("ReLU-18", "relu", ""), ("Dropout-19", "dropout", ""),
    ("Linear-20", "linear", "fc.6"),
]
CONV = {"conv.0": (11, 4, 0), "conv.3": (5, 1, 2), "conv.6": (3, 1, 1), "conv.8": (3, 1, 1),
        "conv.10": (3, 1, 1)}
LR, BETA1, BETA2, EPS, P_DROP = 1e-3, 0.9, 0.999, 1e-8, 0.5


# ---- the RNG of include/anx/rng.h ------------------------------------------------------------
def mix(z):
    """splitmix64's finaliser on a uint64 array, mod 2^64."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def rng_key(seed, name, sub):
    k = int(mix(np.uint64((seed ^ fnv1a64(name.encode())) & M64)))
    return int(mix(np.uint64(k ^ sub)))


def rng_bits(key, n):
    return mix(np.uint64(key) ^ mix(np.arange(n, dtype=np.uint64)))


def rng_u01(key, n):
    return (rng_bits(key, n) >> np.uint64(40)).astype(np.float64) * (1.0 / 16777216.0)


def param_shapes(in_dim, n_class):
    shapes = []
    ic = in_dim
    for name, kind, prefix in LAYERS:
        if kind == "conv":
            oc = {"conv.0": 96, "conv.3": 256, "conv.6": 384, "conv.8": 384, "conv.10": 256}[prefix]
            k = CONV[prefix][0]
            shapes += [(prefix + ".weight", (oc, ic, k, k), ic * k * k), (prefix + ".bias", (oc,), ic * k * k)]
            ic = oc
        elif kind == "linear":
            fin = {"fc.0": 9216, "fc.3": 4096, "fc.6": 4096}[prefix]
            out = n_class if prefix == "fc.6" else 4096
            shapes += [(prefix + ".weight", (out, fin), fin), (prefix + ".bias", (out,), fin)]
    return shapes


def init_params(seed, in_dim, n_class):
    """PyTorch's default init drawn from the RNG: float32((2u - 1) * (1/sqrt(fan_in)))."""
    out = {}
    for name, shape, fan_in in param_shapes(in_dim, n_class):
        n = int(np.prod(shape))
        u = rng_u01(rng_key(seed, name, 0), n)
        out[name] = ((2.0 * u - 1.0) * (1.0 / math.sqrt(fan_in))).astype(np.float32).reshape(shape)
    return out


# ---- digests of the float64 values -----------------------------------------------------------
# digest.<key> = [count, sum x, sum x^2, max |x|, sum s_0 x, sum s_1 x, sum s_2 x, sum s_3 x]
# over the flat float64 tensor, where s_j(i) = +1 or -1 by bit 63 - j of bits(key(0,
# "digest.sign", 0), i): fixed random +-1 projections (one stream for every tensor), which core
# draws the same way.  A change of one element by d moves the sum and every projection by |d|,
# whatever the signs; four projections make a change that cancels in the sum (two elements
# moved in opposite directions) show in the others with probability 15/16.
# Sums accumulate in numpy's long double (x86-64: 64-bit mantissa) with its pairwise sum, then
# round once to float64: each stored sum is within 2^-53 |S| + 38 * 2^-64 * sum |terms| of the
# exact sum of its float64 terms (38: the additions an element sees in numpy's pairwise sum of
# up to 2^27 elements); x^2 is rounded to float64 first (as core does).
DIGEST_PROJECTIONS = 4
_sign_bits = np.zeros(0, dtype=np.uint64)


def sign_bits(n):
    global _sign_bits
    if _sign_bits.size < n:
        _sign_bits = rng_bits(rng_key(0, "digest.sign", 0), n)
    return _sign_bits[:n]


def digest(arr64):
    x = np.ascontiguousarray(np.asarray(arr64, dtype=np.float64)).reshape(-1)
    ld = np.longdouble
    out = [float(x.size), float(np.sum(x, dtype=ld)), float(np.sum(x * x, dtype=ld)),
           float(np.abs(x).max()) if x.size else 0.0]
    bits = sign_bits(x.size)
    for j in range(DIGEST_PROJECTIONS):
        neg = ((bits >> np.uint64(63 - j)) & np.uint64(1)).astype(bool)
        out.append(float(np.sum(np.where(neg, -x, x), dtype=ld)))
    return np.array(out)


def dropout_mask(seed, layer, step, shape):
    u = rng_u01(rng_key(seed, layer, step), int(np.prod(shape)))
    return np.where(u >= P_DROP, np.float32(1.0 / (1.0 - P_DROP)), np.float32(0.0)).reshape(shape)


# ---- the model in float64 --------------------------------------------------------------------
def forward_backward(params64, x64, target, masks):
    """One forward + backward; returns (loss, outs, grad_outs, grads), all float64 tensors."""
    outs, h = [], x64
    for name, kind, prefix in LAYERS:
        if kind == "conv":
            k, s, p = CONV[prefix]
            h = F.conv2d(h, params64[prefix + ".weight"], params64[prefix + ".bias"], stride=s, padding=p)
        elif kind == "relu":
            h = F.relu(h)
        elif kind == "pool":
            h = F.max_pool2d(h, 3, 2)
        elif kind == "linear":
            h = F.linear(h.reshape(h.shape[0], -1), params64[prefix + ".weight"], params64[prefix + ".bias"])
        elif kind == "dropout":
            h = h * masks[name]
        h.retain_grad()
        outs.append(h)
    loss = F.cross_entropy(h, target)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in params64.items()}
    return loss.detach(), [o.detach() for o in outs], [o.grad.detach() for o in outs], grads


def adam_update(p, g, m, v, t):
    """PyTorch 1.13 Adam (single tensor, no weight decay, no amsgrad), float64, in place."""
    m.mul_(BETA1).add_(g, alpha=1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    bc1 = 1 - BETA1 ** t
    bc2 = 1 - BETA2 ** t
    denom = (v.sqrt() / math.sqrt(bc2)).add_(EPS)
    p.addcdiv_(m, denom, value=-(LR / bc1))


def run_steps(cfg, steps):
    """Returns per-step records and the final state, everything float64 numpy."""
    seed, in_dim, n_class, batch, hw = cfg["seed"], cfg["in_dim"], cfg["n_class"], cfg["batch"], cfg["input_hw"]
    init = init_params(seed, in_dim, n_class)
    x = rng_u01(rng_key(seed, "input", 0), batch * in_dim * hw * hw).astype(np.float32)
    x = x.reshape(batch, in_dim, hw, hw)
    target = np.floor(rng_u01(rng_key(seed, "target", 0), batch) * n_class).astype(np.int64)
    p64 = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in init.items()}
    m64 = {k: torch.zeros_like(v) for k, v in p64.items()}
    v64 = {k: torch.zeros_like(v) for k, v in p64.items()}
    records = []
    for t in range(1, steps + 1):
        masks = {l: dropout_mask(seed, l, t, (batch, 4096)) for l in ("Dropout-16", "Dropout-19")}
        for v in p64.values():
            v.grad = None
        loss, outs, gouts, grads = forward_backward(
            p64, torch.tensor(x.astype(np.float64)), torch.tensor(target),
            {k: torch.tensor(v.astype(np.float64)) for k, v in masks.items()})
        with torch.no_grad():
            for k in p64:
                adam_update(p64[k], grads[k], m64[k], v64[k], t)
        records.append(dict(loss=loss.item(), outs=[o.numpy().copy() for o in outs],
                            gouts=[g.numpy().copy() for g in gouts],
                            grads={k: g.numpy().copy() for k, g in grads.items()}, masks=masks))
    state = {k: (p64[k].detach().numpy().copy(), m64[k].numpy().copy(), v64[k].numpy().copy()) for k in p64}
    return dict(init=init, input=x, target=target, records=records, state=state)


# ---- checks on the float32 rounding of the golden --------------------------------------------
def pool_tie_count(src64):
    """Windows of a 3x3/2 max pool whose largest value is not unique after rounding to float32
    but is unique in float64: there a float32 kernel fed the stored input picks another argmax
    than the float64 golden did, so the seed must avoid them (ties of exact zeros are the same
    in both and resolved alike: first index)."""
    x = torch.tensor(src64)
    x32 = torch.tensor(src64.astype(np.float32).astype(np.float64))
    u64 = F.unfold(x.reshape(-1, 1, *x.shape[2:]), 3, stride=2)
    u32 = F.unfold(x32.reshape(-1, 1, *x.shape[2:]), 3, stride=2)
    top64 = (u64 == u64.max(dim=1, keepdim=True).values).sum(dim=1)
    top32 = (u32 == u32.max(dim=1, keepdim=True).values).sum(dim=1)
    return int((top32 != top64).sum())


# ---- safetensors, by hand --------------------------------------------------------------------
class Store:
    def __init__(self):
        self.tensors = {}  # key -> (dtype, shape, bytes)
        self.meta = {}

    def add(self, key, arr, dtype):
        assert key not in self.tensors, key
        np_t = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}[dtype]
        a = np.ascontiguousarray(np.asarray(arr).astype(np_t))
        self.tensors[key] = (dtype, list(a.shape), a.tobytes())

    def add_f32(self, key, arr64, whole, sample_idx=None, stream=None):
        """The float64 digest; then rounds once to float32: whole, or a sample at sample_idx
        (or stream's indices)."""
        self.add("digest." + key, digest(arr64), "F64")
        a32 = np.asarray(arr64).astype(np.float32)
        if whole or a32.size <= SMALL:
            self.add(key, a32, "F32")
            return
        flat = a32.reshape(-1)
        if sample_idx is None:
            sample_idx = sample_indices(stream or key, flat.size)
        self.add("sample_index." + key, sample_idx, "I64")
        self.add("sample." + key, flat[sample_idx], "F32")

    def write(self, path):
        # 8-byte dtypes first so that every F64/I64 tensor is 8-byte aligned, then F32; each
        # group in key order; no holes (what the safetensors reference reader demands).
        order = sorted(self.tensors, key=lambda k: (self.tensors[k][0] == "F32", k))
        header, off, blobs = {}, 0, []
        for k in order:
            dtype, shape, data = self.tensors[k]
            header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
            off += len(data)
            blobs.append(data)
        header["__metadata__"] = {k: str(v) for k, v in self.meta.items()}
        hj = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)


def sample_indices(stream, count):
    """S sorted unique flat indices: bits(key("sample.<stream>", 0), i) mod count, first S distinct."""
    key = rng_key(0, "sample." + stream, 0)
    got, n = np.zeros(0, dtype=np.int64), 2 * S
    while True:
        cand = (rng_bits(key, n) % np.uint64(count)).astype(np.int64)
        _, first = np.unique(cand, return_index=True)
        got = cand[np.sort(first)]
        if got.size >= S:
            return np.sort(got[:S])
        n *= 2


def meta_common(st, cfg, run, steps):
    st.meta.update({
        "format": FORMAT, "generator": "data/golden/gen_golden.py v" + GENERATOR_VERSION,
        "torch": torch.__version__, "numpy": np.__version__, "dtype_compute": "float64",
        "seed": cfg["seed"], "in_dim": cfg["in_dim"], "n_class": cfg["n_class"],
        "batch": cfg["batch"], "input_hw": cfg["input_hw"], "steps": steps,
        "lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2), "eps": repr(EPS), "p_dropout": repr(P_DROP),
        "sample_size": S, "small_max": SMALL, "digest_projections": DIGEST_PROJECTIONS,
    })
    for k, v in run["init"].items():
        st.meta["init_fnv1a64." + k] = "%016x" % fnv1a64(v.astype("<f4").tobytes())
    key = rng_key(cfg["seed"], "input", 0)
    st.meta["rng_check"] = json.dumps({"name": "input", "sub": 0, "key": "%016x" % key,
                                       "bits": ["%016x" % int(b) for b in rng_bits(key, 4)]},
                                      sort_keys=True, separators=(",", ":"))
    # the input is regenerated from the seed; its digest and sample prove it
    st.add_f32("input", run["input"].astype(np.float64), whole=False)
    st.add("target", run["target"], "I64")


def store_params(st, run, prefix_key, values, whole_params=()):
    """values: name -> float64 array; shared sample indices per parameter."""
    for name, arr in values.items():
        st.add_f32(prefix_key + name, arr, whole=name in whole_params, sample_idx=None if arr.size <= SMALL
                   else sample_indices(name, arr.size))


def write_step(path, cfg, whole):
    """One training step: every layer's output and output gradient, parameter gradients, the
    parameters and Adam state after the update."""
    run = run_steps(cfg, 1)
    rec = run["records"][0]
    st = Store()
    meta_common(st, cfg, run, 1)
    st.meta["kind"] = "step"
    st.add_f32("loss", np.array(rec["loss"]), whole=True)
    for l in ("Dropout-16", "Dropout-19"):
        st.add("mask." + l, rec["masks"][l], "F32")
    ties = 0
    for i, (name, kind, _) in enumerate(LAYERS):
        st.add_f32("out." + name, rec["outs"][i], whole=("out." + name) in whole)
        st.add_f32("grad_out." + name, rec["gouts"][i], whole=("grad_out." + name) in whole)
        if kind == "pool":
            ties += pool_tie_count(rec["outs"][i - 1])
    if ties:
        sys.exit("gen_golden: %s: %d max-pool windows tie only after float32 rounding; pick another seed" % (path, ties))
    store_params(st, run, "grad.", rec["grads"])
    store_params(st, run, "", {k: s[0] for k, s in run["state"].items()})
    store_params(st, run, "adam.exp_avg.", {k: s[1] for k, s in run["state"].items()})
    store_params(st, run, "adam.exp_avg_sq.", {k: s[2] for k, s in run["state"].items()})
    st.write(path)


def write_steps(path, cfg, steps):
    """Consecutive steps from the same start: each loss, each step's masks and parameter
    gradients (sampled: Adam's t = 1..steps can then be checked in isolation), parameters and
    Adam state after the last step."""
    run = run_steps(cfg, steps)
    st = Store()
    meta_common(st, cfg, run, steps)
    st.meta["kind"] = "steps"
    for t, rec in enumerate(run["records"], 1):
        st.add_f32("step%d.loss" % t, np.array(rec["loss"]), whole=True)
        for l in ("Dropout-16", "Dropout-19"):
            st.add("step%d.mask.%s" % (t, l), rec["masks"][l], "F32")
        store_params(st, run, "step%d.grad." % t, rec["grads"])
    store_params(st, run, "", {k: s[0] for k, s in run["state"].items()})
    store_params(st, run, "adam.exp_avg.", {k: s[1] for k, s in run["state"].items()})
    store_params(st, run, "adam.exp_avg_sq.", {k: s[2] for k, s in run["state"].items()})
    st.write(path)


# What the layer-isolated checks feed to kernels and is too large to keep by default.  ReLU
# outputs after a conv and conv output gradients are not stored whole: core reconstructs them
# exactly (relu(x) commutes with rounding to float32; grad_out.conv = grad_out.relu * (out.relu > 0)).
WHOLE_RGB = {"out.Conv2d-1", "out.MaxPool2d-3", "out.Conv2d-4", "out.MaxPool2d-6", "out.Conv2d-7",
             "out.Conv2d-9", "out.Conv2d-11", "grad_out.ReLU-2", "grad_out.MaxPool2d-3",
             "grad_out.ReLU-5", "grad_out.MaxPool2d-6", "grad_out.ReLU-8", "grad_out.ReLU-10",
             "grad_out.ReLU-12"}
# Grayscale: what the 1-channel first conv needs for its weight gradient (its forward needs only
# the regenerated input and init); deeper layers are checked chained and on their small tensors.
WHOLE_GRAY = {"grad_out.Conv2d-1"}


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rgb = dict(seed=20240501, in_dim=3, n_class=5, batch=2, input_hw=227)
    gray = dict(seed=7, in_dim=1, n_class=7, batch=3, input_hw=227)
    jobs = [("alexnet_in3_c5_b2_step1.safetensors", lambda p: write_step(p, rgb, WHOLE_RGB)),
            ("alexnet_in3_c5_b2_steps3.safetensors", lambda p: write_steps(p, rgb, 3)),
            ("alexnet_in1_c7_b3_step1.safetensors", lambda p: write_step(p, gray, WHOLE_GRAY))]
    sums = []
    for name, job in jobs:
        path = os.path.join(outdir, name)
        job(path)
        with open(path, "rb") as f:
            sums.append("%s  %s\n" % (hashlib.sha256(f.read()).hexdigest(), name))
        print("wrote %s (%.1f MB)" % (path, os.path.getsize(path) / 1e6))
    with open(os.path.join(outdir, "SHA256SUMS"), "w") as f:
        f.writelines(sums)


if __name__ == "__main__":
    main()
