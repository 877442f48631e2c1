#!/usr/bin/env python3
"""Interpretability against independent references (issue 15, item 5): saliency and Grad-CAM against
PyTorch autograd and hooks on the same model, exported to ONNX here; LRP (epsilon rule) against a NumPy
implementation written here from the torch weights, with its conservation property; `inloop explain`
end to end (.npy and PNG, decoded here with zlib and struct).

Models (torch, seeded, exported with the TorchScript exporter): a small CNN [N, 2, 16, 16] ->
Conv(2->4, 3x3, pad 1) + ReLU + MaxPool 2 -> Conv(4->6, 3x3, pad 1) + ReLU -> Flatten -> Linear(384->5),
a dense ReLU net 6 -> 12 -> 8 -> 3, each in float64 (compared to 1e-10) and float32 (1e-4 relative);
for conservation the same nets with zero biases (sum r = y_k to 1e-12 relative with eps = 0, to 1e-8
with eps = 1e-12; with biases it is not conserved); a net with a rank-1 intermediate (a row sum) for the
wrong-rank status; the CNN exported with a fixed batch; a net with a skip connection (Grad-CAM before it against torch, inside it and LRP
refused with UNSUPPORTED). Grad-CAM: alpha_c = mean over space of dy_k/dA_c, relu(sum_c alpha_c A_c), and
F.interpolate(bilinear, align_corners=False) to the input size. With ../shared/models/cnn2d.onnx
present, `inloop explain` on it too (64 x 64 PNG).

    python3 Tests/onnx/explain_torch.py [--lib PATH] [--cli PATH]

Prints PASS/FAIL lines and `N passed, M failed` (a SKIP line and exit 0 when torch is missing).
"""
import argparse
import ctypes as C
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance as cf  # noqa: E402

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    torch = None

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


class Lib:
    def __init__(self, path):
        L = self.L = C.CDLL(path)
        L.inloop_last_error.restype = C.c_char_p
        V, I64, D = C.c_void_p, C.c_int64, C.c_double
        PD, PF = C.POINTER(C.c_double), C.POINTER(C.c_float)
        L.inloop_model_load.argtypes = [C.c_char_p, C.POINTER(V)]
        L.inloop_model_free.argtypes = [V]
        for f in ("input_size", "output_size"):
            getattr(L, "inloop_model_" + f).argtypes = [V, C.POINTER(I64)]
        L.inloop_model_forward_f64.argtypes = [V, PD, I64, PD]
        L.inloop_model_gradcam_size.argtypes = [V, C.c_char_p, C.c_int32, C.POINTER(I64)]
        for t, P in (("f32", PF), ("f64", PD)):
            getattr(L, "inloop_model_saliency_" + t).argtypes = [V, P, I64, I64, P]
            getattr(L, "inloop_model_gradcam_" + t).argtypes = [V, C.c_char_p, P, I64, I64, C.c_int32, P]
            getattr(L, "inloop_model_lrp_" + t).argtypes = [V, P, I64, I64, D, P]

    def error(self):
        return self.L.inloop_last_error().decode()

    def load(self, path):
        m = C.c_void_p()
        st = self.L.inloop_model_load(path.encode(), C.byref(m))
        if st != 0:
            raise RuntimeError(f"load {path}: {self.error()}")
        return m

    @staticmethod
    def ptr(a):
        return a.ctypes.data_as(C.POINTER(C.c_double if a.dtype == np.float64 else C.c_float))

    def saliency(self, m, x, k):
        s = np.zeros_like(x)
        f = self.L.inloop_model_saliency_f64 if x.dtype == np.float64 else self.L.inloop_model_saliency_f32
        st = f(m, self.ptr(x), x.shape[0], k, self.ptr(s))
        return st, s

    def gradcam(self, m, node, x, k, upsample):
        n = C.c_int64()
        st = self.L.inloop_model_gradcam_size(m, node.encode(), int(upsample), C.byref(n))
        if st != 0:
            return st, None
        out = np.zeros((x.shape[0], n.value), dtype=x.dtype)
        f = self.L.inloop_model_gradcam_f64 if x.dtype == np.float64 else self.L.inloop_model_gradcam_f32
        st = f(m, node.encode(), self.ptr(x), x.shape[0], k, int(upsample), self.ptr(out))
        return st, out

    def lrp(self, m, x, k, eps):
        r = np.zeros_like(x)
        f = self.L.inloop_model_lrp_f64 if x.dtype == np.float64 else self.L.inloop_model_lrp_f32
        st = f(m, self.ptr(x), x.shape[0], k, eps, self.ptr(r))
        return st, r

    def forward64(self, m, x):
        no = C.c_int64()
        self.L.inloop_model_output_size(m, C.byref(no))
        y = np.zeros((x.shape[0], no.value))
        st = self.L.inloop_model_forward_f64(m, self.ptr(x), x.shape[0], self.ptr(y))
        assert st == 0, self.error()
        return y


