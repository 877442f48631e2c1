#!/usr/bin/env python3
"""Exports the torch models of the `onnx-torch` suite into Tests/onnx/torch/ (issue 10, item 6).

Every model is exported twice: with the TorchScript-based exporter (`dynamo=False`, one self-contained
`<name>_ts.onnx`) and with the dynamo exporter (`dynamo=True`, its default external data: the graph in
`<name>_dynamo.onnx`, the weights beside it in `<name>_dynamo.onnx.data`). Fixed seeds, small sizes
(features 8, hidden 16, sequence 8). Alongside, `<name>.inputs.npz` holds the test inputs (batches 1
and 7) and `manifest.json` the input and output names; expected outputs are never stored: the test
(`Tests/onnx/torch_models.py`) computes them with onnxruntime. Needs torch and onnxscript (only here,
never in CI): `pip install 'torch==2.13.0+cpu' onnxscript`, then `python3 tools/export_torch_models.py`.
"""
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "onnx", "torch")
FEAT, HID, SEQ, HEADS = 8, 16, 8, 2
BATCHES = (1, 7)
OPSET = 18


class FirstOutput(nn.Module):
    """nn.LSTM/nn.GRU return (y, state): the suite's models have one input and one output."""
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


class Encoder(nn.Module):
    """nn.TransformerEncoderLayer called as forward(x): the TorchScript exporter turns the layer's own
    default is_causal=False into a tensor, which F.multi_head_attention_forward refuses."""
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(HID, HEADS, dim_feedforward=32, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(x)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(HID, HEADS, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class SDPA(nn.Module):
    """Causal multi-head attention written with F.scaled_dot_product_attention."""
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(HID, 3 * HID)
        self.out = nn.Linear(HID, HID)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(HID, dim=-1)
        q, k, v = (z.reshape(b, t, HEADS, HID // HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, HID))


def models():
    torch.manual_seed(0)
    return {
        # name: (module, per-sample input shape, dtype)
        "lstm2": (FirstOutput(nn.LSTM(FEAT, HID, num_layers=2, batch_first=True)), [SEQ, FEAT], torch.float32),
        "lstm_bi": (FirstOutput(nn.LSTM(FEAT, HID, bidirectional=True, batch_first=True)), [SEQ, FEAT], torch.float32),
        "gru": (FirstOutput(nn.GRU(FEAT, HID, num_layers=2, batch_first=True)), [SEQ, FEAT], torch.float32),
        "encoder": (Encoder(), [SEQ, HID], torch.float32),
        "mha": (SelfAttention(), [SEQ, HID], torch.float32),
        "sdpa": (SDPA(), [SEQ, HID], torch.float32),
        # float64: onnxruntime has no float64 LSTM, GRU or Erf (GELU) kernel to compare with
        "mlp_f64": (nn.Sequential(nn.Linear(FEAT, 32), nn.Tanh(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 4)).double(),
                    [FEAT], torch.float64),
        "sdpa_f64": (SDPA().double(), [SEQ, HID], torch.float64),
    }


def export(mod, shape, dtype, path, dynamo):
    x = torch.randn(2, *shape, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1024)
            # external_data=True is torch.onnx.export's default: the weights go to path + ".data"
            torch.onnx.export(mod, (x,), path, dynamo=True, input_names=["x"], output_names=["y"],
                              dynamic_shapes=({0: batch},), opset_version=OPSET)
        else:
            torch.onnx.export(mod, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=OPSET)


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {}
    for name, (mod, shape, dtype) in models().items():
        mod.eval()
        npdt = np.float64 if dtype == torch.float64 else np.float32
        feeds = {f"x{b}": np.random.default_rng(100 + b).standard_normal((b, *shape)).astype(npdt) for b in BATCHES}
        np.savez(os.path.join(OUT, f"{name}.inputs.npz"), **feeds)
        for exporter in ("ts", "dynamo"):
            path = os.path.join(OUT, f"{name}_{exporter}.onnx")
            for p in (path, path + ".data"):
                if os.path.exists(p):
                    os.remove(p)
            export(mod, shape, dtype, path, exporter == "dynamo")
            manifest[f"{name}_{exporter}"] = {"inputs": f"{name}.inputs.npz", "shape": shape,
                                              "dtype": np.dtype(npdt).name,
                                              "external_data": os.path.exists(path + ".data")}
            print(f"{name}_{exporter}: {os.path.getsize(path)} bytes"
                  + (f" + {os.path.getsize(path + '.data')} bytes of external data" if os.path.exists(path + ".data") else ""))
    import onnx
    import onnxscript
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                   "opset": OPSET, "models": manifest}, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
