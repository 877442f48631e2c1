#!/usr/bin/env python3
"""Writes a checkpoint as InLoop wrote them before checkpoints held input statistics (the
`checkpoint_v1_*.pre_ranges.safetensors` fixtures of Tests/c/test_golden.c): the same file without the
`input_statistics.*` tensors and without `input_samples` in the `inloop_checkpoint` metadata. Used
when the training numerics change on purpose and tools/make_golden.py rewrites the checkpoint
fixtures, so that the legacy fixture holds the same training state as the new one.

    python3 tools/strip_input_statistics.py IN.safetensors OUT.safetensors
"""
import json
import struct
import sys


def main(src, dst):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__")
    ckpt = json.loads(meta["inloop_checkpoint"])
    ckpt.pop("input_samples", None)
    meta["inloop_checkpoint"] = json.dumps(ckpt, separators=(",", ":"))
    kept = sorted(((k, v) for k, v in header.items() if not k.startswith("input_statistics.")),
                  key=lambda kv: kv[1]["data_offsets"][0])
    out, blob = {"__metadata__": meta}, b""
    for k, v in kept:
        lo, hi = v["data_offsets"]
        out[k] = dict(v, data_offsets=[len(blob), len(blob) + hi - lo])
        blob += data[lo:hi]
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
