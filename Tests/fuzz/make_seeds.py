#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (Tests/fuzz/corpus/<target>/):

  onnx        small ONNX models covering every family of supported ops, attributes and opsets
              (needs the `onnx` and `numpy` packages)
  npy         .npy arrays: versions 1/2/3, float32/float64, both byte orders, C and Fortran order
  config      YAML and JSON training configurations (text)
  checkpoint  training checkpoints written by libInLoop.so itself (needs `swift build -c release`)

The native-model target's corpus is Tests/fixtures/*.safetensors (not copied). Seeds are inputs to
mutate, not tests: regenerating them with other package versions is harmless.

    python3 Tests/fuzz/make_seeds.py [onnx npy config checkpoint]
"""
import ctypes
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    mode = "w" if isinstance(data, str) else "wb"
    with open(os.path.join(d, name), mode) as f:
        f.write(data)


def onnx_seeds():
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def ints(name, values):
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    def model(name, nodes, inputs, outputs, inits=(), opset=17):
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        out("onnx", name + ".onnx", m.SerializeToString())

    N = "N"
    model("gemm_relu", [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
                        helper.make_node("Relu", ["h"], ["y"])],
          [("x", [N, 4])], [("y", [N, 3])], [w("W", 3, 4), w("b", 3)])
    model("matmul_add_tanh", [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["a"]),
                              helper.make_node("Tanh", ["a"], ["y"])],
          [("x", [N, 5])], [("y", [N, 2])], [w("W", 5, 2), w("b", 2)])
    model("conv1d", [helper.make_node("Conv", ["x", "W", "b"], ["y"], pads=[1, 1], strides=[2], dilations=[1])],
          [("x", [N, 2, 9])], [("y", [N, 3, 5])], [w("W", 3, 2, 3), w("b", 3)])
    model("conv2d_group", [helper.make_node("Conv", ["x", "W"], ["h"], group=2, pads=[1, 0, 1, 0], dilations=[2, 1]),
                           helper.make_node("BatchNormalization", ["h", "s", "bb", "m", "v"], ["y"])],
          [("x", [N, 4, 6, 5])], [("y", [N, 4, 4, 3])],
          [w("W", 4, 2, 3, 3), w("s", 4), w("bb", 4), w("m", 4), numpy_helper.from_array(np.ones(4, np.float32), "v")])
    model("conv_depthwise_same", [helper.make_node("Conv", ["x", "W"], ["y"], group=3, auto_pad="SAME_UPPER", strides=[2, 2])],
          [("x", [N, 3, 5, 5])], [("y", [N, 6, 3, 3])], [w("W", 6, 1, 3, 3)])
    model("convtranspose", [helper.make_node("ConvTranspose", ["x", "W", "b"], ["y"], strides=[2], pads=[1, 0], output_padding=[1])],
          [("x", [N, 2, 4])], [("y", [N, 3, 9])], [w("W", 2, 3, 3), w("b", 3)])
    model("convtranspose2d_shape", [helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2], output_shape=[6, 6], group=2)],
          [("x", [N, 2, 3, 3])], [("y", [N, 2, 6, 6])], [w("W", 2, 1, 2, 2)])
    model("maxpool_ceil", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)],
          [("x", [N, 2, 6, 6])], [("y", [N, 2, 4, 4])])
    model("maxpool_dilated", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[2], strides=[1])],
          [("x", [N, 1, 8])], [("y", [N, 1, 6])])
    model("avgpool_pad", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1)],
          [("x", [N, 1, 4, 4])], [("y", [N, 1, 4, 4])])
    model("global_pools", [helper.make_node("GlobalAveragePool", ["x"], ["a"]), helper.make_node("GlobalMaxPool", ["x"], ["m"]),
                           helper.make_node("Add", ["a", "m"], ["s"]), helper.make_node("Flatten", ["s"], ["y"], axis=1)],
          [("x", [N, 3, 4, 4])], [("y", [N, 3])])
    model("shape_gather_reshape", [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
                                   helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
                                   helper.make_node("Concat", ["n1", "m1"], ["shp"], axis=0),
                                   helper.make_node("Reshape", ["x", "shp"], ["y"])],
          [("x", [N, 2, 3])], [("y", [N, 6])], [ints("i0", 0), ints("ax", [0]), ints("m1", [-1])])
    model("gather_data", [helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)],
          [("x", [N, 5])], [("y", [N, 3])], [ints("idx", [4, 0, -1])])
    model("slice_concat_split", [helper.make_node("Slice", ["x", "st", "en", "axs", "stp"], ["a"]),
                                 helper.make_node("Split", ["x", "sp"], ["b", "c"], axis=1),
                                 helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=1)],
          [("x", [N, 6])], [("y", [N, 9])], [ints("st", [1]), ints("en", [7]), ints("axs", [1]), ints("stp", [2]), ints("sp", [2, 4])])
    model("transpose_softmax", [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
                                helper.make_node("Softmax", ["t"], ["s"], axis=-1),
                                helper.make_node("LogSoftmax", ["s"], ["y"], axis=1)],
          [("x", [N, 3, 4])], [("y", [N, 4, 3])])
    model("layernorm", [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
          [("x", [N, 2, 4])], [("y", [N, 2, 4])], [w("g", 4), w("b", 4)])
    model("resize_nearest", [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", nearest_mode="floor",
                                              coordinate_transformation_mode="asymmetric")],
          [("x", [N, 1, 3, 3])], [("y", [N, 1, 6, 6])], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")])
    model("resize_linear_sizes", [helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="linear")],
          [("x", [N, 1, 4])], [("y", [N, 1, 7])], [ints("sz", [1, 1, 7])])
    model("elementwise", [helper.make_node("Sigmoid", ["x"], ["a"]), helper.make_node("Mul", ["a", "x"], ["b"]),
                          helper.make_node("Clip", ["b", "lo", "hi"], ["c"]), helper.make_node("Pow", ["c", "two"], ["d"]),
                          helper.make_node("Sqrt", ["d"], ["e"]), helper.make_node("Div", ["e", "three"], ["f"]),
                          helper.make_node("Sub", ["f", "x"], ["g"]), helper.make_node("Max", ["g", "x"], ["h"]),
                          helper.make_node("Elu", ["h"], ["i"], alpha=0.5), helper.make_node("LeakyRelu", ["i"], ["j"], alpha=0.1),
                          helper.make_node("Gelu", ["j"], ["y"])],
          [("x", [N, 4])], [("y", [N, 4])],
          [numpy_helper.from_array(np.array(-1, np.float32), "lo"), numpy_helper.from_array(np.array(2, np.float32), "hi"),
           numpy_helper.from_array(np.array(2, np.float32), "two"), numpy_helper.from_array(np.array(3, np.float32), "three")],
          opset=20)
    model("squeeze_unsqueeze", [helper.make_node("Unsqueeze", ["x", "a1"], ["u"]), helper.make_node("Squeeze", ["u", "a1"], ["y"])],
          [("x", [N, 3])], [("y", [N, 3])], [ints("a1", [2])])
    model("constant_range", [helper.make_node("Range", ["r0", "r1", "r2"], ["r"]), helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
                             helper.make_node("ConstantOfShape", ["cs"], ["ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
                             helper.make_node("Mul", ["rf", "ones"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
          [("x", [N, 4])], [("y", [N, 4])], [ints("r0", 0), ints("r1", 4), ints("r2", 1), ints("cs", [4])])
    model("opset9_upsample", [helper.make_node("Upsample", ["x", "sc"], ["y"], mode="nearest")],
          [("x", [N, 1, 2, 2])], [("y", [N, 1, 4, 4])], [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")], opset=9)
    model("opset7_clip_attrs", [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)], [("x", [N, 3])], [("y", [N, 3])], opset=7)
    model("opset11_squeeze_attr", [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[1]), helper.make_node("Squeeze", ["u"], ["y"], axes=[1]),
                                   ], [("x", [N, 3])], [("y", [N, 3])], opset=11)
    model("two_inputs", [helper.make_node("MatMul", ["a", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"]),
                         helper.make_node("Identity", ["h"], ["z"])],
          [("a", [N, 3]), ("b", [N, 2])], [("y", [N, 2]), ("z", [N, 2])], [w("W", 3, 2)])


def npy_seeds():
    import numpy as np
    import io
    a = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    for name, arr, version in (("f32_c_v1", a, (1, 0)), ("f64_c_v2", a.astype(np.float64), (2, 0)),
                               ("f32_fortran_v1", np.asfortranarray(a), (1, 0)), ("f64_big_endian_v3", a.astype(">f8"), (3, 0)),
                               ("f32_scalar", np.array(1.5, np.float32), (1, 0)), ("f32_empty", np.zeros((0, 3), np.float32), (1, 0)),
                               ("f64_3d_fortran", np.asfortranarray(np.arange(24.0).reshape(2, 3, 4)), (1, 0))):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr, version=version)
        out("npy", name + ".npy", buf.getvalue())


CONFIGS = {
    "lorenz96.yaml": open(os.path.join(ROOT, "examples", "lorenz96", "training.yaml")).read()
    if os.path.exists(os.path.join(ROOT, "examples", "lorenz96", "training.yaml")) else "",
    "full.yaml": """model:
  inputs: 3
  layers:
    - {type: normalize, mean: [0.0, 1.0, 2.0], std: [1.0, 2.0, 3.0]}
    - {type: dense, out: 8, activation: tanh}
    - {type: residual, layers: [{type: dense, out: 8, activation: gelu}, {type: dense, out: 8}]}
    - {type: activation, activation: leaky_relu, alpha: 0.2}
    - {type: dense, out: 2}
    - {type: denormalize, mean: [1.0, -1.0], std: [2.0, 0.5]}