# ---------------------------------------------------------------------------------------------------
# torch models and references

if torch is not None:
    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
            self.relu2 = nn.ReLU()
            self.fc = nn.Linear(6 * 8 * 8, 5)

        def forward(self, x):
            h = self.pool(F.relu(self.conv1(x)))
            return self.fc(torch.flatten(self.relu2(self.conv2(h)), 1))

    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = nn.Linear(6, 12), nn.Linear(12, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.l3(F.relu(self.l2(F.relu(self.l1(x)))))

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = F.relu(self.l1(x))
            return self.l3(h + F.relu(self.l2(h)))

    class RowSum(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(6, 4), nn.Linear(1, 2)

        def forward(self, x):
            return self.l2(F.relu(self.l1(x)).sum(1, keepdim=False).unsqueeze(1))


def export(model, x, path, fixed_batch=False):
    model.eval()
    axes = None if fixed_batch else {"x": {0: "batch"}, "y": {0: "batch"}}
    torch.onnx.export(model, (torch.from_numpy(x),), path, input_names=["x"], output_names=["y"],
                      dynamic_axes=axes, dynamo=False)


def node_output(path, op, nth):
    """The output name of the nth node of type op in the exported graph."""
    import onnx
    nodes = [n for n in onnx.load(path).graph.node if n.op_type == op]
    return nodes[nth].output[0]


def torch_gradcam(model, module, x, k, size):
    """Grad-CAM with a forward hook on `module` and a tensor hook on its output."""
    store = {}

    def hook(_, __, out):
        store["a"] = out
        out.register_hook(lambda g: store.__setitem__("g", g))

    h = module.register_forward_hook(hook)
    xt = torch.from_numpy(x.copy())
    y = model(xt)
    y[:, k].sum().backward()
    h.remove()
    a, g = store["a"].detach(), store["g"]
    alpha = g.mean(dim=tuple(range(2, g.dim())), keepdim=True)
    cam = F.relu((alpha * a).sum(1))
    up = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return cam.numpy().reshape(len(x), -1), up.numpy().reshape(len(x), -1)


def torch_saliency(model, x, k):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    model(xt)[:, k].sum().backward()
    return xt.grad.numpy()


# NumPy LRP, epsilon rule: for z = W a + b, R_a = a * W^T (R_z / (z + eps sign z)), sign 0 = +1; ReLU
# passes relevance unchanged; max pooling gives it to the maximum.

def stab(z, eps):
    return z + np.where(z >= 0, eps, -eps)


def np_lrp_dense(layers, x, k, eps):
    """layers: [(W, b)] with ReLU between them."""
    acts, zs = [x], []
    a = x
    for i, (w, b) in enumerate(layers):
        z = a @ w.T + b
        zs.append(z)
        a = np.maximum(z, 0) if i + 1 < len(layers) else z
        acts.append(a)
    R = np.zeros_like(zs[-1])
    R[:, k] = zs[-1][:, k]
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        s = R / stab(zs[i], eps)
        s[stab(zs[i], eps) == 0] = 0
        R = acts[i] * (s @ w)
    return R


def conv2d(a, w, b):
    n, c, h, wd = a.shape
    o, _, kh, kw = w.shape
    p = np.pad(a, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    z = np.zeros((n, o, h, wd))
    for i in range(kh):
        for j in range(kw):
            z += np.einsum("nchw,oc->nohw", p[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return z + b[None, :, None, None]


def conv2d_transpose(s, w, shape):
    """W^T s for conv2d: the adjoint of conv2d's linear part."""
    n, c, h, wd = shape
    o, _, kh, kw = w.shape
    p = np.zeros((n, c, h + kh - 1, wd + kw - 1))
    for i in range(kh):
        for j in range(kw):
            p[:, :, i:i + h, j:j + wd] += np.einsum("nohw,oc->nchw", s, w[:, :, i, j])
    return p[:, :, kh // 2:kh // 2 + h, kw // 2:kw // 2 + wd]


def maxpool2(a):
    n, c, h, w = a.shape
    blocks = a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    return blocks.max(-1), blocks.argmax(-1)


def unpool2(r, arg, shape):
    n, c, h, w = shape
    blocks = np.zeros((n, c, h // 2, w // 2, 4))
    np.put_along_axis(blocks, arg[..., None], r[..., None], axis=-1)
    return blocks.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def np_lrp_cnn(p, x, k, eps):
    w1, b1, w2, b2, wf, bf = p
    z1 = conv2d(x, w1, b1)
    a1 = np.maximum(z1, 0)
    pooled, arg = maxpool2(a1)
    z2 = conv2d(pooled, w2, b2)
    a2 = np.maximum(z2, 0)
    flat = a2.reshape(len(x), -1)
    z3 = flat @ wf.T + bf
    R = np.zeros_like(z3)
    R[:, k] = z3[:, k]
    R = flat * ((R / stab(z3, eps)) @ wf)                       # fc
    R = R.reshape(a2.shape)                                     # flatten, relu: unchanged
    R = pooled * conv2d_transpose(R / stab(z2, eps), w2, pooled.shape)   # conv2
    R = unpool2(R, arg, a1.shape)                               # max pooling: to the maximum; relu
    return x * conv2d_transpose(R / stab(z1, eps), w1, x.shape)  # conv1


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


# ---------------------------------------------------------------------------------------------------
# PNG decoding (zlib + struct)

def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    at, idat, ihdr = 8, b"", None
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        crc, = struct.unpack(">I", data[at + 8 + n:at + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind}"
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    w, h, depth, colour = ihdr[:4]
    assert depth == 8 and colour == 2, f"depth {depth} colour type {colour}"
    raw = zlib.decompress(idat)
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(rows[:, 0] == 0), "a row filter other than none"
    return rows[:, 1:].reshape(h, w, 3)


def check_png(label, path, heat):
    """heat: H x W. Size, and the hottest pixel (largest red - green) is where heat is largest."""
    try:
        img = read_png(path)
    except Exception as e:  # noqa: BLE001
        check(f"{label}: PNG decodes", False, str(e))
        return
    check(f"{label}: PNG decodes (zlib, CRCs) to {heat.shape[1]} x {heat.shape[0]}", img.shape[:2] == heat.shape,
          f"{img.shape}")
    if img.shape[:2] != heat.shape:
        return
    red = img[..., 0].astype(int) - img[..., 1].astype(int)
    hot = np.unravel_index(np.argmax(red), red.shape)
    top = np.unravel_index(np.argmax(heat), heat.shape)
    # ties within one grey level of 255 are allowed
    ok = red[hot] == 255 and heat[hot] >= heat.max() * (1 - 1.5 / 255)
    check(f"{label}: hottest pixel {tuple(map(int, hot))} is the map's maximum {tuple(map(int, top))}", ok,
          f"red-green {red[hot]}, heat there {heat[hot]:.4g} of {heat.max():.4g}")


# ---------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=os.environ.get("INLOOP_LIB", cf.DEFAULT_LIB))
    ap.add_argument("--cli", default=os.environ.get("INLOOP_CLI", cf.DEFAULT_CLI))
    ap.add_argument("--shared", default=cf.DEFAULT_SHARED)
    args = ap.parse_args()
    if torch is None:
        print("SKIP explain_torch: PyTorch cannot be imported")
        print("0 passed, 0 failed")
        return 0
    torch.manual_seed(15)
    torch.set_num_threads(1)
    lib = Lib(args.lib)
    rng = np.random.default_rng(15)
    tmp = tempfile.mkdtemp(prefix="inloop-explain-")

    cnn, dense = CNN(), Dense()
    for prec, dt, tol in (("float64", np.float64, 1e-10), ("float32", np.float32, 1e-4)):
        model_c = CNN().to(torch.float64 if dt == np.float64 else torch.float32)
        model_c.load_state_dict(cnn.state_dict())
        x = rng.standard_normal((3, 2, 16, 16)).astype(dt)
        path = os.path.join(tmp, f"cnn_{prec}.onnx")
        export(model_c, x, path)
        m = lib.load(path)
        x64 = x.astype(np.float64)   # the references run in float64
        ref64 = CNN().double()
        ref64.load_state_dict(cnn.state_dict())
        for k in (0, 3):
            st, s = lib.saliency(m, x, k)
            want = torch_saliency(ref64, x64, k)
            check(f"cnn {prec} saliency k={k} vs torch autograd ({tol:g})", st == 0 and rel(s, want) <= tol,
                  f"status {st} {lib.error()}, rel err {rel(s, want):.2e}")
        node = node_output(path, "Relu", 1)
        for k in (1, 4):
            cam, up = torch_gradcam(ref64, ref64.relu2, x64, k, (16, 16))
            st, got = lib.gradcam(m, node, x, k, False)
            check(f"cnn {prec} Grad-CAM k={k} on '{node}' [8 x 8] vs torch hooks ({tol:g})",
                  st == 0 and got.shape == cam.shape and rel(got, cam) <= tol,
                  f"status {st} {lib.error()}" if st else f"rel err {rel(got, cam):.2e}")
            st, got = lib.gradcam(m, node, x, k, True)
            check(f"cnn {prec} Grad-CAM k={k} upsampled [16 x 16] vs F.interpolate(bilinear) ({tol:g})",
                  st == 0 and got.shape == up.shape and rel(got, up) <= tol,
                  f"status {st} {lib.error()}" if st else f"rel err {rel(got, up):.2e}")
            check(f"cnn {prec} Grad-CAM k={k} is not all zero", st == 0 and float(np.max(got)) > 0, "")
        p = [t.detach().double().numpy() for t in (cnn.conv1.weight, cnn.conv1.bias, cnn.conv2.weight, cnn.conv2.bias,
                                                      cnn.fc.weight, cnn.fc.bias)]
        for eps in (1e-6, 0.1):
            st, r = lib.lrp(m, x, 2, eps)
            want = np_lrp_cnn(p, x64, 2, eps)
            check(f"cnn {prec} LRP eps={eps:g} vs NumPy ({tol:g})", st == 0 and rel(r, want) <= tol,
                  f"status {st} {lib.error()}" if st else f"rel err {rel(r, want):.2e}")
        # bad arguments
        st, _ = lib.gradcam(m, "no_such_tensor", x, 0, False)
        check(f"cnn {prec} Grad-CAM of an unknown tensor: INVALID_ARGUMENT", st == 2, f"status {st}")
        st, _ = lib.gradcam(m, "fc.weight", x, 0, False)
        check(f"cnn {prec} Grad-CAM of a weight: INVALID_ARGUMENT", st == 2, f"status {st} {lib.error()}")
        st, _ = lib.gradcam(m, node, x, 5, False)
        check(f"cnn {prec} Grad-CAM of output 5 of 5: INVALID_ARGUMENT", st == 2, f"status {st}")
        st, _ = lib.lrp(m, x, 0, -1.0)
        check(f"cnn {prec} LRP with eps < 0: INVALID_ARGUMENT", st == 2, f"status {st}")
        lib.L.inloop_model_free(m)

    # a fixed batch (exported without dynamic axes): the tensor's axis 0 is that batch
    x = rng.standard_normal((3, 2, 16, 16))
    path = os.path.join(tmp, "cnn_fixed.onnx")
    export(ref64, x, path, fixed_batch=True)
    m = lib.load(path)
    node = node_output(path, "Relu", 1)
    cam, up = torch_gradcam(ref64, ref64.relu2, x, 2, (16, 16))
    st, got = lib.gradcam(m, node, x, 2, True)
    check("cnn exported with a fixed batch of 3: Grad-CAM upsampled vs torch (1e-10)",
          st == 0 and got.shape == up.shape and rel(got, up) <= 1e-10,
          f"status {st} {lib.error()}" if st else f"rel err {rel(got, up):.2e}")
    st, r = lib.lrp(m, x, 2, 1e-6)
    want = np_lrp_cnn(p, x, 2, 1e-6)
    check("cnn exported with a fixed batch of 3: LRP vs NumPy (1e-10)", st == 0 and rel(r, want) <= 1e-10,
          f"status {st} {lib.error()}" if st else f"rel err {rel(r, want):.2e}")
    lib.L.inloop_model_free(m)

    # dense ReLU net: LRP vs NumPy, conservation with zero biases
    xd = rng.standard_normal((4, 6))
    for zero_bias in (False, True):
        model_d = Dense().double()
        model_d.load_state_dict(dense.state_dict())
        if zero_bias:
            with torch.no_grad():
                for l in (model_d.l1, model_d.l2, model_d.l3):
                    l.bias.zero_()
        path = os.path.join(tmp, f"dense{'_nobias' if zero_bias else ''}.onnx")
        export(model_d, xd, path)
        m = lib.load(path)
        layers = [(l.weight.detach().numpy(), l.bias.detach().numpy()) for l in (model_d.l1, model_d.l2, model_d.l3)]
        tag = "zero-bias dense" if zero_bias else "dense"
        for k, eps in ((0, 1e-9), (2, 0.05)):
            st, r = lib.lrp(m, xd, k, eps)
            want = np_lrp_dense(layers, xd, k, eps)
            check(f"{tag} LRP k={k} eps={eps:g} vs NumPy (1e-10)", st == 0 and rel(r, want) <= 1e-10,
                  f"status {st} {lib.error()}" if st else f"rel err {rel(r, want):.2e}")
        y = lib.forward64(m, xd)
        st, r = lib.lrp(m, xd, 1, 0.0)
        gap = np.abs(r.sum(1) - y[:, 1]) / np.abs(y[:, 1])
        if zero_bias:
            check(f"{tag} LRP eps=0 conserves y_k: sum r = y_k to round-off (max rel {gap.max():.1e} <= 1e-12)",
                  st == 0 and gap.max() <= 1e-12, f"status {st}")
            st, r = lib.lrp(m, xd, 1, 1e-12)
            gap = np.abs(r.sum(1) - y[:, 1]) / np.abs(y[:, 1])
            check(f"{tag} LRP eps=1e-12 conserves y_k to first order in eps (max rel {gap.max():.1e} <= 1e-8)",
                  st == 0 and gap.max() <= 1e-8, f"status {st}")
        else:
            check(f"{tag} LRP with biases does not conserve y_k (the biases absorb {gap.max():.2g})",
                  st == 0 and gap.max() > 1e-6, f"status {st}")
        lib.L.inloop_model_free(m)
    # conservation on the zero-bias CNN in float64
    model_c = CNN().double()
    model_c.load_state_dict(cnn.state_dict())
    with torch.no_grad():
        for l in (model_c.conv1, model_c.conv2, model_c.fc):
            l.bias.zero_()
    x = rng.standard_normal((2, 2, 16, 16))
    path = os.path.join(tmp, "cnn_nobias.onnx")
    export(model_c, x, path)
    m = lib.load(path)
    y = lib.forward64(m, x)
    for eps, tol in ((0.0, 1e-12), (1e-12, 1e-8)):
        st, r = lib.lrp(m, x, 3, eps)
        gap = np.abs(r.reshape(2, -1).sum(1) - y[:, 3]) / np.abs(y[:, 3])
        check(f"zero-bias cnn LRP eps={eps:g} conserves y_k (max rel {gap.max():.1e} <= {tol:g})", st == 0 and gap.max() <= tol,
              f"status {st} {lib.error()}")
    lib.L.inloop_model_free(m)

    # unsupported and wrong-rank
    rs = RowSum().double()
    path = os.path.join(tmp, "rowsum.onnx")
    export(rs, xd, path)
    m = lib.load(path)
    st, _ = lib.gradcam(m, node_output(path, "ReduceSum", 0), xd, 0, False)
    check("Grad-CAM of a rank-1 tensor: INVALID_ARGUMENT", st == 2, f"status {st} {lib.error()}")
    st, _ = lib.lrp(m, xd, 0, 1e-6)
    msg = lib.error()
    check("LRP through ReduceSum: UNSUPPORTED naming the op", st == 7 and "ReduceSum" in msg, f"status {st}: {msg}")
    lib.L.inloop_model_free(m)

    # a skip connection: Grad-CAM past it works, Grad-CAM inside it and LRP are refused
    sk = Skip().double()
    path = os.path.join(tmp, "skip.onnx")
    export(sk, xd, path)
    m = lib.load(path)
    relus = [node_output(path, "Relu", i) for i in range(2)]
    st, _ = lib.gradcam(m, relus[1], xd, 0, False)
    msg = lib.error()
    check("Grad-CAM inside a skip connection: UNSUPPORTED (the output depends on the input around it)",
          st == 7 and "other than through" in msg, f"status {st}: {msg}")
    st, got = lib.gradcam(m, relus[0], xd, 1, False)
    xt = torch.from_numpy(xd.copy())
    h = F.relu(sk.l1(xt)).detach().requires_grad_(True)
    sk.l3(h + F.relu(sk.l2(h)))[:, 1].sum().backward()
    want = np.maximum((h.grad * h).sum(1).detach().numpy(), 0)[:, None]
    check("Grad-CAM before a skip connection ([N, C]: relu(sum_c dy/dh_c h_c)) vs torch (1e-10)",
          st == 0 and rel(got, want) <= 1e-10, f"status {st} {lib.error()}" if st else f"rel err {rel(got, want):.2e}")
    st, _ = lib.lrp(m, xd, 0, 1e-6)
    msg = lib.error()
    check("LRP of a graph with a skip connection: UNSUPPORTED (a chain of layers)", st == 7 and "chain" in msg,
          f"status {st}: {msg}")
    lib.L.inloop_model_free(m)

    # `inloop explain` end to end on the float64 CNN
    if not os.path.exists(args.cli):
        print(f"SKIP inloop explain: no CLI at {args.cli}")
    else:
        path = os.path.join(tmp, "cnn_float64.onnx")
        m = lib.load(path)
        node = node_output(path, "Relu", 1)
        x1 = rng.standard_normal((1, 2, 16, 16))
        np.save(os.path.join(tmp, "x1.npy"), x1)
        for method in ("saliency", f"gradcam:{node}", "lrp"):
            prefix = os.path.join(tmp, method.split(":")[0])
            p = subprocess.run([args.cli, "explain", path, "--input", os.path.join(tmp, "x1.npy"), "--output-index", "3",
                                "--method", method, "--out", prefix], capture_output=True, text=True)
            if p.returncode != 0:
                check(f"inloop explain --method {method}", False, p.stderr[-500:])
                continue
            got = np.load(prefix + ".npy")
            if method == "saliency":
                _, want = lib.saliency(m, x1, 3)
                heat = np.abs(got[0]).max(0)
            elif method == "lrp":
                _, want = lib.lrp(m, x1, 3, 1e-6)
                heat = np.maximum(got[0].sum(0), 0)
            else:
                _, want = torch_gradcam(ref64, ref64.relu2, x1, 3, (16, 16))
                want = want.reshape(1, 16, 16)
                heat = got[0]
            check(f"inloop explain --method {method}: .npy {got.shape} equals the {'torch' if 'gradcam' in method else 'C API'} result",
                  got.shape == want.shape and rel(got, want) <= 1e-10, f"shape {got.shape} vs {want.shape}")
            check_png(f"inloop explain --method {method}", prefix + ".png", heat)
        lib.L.inloop_model_free(m)
        for bad, what in ((["--method", "shap"], "an unknown method"), (["--method", "gradcam:nope"], "an unknown tensor"),
                          (["--method", "lrp", "--output-index", "9"], "output index 9 of 5")):
            argv = [args.cli, "explain", path, "--input", os.path.join(tmp, "x1.npy"), "--output-index", "0",
                    "--out", os.path.join(tmp, "bad")] + bad
            p = subprocess.run(argv, capture_output=True, text=True)
            check(f"inloop explain with {what}: exit 1 and a message", p.returncode == 1 and p.stderr.startswith("inloop: "),
                  f"exit {p.returncode}: {p.stderr[-300:]}")
        shared = os.path.join(args.shared, "cnn2d.onnx")
        if os.path.exists(shared):
            xs = rng.standard_normal((1, 2, 64, 64)).astype(np.float32)
            np.save(os.path.join(tmp, "xs.npy"), xs)
            prefix = os.path.join(tmp, "cnn2d")
            p = subprocess.run([args.cli, "explain", shared, "--input", os.path.join(tmp, "xs.npy"), "--output-index", "0",
                                "--method", "gradcam:l2_relu", "--out", prefix], capture_output=True, text=True)
            ok = p.returncode == 0
            check("inloop explain cnn2d.onnx --method gradcam:l2_relu", ok, p.stderr[-500:])
            if ok:
                got = np.load(prefix + ".npy")
                check("cnn2d Grad-CAM map is [1, 64, 64] float32", got.shape == (1, 64, 64) and got.dtype == np.float32, f"{got.shape} {got.dtype}")
                check_png("cnn2d Grad-CAM", prefix + ".png", got[0].astype(np.float64))
        else:
            print(f"SKIP inloop explain on cnn2d.onnx: not in {args.shared}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
