#!/usr/bin/env python3
"""Writes tests/io/fixture_py.safetensors with nothing but json and struct, so the C reader is
tested on a file it did not write itself.  Python's json uses ", " / ": " separators; the
tensors are listed out of offset order; the header is padded with spaces to 8 bytes.
Any python3 runs it (no torch needed):  python3 tests/io/make_fixture.py"""
import json
import os
import struct

tensors = [  # name, dtype, shape, struct format, values
    ("w", "F32", [2, 2], "<4f", [0.5, -1.5, 2.0, 1.0 / 1024]),
    ("d", "F64", [3], "<3d", [0.1, -3.0, 1e-3]),
    ("t", "I64", [2], "<2q", [3, 9]),
]
blobs, header, off = {}, {"__metadata__": {"writer": "make_fixture.py"}}, 0
# data order t, w, d while the header lists w, d, t
for name in ("t", "w", "d"):
    _, dtype, shape, fmt, vals = next(x for x in tensors if x[0] == name)
    blobs[name] = struct.pack(fmt, *vals)
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blobs[name])]}
    off += len(blobs[name])
ordered = {"__metadata__": header["__metadata__"]}
for name, *_ in tensors:
    ordered[name] = header[name]
text = json.dumps(ordered).encode()
text += b" " * (-len(text) % 8)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture_py.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + blobs["t"] + blobs["w"] + blobs["d"])
print(out)
