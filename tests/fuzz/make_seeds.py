#!/usr/bin/env python3
"""Writes the small seed corpus of the fuzz targets (standard library only).

    python3 tests/fuzz/make_seeds.py      # rewrites tests/fuzz/corpus/{safetensors,png}/seed_*

Inputs a fuzzer found are kept next to these as crash_* / regress_* files and replayed by ctest.
"""
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def png(w, h, color_type, depth, rows, interlace=0, extra=b""):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace)
    raw = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write(sub, name, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
write("safetensors", "seed_f32", safetensors([("x", "F32", [2, 2], f32(1, 2, 3, 4))]))
write("safetensors", "seed_mixed", safetensors([
    ("input", "F32", [1, 1, 2, 2], f32(0.5, 0.25, 0, 1)),
    ("target", "I64", [1], struct.pack("<q", 3)),
    ("loss", "F32", [], f32(1.5)),
    ("w64", "F64", [3], struct.pack("<3d", 1.0, -2.0, 1e300)),
], {"backend": "ref", "seed": "1"}))
write("safetensors", "seed_empty", safetensors([]))
write("safetensors", "seed_zero_size", safetensors([("e", "F32", [0, 4], b"")]))

write("png", "seed_rgb8", png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))]))
write("png", "seed_gray1", png(9, 2, 0, 1, [b"\xaa\x80", b"\x55\x00"]))
write("png", "seed_gray16", png(2, 2, 0, 16, [b"\x12\x34\xff\xff", b"\x00\x00\x80\x00"]))
write("png", "seed_palette_trns", png(2, 2, 3, 8, [b"\x00\x01", b"\x01\x00"],
      extra=b"".join([
          (lambda d: struct.pack(">I", len(d)) + b"PLTE" + d + struct.pack(">I", zlib.crc32(b"PLTE" + d) & 0xFFFFFFFF))(b"\xff\x00\x00\x00\xff\x00"),
          (lambda d: struct.pack(">I", len(d)) + b"tRNS" + d + struct.pack(">I", zlib.crc32(b"tRNS" + d) & 0xFFFFFFFF))(b"\x80"),
      ])))
write("png", "seed_rgba_interlaced", png(4, 4, 6, 8, [bytes(16)] * 4, interlace=1))
write("png", "seed_gray_alpha", png(2, 1, 4, 8, [b"\x10\x20\x30\x40"]))
write("png", "seed_truncated", png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))])[:40])
