#!/usr/bin/python3
"""Exports torchvision's classification models to ONNX for the import coverage run and
`make bench-onnx`. Random weights (torch.manual_seed(0) before each model), batch norm
statistics from three random batches, eval mode,
input (batch, 3, 224, 224) with a symbolic batch axis, do_constant_folding=True, as a
user's `torch.onnx.export(model.eval(), x, f)` would.

    /usr/bin/python3 bench/onnx/export_torchvision.py OUTDIR [--opsets 11,13,17] [--models a,b]

Needs Debian's python3-torch (1.13), python3-torchvision and python3-onnx. For each
model and opset it writes OUTDIR/<model>_op<opset>.onnx and, once per model,
OUTDIR/<model>_io.bin: x (2, 3, 224, 224) float32 then PyTorch's logits (2, 1000) float32,
both little-endian, no header. The files are large (up to 330 MB for vit_b_16) and
are not committed.
"""
import argparse
import os
import sys

import torch
import torchvision

MODELS = [
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "squeezenet1_1", "shufflenet_v2_x1_0", "densenet121", "efficientnet_b0", "googlenet",
    "regnet_y_400mf", "convnext_tiny", "vit_b_16",
]


def build(name):
    torch.manual_seed(0)
    kw = {}
    if name == "googlenet":
        kw = {"aux_logits": False, "init_weights": True}
    m = getattr(torchvision.models, name)(weights=None, **kw)
    calibrate(m)
    return m.eval()


def calibrate(m):
    """Batch norm statistics from a few random batches (a cumulative average), as a
    trained network has them: with the initial mean 0 and variance 1, activations
    shrink layer by layer in some networks (GoogLeNet's std-0.01 weights) until every
    input gives the same logits, and parity would compare constants. Likewise a layer
    torchvision starts at zero (ViT's head) gets small random weights."""
    with torch.no_grad():
        for x in m.modules():
            if isinstance(x, torch.nn.Linear) and not x.weight.any():
                x.weight.normal_(0.0, 0.02)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    m.train()
    torch.manual_seed(2)
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(4, 3, 224, 224))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--opsets", default="11,13,17")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    opsets = [int(s) for s in args.opsets.split(",") if s]
    for name in [s for s in args.models.split(",") if s]:
        m = build(name)
        torch.manual_seed(1)
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            y = m(x)
        with open(os.path.join(args.outdir, name + "_io.bin"), "wb") as f:
            f.write(x.numpy().astype("<f4").tobytes())
            f.write(y.numpy().astype("<f4").tobytes())
        for op in opsets:
            path = os.path.join(args.outdir, "%s_op%d.onnx" % (name, op))
            try:
                torch.onnx.export(m, x[:1], path, opset_version=op, input_names=["input"],
                                  output_names=["logits"], do_constant_folding=True,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
                print("%-20s opset %2d  %s" % (name, op, path), flush=True)
            except Exception as e:  # an export PyTorch itself refuses is reported, not fatal
                print("%-20s opset %2d  PyTorch cannot export: %s" % (name, op, str(e).splitlines()[0]),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
