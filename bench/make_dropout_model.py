#!/usr/bin/env python3
"""Writes a copy of an ONNX MLP with a Dropout (ratio 0.1, inference mode) after every hidden
activation, for bench_ensemble's MC-dropout rows (the benchmark models have no Dropout).

    python3 bench/make_dropout_model.py ../shared/models/column_mlp.onnx build/column_mlp_dropout.onnx
Needs onnx.
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

ACTS = {"Relu", "LeakyRelu", "Tanh", "Sigmoid", "Elu", "Gelu"}


def main(src, dst, ratio=0.1):
    m = onnx.load(src)
    g = m.graph
    out_names = {o.name for o in g.output}
    nodes = []
    g.initializer.append(numpy_helper.from_array(np.array(ratio, dtype=np.float32), "mc_ratio"))
    for n in list(g.node):
        nodes.append(n)
        if n.op_type in ACTS and n.output[0] not in out_names:
            old = n.output[0]
            n.output[0] = old + "_pre_dropout"
            nodes.append(helper.make_node("Dropout", [n.output[0], "mc_ratio"], [old], name=old + "_dropout"))
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
