#!/usr/bin/python3
"""Writes the hand-made regression inputs of tests/fuzz/regress/onnx (needs python3-onnx).
Each reproduces a defect that fuzzing or an audit found; make test replays them."""
import os
from onnx import helper, TensorProto

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regress", "onnx")


def model(nodes, name):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(m.SerializeToString())


def const(name, dtype, vals):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", dtype, [len(vals)], vals))


os.makedirs(OUT, exist_ok=True)
big = [2.74886e26, -3e38, float("nan"), 1.5]
# Cast of float constants outside int64's range (undefined behaviour before the fix)
model([const("c", TensorProto.FLOAT, big),
       helper.make_node("Cast", ["c"], ["ci"], to=TensorProto.INT64),
       helper.make_node("Cast", ["ci"], ["cf"], to=TensorProto.FLOAT),
       helper.make_node("Add", ["x", "cf"], ["y"])], "cast-float-out-of-range.onnx")
# Concat of an int64 constant with a float one: the floats become int64
model([const("k", TensorProto.INT64, [1, 2]), const("c", TensorProto.FLOAT, big[:2]),
       helper.make_node("Concat", ["k", "c"], ["kc"], axis=0),
       helper.make_node("Cast", ["kc"], ["kf"], to=TensorProto.FLOAT),
       helper.make_node("Add", ["x", "kf"], ["y"])], "concat-float-into-int64.onnx")
