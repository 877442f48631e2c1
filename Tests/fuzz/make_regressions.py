#!/usr/bin/env python3
"""Writes the regression inputs of the traps issue 11 reported (before any fuzzing), next to the crash
files the fuzzers found (Tests/fuzz/regressions/<target>/). Each must give an error, never a trap:
Tests/InLoopFormatsTests/LimitsTests.swift loads every one through the public API and checks the
error kind; `make test` (suite `fuzz`) also runs every file through its fuzz target.

    python3 Tests/fuzz/make_regressions.py      # needs numpy and onnx
"""
import json
import os
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
BIG62, BIG63 = 1 << 62, (1 << 63) - 1


def save(target, name, data):
    d = os.path.join(HERE, "regressions", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def onnx_model(name, nodes, x_shape, inits=(), y_shape=None):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    save("onnx", name + ".onnx", m.SerializeToString())


def w(name, *shape):
    return numpy_helper.from_array(np.full(shape, 0.5, np.float32), name)


def main():
    N = "N"
    # Conv / ConvTranspose attributes near 2^62 - 2^63 (traps in ConvGeometry.init, ConvAttributes.convGeometry,
    # ConvTransposeGeometry.init, GraphCompiler.lowerConvTranspose; a huge stride in Conv.forward).
    onnx_model("conv_dilations_2p62", [helper.make_node("Conv", ["x", "W"], ["y"], dilations=[BIG62])], [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("conv_pads_2p63", [helper.make_node("Conv", ["x", "W"], ["y"], pads=[BIG63, BIG63])], [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("conv_strides_2p62", [helper.make_node("Conv", ["x", "W"], ["y"], strides=[BIG62], pads=[1, 1])], [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("conv_strides_2p63_same", [helper.make_node("Conv", ["x", "W"], ["y"], strides=[BIG63], auto_pad="SAME_UPPER")],
               [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("conv_group_2p62", [helper.make_node("Conv", ["x", "W"], ["y"], group=BIG62)], [N, 4, 8], [w("W", 1, 1, 3)])
    onnx_model("convtranspose_strides_2p62", [helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[BIG62])],
               [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("convtranspose_dilations_2p62", [helper.make_node("ConvTranspose", ["x", "W"], ["y"], dilations=[BIG62], strides=[BIG62])],
               [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("convtranspose_group_2p62", [helper.make_node("ConvTranspose", ["x", "W"], ["y"], group=BIG62)], [N, 1, 8], [w("W", 1, 4, 3)])
    onnx_model("convtranspose_output_shape_2p63", [helper.make_node("ConvTranspose", ["x", "W"], ["y"], output_shape=[BIG63], strides=[BIG62])],
               [N, 1, 8], [w("W", 1, 1, 3)])
    onnx_model("maxpool_dilations_2p63", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[BIG63])], [N, 1, 8])
    onnx_model("maxpool_pads_2p63", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], pads=[BIG63, BIG63])], [N, 1, 8])
    onnx_model("averagepool_pads_2p63", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[0, BIG63, 0, 1])],
               [N, 1, 4, 4])
    # Gather whose data input is a scalar (IntEvaluator indexed the shape of a rank-0 tensor).
    gather = [helper.make_node("Gather", ["s", "i"], ["g"], axis=0), helper.make_node("Cast", ["g"], ["gf"], to=TensorProto.FLOAT),
              helper.make_node("Mul", ["x", "gf"], ["y"])]
    onnx_model("gather_scalar_int_data", gather, [N, 2],
               [numpy_helper.from_array(np.array(3, np.int64), "s"), numpy_helper.from_array(np.array([0], np.int64), "i")])
    gather_f = [helper.make_node("Gather", ["s", "i"], ["g"], axis=0), helper.make_node("Mul", ["x", "g"], ["y"])]
    onnx_model("gather_scalar_float_data", gather_f, [N, 2],
               [numpy_helper.from_array(np.array(3, np.float32), "s"), numpy_helper.from_array(np.array([0], np.int64), "i")])
    # Unbounded cost: a pooling pad of 10^6 over 256 channels is 2 GB of output per sample.
    onnx_model("pool_pad_1e6", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1], pads=[10**6, 10**6])], [N, 256, 4])

    # Ten ReLUs on 2^20 values per sample: the inference plan reuses two buffers (8 MiB per sample), the
    # differentiable graph (GraphNetwork, fine-tuning and jvp/vjp) keeps all eleven values (44 MiB): its
    # work space was not checked against the limits (and MaxPool's arg-max indices were allocated
    # with a trapping allocator).
    relus = [helper.make_node("Relu", ["x" if i == 0 else f"r{i}"], [f"r{i + 1}" if i < 9 else "y"]) for i in range(10)]
    onnx_model("relu_chain_2p20", relus, [N, 1 << 20], y_shape=[N, 1 << 20])

    # A native model (an activation layer, no tensors) declaring an input size of 2^33: it loaded, then
    # forward's size arithmetic trapped in the C layer (n * inputSize) and jvp's in the layer stack.
    arch = {"format": "inloop", "version": 1, "input": {"size": 1 << 33}, "output": {"size": 1 << 33},
            "layers": [{"type": "activation", "activation": "tanh"}]}
    header = json.dumps({"__metadata__": {"inloop": json.dumps(arch)}}).encode()
    save("native", "input_size_2p33.safetensors", struct.pack("<Q", len(header)) + header)
    # The largest size InLoop takes (2^31 - 1) loads as a dimension but its work space (8 GiB per sample) does not.
    arch["input"]["size"] = arch["output"]["size"] = (1 << 31) - 1
    header = json.dumps({"__metadata__": {"inloop": json.dumps(arch)}}).encode()
    save("native", "workspace_8gib_per_sample.safetensors", struct.pack("<Q", len(header)) + header)
    external_data()


def external_data():
    """ONNX external data (weights in a file beside the model, as onnx.save(..., save_as_external_data=True)
    and torch.onnx.export(dynamo=True) write them): a good model and hostile references. Loaded from its
    path each must load (ext_good) or give an error, never read outside the model's directory or past a
    file's end; loaded from bytes (the fuzz target, inloop_model_load_buffer) every one is refused."""
    wts = np.arange(12, dtype=np.float32).reshape(3, 4) / 8 - 0.5
    bias = np.array([0.25, -0.5, 1.0], np.float32)
    save("onnx", "ext_good.onnx.data", wts.tobytes() + bias.tobytes())
    save("onnx", "ext_truncated.data", wts.tobytes()[:20])

    def ext(name, entries, tensor="W", dims=(3, 4)):
        t = onnx.TensorProto(name=tensor, data_type=TensorProto.FLOAT, dims=list(dims))
        t.data_location = TensorProto.EXTERNAL
        for k, v in entries:
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    def model(name, w_entries, b_entries=(("location", "ext_good.onnx.data"), ("offset", "48"), ("length", "12"))):
        gemm = helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)
        onnx_model(name, [gemm], ["N", 4], [ext(name, w_entries), ext(name, b_entries, "B", (3,))], y_shape=["N", 3])

    good = ("location", "ext_good.onnx.data")
    model("ext_good", [good, ("offset", "0"), ("length", "48")])
    model("ext_offset_beyond_end", [good, ("offset", "4096"), ("length", "48")])
    model("ext_offset_2p63", [good, ("offset", str((1 << 63) - 1))])
    model("ext_offset_negative", [good, ("offset", "-8")])
    model("ext_length_mismatch", [good, ("offset", "0"), ("length", "40")])
    model("ext_parent_dir", [("location", "../onnx/ext_good.onnx.data"), ("offset", "0")])
    model("ext_absolute_path", [("location", "/etc/hostname")])
    model("ext_truncated", [("location", "ext_truncated.data")])
    model("ext_missing_file", [("location", "no_such_file.data")])
    model("ext_no_location", [("offset", "0"), ("length", "48")])


if __name__ == "__main__":
    main()