loss: {type: huber, delta: 0.5, weights: [1.0, 2.0]}
optimizer: {type: adam, lr: 1.0e-3, weight_decay: 0.01, clip_norm: 1.0}
schedule: {type: cosine, period: 100, min_lr: 1.0e-5, warmup: 10}
init: xavier
seed: 7
precision: float64
""",
    "sgd.yaml": """# plain SGD
model:
  inputs: 2
  layers:
    - type: dense
      out: 4
      activation: relu
    - type: dense
      out: 1
loss: mse
optimizer:
  type: sgd
  lr: 0.01
  momentum: 0.9
schedule: constant
init: he
seed: 1
""",
    "flow.json": '{"model": {"inputs": 2, "layers": [{"type": "dense", "out": 3, "activation": "silu"}, {"type": "dense", "out": 1}]},'
                 ' "loss": "mae", "optimizer": {"type": "adamw", "lr": 0.001}, "seed": 3, "precision": "float32"}',
    "anchors.yaml": """base: &layer {type: dense, out: 4, activation: sigmoid}
model:
  inputs: 1
  layers: [*layer, {type: dense, out: 1, activation: softplus}]
seed: 0
""",
}


def config_seeds():
    for name, text in CONFIGS.items():
        if text:
            out("config", name, text)


def checkpoint_seeds():
    lib_path = os.path.join(ROOT, ".build", "release", "libInLoop.so")
    lib = ctypes.CDLL(lib_path)
    lib.inloop_last_error.restype = ctypes.c_char_p
    tmp = os.path.join(ROOT, "build", "fuzz-seeds")
    os.makedirs(tmp, exist_ok=True)
    for name in ("full.yaml", "sgd.yaml", "flow.json", "lorenz96.yaml"):
        text = CONFIGS[name]
        tr = ctypes.c_void_p()
        st = lib.inloop_trainer_create(text.encode(), ctypes.byref(tr))
        if st != 0:
            print(f"{name}: {lib.inloop_last_error().decode()}", file=sys.stderr)
            continue
        n_in, n_out = ctypes.c_int64(), ctypes.c_int64()
        lib.inloop_trainer_sizes(tr, ctypes.byref(n_in), ctypes.byref(n_out))
        batch = 3
        x = (ctypes.c_float * (batch * n_in.value))(*[0.1 * i for i in range(batch * n_in.value)])
        y = (ctypes.c_float * (batch * n_out.value))(*[0.2 * i for i in range(batch * n_out.value)])
        loss = ctypes.c_double()
        for _ in range(2):
            st = lib.inloop_trainer_step_f32(tr, x, y, ctypes.c_int64(batch), ctypes.byref(loss))
            assert st == 0, lib.inloop_last_error().decode()
        path = os.path.join(tmp, name + ".ckpt")
        st = lib.inloop_trainer_save_checkpoint(tr, path.encode())
        assert st == 0, lib.inloop_last_error().decode()
        lib.inloop_trainer_free(tr)
        with open(path, "rb") as f:
            out("checkpoint", os.path.splitext(name)[0] + ".ckpt", f.read())


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["onnx", "npy", "config", "checkpoint"]
    for c in chosen:
        globals()[c + "_seeds"]()
        print(f"{c}: {len(os.listdir(os.path.join(CORPUS, c)))} seeds in {os.path.relpath(os.path.join(CORPUS, c), ROOT)}")
