#!/usr/bin/env python3
"""Training benchmark (part of `make bench`): median time of one Adam step (forward, MSE, backward,
update) at batch 256 for column_mlp and column_mlp_small, InLoop (float32, 1 OpenBLAS thread) next to
PyTorch CPU (torch.set_num_threads(1), the same model and batch) timed in the same run when PyTorch is
installed; the table says so when it is not.
"""
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "models")
BATCH = 256
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
with open("/proc/cpuinfo") as f:
    if " avx512f" in f.read():
        env["OPENBLAS_CORETYPE"] = os.environ.get("INLOOP_BENCH_CORETYPE", "SkylakeX")


def inloop():
    out = subprocess.run([os.path.join(ROOT, ".build", "release", "inloop-bench-training"), MODELS, str(BATCH)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.exit(out.stdout)
    return {k: float(v) for k, v in re.findall(r"^RESULT (\S+) (\S+)$", out.stdout, re.M)}


def torch_step_times():
    try:
        import torch
    except ImportError:
        return None, "PyTorch not installed (pip install torch): skipped"
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import inloopfmt
    torch.set_num_threads(1)
    res = {}
    for name in ("column_mlp", "column_mlp_small"):
        arch, tensors = inloopfmt.read_model(os.path.join(MODELS, f"{name}.safetensors"))
        mods = []
        for L in arch["layers"]:
            if L["type"] == "normalize":
                mean = torch.tensor(tensors[L["mean"]]); std = torch.tensor(tensors[L["std"]])
                mods.append(Normalize(mean, std))
            elif L["type"] == "dense":
                lin = torch.nn.Linear(L["in"], L["out"])
                with torch.no_grad():
                    lin.weight.copy_(torch.tensor(tensors[L["weight"]])); lin.bias.copy_(torch.tensor(tensors[L["bias"]]))
                mods.append(lin)
                act = L.get("activation", "none")
                if act == "relu": mods.append(torch.nn.ReLU())
                elif act == "leaky_relu": mods.append(torch.nn.LeakyReLU(L.get("alpha", 0.01)))
                elif act == "tanh": mods.append(torch.nn.Tanh())
        model = torch.nn.Sequential(*mods)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(BATCH, arch["input"]["size"], generator=g)
        y = torch.randn(BATCH, arch["output"]["size"], generator=g)
        lossf = torch.nn.MSELoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()
        for _ in range(3):
            step()
        times = []
        for _ in range(15):
            t = time.perf_counter()
            for _ in range(5):
                step()
            times.append((time.perf_counter() - t) / 5)
        res[name] = sorted(times)[len(times) // 2]
    return res, f"PyTorch {torch.__version__}, 1 thread"


class Normalize:  # replaced by a torch module below when torch imports
    pass


def main():
    global Normalize
    try:
        import torch

        class Normalize(torch.nn.Module):  # noqa: F811
            def __init__(self, mean, std):
                super().__init__()
                self.register_buffer("mean", mean)
                self.register_buffer("std", std)

            def forward(self, x):
                return (x - self.mean) / self.std
    except ImportError:
        pass
    if not os.path.exists(os.path.join(MODELS, "column_mlp.safetensors")):
        sys.exit("bench_training: build/models/column_mlp.safetensors missing (run `make models`)")
    mine = inloop()
    peer, note = torch_step_times()
    print(f"\n## Training: one Adam step at batch {BATCH}, float32, 1 thread ({note})\n")
    print("| model | InLoop | PyTorch | PyTorch / InLoop |")
    print("|---|---|---|---|")
    for name in ("column_mlp", "column_mlp_small"):
        t = mine[f"{name}_adam_b{BATCH}_s"]
        if peer:
            print(f"| {name} | {t * 1e3:.2f} ms | {peer[name] * 1e3:.2f} ms | {peer[name] / t:.2f}× |")
        else:
            print(f"| {name} | {t * 1e3:.2f} ms | – | – |")


if __name__ == "__main__":
    main()
